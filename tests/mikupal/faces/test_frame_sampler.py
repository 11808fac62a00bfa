"""The one frame sampler (mikupal/faces/video.py) and its three callers: analysis windows (``read_window``), the
annotators' evenly spread frames (``mediaprep.sample_frames``) and Qwen's frames (``qwen_inputs.read_clip_frames``).

Every clip shows its frame index in its pixels (:func:`~mikupal.testing.decode_media.counter_frame`), so each test
checks which source frame a caller gave, and a plain decode of every frame with PyAV is the reference its pixels
must equal. If a caller grows its own decode loop again and picks other frames, these tests fail.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from mikupal.annotate.mediaprep import sample_frames
from mikupal.faces.video import DecodeStats, VideoDecodeError, VideoReader, nearest_frames, read_window, spread_indices
from mikupal.media import MediaError, write_video
from mikupal.models.qwen_inputs import read_clip_frames, sample_frame_indices
from mikupal.testing.decode_media import (
    counter_frame,
    counter_index,
    packets,
    phone_times,
    write_vfr,
    zero_packets,
)

QWEN = dict(fps=2.0, min_frames=4, max_frames=64, temporal_patch_size=2)


def _write(path, n, fps, fmt="mp4", options=None):
    write_video(path, (counter_frame(i) for i in range(n)), fps, np.zeros(int(n / float(fps) * 16000), np.float32),
                16000, fmt=fmt, options=options)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 30 fps MP4 (B-frames; the container states its frame count), a 30000/1001 fps one, and a Matroska file
    (no frame count: it is counted from the packets)."""
    d = tmp_path_factory.mktemp("sampler")
    return {
        "mp4": _write(d / "c30.mp4", 120, 30),
        "ntsc": _write(d / "ntsc.mp4", 91, Fraction(30000, 1001)),
        "mkv": _write(d / "c25.mkv", 77, 25, fmt="matroska"),
    }


