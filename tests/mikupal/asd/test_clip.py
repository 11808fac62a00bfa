"""Face-crop clips cropped from yuv420p frames (the asd stage's path for even-sized sources) against the RGB path."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.asd.clip import PAD_VALUE, PAD_YUV, crop_face, crop_face_yuv, write_face_clip
from mikupal.faces.tracking import FaceTrack
from mikupal.faces.video import VideoReader
from mikupal.testing.media import face_photo

SR = 16000


def _to_yuv(rgb: np.ndarray) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").to_ndarray(format="yuv420p")


def _to_rgb(yuv: np.ndarray) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(yuv), format="yuv420p").to_ndarray(format="rgb24")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def test_yuv_crop_matches_the_rgb_crop_converted_to_yuv():
    photo = face_photo()  # 512 x 512
    h, w = photo.shape[:2]
    yuv = _to_yuv(photo)
    cases = [(w / 2, h / 2, h / 5, 224), (w / 2 + 3.3, h / 2 - 7.1, h / 2.5, 224), (w / 3, h / 3, 20, 112)]
    for cx, cy, half, size in cases:
        ours = crop_face_yuv(yuv, cx, cy, half, size)
        assert ours.shape == (size * 3 // 2, size) and ours.dtype == np.uint8
        ref = _to_yuv(crop_face(photo, cx, cy, half, size))
        # luma is a linear mix of RGB, so resampling commutes with it up to rounding; chroma is resampled at half
        # resolution here, after the RGB crop there
        assert np.abs(ours[:size].astype(int) - ref[:size].astype(int)).mean() < 1.0
        assert np.abs(ours[size:].astype(int) - ref[size:].astype(int)).mean() < 2.0
        rgb_ours, rgb_ref = _to_rgb(ours), _to_rgb(ref)
        assert _psnr(rgb_ours, rgb_ref) > 35, _psnr(rgb_ours, rgb_ref)


def test_yuv_crop_pads_with_the_same_grey():
    photo = np.ascontiguousarray(face_photo()[:200, :300])
    yuv = _to_yuv(photo)
    crop = crop_face_yuv(yuv, -500, -500, 40, 64)  # entirely outside the frame
    assert (crop[:64] == PAD_YUV[0]).all() and (crop[64:] == 128).all()
    grey = _to_rgb(crop)
    ref = _to_rgb(_to_yuv(crop_face(photo, -500, -500, 40, 64)))  # the RGB path's padding after its conversion
    assert np.abs(grey.astype(int) - ref.astype(int)).max() <= 1
    assert np.abs(grey.astype(int) - PAD_VALUE).max() <= 2
    with pytest.raises(ValueError, match="even size"):
        crop_face_yuv(yuv, 10, 10, 5, 63)


def test_yuv_windows_give_the_decoded_planes_uncopied_and_they_crop_like_the_stacked_frame(tmp_path):
    """A yuv420p window of a yuv420p source yields views of the decoded planes (330 px wide: FFmpeg pads its rows,
    so the views are strided), with the pixels of ``to_ndarray(format="yuv420p")``, and crops to the same bytes."""
    import av

    from mikupal.faces.video import Yuv420Planes
    from mikupal.media import write_video

    photo = np.ascontiguousarray(face_photo()[:240, :330])
    rng = np.random.default_rng(0)
    pictures = [np.clip(photo.astype(int) + rng.integers(-20, 20, photo.shape), 0, 255).astype(np.uint8)
                for _ in range(8)]
    src = tmp_path / "padded.mp4"
    write_video(src, pictures, 25.0, crf=10)
    with av.open(str(src)) as c:
        stacked = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    with VideoReader(src) as reader:
        frames = list(reader.window(0.0, 8 / 25, 25.0, fmt="yuv420p"))
    assert len(frames) == len(stacked) == 8
    for frame, ref in zip(frames, stacked):
        planes = frame.image
        assert isinstance(planes, Yuv420Planes)
        assert planes.y.shape == (240, 330) and planes.u.shape == planes.v.shape == (120, 165)
        assert planes.y.strides[0] > 330  # rows padded in memory: views, not a copy
        assert not any(p.flags.writeable for p in planes)  # the decoder's frame, shared by repeated frames
        assert np.array_equal(np.concatenate([planes.y.ravel(), planes.u.ravel(), planes.v.ravel()]), ref.ravel())
        for cx, cy, half in ((165.0, 120.0, 60.0), (20.3, 200.7, 45.0)):
            assert np.array_equal(crop_face_yuv(planes, cx, cy, half, 112), crop_face_yuv(ref, cx, cy, half, 112))


@pytest.fixture(scope="module")
def source(tmp_path_factory, speech_data):
    from mikupal.testing.talking_faces import talking_clip

    root = tmp_path_factory.mktemp("clip_yuv")
    return talking_clip(root / "src.mp4", 3.0, [(200, 40, 440, 280)], size=(640, 360))


def _write(path, src, fmt: str, start: float, end: float, track: FaceTrack, audio: np.ndarray) -> int:
    n = int(np.ceil((end - start) * 25 - 1e-6))
    with VideoReader(src) as reader:
        frames = reader.window(start, end, 25.0, fmt=fmt)
        return write_face_clip(path, frames, track, n, audio, SR, 25.0, fmt=fmt)


def _decode(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_the_yuv_clip_equals_the_rgb_clip_in_length_size_audio_and_nearly_in_pixels(source, tmp_path):
    from mikupal.media import decode_audio
    from mikupal.testing.vision import probe_clip

    start, end = 0.3, 2.7
    n = int(np.ceil((end - start) * 25 - 1e-6))
    # the track starts late, ends early and moves off the left edge of the frame: held boxes and grey padding
    frames = np.arange(5, n - 5)
    x = np.linspace(200, -120, len(frames))
    boxes = np.stack([x, np.full_like(x, 40), x + 240, np.full_like(x, 280)], axis=1)
    track = FaceTrack(0, frames, boxes, np.ones(len(frames)), np.ones(len(frames), bool), np.full(len(frames), np.nan))
    audio = source.audio[int(start * SR) : int(end * SR)]
    clips = {fmt: tmp_path / f"{fmt}.mp4" for fmt in ("rgb24", "yuv420p")}
    written = {fmt: _write(p, source.path, fmt, start, end, track, audio) for fmt, p in clips.items()}
    assert written["yuv420p"] == written["rgb24"] == n
    info = {fmt: probe_clip(p) for fmt, p in clips.items()}
    assert info["yuv420p"] == info["rgb24"]
    assert info["yuv420p"]["size"] == (224, 224) and info["yuv420p"]["frames"] == n
    a_yuv, _ = decode_audio(clips["yuv420p"], SR)
    a_rgb, _ = decode_audio(clips["rgb24"], SR)
    assert len(a_yuv) == len(a_rgb) and np.allclose(a_yuv, a_rgb, atol=1e-4)
    ours, ref = _decode(clips["yuv420p"]), _decode(clips["rgb24"])
    assert ours.shape == ref.shape == (n, 224, 224, 3)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.mean() < 2.0 and _psnr(ours, ref) > 35, (diff.mean(), _psnr(ours, ref))
    # the last frames hold the track's last box, far off the left edge: the left part is grey in both
    assert np.abs(ours[-1, :, :40].astype(int) - PAD_VALUE).max() <= 3
    assert np.abs(ref[-1, :, :40].astype(int) - PAD_VALUE).max() <= 3


def test_yuv_frames_need_an_even_size_and_the_right_shape(tmp_path):
    from mikupal.media import write_video

    with pytest.raises(ValueError, match="yuv420p frame of shape"):
        write_video(tmp_path / "bad.mp4", [np.zeros((96, 64), np.uint8), np.zeros((90, 64), np.uint8)],
                    frame_format="yuv420p")
    with pytest.raises(ValueError, match="frame_format"):
        write_video(tmp_path / "bad2.mp4", [np.zeros((96, 64), np.uint8)], frame_format="nv12")


@pytest.mark.parametrize("colour", [{"colorspace": 1, "color_range": 1}, {"colorspace": 2, "color_range": 0}],
                         ids=["bt709", "untagged"])
def test_the_yuv_clip_is_as_true_to_the_source_as_the_rgb_clip(tmp_path, colour):
    """Against the crops of the original RGB pictures, the yuv clip is no worse than the RGB path's (measured: 0.5-0.9
    dB better, the RGB path's two conversions darken it by about 1.5 levels); a BT.709 source's clip carries the
    tag, and decoded without it its colours would be further off."""
    import av

    from mikupal.media import write_video

    photo = face_photo()[:360]  # 360 x 512, colourful (the astronaut's suit and flag)
    src = tmp_path / "src.mp4"
    space = "ITU709" if colour["colorspace"] == 1 else "ITU601"
    pictures = [np.ascontiguousarray(np.roll(photo, 4 * k, axis=1)) for k in range(20)]
    frames = [av.VideoFrame.from_ndarray(p, format="rgb24").reformat(format="yuv420p", dst_colorspace=space,
                                                                      dst_color_range=1).to_ndarray() for p in pictures]
    write_video(src, frames, 25.0, frame_format="yuv420p", colour=colour, crf=10)
    with VideoReader(src) as reader:
        assert reader.colour == colour
    track = FaceTrack(0, np.arange(20), np.tile([150.0, 40.0, 350.0, 240.0], (20, 1)), np.ones(20),
                      np.ones(20, bool), np.full(20, np.nan))
    audio = np.zeros(int(0.8 * SR), np.float32)
    clips = {}
    for fmt in ("rgb24", "yuv420p"):
        clips[fmt] = tmp_path / f"{fmt}.mp4"
        with VideoReader(src) as reader:
            write_face_clip(clips[fmt], reader.window(0.0, 0.8, 25.0, fmt=fmt), track, 20, audio, SR, 25.0,
                            fmt=fmt, colour=reader.colour)
    ours, ref = _decode(clips["yuv420p"]), _decode(clips["rgb24"])
    truth = np.stack([crop_face(p, 250, 140, 100, 224) for p in pictures])
    assert ours.shape == ref.shape == truth.shape == (20, 224, 224, 3)
    assert _psnr(ours, ref) > 35, _psnr(ours, ref)
    assert _psnr(ours, truth) >= _psnr(ref, truth) - 0.1, (_psnr(ours, truth), _psnr(ref, truth))
    if colour["colorspace"] == 1:
        with av.open(str(clips["yuv420p"])) as c:
            untagged = np.stack([f.to_ndarray(format="rgb24", src_colorspace="ITU601", src_color_range=1)
                                 for f in c.decode(video=0)])
        assert _psnr(untagged, truth) < _psnr(ours, truth) - 0.5, (_psnr(untagged, truth), _psnr(ours, truth))


def test_the_stage_crops_a_yuv420p_source_in_yuv(source):
    from mikupal.asd.stage import _clip_frame_format

    with VideoReader(source.path) as reader:
        assert reader.pix_fmt == "yuv420p" and reader.size == (640, 360)
        assert _clip_frame_format(reader) == "yuv420p"


def _x264_setting(path, key: str) -> int:
    """The ``key=`` value libx264 wrote into its settings message at the start of the stream (e.g. ``threads``)."""
    import re

    return int(re.search(rb" " + key.encode() + rb"=(\d+) ", path.read_bytes()).group(1))


def _x264_threads(path) -> int:
    return _x264_setting(path, "threads")


def _stage_default_clip(source, path, start: float = 0.3, end: float = 2.7) -> None:
    """A yuv420p face clip of a fixed box over ``start``-``end`` s of ``source``, with write_face_clip's defaults."""
    n = int(np.ceil((end - start) * 25 - 1e-6))
    boxes = np.tile([200.0, 40.0, 440.0, 280.0], (n, 1))
    track = FaceTrack(0, np.arange(n), boxes, np.ones(n), np.ones(n, bool), np.full(n, np.nan))
    audio = source.audio[int(start * SR) : int(end * SR)]
    assert _write(path, source.path, "yuv420p", start, end, track, audio) == n


