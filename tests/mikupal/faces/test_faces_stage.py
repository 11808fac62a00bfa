"""The faces stage on real and known-truth video: detection rate, tracks, batch edges, scene cuts, crowds."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.records import Utterance
from mikupal.testing.talking_faces import talking_clip
from mikupal.testing.vision import box_iou, make_utterances, run_vision


def _inside(box, panel) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return panel[0] <= cx <= panel[2] and panel[1] <= cy <= panel[3]


def _carphone_utterance(path) -> Utterance:
    return Utterance(id="car-00000", video_id="car", source=str(path), start=0.0, end=4.0, audio="audio/car-00000.flac")


@pytest.fixture(scope="module")
def carphone_run(carphone, tmp_path_factory):
    run = tmp_path_factory.mktemp("carphone")
    return run_vision(run, [_carphone_utterance(carphone)], "faces.detect_every=1", asd=False)


def test_carphone_face_detected_in_at_least_98_percent_of_frames_with_one_track(carphone_run):
    w = carphone_run.tracks("car-00000")
    assert w.status == "ok" and w.source_size == [176, 144]
    assert w.n_frames == 100  # 4.0 s at 25 fps from a 29.97 fps source
    counts = carphone_run.faces_counts
    assert counts["faces.frames"] == counts["faces.detector_frames"] == 100  # the detector saw every frame
    assert w.frames_with_face / w.n_frames >= 0.98
    assert len(w.tracks) == 1 and w.tracks[0].n_detected >= 98
    assert w.scene_cuts == [] and counts["faces.tracks"] == 1
    # the man's face is in the upper middle of the frame; the box is in source pixels
    x1, y1, x2, y2 = w.tracks[0].median_box()
    assert 30 < x1 < x2 < 130 and 20 < y1 < y2 < 120 and 35 < x2 - x1 < 90
    # he talks: the mouth opening varies, measured on nearly every frame
    mouth = w.tracks[0].mouth
    assert np.isfinite(mouth).mean() > 0.95 and np.nanstd(mouth) > 0.03


def test_detecting_every_other_frame_gives_the_same_track(carphone, carphone_run, tmp_path):
    run = run_vision(tmp_path, [_carphone_utterance(carphone)], "faces.detect_every=2", asd=False)
    w, full = run.tracks("car-00000"), carphone_run.tracks("car-00000")
    assert run.faces_counts["faces.detector_frames"] == 50 and w.frames_with_face == full.frames_with_face
    assert len(w.tracks) == 1 and len(w.tracks[0]) == len(full.tracks[0])
    t = w.tracks[0]
    assert list(t.detected[:6]) == [True, False] * 3  # carried boxes are marked
    assert np.isfinite(t.mouth).mean() > 0.95  # the mouth is measured on every frame
    assert np.nanmean(np.abs(t.mouth - full.tracks[0].mouth)) < 0.03
    assert box_iou(t.median_box(), full.tracks[0].median_box()) > 0.95


def test_trailing_partial_batch_is_not_dropped(carphone, tmp_path):
    """100 frames in batches of 32 (the first of 8) leave a last batch of 28 frames, in batches of 7 (the first of 1)
    a last batch of 1: its detections must be there."""
    run = run_vision(
        tmp_path, [_carphone_utterance(carphone)], "faces.batch_size=32", "faces.detect_every=1", asd=False
    )
    small = run_vision(
        tmp_path / "b7", [_carphone_utterance(carphone)], "faces.batch_size=7", "faces.detect_every=1", asd=False
    )
    w, w7 = run.tracks("car-00000"), small.tracks("car-00000")
    assert int(w.tracks[0].frames[-1]) >= 98 and w.tracks[0].detected[-1]
    assert w.frames_with_face == w7.frames_with_face
    assert np.allclose(w.tracks[0].boxes, w7.tracks[0].boxes)


def test_haar_backend_tracks_the_carphone_face(carphone, tmp_path, carphone_run):
    run = run_vision(tmp_path, [_carphone_utterance(carphone)], "faces=haar", asd=False)
    w = run.tracks("car-00000")
    assert w.status == "ok" and w.detector.startswith("HaarDetector")
    assert w.frames_with_face >= 50  # a weaker detector: frontal faces only
    assert len(w.tracks) >= 1
    longest = max(w.tracks, key=len)
    assert box_iou(longest.median_box(), carphone_run.tracks("car-00000").tracks[0].median_box()) > 0.4


@pytest.fixture(scope="module")
def scene_cut_clip(tmp_path_factory, speech_data):
    """One face; at frame 60 (2.4 s) the shot changes (mirrored, re-coloured) but the face stays in place."""
    root = tmp_path_factory.mktemp("cut")

    def hook(i, frame):
        if i < 60:
            return frame
        shot = frame[:, ::-1].astype(np.float32) * np.array([1.25, 0.85, 0.55], np.float32)
        return np.clip(shot, 0, 255).astype(np.uint8)

    clip = talking_clip(root / "cut.mp4", 6.0, [(170, 30, 470, 330)], size=(640, 360), frame_hook=hook)
    return root, clip


def test_tracks_are_split_at_a_scene_cut_inside_an_utterance(scene_cut_clip):
    root, clip = scene_cut_clip
    utts = make_utterances(root / "run", clip.path, clip.audio, [(1.0, 5.0)], name="cut")
    # asd's own split at the cut is off here (it is on by default: see the test below)
    run = run_vision(root / "run", utts, "asd.split_at_cuts.enabled=false")
    w = run.tracks("cut-00000")
    assert w.scene_cuts == [35]  # analysis frame 35 = 1.0 s + 35/25 s = 2.4 s
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in w.tracks] == [(0, 34), (35, 99)]
    assert run.faces_counts["faces.scene_cuts"] == 1
    # asd takes the part that covers enough of the utterance (65 %) and speaks
    face = run.outputs[0].face
    assert face is not None and face.track_id == 1
    assert run.scores("cut-00000")["coverage"] == {"0": 0.35, "1": 0.65}


def test_by_default_asd_splits_the_utterance_at_the_cut(scene_cut_clip):
    root, clip = scene_cut_clip
    utts = make_utterances(root / "split", clip.path, clip.audio, [(1.0, 5.0)], name="cut")
    run = run_vision(root / "split", utts)
    assert [u.id for u in run.outputs] == ["cut-00000-c1", "cut-00000-c2"]
    assert [(u.start, u.end) for u in run.outputs] == [(1.0, 2.4), (2.4, 5.0)]
    assert run.asd_counts["asd.split_at_cut"] == 1 and run.asd_counts["asd.cut_pieces"] == 2
    assert run.outputs[1].face is not None and run.outputs[1].face.track_id == 1
    assert all((run.run_dir / u.audio).is_file() for u in run.outputs)


def test_without_cut_detection_the_track_would_run_across_the_cut(scene_cut_clip):
    root, clip = scene_cut_clip
    utts = make_utterances(root / "nocut", clip.path, clip.audio, [(1.0, 5.0)], name="cut")
    run = run_vision(root / "nocut", utts, "faces.scene_cut.enabled=false", asd=False)
    w = run.tracks("cut-00000")
    assert w.scene_cuts == [] and len(w.tracks) == 1 and len(w.tracks[0]) == 100


@pytest.fixture(scope="module")
def crowd_clip(tmp_path_factory, speech_data):
    """Twelve faces in a 4x3 grid; the one in row 1, column 2 speaks."""
    root = tmp_path_factory.mktemp("crowd")
    boxes = [(c * 160 + 20, r * 120, c * 160 + 140, r * 120 + 120) for r in range(3) for c in range(4)]
    clip = talking_clip(root / "crowd.mp4", 4.0, boxes, size=(640, 360), speaker=6)
    return root, clip


def test_more_than_ten_faces_are_capped_and_counted(crowd_clip):
    root, clip = crowd_clip
    utts = make_utterances(root / "run", clip.path, clip.audio, [(0.2, 3.8)], name="crowd")
    run = run_vision(root / "run", utts, "faces.model=blazeface-full")
    w = run.tracks("crowd-00000")
    assert w.n_frames == 90 and w.capped_frames == w.detector_frames == 45  # every detector frame (every 2nd)
    assert run.faces_counts["faces.too_many_faces"] == 45
    assert len(w.tracks) == 10
    # the utterance passes; the still faces cannot win, so the face is the speaker's or none (if the cap dropped it)
    face = run.outputs[0].face
    assert face is None or _inside(face.box, clip.face_boxes[6])


def test_the_cap_keeps_the_largest_faces(tmp_path, speech_data):
    boxes = [(0, 100, 130, 230), (150, 40, 370, 260), (400, 70, 570, 240), (600, 110, 720, 230)]
    clip = talking_clip(tmp_path / "four.mp4", 2.0, boxes, size=(720, 300), speaker=1)
    utts = make_utterances(tmp_path, clip.path, clip.audio, [(0.2, 1.8)], name="four")
    run = run_vision(tmp_path, utts, "faces.max_faces=2", asd=False)
    w = run.tracks("four-00000")
    assert w.capped_frames == w.detector_frames == 20
    kept = sorted(next(i for i, p in enumerate(boxes) if _inside(t.median_box(), p)) for t in w.tracks)
    assert kept == [1, 2]  # the two largest faces


def test_tiny_faces_are_ignored_and_counted(scene_cut_clip, tmp_path):
    root, clip = scene_cut_clip
    utts = make_utterances(tmp_path, clip.path, clip.audio, [(0.2, 2.0)], name="tiny")
    run = run_vision(tmp_path, utts, "faces.min_face_size=400")
    assert run.tracks("tiny-00000").tracks == []
    assert run.faces_counts["faces.tiny_faces"] == run.faces_counts["faces.detector_frames"] == 23
    assert run.outputs[0].face is None and run.asd_counts == {"asd.no_face.no_face": 1}
