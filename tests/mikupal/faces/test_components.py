"""Frame decoding at the analysis rate, IoU tracking, scene-cut detection, crops, the artifact format."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mikupal import media
from mikupal.faces.artifact import WindowTracks
from mikupal.faces.scene import SceneCutDetector
from mikupal.faces.tracking import IouTracker, iou_matrix
from mikupal.faces.video import (
    DecodeStats,
    OpenVideo,
    VideoDecodeError,
    VideoReader,
    analysis_size,
    read_window,
    video_info,
)
from mikupal.testing.decode_media import counter_frame, counter_index
from mikupal.testing.media import face_photo, write_video


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    """A 30 fps, 4 s video whose frame index is written in its pixels (left half: i // 16, right half: i % 16)."""
    path = tmp_path_factory.mktemp("counter") / "counter30.mp4"
    write_video(path, np.zeros(4 * 16000, np.float32), 16000, lambda i, _t: counter_frame(i), duration=4.0, fps=30)
    return path


def _index(frame) -> int:
    return counter_index(frame.image)


def test_read_window_resamples_30fps_to_25fps_by_nearest_frame(counter_video):
    frames = list(read_window(counter_video, 1.0, 2.0, 25))
    assert len(frames) == 25
    assert [f.index for f in frames] == list(range(25))
    assert np.allclose([f.time for f in frames], 1.0 + np.arange(25) / 25)
    # nearest source frame to each analysis time (source frame j is at j/30 s)
    expected = [int(round((1.0 + k / 25) * 30)) for k in range(25)]
    assert [round(f.source_time * 30) for f in frames] == expected
    assert [_index(f) for f in frames] == expected  # the pixels are those of that frame (seek + decode forward)


def test_read_window_resizes_and_stops_at_the_end_of_the_video(counter_video):
    frames = list(read_window(counter_video, 3.5, 6.0, 25, size=(48, 32)))
    assert frames[0].image.shape == (32, 48, 3)
    assert frames[-1].time < 4.0 + 1e-6 and len(frames) == 13  # 3.50 .. 3.98: the video ends at 4.0 s
    assert _index(frames[-1]) == 119


def test_read_window_from_zero_and_upsampling(counter_video):
    frames = list(read_window(counter_video, 0.0, 0.2, 50))
    assert len(frames) == 10
    assert [_index(f) for f in frames] == [int(round(k / 50 * 30)) for k in range(10)]


def test_windows_read_in_order_by_one_decoder_equal_windows_read_alone(counter_video):
    """Decoding on from one window to the next gives each window the frames a fresh open and seek gives it."""
    windows = [
        (0.0, 0.5, 25, None),
        (0.52, 1.3, 25, None),  # starts right after the last one: decoded on
        (1.3, 1.7, 50, (48, 32)),  # another rate and size, starting at the previous end
        (1.6, 2.0, 25, None),  # overlaps the previous window: read again from a keyframe
        (0.2, 0.6, 25, None),  # goes back in time: seek
        (2.5, 3.0, 30, None),
        (3.9, 5.0, 25, None),  # runs past the end of the video
        (3.0, 3.5, 25, None),  # after the end was reached: seek
    ]
    video = OpenVideo()
    try:
        for start, end, fps, size in windows:
            alone = list(read_window(counter_video, start, end, fps, size=size))
            on = list(video.window(counter_video, start, end, fps, size=size))
            assert [(f.index, f.time, f.source_time) for f in on] == [(f.index, f.time, f.source_time) for f in alone]
            assert all(np.array_equal(a.image, b.image) for a, b in zip(on, alone)), (start, end)
            assert [_index(f) for f in on] == [int(round(f.source_time * 30)) for f in on]
    finally:
        video.close()


def test_a_window_beyond_a_keyframe_seeks_there_instead_of_decoding_the_gap(tmp_path, monkeypatch):
    """With keyframes every half second or less, windows after a 1.6 s gap are reached by seeking to the keyframe before
    each (fewer frames decoded than decoding on through the gaps), with the frames a window read alone gets."""
    import av

    import mikupal.faces.video as video

    path = tmp_path / "gop15.mp4"
    media.write_video(path, (counter_frame(i) for i in range(150)), 30, keyframe_interval=15)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        keyframes = sorted(
            float(p.pts * stream.time_base) for p in c.demux(stream) if p.is_keyframe and p.pts is not None
        )
    assert max(np.diff(keyframes)) <= 0.5 + 1e-6
    windows = [(0.0, 0.5), (2.0, 2.4), (4.0, 4.4), (4.5, 4.9)]

    def read(reader):
        decoded = []
        for start, end in windows:
            stats = DecodeStats()
            on = list(reader.window(start, end, 25, stats=stats))
            alone = list(read_window(path, start, end, 25))
            assert [_index(f) for f in on] == [_index(f) for f in alone] == [round(f.source_time * 30) for f in on]
            assert all(np.array_equal(a.image, b.image) for a, b in zip(on, alone)), (start, end)
            decoded.append(stats.decoded_frames)
        return decoded

    with VideoReader(path) as reader:
        for t in (0.8, 2.0, 3.3, 4.0):  # where a seek for a window at t lands: the keyframe before t - half a frame
            assert reader.seek_lands_at(t) == pytest.approx(max(k for k in keyframes if k <= t - 0.5 / 30 + 1e-9))
        seeking = read(reader)
    monkeypatch.setattr(video, "SEEK_SKIPS_AT_LEAST", math.inf)  # the rule before: decode on within 10 s
    with VideoReader(path) as reader:
        decoding_on = read(reader)
    assert seeking[0] == decoding_on[0]
    for k in (1, 2):  # 1.6 s gaps: a keyframe lies at least 1 s after the last frame, the seek skips to it
        assert seeking[k] <= 30 * 0.9 + 4 < 30 * 1.6 <= decoding_on[k]
    assert seeking[3] == pytest.approx(decoding_on[3], abs=2)  # a 0.1 s gap: decoded on either way


def test_audio_only_file_has_no_video(tmp_path):
    path = write_video(tmp_path / "audio.mp4", np.zeros(16000, np.float32), 16000, None, duration=1.0)
    assert video_info(path) is None
    with pytest.raises(VideoDecodeError, match="no video stream"):
        list(read_window(path, 0.0, 1.0, 25))


def test_analysis_size_shrinks_but_never_enlarges():
    assert analysis_size(1920, 1080, 640) == (640, 360)
    assert analysis_size(176, 144, 640) == (176, 144)
    assert analysis_size(1080, 1920, 640) == (360, 640)
    assert analysis_size(1280, 720, None) == (1280, 720)


# --------------------------------------------------------------------------------------------------- tracking
def _box(x, y, s=50):
    return [x, y, x + s, y + s]


def test_tracker_follows_two_faces_and_interpolates_a_short_gap():
    tr = IouTracker(iou_threshold=0.3, max_gap=5, min_length=3)
    for f in range(20):
        boxes = [_box(10 + f, 10)]
        if not 8 <= f < 12:  # the second face is missed for 4 frames
            boxes.append(_box(200, 20 + f))
        tr.update(f, np.array(boxes), np.full(len(boxes), 0.9), np.full(len(boxes), 0.1 * f))
    tracks = tr.finish()
    assert len(tracks) == 2
    a, b = sorted(tracks, key=lambda t: t.boxes[0][0])
    assert len(a) == len(b) == 20 and a.n_detected == 20 and b.n_detected == 16
    assert not b.detected[8:12].any() and b.detected[12]
    assert np.allclose(b.boxes[8:12, 1], 20 + np.arange(8, 12))  # linear interpolation of the missed boxes
    assert np.isnan(b.mouth[9]) and b.mouth[12] == pytest.approx(1.2)
    assert b.scores[9] == 0.0


def test_tracker_splits_after_a_long_gap_and_drops_short_tracks():
    tr = IouTracker(iou_threshold=0.3, max_gap=3, min_length=5)
    for f in list(range(10)) + list(range(15, 25)):
        tr.update(f, np.array([_box(100, 100)]), np.array([0.9]))
    tr.update(30, np.array([_box(400, 100)]), np.array([0.9]))  # a 1-frame false positive
    tracks = tr.finish()
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in tracks] == [(0, 9), (15, 24)]
    assert tr.discarded == 1