def _plain_clip(path) -> None:
    """Three grey frames through :func:`mikupal.media.write_video` with its own defaults (libx264's settings)."""
    from mikupal.media import write_video

    assert write_video(path, [np.zeros((224, 224, 3), np.uint8)] * 3, 25.0) == 3


def test_face_clips_are_encoded_on_one_libx264_thread_by_default(source, tmp_path):
    """One thread per clip (asd.workers encode clips at once); ``encoder_threads=None`` leaves libx264 its own."""
    _stage_default_clip(source, tmp_path / "clip.mp4")
    assert _x264_threads(tmp_path / "clip.mp4") == 1
    _plain_clip(tmp_path / "auto.mp4")
    assert _x264_threads(tmp_path / "auto.mp4") > 1


def test_face_clips_are_encoded_without_the_macroblock_tree_by_default(source, tmp_path):
    """libx264's macroblock-tree rate control made clips differ from run to run; the clip default turns it off
    (``asd.clip.x264_params: mbtree=0``), while the writer's own default leaves libx264's settings alone."""
    _stage_default_clip(source, tmp_path / "clip.mp4", end=1.5)
    assert _x264_setting(tmp_path / "clip.mp4", "mbtree") == 0
    _plain_clip(tmp_path / "plain.mp4")
    assert _x264_setting(tmp_path / "plain.mp4", "mbtree") == 1
