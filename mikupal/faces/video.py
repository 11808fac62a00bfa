"""Decoding the frames of a time window at a fixed analysis rate, with PyAV (FFmpeg libraries in the wheel).

:func:`read_window` seeks to the keyframe at or before the window start, decodes forward, skips frames before the
window without converting them, and resamples the source's frames to the analysis rate by taking, for each analysis
time ``start + k / fps``, the source frame whose timestamp is nearest (a 30 fps source analysed at 25 fps skips
every sixth frame; a 15 fps source repeats frames). Times are seconds on the audio's time line: the container start
time is subtracted, as :func:`mikupal.media.decode_audio` does for audio, so video and audio times agree.
Frames are converted to RGB and resized by FFmpeg's scaler in one step, only when used.

Decoding is as forgiving as ``ffmpeg``'s: a packet the decoder rejects is skipped and counted
(:class:`DecodeStats`), with a warning naming the file and the time, and the frames around it are used; a window
fails only when none of its frames decode. Timestamps, not frame counts, place frames, so a variable-frame-rate
(phone) video is analysed at the right times.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mikupal.media import MediaError, first_video_stream

log = logging.getLogger(__name__)


class VideoDecodeError(MediaError):
    """The video stream of a file cannot be decoded in the requested window."""


@dataclass
class DecodeStats:
    """What went wrong while decoding a window (filled in by :func:`read_window`).

    Attributes:
        corrupt_packets: video packets the decoder rejected (skipped; the nearest good frame stands in).
        read_error: the demuxer's error when it could not read further (the window ends there), else ``None``.
    """

    corrupt_packets: int = 0
    read_error: str | None = None


#: Corrupt packets of one window logged one by one; the rest are summed up in one warning.
_LOGGED_CORRUPT_PACKETS = 3


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file: size in pixels, average frame rate, duration and container start time."""

    width: int
    height: int
    fps: float
    duration: float | None
    start_time: float


@dataclass(frozen=True)
class AnalysisFrame:
    """One frame at an analysis time.

    Attributes:
        index: analysis frame index within the window (0, 1, ...).
        time: analysis time in seconds on the source's audio time line (``start + index / fps``).
        source_time: timestamp of the source frame used, same time line.
        image: RGB uint8 ``(h, w, 3)``, resized as requested.
    """

    index: int
    time: float
    source_time: float
    image: np.ndarray