def test_tracker_cut_closes_tracks_even_if_the_box_does_not_move():
    tr = IouTracker(iou_threshold=0.3, max_gap=10, min_length=2)
    for f in range(10):
        if f == 5:
            tr.cut()
        tr.update(f, np.array([_box(100, 100)]), np.array([0.9]))
    tracks = tr.finish()
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in tracks] == [(0, 4), (5, 9)]
    assert [t.track_id for t in tracks] == [0, 1]


def test_tracker_assignment_does_not_swap_close_faces():
    # Two faces side by side moving right; greedy matching in detection order would swap them at frame 1.
    tr = IouTracker(iou_threshold=0.1, max_gap=2, min_length=2)
    tr.update(0, np.array([_box(0, 0, 100), _box(60, 0, 100)]), np.array([0.9, 0.9]))
    tr.update(1, np.array([_box(75, 0, 100), _box(15, 0, 100)]), np.array([0.9, 0.9]))
    tracks = tr.finish()
    starts = {int(t.boxes[0][0]): int(t.boxes[1][0]) for t in tracks}
    assert starts == {0: 15, 60: 75}


def test_iou_matrix():
    m = iou_matrix(np.array([_box(0, 0, 10)]), np.array([_box(0, 0, 10), _box(5, 0, 10), _box(50, 50, 10)]))
    assert np.allclose(m, [[1.0, 50 / 150, 0.0]])


