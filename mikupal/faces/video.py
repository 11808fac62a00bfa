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

This is the one frame sampler of MIKU-PAL. :func:`nearest_frames` picks, for each requested position, the nearest
decoded frame; positions are times for the analysis windows (:meth:`VideoReader.window`) and frame indices for whole
clips (:meth:`VideoReader.frames_at`), which the annotators use: ``N`` evenly spread frames
(:func:`spread_indices`, :func:`mikupal.annotate.mediaprep.sample_frames`) or the frames Qwen's processor picks
(:func:`mikupal.models.qwen_inputs.read_clip_frames`). All decode with the same forgiving decoder, keep only the
frames they use (memory bounded by the number requested, whatever the clip's length) and raise
:class:`VideoDecodeError` (a :class:`~mikupal.media.MediaError`) naming the file when there is no video stream or
nothing decodes.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from mikupal.media import MediaError, first_video_stream

log = logging.getLogger(__name__)

T = TypeVar("T")


class VideoDecodeError(MediaError):
    """The video stream of a file cannot be decoded in the requested window."""


@dataclass
class DecodeStats:
    """What went wrong while decoding a window (filled in by :func:`read_window`).

    Attributes:
        corrupt_packets: video packets the decoder rejected (skipped; the nearest good frame stands in).
        read_error: the demuxer's error when it could not read further (the window ends there), else ``None``.
        decoded_frames: frames the decoder produced while the window was read, those before its start included
            (the cost of reaching it from a keyframe or from the window before).
    """

    corrupt_packets: int = 0
    read_error: str | None = None
    decoded_frames: int = 0


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
        image: RGB uint8 ``(h, w, 3)``, resized as requested; or, when yuv420p is asked for, the frame's
            :class:`Yuv420Planes` (at the source size) or a yuv420p array ``(h * 3 // 2, w)`` (resized).
    """

    index: int
    time: float
    source_time: float
    image: np.ndarray | Yuv420Planes


class Yuv420Planes(NamedTuple):
    """A yuv420p frame as its three planes: ``y`` ``(h, w)``, ``u`` and ``v`` ``(h / 2, w / 2)``. Of a decoded
    frame (:meth:`of_frame`), read-only views of its own planes, without a copy (rows may be padded in memory: the
    views' strides are the planes' line sizes); the views keep the frame alive."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def of_frame(cls, frame) -> Yuv420Planes:
        """The planes of a PyAV ``VideoFrame`` in yuv420p (even width and height)."""
        width, height = frame.width, frame.height
        views = []
        for plane, (w, h) in zip(frame.planes, ((width, height), (width // 2, height // 2), (width // 2, height // 2))):
            view = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
            view.flags.writeable = False  # the decoder's frame: repeated analysis frames share it
            views.append(view)
        return cls(*views)

    @classmethod
    def of_stacked(cls, image: np.ndarray) -> Yuv420Planes:
        """The planes of a stacked yuv420p array ``(h * 3 // 2, w)`` (PyAV's ``to_ndarray(format="yuv420p")``)."""
        h, w = image.shape[0] * 2 // 3, image.shape[1]
        flat = np.ascontiguousarray(image).reshape(-1)
        n, q = h * w, (h // 2) * (w // 2)
        chroma = (h // 2, w // 2)
        return cls(flat[:n].reshape(h, w), flat[n : n + q].reshape(chroma), flat[n + q : n + 2 * q].reshape(chroma))


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


def nearest_frames(
    decoded: Iterable[tuple[T, float]], targets: Sequence[float], *, lead: float, hold: float
) -> Iterator[tuple[int, T, float, bool]]:
    """For each target position, the decoded item nearest it: the sampling rule of every frame reader here.

    Args:
        decoded: ``(item, position)`` pairs in increasing position (decoded frames with their time in seconds, or
            their frame index); read lazily, never past the item that settles the last target.
        targets: requested positions, ascending.
        lead: a target more than ``lead`` before the first item is skipped (nothing was shown yet).
        hold: when ``decoded`` ends first, the last item stands for the targets less than ``hold`` after it
            (``0``: none, ``math.inf``: all).

    Yields:
        ``(k, item, position, held)`` for target ``k`` in order: ``item`` is the nearer of the items just before and
        at or after the target (the earlier on a tie); ``held`` is true for the targets after the end.
    """
    n = len(targets)
    if n == 0:
        return
    k = 0
    prev: tuple[T, float] | None = None
    for item, position in decoded:
        while k < n and position >= targets[k]:
            tk = targets[k]
            if prev is None:
                if position - tk > lead:  # before the first item
                    k += 1
                    continue
                use = (item, position)
            else:
                use = prev if tk - prev[1] <= position - tk else (item, position)
            yield k, use[0], use[1], False
            k += 1
        if k >= n:
            return
        prev = (item, position)
    if prev is not None:
        while k < n and targets[k] < prev[1] + hold:
            yield k, prev[0], prev[1], True
            k += 1


def spread_indices(total: int, count: int) -> list[int]:
    """Up to ``count`` frame indices evenly spread over ``total`` frames, first and last included (ascending).

    Fewer than ``count`` when the clip has fewer frames. The frame choice of :func:`mikupal.annotate.mediaprep.
    sample_frames`.
    """
    if count < 1:
        raise ValueError("max_frames must be >= 1")
    if total < 1:
        return []
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


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

    One window of a file opened for it (:class:`VideoReader` reads many windows of one file with one decoder).

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
    if fps <= 0:
        raise ValueError(f"analysis fps must be positive, got {fps}")
    if max(0, int(math.ceil((end - start) * fps - 1e-6))) == 0:
        return
    with VideoReader(path, threads=threads) as reader:
        yield from reader.window(start, end, fps, size=size, stats=stats)


@functools.cache
def _one_scaler_thread() -> dict:
    """``{"threads": 1}`` where PyAV's reformat takes a thread count (PyAV 17 and later), else ``{}``."""
    import av

    return {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}

#: A window that starts at most this many seconds after the last decoded frame is reached by decoding on; one that
#: starts earlier, or further on, seeks (decoding from the keyframe before it).
CONTINUE_WITHIN = 10.0
#: ... unless a seek to the window would land on a keyframe at least this many seconds after the last decoded frame:
#: then seeking decodes less (the frames are the same either way).
SEEK_SKIPS_AT_LEAST = 1.0


class VideoReader:
    """One open video file whose windows are read in time order with one decoder (see :func:`read_window`).

    The frames a window yields are exactly those :func:`read_window` yields for it. A window starting after the
    previous one (within :data:`CONTINUE_WITHIN` seconds) goes on decoding where that one stopped instead of seeking
    back to the keyframe before its start, so a video whose utterances are read in order is decoded about once,
    not once per utterance plus the stretch from each utterance's keyframe. When a keyframe lies between the two
    (at least :data:`SEEK_SKIPS_AT_LEAST` seconds after the last decoded frame), it seeks instead: decoding from
    that keyframe skips the frames in between, which no window needs. Where a seek would land is read from the
    container's index with a second, demux-only handle on the file (:meth:`seek_lands_at`).

    :meth:`frames_at` reads frames by index from the start of the clip instead (with :meth:`frame_count`, for the
    annotators' whole-clip samples). Close it (or use ``with``).

    Raises:
        VideoDecodeError: the file cannot be opened or has no video stream.
    """

    def __init__(self, path: str | Path, threads: bool = True) -> None:
        self.path = path
        self._threads = threads
        self._container = None
        self._open()
        self._decoder: _ForgivingDecoder | None = None
        self._recent: list[tuple[object, float]] = []  # the last two decoded (frame, time), for the next window
        self._last_time: float | None = None
        self._cached: tuple[object, tuple[int, int], np.ndarray] | None = None
        self._used = False
        self._window_id = 0
        self._index: Any = None  # a demux-only handle on the file, for seek_lands_at; False: it cannot tell

    def _open(self) -> None:
        import av

        if self._container is not None:
            self._container.close()
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise VideoDecodeError(f"{self.path}: cannot open ({e})") from e
        vs = first_video_stream(self._container)
        if vs is None:
            self._container.close()
            raise VideoDecodeError(f"{self.path}: has no video stream")
        if self._threads:
            vs.thread_type = "AUTO"
        self._stream = vs
        self._tb = vs.time_base
        self._origin = self._container.start_time / 1_000_000 if self._container.start_time is not None else 0.0
        self._rate = float(vs.average_rate or vs.guessed_rate or 25)
        self._source_size = (vs.codec_context.width, vs.codec_context.height)

    @property
    def fps(self) -> float:
        """The stream's average frame rate (else FFmpeg's guess, else 25)."""
        return self._rate

    @property
    def size(self) -> tuple[int, int]:
        """The stream's ``(width, height)`` in pixels."""
        return self._source_size

    @property
    def pix_fmt(self) -> str | None:
        """The stream's FFmpeg pixel format (``yuv420p`` for most videos), ``None`` when unknown."""
        return self._stream.codec_context.pix_fmt

    @property
    def colour(self) -> dict[str, int]:
        """The stream's YUV matrix and range: FFmpeg's ``AVColorSpace`` (1: BT.709, 5/6: BT.601, 2: unspecified)
        and ``AVColorRange`` (1: limited, 2: full, 0: unspecified) numbers.

        yuv420p frames (:meth:`window` ``fmt``) keep them: a clip encoded from them carries them
        (:func:`mikupal.media.write_video` ``colour``), so it decodes to the source's colours.
        """
        cc = self._stream.codec_context
        return {"colorspace": int(cc.colorspace), "color_range": int(cc.color_range)}

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the decoder and the file."""
        self._drop_decoder()
        self._container.close()
        if self._index:
            self._index.close()
        self._index = None

    def _drop_decoder(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        self._decoder = None
        self._recent = []
        self._last_time = None

    def _image(self, frame, size: tuple[int, int] | None, fmt: str = "rgb24") -> np.ndarray | Yuv420Planes:
        """The frame in pixel format ``fmt`` at ``size`` (``None``: its own), converted and scaled by FFmpeg once;
        repeated frames reuse it.

        One scaler thread: the same pixels as PyAV's default of one per core, for about 20 % less CPU (this runs
        beside the models, which keep the other core busy).
        """
        cached = self._cached
        if cached is None or cached[0] is not frame or cached[1] != (size, fmt):
            width, height = size if size is not None else (None, None)
            if fmt == "yuv420p" and frame.format.name == "yuv420p" and size in (None, (frame.width, frame.height)):
                image = Yuv420Planes.of_frame(frame)  # as decoded: no copy
            else:
                image = frame.to_ndarray(format=fmt, width=width, height=height, **_one_scaler_thread())
            self._cached = cached = (frame, (size, fmt), image)
        return cached[2]

    def _seek_target(self, start: float) -> int:
        """The stream timestamp :meth:`window` seeks to (backward, to the keyframe before it) for a window at
        ``start``: half a frame early, so the frame shown at ``start`` is decoded."""
        return int(max(0.0, start + self._origin - 0.5 / self._rate) / self._tb)

    def seek_lands_at(self, start: float) -> float | None:
        """The time (seconds, audio time line) of the keyframe a seek for a window at ``start`` lands on, read from
        the container's index without decoding; ``None`` when the file cannot tell (no index, or no timestamp)."""
        import av

        if self._index is None:
            try:
                self._index = av.open(str(self.path))
            except (av.error.FFmpegError, OSError):
                self._index = False
        if not self._index:
            return None
        stream = first_video_stream(self._index)  # the stream _open decodes
        try:
            self._index.seek(self._seek_target(start), stream=stream, backward=True)
            for packet in self._index.demux(stream):
                if packet.pts is not None:
                    return float(packet.pts * stream.time_base) - self._origin if packet.is_keyframe else None
        except av.error.FFmpegError:
            return None
        return None

    def _can_continue(self, first_target: float, start: float) -> bool:
        """Whether decoding on from the last window gives this window the frames a fresh seek would, and decodes
        fewer frames than that seek (see the class docstring)."""
        if self._decoder is None or self._decoder.finished or not self._recent:
            return False
        # the frame shown before the first analysis time must still be at hand
        last = self._recent[-1][1]
        if not (self._recent[0][1] < first_target and start - last <= CONTINUE_WITHIN):
            return False
        if start - last < SEEK_SKIPS_AT_LEAST:
            return True
        lands = self.seek_lands_at(start)
        return lands is None or lands - last < SEEK_SKIPS_AT_LEAST

    def window(
        self,
        start: float,
        end: float,
        fps: float,
        size: tuple[int, int] | None = None,
        stats: DecodeStats | None = None,
        fmt: str = "rgb24",
    ) -> Iterator[AnalysisFrame]:
        """Yield the frames of ``[start, end)`` at ``fps`` (see :func:`read_window`, which this is the body of).

        ``fmt`` is the FFmpeg pixel format of the images: ``rgb24`` (``(h, w, 3)``), or ``yuv420p`` (even sizes
        only): a yuv420p source at its own size gives its decoded planes, :class:`Yuv420Planes`, without any
        conversion or copy (:mod:`mikupal.asd.clip` crops the face clip from them); otherwise the Y plane above the
        U and V planes, ``(h * 3 // 2, w)`` as PyAV's ``to_ndarray`` gives them.
        """
        if fmt == "yuv420p" and any(v % 2 for v in (size or self._source_size)):
            raise ValueError(f"{self.path}: yuv420p frames need an even width and height, not {self._source_size}")
        if fps <= 0:
            raise ValueError(f"analysis fps must be positive, got {fps}")
        n_targets = max(0, int(math.ceil((end - start) * fps - 1e-6)))
        if n_targets == 0:
            return
        stats = stats if stats is not None else DecodeStats()
        rate, path = self._rate, self.path
        size = size if size is not None else self._source_size
        targets = [start + k / fps for k in range(n_targets)]

        self._window_id += 1
        window_id = self._window_id
        if self._can_continue(targets[0], start):
            replay = list(self._recent)
        else:
            self._drop_decoder()
            if self._used:  # start over as a newly opened file would
                self._open()
            self._used = True
            if start > 0.5 / rate:
                self._container.seek(self._seek_target(start), stream=self._stream, backward=True)
            self._decoder = _ForgivingDecoder(self._container, self._stream, path)
            replay = []
        decoder = self._decoder
        decoder.start_window(stats, stop_after=end + 2.0)
        produced = 0
        last: tuple[int, bool] | None = None  # (k, held) of the last frame yielded

        def check_decoded() -> None:
            if produced == 0 and (stats.corrupt_packets or stats.read_error):
                why = stats.read_error or f"{stats.corrupt_packets} corrupt packet(s)"
                raise VideoDecodeError(f"{path}: video cannot be decoded at {start:.2f}-{end:.2f}s ({why})")

        # a window starting before the stream's first frame shows nothing there; at the end of the stream (or of
        # what decodes) the last frame stays on screen for one period
        picks = nearest_frames(itertools.chain(replay, self._decoded(decoder, start)), targets, lead=0.5 / rate,
                               hold=1.0 / rate - 1e-6)
        try:
            for k, frame, t, held in picks:
                if held:  # the stream ended: a window with decode errors and no frame yet fails here
                    check_decoded()
                yield AnalysisFrame(index=k, time=targets[k], source_time=t, image=self._image(frame, size, fmt))
                produced += 1
                last = (k, held)
        except BaseException:
            if window_id == self._window_id:  # a window left half way (an error, or its reader stopped early)
                self._drop_decoder()  # is not continued
            raise
        finally:
            decoder.end_window()
        check_decoded()
        if last is None or last[1] or last[0] < n_targets - 1:  # the stream ended before the window did
            self._drop_decoder()

    def frame_count(self) -> int:
        """Frames in the video stream: the container's count, else its video packets counted (no decoding).

        A count the container states too high (or packets that decode to nothing) leaves :meth:`frames_at` fewer
        frames than asked for; see its ``hold_last``.
        """
        import av

        total = int(self._stream.frames or 0)
        if total > 0:
            return total
        self._drop_decoder()
        if self._used:
            self._open()
        self._used = True  # the next read starts over from a fresh open
        packets = self._container.demux(self._stream)
        try:
            for packet in packets:
                total += 1 if packet.size else 0
        except av.error.FFmpegError as e:
            log.warning("%s: reading the video stopped (%s); counted the %d frames read so far", self.path, e, total)
        finally:
            packets.close()
        return total

    def frames_at(
        self,
        indices: Sequence[int],
        fmt: str = "rgb24",
        size: tuple[int, int] | None = None,
        hold_last: bool = False,
        stats: DecodeStats | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """The frames of the given indices (0: the first frame, in presentation order), decoded from the start.

        Args:
            indices: ascending frame indices (:func:`spread_indices`, Qwen's
                :func:`~mikupal.models.qwen_inputs.sample_frame_indices`); decoding stops after the last.
            fmt: FFmpeg pixel format of the images: ``rgb24`` (``(h, w, 3)``), ``bgr24``, ``gray`` (``(h, w)``).
            size: ``(width, height)`` of the images (``None``: each frame's own).
            hold_last: indices past the end of the stream get its last frame (a frame count stated too high);
                otherwise they get nothing.
            stats: filled in with the corrupt packets skipped (each loses its frame, so later indices shift by one)
                and a read error, if any.

        Yields:
            ``(source index, image)`` for each index that has a frame, in order.

        Raises:
            VideoDecodeError: not one frame decodes.
        """
        stats = stats if stats is not None else DecodeStats()
        self._drop_decoder()
        if self._used:
            self._open()
        self._used = True
        self._window_id += 1
        decoder = self._decoder = _ForgivingDecoder(self._container, self._stream, self.path)
        decoder.start_window(stats, stop_after=None)
        produced = 0
        numbered = ((frame, float(i)) for i, frame in enumerate(decoder))
        try:
            for _k, frame, index, _held in nearest_frames(numbered, [float(i) for i in indices], lead=0.5,
                                                          hold=math.inf if hold_last else 0.0):
                yield int(index), self._image(frame, size, fmt)
                produced += 1
        finally:
            decoder.end_window()
            self._drop_decoder()
        if produced == 0 and len(indices):
            why = stats.read_error or (f"{stats.corrupt_packets} corrupt packet(s)" if stats.corrupt_packets else "")
            why = f" ({why})" if why else ""
            raise VideoDecodeError(f"{self.path}: the video stream holds no decodable frames{why}")

    def _decoded(self, decoder: _ForgivingDecoder, start: float) -> Iterator[tuple[object, float]]:
        """Newly decoded ``(frame, time)`` pairs, remembering the last two for the next window."""
        for frame in decoder:
            if frame.pts is not None:
                t = float(frame.pts * self._tb) - self._origin
            else:  # no timestamp: assume a constant rate after the previous frame
                t = (self._last_time + 1.0 / self._rate) if self._last_time is not None else start
            self._last_time = t
            self._recent = [*self._recent[-1:], (frame, t)]
            yield frame, t


class _ForgivingDecoder:
    """Decoded frames of a stream from the current position; corrupt packets are skipped and counted.

    A read error of the demuxer ends the stream (recorded in the window's ``stats.read_error``), as a truncated file
    does. Within a window, reading pauses at the first packet later than ``stop_after`` (seconds, audio time line)
    and goes on from that packet in the next window.
    """

    def __init__(self, container, stream, path: str | Path) -> None:
        self._packets = container.demux(stream)
        self._origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        self._path = path
        self._pending = None  # a packet read past the last window's stop_after, not yet decoded
        self._frames: list = []  # decoded frames not yet handed out
        self.finished = False
        self._stats = DecodeStats()
        self._stop_after: float | None = None
        self._logged = 0
        # with frame threads FFmpeg reports a bad packet a few packets after it was sent: say so in the warning
        frame_threads = bool(stream.thread_type & type(stream.thread_type).FRAME)
        self._where = "at or a few frames before" if frame_threads else "at"

    def start_window(self, stats: DecodeStats, stop_after: float | None) -> None:
        self._stats, self._stop_after, self._logged = stats, stop_after, 0

    def end_window(self) -> None:
        if self._stats.corrupt_packets > self._logged:
            log.warning("%s: %d corrupt video packets skipped in all", self._path, self._stats.corrupt_packets)

    def close(self) -> None:
        self._packets.close()

    def __iter__(self) -> Iterator:
        import av

        while True:
            while self._frames:
                yield self._frames.pop(0)
            if self.finished:
                return
            if self._pending is not None:
                packet, self._pending = self._pending, None
            else:
                try:
                    packet = next(self._packets)
                except StopIteration:
                    self.finished = True
                    return
                except av.error.FFmpegError as e:
                    log.warning("%s: reading the video stopped (%s); using the frames read so far", self._path, e)
                    self._stats.read_error = str(e)
                    self.finished = True
                    return
            when = None
            if packet.pts is not None and packet.time_base:
                when = float(packet.pts * packet.time_base) - self._origin
            if self._stop_after is not None and when is not None and when > self._stop_after:
                self._pending = packet
                return
            try:
                self._frames = list(packet.decode())  # the final empty packet flushes the decoder
                self._stats.decoded_frames += len(self._frames)
            except av.error.FFmpegError as e:
                self._stats.corrupt_packets += 1
                if self._logged < _LOGGED_CORRUPT_PACKETS:
                    self._logged += 1
                    at = f"{when:.3f}s" if when is not None else "an unknown time"
                    log.warning("%s: the video packet %s %s is corrupt (%s); skipped it", self._path, self._where, at, e)


class OpenVideo:
    """Keeps the :class:`VideoReader` of the file read last open, for a stage that reads a video's windows in order.

    ``window(path, ...)`` reads through the reader of ``path``, opening it (and closing the previous file's) when the
    file changes. Call :meth:`close` when done (the stage's teardown).
    """

    def __init__(self, threads: bool = True) -> None:
        self.threads = threads
        self._path: str | None = None
        self._reader: VideoReader | None = None

    def window(
        self,
        path: str | Path,
        start: float,
        end: float,
        fps: float,
        size: tuple[int, int] | None = None,
        stats: DecodeStats | None = None,
        fmt: str = "rgb24",
    ) -> Iterator[AnalysisFrame]:
        """The frames of ``[start, end)`` of ``path`` at ``fps``, as :func:`read_window` gives them (``fmt``: see
        :meth:`VideoReader.window`)."""
        if fps <= 0:
            raise ValueError(f"analysis fps must be positive, got {fps}")
        if max(0, int(math.ceil((end - start) * fps - 1e-6))) == 0:
            return iter(())
        return self.reader(path).window(start, end, fps, size=size, stats=stats, fmt=fmt)

    def reader(self, path: str | Path) -> VideoReader:
        """The open reader of ``path`` (opened now, closing the previous file's, when the file changes)."""
        if self._reader is None or self._path != str(path):
            self.close()
            self._reader = VideoReader(path, threads=self.threads)
            self._path = str(path)
        return self._reader

    def close(self) -> None:
        """Close the open file, if any."""
        if self._reader is not None:
            self._reader.close()
        self._reader, self._path = None, None


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterator[T], depth: int = 16) -> Iterator[T]:
    """Run the iterator ``items`` in a background thread, at most ``depth`` items ahead of the reader.

    Frames are decoded and converted there (FFmpeg releases the GIL while it works) while the caller runs the
    models (so do LiteRT and OpenCV): two cores work on one window. The items and their order are those of
    ``items``; an exception it raises is raised here. Leaving the loop early stops the thread and closes
    ``items`` in it; the thread has finished when this generator is closed.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    break
            else:
                put(_END)
        except BaseException as e:  # handed to the reader, which raises it
            put(_Failure(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
