"""Face crops of a track and the face-crop clip ``faces/<id>.mp4`` (H.264 + AAC, :func:`mikupal.media.write_video`).

Crops are squares around the track's *smoothed* box, as in TalkNet's ``crop_video``: the box centre and half-size
are median-filtered over ``smooth`` frames (13 by default), the side is widened by ``margin`` on every side (0.4
of the half-size, TalkNet's ``cropScale``), parts outside the frame are filled with grey 110, and the square is
resized to ``size`` pixels with one affine warp. Frames of the utterance before the track starts or after it ends
hold the first or last box, so the clip always spans the whole utterance and stays in sync with its audio.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from mikupal.faces.tracking import FaceTrack
from mikupal.faces.video import AnalysisFrame, Yuv420Planes
from mikupal.media import write_video

log = logging.getLogger(__name__)

PAD_VALUE = 110
#: The grey ``PAD_VALUE`` in yuv420p (BT.601, limited range: ``Y = 16 + 110 * 219 / 255``, neutral chroma), the
#: padding of a clip cropped from yuv420p frames (:func:`crop_face_yuv`).
PAD_YUV = (110, 128, 128)


def smooth_track_boxes(track: FaceTrack, n_frames: int, smooth: int = 13) -> np.ndarray:
    """Per-frame ``(cx, cy, half)`` for analysis frames ``0..n_frames-1`` of the window.

    Centre and half-size (half the longer box side) are median-filtered over ``smooth`` frames (odd; 1 = none);
    frames outside the track hold its first/last value.
    """
    from scipy.signal import medfilt

    boxes = track.boxes
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    k = max(1, int(smooth) | 1)
    if k > 1 and len(cx) >= 3:
        k = min(k, len(cx) if len(cx) % 2 else len(cx) - 1)
        cx, cy, half = (medfilt(v, k) for v in (cx, cy, half))
    frames = np.arange(n_frames)
    out = np.empty((n_frames, 3))
    for i, v in enumerate((cx, cy, half)):
        out[:, i] = np.interp(frames, track.frames, v)
    return out


def crop_face(
    frame: np.ndarray,
    cx: float,
    cy: float,
    half: float,
    size: int,
    margin: float = 0.4,
    offset: float = 0.0,
    pad: int = PAD_VALUE,
) -> np.ndarray:
    """Square crop of side ``2 * half * (1 + margin)`` centred on ``(cx, cy + offset * half)``, resized to ``size``.

    ``offset`` moves the crop down by a fraction of the half-size: TalkNet's crops use ``offset = margin`` (0.4), so
    the mouth lands in the centre of the crop. ``frame`` is RGB ``(h, w, 3)`` or one plane ``(h, w)``; ``pad`` fills
    what lies outside it.
    """
    cy = cy + offset * half
    side = max(2.0 * half * (1.0 + margin), 2.0)
    k = size / side
    # box coordinates are pixel edges; OpenCV maps pixel centres: u + 0.5 = k * (x + 0.5 - cx) + size / 2
    m = np.array([[k, 0.0, size / 2 - 0.5 + k * (0.5 - cx)], [0.0, k, size / 2 - 0.5 + k * (0.5 - cy)]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(
        frame, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=(pad,) * 3
    )


def crop_face_yuv(
    frame: np.ndarray | Yuv420Planes, cx: float, cy: float, half: float, size: int, margin: float = 0.4
) -> np.ndarray:
    """:func:`crop_face` of a yuv420p frame, as a yuv420p frame: each plane cropped and resized on its own.

    ``frame`` is the decoded frame's :class:`~mikupal.faces.video.Yuv420Planes` (what the asd stage reads), or
    ``(h * 3 // 2, w)``, the Y plane above the U and V planes at half resolution (PyAV's
    ``to_ndarray(format="yuv420p")``); the result is the latter, ``(size * 3 // 2, size)`` (``size`` even). The chroma
    planes take the same square in their own coordinates (halved), so no full frame is ever converted to RGB; the
    outside is :data:`PAD_YUV`. The pixels differ from the RGB crop's converted to yuv420p only by resampling order
    (tests/mikupal/asd/test_clip.py bounds the difference).
    """
    if size % 2:
        raise ValueError(f"a yuv420p crop needs an even size, got {size}")
    planes = frame if isinstance(frame, Yuv420Planes) else Yuv420Planes.of_stacked(frame)
    out = np.empty(size * size * 3 // 2, np.uint8)
    s2 = size // 2
    out[: size * size] = crop_face(planes[0], cx, cy, half, size, margin, pad=PAD_YUV[0]).reshape(-1)
    for i, plane in enumerate(planes[1:]):
        lo = size * size + i * s2 * s2
        out[lo : lo + s2 * s2] = crop_face(plane, cx / 2, cy / 2, half / 2, s2, margin, pad=PAD_YUV[1 + i]).reshape(-1)
    return out.reshape(size * 3 // 2, size)


def collect_crops(
    frames: Iterable[AnalysisFrame],
    tracks: Sequence[FaceTrack],
    n_frames: int,
    size: int,
    grey: bool,
    margin: float = 0.4,
    smooth: int = 13,
    offset: float = 0.0,
) -> list[np.ndarray]:
    """Crops of each track over its own frames, from one pass over the window's frames (see :func:`crop_face`).

    Returns:
        Per track an array ``(len(track), size, size)`` (grey) or ``(len(track), size, size, 3)``; frames the
        video did not deliver stay grey 110.
    """
    geometry = [smooth_track_boxes(t, n_frames, smooth) for t in tracks]
    shape = (size, size) if grey else (size, size, 3)
    crops = [np.full((len(t), *shape), PAD_VALUE, np.uint8) for t in tracks]
    first = [int(t.frames[0]) for t in tracks]
    for frame in frames:
        for i, t in enumerate(tracks):
            j = frame.index - first[i]
            if 0 <= j < len(t):
                cx, cy, half = geometry[i][min(frame.index, n_frames - 1)]
                crop = crop_face(frame.image, cx, cy, half, size, margin, offset)
                crops[i][j] = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if grey else crop
    return crops


def write_face_clip(
    path: Path,
    frames: Iterable[AnalysisFrame],
    track: FaceTrack,
    n_frames: int,
    audio: np.ndarray,
    sampling_rate: int,
    fps: float,
    size: int = 224,
    margin: float = 0.4,
    smooth: int = 13,
    crf: int = 23,
    preset: str = "veryfast",
    encoder_threads: int | None = 1,
    x264_params: str | None = "mbtree=0",
    fmt: str = "rgb24",
    colour: dict[str, int] | None = None,
) -> int:
    """Encode the face-crop clip of ``track`` with the utterance audio into ``path`` (an ``.mp4``).

    Args:
        path: output file (write it through :func:`mikupal.stage.write_atomic`).
        frames: the window's frames at ``fps`` (source resolution), in order, in pixel format ``fmt``: ``rgb24``, or
            ``yuv420p`` (cropped plane by plane with :func:`crop_face_yuv` and encoded without any RGB step: the
            stage's choice for even-sized sources).
        track: the chosen track; n_frames: analysis frames of the window.
        audio: the utterance audio, mono float32 at ``sampling_rate``.
        size: clip width and height. crf, preset, encoder_threads, x264_params: libx264 quality, speed, threads
            and own options (:func:`mikupal.media.write_video`; ``mbtree=0`` makes the clip the same on every run).
        colour: yuv420p frames' matrix and range (the source's, :attr:`mikupal.faces.video.VideoReader.colour`),
            tagged on the clip.

    Returns:
        The number of video frames written.
    """
    if fmt not in ("rgb24", "yuv420p"):
        raise ValueError(f"face clip frames must be rgb24 or yuv420p, got {fmt!r}")
    geometry = smooth_track_boxes(track, n_frames, smooth)
    crop = crop_face_yuv if fmt == "yuv420p" else crop_face

    def crops() -> Iterator[tuple[int, np.ndarray]]:
        for frame in frames:
            if frame.index >= n_frames:
                break
            cx, cy, half = geometry[frame.index]
            yield frame.index, crop(frame.image, cx, cy, half, size, margin)

    return write_video(path, crops(), fps, audio, sampling_rate, size=(size, size), crf=crf, preset=preset,
                       encoder_threads=encoder_threads, x264_params=x264_params,
                       frame_format=fmt, colour=colour if fmt == "yuv420p" else None)