# --------------------------------------------------------------------------------------------------- scene cuts
def test_scene_cut_detector_fires_on_a_shot_change_only():
    from skimage import data

    rng = np.random.default_rng(0)
    a = face_photo()
    b = data.coffee()[:512, :512]
    det = SceneCutDetector(threshold=0.35, min_gap=3)
    cuts = []
    for i in range(30):
        img = a if i < 17 else b
        shift = int(2 * np.sin(i))  # slight camera shake and noise inside a shot
        noisy = np.clip(np.roll(img, shift, axis=1).astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(
            np.uint8
        )
        brighter = np.clip(noisy.astype(int) + (i % 3) * 4, 0, 255).astype(np.uint8)  # flicker
        if det.update(brighter):
            cuts.append(i)
    assert cuts == [17]


# --------------------------------------------------------------------------------------------------- artifact
def test_window_tracks_round_trip_keeps_nan_and_types(tmp_path):
    tr = IouTracker(min_length=1)
    tr.update(0, np.array([_box(1, 2)]), np.array([0.9]), np.array([0.25]))
    tr.update(2, np.array([_box(3, 2)]), np.array([0.8]), np.array([np.nan]))
    w = WindowTracks("u-00001", "ok", 1.0, 2.0, 25.0, n_frames=25, tracks=tr.finish(), scene_cuts=[4])
    path = tmp_path / "t.json"
    w.write(path)
    back = WindowTracks.read(path)
    t = back.tracks[0]
    assert back.expected_frames == 25 and back.scene_cuts == [4]
    assert list(t.frames) == [0, 1, 2] and list(t.detected) == [True, False, True]
    assert t.mouth[0] == 0.25 and np.isnan(t.mouth[1]) and np.isnan(t.mouth[2])
    assert np.allclose(t.boxes[1], [2, 2, 52, 52])
    with pytest.raises(ValueError, match="unknown faces status"):
        WindowTracks("u", "weird", 0.0, 1.0, 25.0)


# --------------------------------------------------------------------------------------------------- crops
def test_crop_face_centres_the_box_and_pads_with_grey():
    from mikupal.asd.clip import PAD_VALUE, crop_face

    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 90:110] = 255  # a white 20x20 square centred at (100, 50)
    crop = crop_face(frame, 100, 50, 10, 56, margin=0.4)  # side 28 px -> 56 px: scale 2
    assert crop.shape == (56, 56, 3)
    white = np.argwhere(crop[..., 0] > 128)
    assert white.min(0).tolist() == [8, 8] and white.max(0).tolist() == [47, 47]
    edge = crop_face(frame, 5, 5, 10, 56)  # mostly outside the frame: grey padding
    assert (edge[0, 0] == PAD_VALUE).all()


def test_talknet_style_crops_match_the_talknet_module():
    """With TalkNet's geometry (margin 0.4, offset 0.4, 224 px) the asd stage's crops equal talknet.crop_face_track."""
    talknet = pytest.importorskip("mikupal.models.talknet")
    from mikupal.asd.clip import collect_crops
    from mikupal.faces.tracking import FaceTrack
    from mikupal.faces.video import AnalysisFrame

    photo = face_photo()
    frames, boxes = [], []
    for k in range(30):
        dx = int(3 * k)
        frames.append(np.ascontiguousarray(np.roll(photo, dx, axis=1)))
        boxes.append([175 + dx, 75 + 0.5 * k, 280 + dx, 180 + 0.5 * k])
    boxes = np.array(boxes)
    track = FaceTrack(0, np.arange(30), boxes, np.ones(30), np.ones(30, bool), np.full(30, np.nan))
    ours = collect_crops(
        (AnalysisFrame(k, k / 25, k / 25, f) for k, f in enumerate(frames)),
        [track],
        30,
        224,
        grey=False,
        margin=0.4,
        offset=0.4,
    )[0]
    theirs = talknet.crop_face_track(frames, boxes, crop_scale=0.4, out_size=224)
    middle = slice(6, 24)  # upstream's median filter zero-pads the ends
    diff = np.abs(ours[middle].astype(int) - theirs[middle].astype(int))
    assert ours.shape == theirs.shape == (30, 224, 224, 3)
    assert diff.mean() < 3.0, diff.mean()


def test_prefetch_keeps_order_raises_the_error_and_stops_early():
    """Frames decoded ahead in a thread come in order; an error is raised in the reader; leaving early stops it."""
    from mikupal.faces.video import prefetch

    assert list(prefetch(iter(range(100)), depth=4)) == list(range(100))

    def failing():
        yield 1
        yield 2
        raise VideoDecodeError("broken.mp4: video cannot be decoded")

    got = []
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1, 2]

    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    frames = prefetch(endless(), depth=2)
    assert [next(frames) for _ in range(5)] == [0, 1, 2, 3, 4]
    frames.close()  # joins the thread, which closes the source
    assert closed == [True]
