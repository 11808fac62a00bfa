"""Media I/O with PyAV (FFmpeg libraries bundled in the wheel), soundfile and soxr.

* :func:`probe` reads container and stream properties without decoding.
* :func:`decode_audio` decodes the first audio stream to mono float32 at a target rate, trimmed to the stream's
  stated duration (AAC priming/padding makes decoders return up to ~50 ms extra) and timed by the packets'
  timestamps, so audio and video times agree for variable-frame-rate sources and non-zero start times.
* :func:`read_audio` / :func:`write_audio` read and write 16 kHz mono files (FLAC, WAV) with soundfile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class MediaError(ValueError):
    """A media file cannot be read; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` finds in a container.

    Attributes:
        path: the file.
        duration: container duration in seconds (``None`` if unknown).
        start_time: container start time in seconds (often 0).
        has_audio, has_video: whether such streams exist.
        audio_rate, audio_channels: of the first audio stream.
        width, height, fps: of the first video stream (``fps`` is the average frame rate).
        video_duration: duration of the video stream in seconds, if stated.
    """

    path: str
    duration: float | None
    start_time: float
    has_audio: bool
    has_video: bool
    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_duration: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_duration: float | None = None


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found (check the path in input=, or remove it from the input list)")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes); re-download or re-encode it")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: not a readable media file ({e}); check it plays with ffprobe, or re-encode it") from e


def _stream_duration(stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def probe(path: str | Path) -> MediaInfo:
    """Container and stream properties of a media file.

    Raises:
        MediaError: missing, empty, or not a media file FFmpeg can open.
    """
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        duration = container.duration / 1_000_000 if container.duration is not None else None
        start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        fps = None
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fps = float(rate) if rate else None
        return MediaInfo(
            path=str(path),
            duration=duration,
            start_time=start,
            has_audio=audio is not None,
            has_video=video is not None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            audio_duration=_stream_duration(audio) if audio is not None else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            fps=fps,
            video_duration=_stream_duration(video) if video is not None else None,
        )


def decode_audio(path: str | Path, sampling_rate: int = 16000) -> tuple[np.ndarray, float]:
    """Decode the first audio stream to mono float32 at ``sampling_rate``.

    Samples are placed on the container's time line using the frames' timestamps (gaps are filled with silence,
    overlaps overwritten), starting at the container start time, and the result is trimmed to the audio stream's
    stated duration when the container gives one (removing AAC priming/padding excess).

    Returns:
        ``(audio, start_time)``: the samples and the container time (seconds) of the first sample.

    Raises:
        MediaError: the file has no audio stream, cannot be decoded, or decodes to nothing (truncated).
    """
    import av

    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream; MIKU-PAL labels speech, so it needs a video with sound")
        stream = container.streams.audio[0]
        start_time = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks: list[tuple[float | None, np.ndarray]] = []
        try:
            for frame in container.decode(stream):
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                for out in resampler.resample(frame):
                    chunks.append((t, out.to_ndarray().reshape(-1)))
                    t = None  # further resampler outputs of the same frame follow contiguously
            for out in resampler.resample(None):
                chunks.append((None, out.to_ndarray().reshape(-1)))
        except av.error.FFmpegError as e:
            if not chunks:
                raise MediaError(f"{path}: audio cannot be decoded ({e}); the file may be truncated or corrupt") from e
            log.warning("%s: decoding stopped early (%s); keeping the %d chunks decoded so far", path, e, len(chunks))
        duration = _stream_duration(stream)
    if not chunks:
        raise MediaError(f"{path}: the audio stream holds no samples (truncated or empty file)")
    audio = _place_on_timeline(chunks, start_time, sampling_rate)
    if duration is not None and duration > 0:
        audio = audio[: int(round(duration * sampling_rate))]
    return audio.astype(np.float32, copy=False), start_time


def _place_on_timeline(chunks: list[tuple[float | None, np.ndarray]], start_time: float, rate: int) -> np.ndarray:
    """Concatenate decoded chunks, honouring their timestamps (a jump > 1 frame inserts silence)."""
    total = 0
    placed: list[tuple[int, np.ndarray]] = []
    cursor = 0
    for t, samples in chunks:
        if t is not None:
            at = int(round((t - start_time) * rate))
            if abs(at - cursor) > len(samples):  # a real gap or jump, not resampler jitter
                cursor = max(at, 0)
        placed.append((cursor, samples))
        cursor += len(samples)
        total = max(total, cursor)
    audio = np.zeros(total, dtype=np.float32)
    for at, samples in placed:
        audio[at : at + len(samples)] = samples
    return audio


def read_audio(path: str | Path, sampling_rate: int = 16000) -> np.ndarray:
    """Read a WAV/FLAC file as mono float32, resampling with soxr if its rate differs."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MediaError(f"{path}: cannot read audio ({e})") from e
    mono = data.mean(axis=1)
    return resample(mono, rate, sampling_rate)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality resampling with soxr (identity when the rates agree)."""
    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(audio.astype(np.float32, copy=False), rate_in, rate_out, quality="HQ").astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, sampling_rate: int = 16000) -> None:
    """Write mono audio; the format follows the suffix (``.flac`` → 16-bit FLAC, ``.wav`` → 16-bit PCM)."""
    import soundfile as sf

    clipped = np.clip(audio, -1.0, 1.0)
    sf.write(str(path), clipped, sampling_rate, subtype="PCM_16")