def _decode_all(path, fmt):
    """Every frame of the first video stream, decoded plainly (the reference)."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(c.streams.video[0])]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ the selection rule
def test_nearest_frames_takes_the_nearer_neighbour_and_the_earlier_on_a_tie():
    decoded = [("a", 0.0), ("b", 1.0), ("c", 2.0)]
    picks = list(nearest_frames(iter(decoded), [0.0, 0.4, 0.5, 0.6, 1.9], lead=0.5, hold=0.0))
    assert [(k, item) for k, item, _, _ in picks] == [(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "c")]
    assert not any(held for *_, held in picks)


def test_nearest_frames_skips_targets_before_the_first_item_and_holds_the_last():
    decoded = [("a", 0.0), ("b", 1.0), ("c", 2.0)]
    early = list(nearest_frames(iter(decoded), [-1.0, -0.2, 0.0], lead=0.5, hold=0.0))
    assert [(k, item) for k, item, _, _ in early] == [(1, "a"), (2, "a")]  # -1.0 is before the first item
    late = [2.0, 2.4, 3.5]
    assert [(k, held) for k, _, _, held in nearest_frames(iter(decoded), late, lead=0.5, hold=1.0)] == [
        (0, False), (1, True)]
    assert [k for k, *_ in nearest_frames(iter(decoded), late, lead=0.5, hold=0.0)] == [0]
    assert [(k, i) for k, i, *_ in nearest_frames(iter(decoded), late, lead=0.5, hold=math.inf)] == [
        (0, "c"), (1, "c"), (2, "c")]


def test_nearest_frames_reads_no_further_than_the_last_target_needs():
    pulled = []

    def decoded():
        for i in range(100):
            pulled.append(i)
            yield i, float(i)

    assert [item for _, item, _, _ in nearest_frames(decoded(), [0.0, 3.0, 3.2], lead=0.5, hold=0.0)] == [0, 3, 3]
    assert pulled == [0, 1, 2, 3, 4]  # item 4 settles 3.2 (3 is nearer); nothing after it is decoded


def test_spread_indices():
    assert spread_indices(120, 4) == [0, 40, 79, 119]
    assert spread_indices(3, 8) == [0, 1, 2]  # fewer frames than asked for
    assert spread_indices(1, 8) == [0] and spread_indices(0, 8) == []
    with pytest.raises(ValueError):
        spread_indices(10, 0)


# ------------------------------------------------------------------------------------------ the three callers agree
@pytest.mark.parametrize("name", ["mp4", "ntsc", "mkv"])
def test_the_three_callers_give_the_shared_samplers_frames(clips, name):
    path = clips[name]
    rgb, bgr, grey = (_decode_all(path, fmt) for fmt in ("rgb24", "bgr24", "gray"))
    with VideoReader(path) as reader:
        fps, total = reader.fps, reader.frame_count()
        assert total == len(rgb)
        spread = spread_indices(total, 8)
        shared_bgr = [image for _, image in reader.frames_at(spread, fmt="bgr24")]
        shared_grey = [image for _, image in reader.frames_at(spread, fmt="gray")]
        keep = sample_frame_indices(total, fps, **QWEN).tolist()
        shared_rgb = [image for _, image in reader.frames_at(keep, fmt="rgb24", hold_last=True)]
    # annotate: N evenly spread frames, BGR or grey, at the source size
    frames = sample_frames(path, 8)
    assert _same(frames, shared_bgr) and _same(frames, [bgr[i] for i in spread])
    assert [counter_index(f) for f in frames] == spread
    assert _same(sample_frames(path, 8, grey=True), shared_grey) and shared_grey[0].shape == grey[0].shape
    assert _same(shared_grey, [grey[i] for i in spread])
    # Qwen: the official processor's indices
    qwen, sample_fps = read_clip_frames(path, **QWEN)
    assert _same(qwen, shared_rgb) and _same(qwen, [rgb[i] for i in keep])
    assert [counter_index(f) for f in qwen] == keep
    assert sample_fps == pytest.approx(len(keep) / (total / fps))
    # faces/asd: a window over the whole clip at its own rate shows every frame once, in order
    window = list(read_window(path, 0.0, total / fps, fps))
    assert _same([f.image for f in window], rgb)


def test_a_clip_without_a_frame_count_is_spread_to_its_last_frame(clips):
    import av

    with av.open(str(clips["mkv"])) as c:
        assert not c.streams.video[0].frames  # Matroska states no count: it is counted from the packets
    assert [counter_index(f) for f in sample_frames(clips["mkv"], 4, grey=True)] == [0, 25, 51, 76]


def test_variable_frame_rate_clips_are_sampled_by_frame_index(tmp_path):
    """As Qwen's processor does: frame indices, whatever the frames' times (the windows place frames by time)."""
    times = phone_times(3.0)
    path = write_vfr(tmp_path / "vfr.mp4", times, lambda i, _t: counter_frame(i))
    with VideoReader(path) as reader:
        fps, total = reader.fps, reader.frame_count()
    assert total == len(times)
    assert [counter_index(f) for f in sample_frames(path, 6)] == spread_indices(total, 6)
    frames, _ = read_clip_frames(path, **QWEN)
    assert [counter_index(f) for f in frames] == sample_frame_indices(total, fps, **QWEN).tolist()


# ------------------------------------------------------------------------------------------ damaged and bad input
def test_corrupt_packets_are_skipped_not_fatal(clips, tmp_path):
    """Two wiped packets lose their two frames (later indices shift by two); the rest is sampled as usual."""
    video = [p for p in packets(clips["mp4"]) if p.kind == "video"]
    damaged = tmp_path / "damaged.mp4"
    zero_packets(clips["mp4"], damaged, video[50:52])
    stats = DecodeStats()
    with VideoReader(damaged) as reader:
        total = reader.frame_count()
        decoded = sum(1 for _ in reader.frames_at(range(total)))
        spread = spread_indices(total, 8)
        got = list(reader.frames_at(spread, fmt="bgr24", stats=stats))
    assert total == 120 and decoded == 118 and stats.corrupt_packets == 2
    assert [i for i, _ in got] == [i for i in spread if i < decoded]  # the last index is past what decodes
    assert [counter_index(image) for _, image in got][:3] == spread[:3]  # the frames well before the damage
    assert _same(sample_frames(damaged, 8), [image for _, image in got])
    frames, _ = read_clip_frames(damaged, **QWEN)
    keep = sample_frame_indices(total, 30.0, **QWEN).tolist()
    assert len(frames) == len(keep) and [counter_index(f) for f in frames][:3] == keep[:3]


@pytest.mark.parametrize(("threads", "where"), [(True, "at or a few frames before"), (False, "at")])
def test_a_corrupt_packet_warning_says_how_exact_its_time_is(clips, tmp_path, caplog, threads, where):
    """FFmpeg's frame threads report a bad packet a few packets late: the warning's time is then an upper bound."""
    video = [p for p in packets(clips["mp4"]) if p.kind == "video"]
    damaged = tmp_path / "damaged.mp4"
    zero_packets(clips["mp4"], damaged, video[50:51])
    with caplog.at_level("WARNING", logger="mikupal.faces.video"), VideoReader(damaged, threads=threads) as reader:
        sum(1 for _ in reader.frames_at(range(reader.frame_count())))
    warnings = [r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage()]
    assert len(warnings) == 1 and f"the video packet {where} " in warnings[0] and "damaged.mp4" in warnings[0]
    assert (" a few frames before " in warnings[0]) == threads


def test_a_clip_with_nothing_decodable_names_the_file(clips, tmp_path):
    video = [p for p in packets(clips["mp4"]) if p.kind == "video"]
    wiped = tmp_path / "wiped.mp4"
    zero_packets(clips["mp4"], wiped, video)
    for read in (lambda: sample_frames(wiped, 4), lambda: read_clip_frames(wiped, **QWEN)):
        with pytest.raises(VideoDecodeError, match=r"wiped\.mp4: the video stream holds no decodable frames"):
            read()


def test_a_stated_frame_count_too_high_holds_the_last_frame_for_qwen(clips, tmp_path):
    """An MP4 cut short with its index first states every frame; Qwen's frames repeat the last one decoded,
    the evenly spread frames are only those there are."""
    full = _write(tmp_path / "full.mp4", 120, 30, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # an interrupted download
    with VideoReader(cut, threads=False) as reader:  # as the annotators read
        total = reader.frame_count()
        every = [image for _, image in reader.frames_at(range(total))]
    assert total == 120 and 0 < len(every) < 120
    frames, _ = read_clip_frames(cut, **QWEN)
    keep = sample_frame_indices(120, 30.0, **QWEN).tolist()
    assert _same(frames, [every[min(i, len(every) - 1)] for i in keep]) and keep[-1] >= len(every)
    assert len(sample_frames(cut, 8)) == len([i for i in spread_indices(120, 8) if i < len(every)])


def test_no_video_stream_is_a_media_error_naming_the_file(tmp_path):
    path = tmp_path / "speech.mp4"
    write_video(path, None, 25, np.zeros(16000, np.float32), 16000)
    for read in (lambda: sample_frames(path, 4), lambda: read_clip_frames(path, **QWEN)):
        with pytest.raises(MediaError, match=r"speech\.mp4: has no video stream"):
            read()
