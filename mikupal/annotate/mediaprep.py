"""Media preparation for annotators: video without its audio, WAV/FLAC bytes, sampled frames, utterance audio.

All with PyAV (FFmpeg libraries bundled in its wheel), soundfile and OpenCV; nothing shells out to ``ffmpeg``.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from mikupal.media import MediaError, decode_audio, read_audio

log = logging.getLogger(__name__)


def strip_audio(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Write ``src``'s first video stream alone to ``dest`` (mp4), copying packets (no re-encoding).

    Written to a temporary name beside ``dest`` and renamed, so a concurrent reader never sees a partial file.

    Raises:
        MediaError: ``src`` has no video stream or cannot be read.
    """
    import av

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".mp4", dir=dest.parent)
    os.close(fd)
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise MediaError(f"{src}: has no video stream to send")
            vin = inp.streams.video[0]
            with av.open(tmp, "w", format="mp4") as out:
                vout = out.add_stream_from_template(vin)
                for packet in inp.demux(vin):
                    if packet.dts is None:  # the demuxer's final flush packet
                        continue
                    packet.stream = vout
                    out.mux(packet)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def load_audio(path: str | os.PathLike[str], sampling_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples of an audio file (WAV/FLAC via soundfile) or of a video's audio track (PyAV)."""
    path = Path(path)
    if path.suffix.lower() in {".wav", ".flac", ".ogg"}:
        return read_audio(path, sampling_rate)
    audio, _ = decode_audio(path, sampling_rate)
    return audio


def audio_bytes(path: str | os.PathLike[str], fmt: str = "wav", sampling_rate: int = 16000) -> bytes:
    """The audio of ``path`` as 16-bit mono ``wav`` or ``flac`` file bytes at ``sampling_rate``."""
    import soundfile as sf

    if fmt not in ("wav", "flac"):
        raise ValueError(f"audio format must be wav or flac, got {fmt!r}")
    path = Path(path)
    if path.suffix.lower() == f".{fmt}":
        return path.read_bytes()
    audio = np.clip(load_audio(path, sampling_rate), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, audio, sampling_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def sample_frames(path: str | os.PathLike[str], max_frames: int, grey: bool = False) -> list[np.ndarray]:
    """Up to ``max_frames`` frames evenly spread over a video (uint8 BGR ``(H, W, 3)``, or ``(H, W)`` if grey).

    The frames of :func:`~mikupal.faces.video.spread_indices` over the clip's frame count, read by the one frame
    sampler (:meth:`mikupal.faces.video.VideoReader.frames_at`): corrupt packets are skipped, and only the chosen
    frames are kept, whatever the clip's length.

    Raises:
        MediaError: no video stream or nothing decodable.
    """
    from mikupal.faces.video import VideoReader, spread_indices

    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    with VideoReader(path, threads=False) as reader:
        wanted = spread_indices(reader.frame_count(), max_frames)
        if not wanted:
            raise MediaError(f"{path}: the video stream holds no frames")
        return [image for _, image in reader.frames_at(wanted, fmt="gray" if grey else "bgr24")]


def jpeg_bytes(frame: np.ndarray, max_side: int = 448, quality: int = 90) -> bytes:
    """A BGR frame as JPEG bytes, downscaled so its longer side is at most ``max_side``."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise MediaError("could not encode a frame as JPEG")
    return buf.tobytes()
