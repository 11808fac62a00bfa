"""asd=talknet: TalkNet through the asd stage on a 30 fps source, retiming, the score mapping, setup errors.

Random weights say nothing about who speaks, so these tests check what the backend controls: TalkNet gets 25 fps
grey 112x112 mouth regions and 16 kHz MFCCs (4 per video frame) *aligned in time*, whatever the source's frame rate
and the audio's sample rate, and its track logit comes back as a 0..1 score whose 0.5 is upstream's logit 0.

Alignment is checked with a marker seen by both streams: the face flashes on 3 source frames (30 fps) and the
audio clicks at the same instant. TalkNet must see the flash at the crop index whose 4x is the MFCC frame of the
click. (The original MIKU-PAL code cut crops at the source's 30 fps while slicing as if 25: the flash would land 3
crops late, 12 MFCC frames away from the click.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mikupal import registry
from mikupal.asd.base import TrackEvidence
from mikupal.asd.stage import AsdStage
from mikupal.asd.talknet import TalkNetDetector, retime_indices
from mikupal.models.talknet import TalkNetScorer
from mikupal.testing.config import compose_pipeline
from mikupal.testing.paper_models import patterned_frame

pytestmark = pytest.mark.paper  # the paper preset's models (stand-ins with the real layout)

SR = 16000
BOX = (200, 100, 360, 260)      # the face square in the 640x360 source frame
FLASH_FRAMES = (30, 31, 32)     # source frames (30 fps) where the face flashes: 1.000-1.100 s
CLICK_AT = 1.0                  # seconds


@pytest.fixture
def spy(monkeypatch):
    """Records the (mfcc, faces) pairs TalkNet's network is given."""
    calls = []
    original = TalkNetScorer.raw_scores

    def recording(self, mfcc, faces):
        calls.append((np.array(mfcc), np.array(faces)))
        return original(self, mfcc, faces)

    monkeypatch.setattr(TalkNetScorer, "raw_scores", recording)
    return calls