def video_info(path: str | Path) -> VideoInfo | None:
    """Properties of the first video stream, or ``None`` for a file without one (audio-only).

    Raises:
        MediaError: the file is missing or not a media file.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            vs = first_video_stream(container)
            if vs is None:  # no video stream, or only cover art
                return None
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            duration = float(vs.duration * vs.time_base) if vs.duration is not None and vs.time_base else None
            if duration is None and container.duration is not None:
                duration = container.duration / 1_000_000
            start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            width, height = vs.codec_context.width, vs.codec_context.height
            if not width or not height:
                raise MediaError(f"{path}: the video stream has no frame size")
            return VideoInfo(
                width=width, height=height, fps=float(rate) if rate else 0.0, duration=duration, start_time=start
            )
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: not a readable media file ({e})") from e


def analysis_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Frame size after shrinking so the longer side is at most ``max_side`` (never enlarged; even numbers)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def read_window(
    path: str | Path,
    start: float,
    end: float,
    fps: float,
    size: tuple[int, int] | None = None,
    threads: bool = True,
    stats: DecodeStats | None = None,
) -> Iterator[AnalysisFrame]:
    """Yield the frames of ``[start, end)`` (seconds) at ``fps`` analysis frames per second.

    Args:
        path: media file with a video stream.
        start, end: the window, in seconds on the audio time line.
        fps: analysis rate.
        size: ``(width, height)`` of the yielded images (``None``: source size).
        threads: let FFmpeg decode with several threads.
        stats: filled in with the corrupt packets skipped and a read error, if any.

    Yields:
        :class:`AnalysisFrame` objects in time order; fewer than ``ceil((end - start) * fps)`` when the video ends
        before ``end``.

    Raises:
        VideoDecodeError: no video stream, or packets of the window fail to decode and not one frame of it does
            (corrupt packets among good ones are skipped and counted in ``stats``).
    """
    import av

    if fps <= 0:
        raise ValueError(f"analysis fps must be positive, got {fps}")
    n_targets = max(0, int(math.ceil((end - start) * fps - 1e-6)))
    if n_targets == 0:
        return
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"{path}: cannot open ({e})") from e
    produced = 0
    stats = stats if stats is not None else DecodeStats()
    decoded = None
    try:
        vs = first_video_stream(container)
        if vs is None:
            raise VideoDecodeError(f"{path}: has no video stream")
        if threads:
            vs.thread_type = "AUTO"
        tb = vs.time_base
        origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        rate = float(vs.average_rate or vs.guessed_rate or 25)
        width, height = size if size is not None else (vs.codec_context.width, vs.codec_context.height)
        if start > 0.5 / rate:
            container.seek(int(max(0.0, start + origin - 0.5 / rate) / tb), stream=vs, backward=True)

        def target(k: int) -> float:
            return start + k / fps

        cache: dict[int, np.ndarray] = {}

        def image_of(frame) -> np.ndarray:
            key = id(frame)
            if key not in cache:
                cache.clear()
                cache[key] = frame.to_ndarray(format="rgb24", width=width, height=height)
            return cache[key]

        k = 0
        prev = None  # (frame, time)
        last_time = None
        # read at most 2 s of packets past the window (decoder delay is a few frames): a stream whose packets all
        # fail must not be decoded to its end for every utterance
        decoded = _decode_forgiving(container, vs, path, stats, stop_after=end + 2.0)
        for frame in decoded:
            if frame.pts is not None:
                t = float(frame.pts * tb) - origin
            else:  # no timestamp: assume a constant rate after the previous frame
                t = (last_time + 1.0 / rate) if last_time is not None else start
            last_time = t
            while k < n_targets and t >= target(k):
                tk = target(k)
                if prev is None:
                    if t - tk > 0.5 / rate:  # the window starts before the stream's first frame: nothing shown
                        k += 1
                        continue
                    use = (frame, t)
                else:  # the nearer of the previous and this frame
                    use = prev if tk - prev[1] <= t - tk else (frame, t)
                yield AnalysisFrame(index=k, time=tk, source_time=use[1], image=image_of(use[0]))
                produced += 1
                k += 1
            if k >= n_targets:
                break
            prev = (frame, t)
        if produced == 0 and (stats.corrupt_packets or stats.read_error):
            why = stats.read_error or f"{stats.corrupt_packets} corrupt packet(s)"
            raise VideoDecodeError(f"{path}: video cannot be decoded at {start:.2f}-{end:.2f}s ({why})")
        # end of stream: the last frame stays on screen for one frame period
        if prev is not None:
            while k < n_targets and target(k) < prev[1] + 1.0 / rate - 1e-6:
                yield AnalysisFrame(index=k, time=target(k), source_time=prev[1], image=image_of(prev[0]))
                produced += 1
                k += 1
    finally:
        if decoded is not None:
            decoded.close()
        container.close()


def _decode_forgiving(
    container, stream, path: str | Path, stats: DecodeStats, stop_after: float | None = None
) -> Iterator:
    """Decoded frames of ``stream`` from the current position; corrupt packets are skipped and counted in ``stats``.

    A read error of the demuxer ends the stream (recorded in ``stats.read_error``), as a truncated file does.
    Reading stops at the first packet later than ``stop_after`` (seconds, audio time line), if given.
    """
    import av

    origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    packets = container.demux(stream)
    logged = 0
    try:
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                log.warning("%s: reading the video stopped (%s); using the frames read so far", path, e)
                stats.read_error = str(e)
                return
            when = None
            if packet.pts is not None and packet.time_base:
                when = float(packet.pts * packet.time_base) - origin
            if stop_after is not None and when is not None and when > stop_after:
                return
            try:
                frames = packet.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as e:
                stats.corrupt_packets += 1
                if logged < _LOGGED_CORRUPT_PACKETS:
                    logged += 1
                    at = f"{when:.3f}s" if when is not None else "an unknown time"
                    log.warning("%s: the video packet at %s is corrupt (%s); skipped it", path, at, e)
                continue
            yield from frames
    finally:
        if stats.corrupt_packets > logged:
            log.warning("%s: %d corrupt video packets skipped in all", path, stats.corrupt_packets)