def marker_video(path):
    """640x360, 30 fps, 2 s, no audio; a textured face square that turns bright on FLASH_FRAMES."""
    from mikupal.testing.media import write_video

    base = patterned_frame(640, 360)
    x1, y1, x2, y2 = BOX

    def frame(i, _t):
        img = base.copy()
        img[y1:y2, x1:x2] = (img[y1:y2, x1:x2] // 3 + (170 if i in FLASH_FRAMES else 20)).astype(np.uint8)
        return img

    return write_video(path, None, SR, frame, 2.0, fps=30)


def marker_audio(seconds=2.0):
    rng = np.random.default_rng(0)
    audio = (1e-3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    click = int(CLICK_AT * SR)
    audio[click : click + 160] = 0.5 * rng.standard_normal(160)
    return audio


def talknet_stage_cfg(video, run_dir, ckpt, *extra):
    return compose_pipeline(
        f"input={video}", f"run_dir={run_dir}", "asd=talknet", f"asd.model={ckpt}", "asd.device=cpu",
        "asd.clip.enabled=false", "asd.durations=[1,2]", "fail_fast=true", *extra,
    )


def test_asd_stage_feeds_talknet_aligned_25fps_crops_and_16khz_mfcc_from_a_30fps_source(tmp_path, talknet_ckpt, spy):
    from mikupal.asd.stage import AsdStage
    from mikupal.faces.artifact import WindowTracks, tracks_path
    from mikupal.faces.tracking import FaceTrack
    from mikupal.ids import video_id
    from mikupal.media import write_audio
    from mikupal.records import Utterance
    from mikupal.stage import StageContext

    video = marker_video(tmp_path / "talk.mp4")
    run_dir = tmp_path / "run"
    (run_dir / "audio").mkdir(parents=True)
    write_audio(run_dir / "audio" / "talk-00000.flac", marker_audio(), SR)
    item = Utterance(id="talk-00000", video_id=video_id(video), source=str(video), start=0.0, end=2.0,
                     audio="audio/talk-00000.flac")
    # the faces stage's artifact: one track from analysis frame 10 (0.4 s) to the end, at 25 fps
    frames = np.arange(10, 50)
    track = FaceTrack(0, frames, np.tile(np.array(BOX, float), (len(frames), 1)), np.ones(len(frames)),
                      np.ones(len(frames), bool), np.full(len(frames), np.nan))
    window = WindowTracks(item.id, "ok", 0.0, 2.0, 25.0, n_frames=50, detector_frames=50,
                          source_size=[640, 360], analysis_size=[640, 360], tracks=[track])
    (run_dir / "faces" / "tracks").mkdir(parents=True)
    window.write(run_dir / tracks_path(item.id))

    cfg = talknet_stage_cfg(video, run_dir, talknet_ckpt)
    ctx = StageContext(run_dir=run_dir, rank=0, world_size=1, cfg=cfg)
    stage = AsdStage(cfg)
    stage.setup(ctx)
    try:
        (out,) = stage.process(item, ctx)
    finally:
        stage.teardown()

    (mfcc, faces), = spy
    assert faces.shape == (40, 112, 112) and faces.dtype == np.uint8  # 1.6 s of track at 25 fps
    # 100 Hz MFCCs of exactly the track's 1.6 s of 16 kHz audio: 4 per video frame, less the one the last 25 ms
    # window cannot fill (TalkNet-ASD's demo cuts the same audio and scores all but the last frame too)
    assert mfcc.shape == (4 * 40 - 1, 13)
    brightness = faces.reshape(len(faces), -1).mean(axis=1)
    flashed = np.flatnonzero(brightness > (brightness.max() + np.median(brightness)) / 2)
    # analysis frames 25-27 (1.00-1.08 s) show source frames 30-32; the track starts at frame 10
    assert flashed.tolist() == [15, 16, 17]
    click = int(np.argmax(mfcc[:, 0]))  # coefficient 0 is the frame's log energy
    assert abs(click - 4 * flashed[0]) <= 3, (click, flashed)

    report = json.loads((run_dir / "asd" / "scores" / f"{item.id}.json").read_text())
    entry = report["scores"]["0"]
    assert 0.0 <= entry["score"] <= 1.0
    assert entry["score"] == pytest.approx(1 / (1 + np.exp(-entry["logit"])), abs=1e-4)
    assert entry["frames_scored"] == 39 and entry["fps_in"] == 25.0
    assert (out.face is not None) == (entry["score"] >= 0.5)  # asd.threshold 0.5 = upstream's logit > 0
    if out.face is None:
        assert report["reason"] == "low_asd_score"
    else:
        assert out.face.track_id == 0 and out.face.asd_score == pytest.approx(entry["score"], abs=1e-4)


def test_the_stage_refuses_faces_analysed_at_another_rate(tmp_path, talknet_ckpt):
    from mikupal.asd.stage import AsdStage
    from mikupal.stage import StageContext

    cfg = talknet_stage_cfg(tmp_path, tmp_path / "run", talknet_ckpt, "faces.analysis_fps=30")
    with pytest.raises(ValueError, match="needs frames at 25 fps but faces.analysis_fps=30"):
        AsdStage(cfg).setup(StageContext(run_dir=tmp_path / "run", rank=0, world_size=1, cfg=cfg))


def test_tracks_at_other_rates_are_retimed_to_25fps_and_audio_resampled_to_16khz(talknet_ckpt, spy):
    detector = TalkNetDetector(model=str(talknet_ckpt), device="cpu", durations=[1])
    detector.setup()
    try:
        rng = np.random.default_rng(1)
        crops30 = rng.integers(0, 255, size=(30, 224, 224), dtype=np.uint8)  # 1 s at 30 fps, from 0.5 s
        times30 = 0.5 + np.arange(30) / 30
        ev30 = TrackEvidence(3, times30, 30.0, np.zeros((30, 4)), np.ones(30, bool), crops=crops30)
        audio16 = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
        audio48 = np.repeat(audio16, 3)  # the same sound at 48 kHz
        (at30,) = detector.score([ev30], audio48, 48000)
        # the same frames, picked at 25 fps by hand, with 16 kHz audio
        keep, _ = retime_indices(30, 30.0)
        ev25 = TrackEvidence(3, 0.5 + np.arange(len(keep)) / 25, 25.0, np.zeros((len(keep), 4)),
                             np.ones(len(keep), bool), crops=crops30[keep])
        (at25,) = detector.score([ev25], audio16, SR)
    finally:
        detector.teardown()
    (mfcc30, faces30), (_mfcc25, faces25) = spy
    assert faces30.shape == (25, 112, 112) and mfcc30.shape == (99, 13)  # 1 s at 25 fps and 100 Hz
    np.testing.assert_array_equal(faces30, faces25)
    assert len(at30.frame_scores) == 30 and np.all((at30.frame_scores >= 0) & (at30.frame_scores <= 1))
    assert 0.0 <= at30.score <= 1.0 and at30.details["fps_in"] == 30.0
    # 48 kHz -> 16 kHz resampling changes the samples a little, not the timing: same scores within a small margin
    assert at30.details["logit"] == pytest.approx(at25.details["logit"], abs=0.05)


def test_retime_indices_pick_the_nearest_frames():
    forward, backward = retime_indices(6, 30.0)      # 0.2 s at 30 fps -> 5 frames at 25 fps
    assert forward.tolist() == [0, 1, 2, 4, 5]       # 25 fps times 0, 40, 80, 120, 160 ms
    assert backward.tolist() == [0, 1, 2, 3, 3, 4]   # 30 fps times 0, 33, 67, 100 (halfway: later), 133, 167 ms
    forward, backward = retime_indices(3, 12.5)      # 12.5 fps (0, 80, 160 ms) -> 25 fps (0, 40, ... 200 ms)
    assert forward.tolist() == [0, 1, 1, 2, 2, 2]    # halfway (40, 120 ms) goes to the later frame
    assert backward.tolist() == [0, 2, 4]


def test_a_track_after_the_audio_scores_zero_without_failing(talknet_ckpt):
    detector = TalkNetDetector(model=str(talknet_ckpt), device="cpu")
    detector.setup()
    try:
        crops = np.full((25, 224, 224), 110, np.uint8)
        ev = TrackEvidence(0, 5.0 + np.arange(25) / 25, 25.0, np.zeros((25, 4)), np.ones(25, bool), crops=crops)
        (result,) = detector.score([ev], np.zeros(2 * SR, np.float32), SR)
        with pytest.raises(ValueError, match="needs face crops"):
            detector.score([TrackEvidence(1, ev.times, 25.0, ev.boxes, ev.detected)], np.zeros(SR, np.float32), SR)
    finally:
        detector.teardown()
    assert result.score == 0.0 and result.details["reason"] == "no_audio" and np.isnan(result.frame_scores).all()


def test_missing_checkpoint_fails_at_setup_with_the_placement(tmp_path, models_dir, no_network):
    cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path / 'run'}", "asd=talknet", "asd.device=cpu")
    detector = AsdStage(cfg).build_backends()["asd"]  # as the stage builds it; construction loads nothing
    assert cfg.asd.threshold == 0.5 and "threshold" in AsdStage.stage_keys()
    with pytest.raises(registry.ModelNotFoundError) as info:
        detector.setup()
    message = str(info.value)
    assert f"{models_dir / 'talknet' / 'pretrain_TalkSet.model'} is missing" in message
    assert "1AbN9fCf9IexMxEKXLQY2KYBlb-IhSEea" in message
