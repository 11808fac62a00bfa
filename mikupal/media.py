"""Media I/O with PyAV (FFmpeg libraries bundled in the wheel), soundfile and soxr.

* :func:`probe` reads container and stream properties without decoding.
* :func:`decode_audio` decodes the first audio stream to mono float32 at a target rate, trimmed to the stream's
  stated duration (AAC priming/padding makes decoders return up to ~50 ms extra) and timed by the packets'
  timestamps, so audio and video times agree for variable-frame-rate sources and non-zero start times.
* :func:`read_audio` / :func:`write_audio` read and write 16 kHz mono files (FLAC, WAV) with soundfile.
* :func:`write_video` writes H.264 + AAC (or other audio codecs and containers) from frames and mono audio.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
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


def first_video_stream(container):
    """The container's first real video stream, or ``None``.

    Cover art (an ``attached_pic`` stream, as MP3, M4A and FLAC files often carry) is one still picture, not
    video: it does not count.
    """
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def probe(path: str | Path) -> MediaInfo:
    """Container and stream properties of a media file.

    Raises:
        MediaError: missing, empty, or not a media file FFmpeg can open.
    """
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = first_video_stream(container)
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


@dataclass(frozen=True)
class DecodedAudio:
    """What :func:`decode_audio_report` got out of a file's audio stream.

    Attributes:
        audio: mono float32 samples on the container's time line (see :func:`decode_audio`).
        start_time: container time (seconds) of the first sample.
        corrupt_packets: packets the decoder rejected (skipped; their span is silence) or decoded into a frame it
            marked corrupt (kept, as ``ffmpeg`` keeps it).
        decoded_seconds: seconds of samples the decoder returned (gaps filled with silence not included).
        declared_seconds: the stream's stated duration (the container's if the stream states none; ``None`` if
            neither is known).
    """

    audio: np.ndarray
    start_time: float
    corrupt_packets: int
    decoded_seconds: float
    declared_seconds: float | None

    @property
    def decoded_share(self) -> float | None:
        """``decoded_seconds / declared_seconds`` (``None`` when no duration is declared)."""
        if not self.declared_seconds or self.declared_seconds <= 0:
            return None
        return self.decoded_seconds / self.declared_seconds


#: Corrupt packets of one file logged one by one; the rest are summed up in one warning.
_LOGGED_CORRUPT_PACKETS = 5
#: Decoded audio longer than the stream's stated duration by at most this (seconds) is codec padding and is trimmed;
#: a longer excess means the duration was estimated (raw streams: "estimating duration from bitrate") and is kept.
_MAX_PADDING = 0.25


def decode_audio(
    path: str | Path, sampling_rate: int = 16000, min_decoded_share: float = 0.0
) -> tuple[np.ndarray, float]:
    """Decode the first audio stream to mono float32 at ``sampling_rate``.

    Samples are placed on the container's time line using the frames' timestamps (gaps are filled with silence,
    overlaps overwritten), starting at the container start time, and the result is trimmed to the audio stream's
    stated duration when the container gives one (removing AAC priming/padding excess, at most 0.25 s; a stated
    duration that much shorter than the audio was an estimate, and is ignored). Corrupt or incomplete
    packets are skipped with a warning, as ``ffmpeg`` does (see :func:`decode_audio_report`).

    Returns:
        ``(audio, start_time)``: the samples and the container time (seconds) of the first sample.

    Raises:
        MediaError: the file has no audio stream, decodes to nothing, or less than ``min_decoded_share`` of its
            declared duration decodes.
    """
    result = decode_audio_report(path, sampling_rate, min_decoded_share)
    return result.audio, result.start_time


def decode_audio_report(path: str | Path, sampling_rate: int = 16000, min_decoded_share: float = 0.0) -> DecodedAudio:
    """Decode the first audio stream like ``ffmpeg`` does, and report what was lost.

    Packets are decoded one by one: a packet the decoder rejects is skipped (its span stays silent), a frame the
    decoder marks corrupt is kept, and each is counted, with a warning naming the file and the time; a read error
    of the demuxer ends the stream there (as a truncated download does). The file fails only when nothing decodes
    or when less than ``min_decoded_share`` (0..1) of the declared duration decodes.

    Raises:
        MediaError: no audio stream, nothing decoded, or too little decoded (the message says how much).
    """
    import av

    if not 0.0 <= min_decoded_share <= 1.0:
        raise ValueError(f"min_decoded_share must be in [0, 1], got {min_decoded_share}")
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream; MIKU-PAL labels speech, so it needs a file with sound")
        stream = container.streams.audio[0]
        start_time = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks: list[tuple[float | None, np.ndarray]] = []
        corrupt = 0
        decoded = 0.0
        expected: float | None = None  # where the next frame should start if none is missing
        last_shape: tuple | None = None  # sample format, channel layout and rate of the previous frame
        first_error: str | None = None

        def report(when: float | None, what: str) -> None:
            nonlocal corrupt
            corrupt += 1
            if corrupt <= _LOGGED_CORRUPT_PACKETS:
                at = f"{when - start_time:.3f}s" if when is not None else "an unknown time"
                log.warning("%s: the audio packet at %s %s; the rest of the audio is used", path, at, what)

        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:  # the demuxer cannot read further: the stream ends here
                log.warning("%s: reading the audio stopped at %.3fs (%s); keeping what was read", path, decoded, e)
                first_error = first_error or str(e)
                break
            when = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
            try:
                frames = packet.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as e:
                first_error = first_error or str(e)
                report(when, f"is corrupt ({e}) and was skipped (silence there)")
                continue
            for frame in frames:
                if frame.is_corrupt:
                    report(when, "is damaged or incomplete; the frame the decoder made of it is kept")
                length = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
                decoded += length
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                jump = t is not None and expected is not None and abs(t - expected) > 0.5 * length
                if jump or (last_shape is not None and shape != last_shape):
                    # A gap (a skipped packet) or a jump: the resampler's buffered tail belongs before it, so flush
                    # it there and restart at this frame's timestamp, keeping the audio after the gap in place.
                    # A change of channels or rate (broadcast AC3 switching 5.1/stereo) needs a new resampler too.
                    for out in resampler.resample(None):
                        chunks.append((None, out.to_ndarray().reshape(-1)))
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
                expected = t + length if t is not None else None
                last_shape = shape
                for out in resampler.resample(frame):
                    chunks.append((t, out.to_ndarray().reshape(-1)))
                    t = None  # further resampler outputs of the same frame follow contiguously
        for out in resampler.resample(None):
            chunks.append((None, out.to_ndarray().reshape(-1)))
        duration = _stream_duration(stream)
        declared = duration
        if declared is None and container.duration is not None:
            declared = container.duration / 1_000_000
    if corrupt > _LOGGED_CORRUPT_PACKETS:
        log.warning("%s: %d corrupt audio packets in all (the first %d are logged above)", path, corrupt,
                    _LOGGED_CORRUPT_PACKETS)
    if not chunks:
        why = f" ({first_error})" if first_error else ""
        raise MediaError(f"{path}: audio cannot be decoded{why}: no packet of the audio stream decodes; the file is "
                         "truncated or corrupt (check it with ffprobe, or re-download it)")
    audio = _place_on_timeline(chunks, start_time, sampling_rate)
    if duration is not None and 0 < duration and len(audio) / sampling_rate - duration <= _MAX_PADDING:
        audio = audio[: int(round(duration * sampling_rate))]  # codec padding; a longer excess: the duration was a guess
    decoded = min(decoded, len(audio) / sampling_rate)
    result = DecodedAudio(audio.astype(np.float32, copy=False), start_time, corrupt, decoded, declared)
    share = result.decoded_share
    if share is not None and share < min_decoded_share:
        raise MediaError(
            f"{path}: only {result.decoded_seconds:.2f}s of its {declared:.2f}s of audio decode ({share:.0%}, "
            f"{corrupt} corrupt packet(s)); the file is truncated or corrupt: re-download it, or lower "
            f"extract.min_decoded_share (now {min_decoded_share:g})"
        )
    return result


def _place_on_timeline(chunks: list[tuple[float | None, np.ndarray]], start_time: float, rate: int) -> np.ndarray:
    """Concatenate decoded chunks, honouring their timestamps.

    A chunk whose timestamp is more than half a chunk away from where the previous one ended starts at its
    timestamp (a skipped corrupt packet or a gap leaves silence, an overlap is overwritten); smaller differences
    are the resampler's delay and are ignored.
    """
    total = 0
    placed: list[tuple[int, np.ndarray]] = []
    cursor = 0
    for t, samples in chunks:
        if t is not None:
            at = int(round((t - start_time) * rate))
            if abs(at - cursor) > len(samples) // 2:  # a real gap or jump, not resampler delay
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



def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray | tuple[int, np.ndarray]] | None,
    fps: float = 25,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
    *,
    audio_rate: int | None = None,
    audio_codec: str = "aac",
    audio_layout: str = "mono",
    size: tuple[int, int] | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    encoder_threads: int | None = None,
    x264_params: str | None = None,
    keyframe_interval: int | None = None,
    fmt: str | None = "mp4",
    options: dict | None = None,
    cover: np.ndarray | None = None,
    frame_format: str = "rgb24",
    colour: dict[str, int] | None = None,
) -> int:
    """Write a video file with PyAV: H.264 video and (by default) AAC audio. The one video writer of MIKU-PAL.

    Used for the ``asd`` stage's face clips (:mod:`mikupal.asd.clip`) and for every test and benchmark clip
    (:func:`mikupal.testing.media.write_video`, ``mikupal/testing/decode_media.py``).

    Args:
        path: output file (its folder must exist).
        frames: RGB uint8 ``(H, W, 3)`` frames in order, or ``(index, frame)`` pairs that put each frame at
            ``index / fps`` (a clip whose first frames are missing keeps its sync with the audio); ``None``: no
            video stream.
        fps: video frame rate (a fraction such as 30000/1001 is kept exact).
        audio: mono float samples at ``sampling_rate`` (``None``: no audio stream); values are clipped to ±1.
        audio_rate: the audio stream's sample rate (resampled with soxr); ``None``: ``sampling_rate``.
        audio_codec, audio_layout: e.g. ``aac``/``mono`` (default), ``ac3``/``stereo``, ``libopus``, ``flac``; the
            mono signal is copied to every channel.
        size: ``(width, height)`` of the video; default: the first frame's. Frames are cut to it, and to even sides
            (yuv420p needs them).
        crf, preset: libx264 quality and speed.
        keyframe_interval: at most this many frames from one keyframe to the next (libx264's ``keyint``; ``None``:
            its default, 250).
        encoder_threads: libx264 threads; ``None``: its own choice (frame threads, about 1.5 per core). libx264
            (PyAV 18.1's build) is not byte-reproducible on any thread count: the same frames encoded twice in one
            process sometimes differ in a packet. Its macroblock-tree rate control is the cause (measured
            2026-12-04): with ``x264_params="mbtree=0"`` the output was the same on every build.
        x264_params: libx264's own options, ``key=value`` joined by ``:`` (FFmpeg's ``x264-params``), e.g.
            ``mbtree=0``; ``None``: none.
        fmt: container (``mp4``, ``matroska``, ``mp3``, ``ipod`` for .m4a, ...); ``None`` guesses from the suffix.
        options: muxer options (e.g. ``{"movflags": "faststart"}``).
        cover: an RGB picture stored as cover art (an ``attached_pic`` stream, as tagged MP3/M4A files carry).
        frame_format: ``rgb24`` (the frames are RGB, converted to yuv420p for the encoder) or ``yuv420p`` (each
            frame ``(H * 3 // 2, W)``: the Y plane above the U and V planes, as PyAV's ``to_ndarray`` gives them,
            encoded as they are; its size must be the stream's, even).
        colour: the YUV matrix and range of yuv420p frames, ``{"colorspace": ..., "color_range": ...}`` (FFmpeg's
            ``AVColorSpace``/``AVColorRange`` numbers, as :attr:`mikupal.faces.video.VideoReader.colour` gives a
            source's), tagged on the stream so the copied YUV decodes as the source's; ``None``: untagged (BT.601,
            limited range, what RGB frames are converted to).

    Returns:
        The number of video frames written.
    """
    import av

    frame_iter = iter(frames) if frames is not None else None
    first = next(frame_iter, None) if frame_iter is not None else None
    rate = Fraction(fps).limit_denominator(1001)
    written = 0
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        vstream = astream = cstream = None
        if first is not None:
            image = first[1] if isinstance(first, tuple) else first
            if frame_format not in ("rgb24", "yuv420p"):
                raise ValueError(f"{path}: frame_format must be rgb24 or yuv420p, got {frame_format!r}")
            shape = image.shape if frame_format == "rgb24" else (image.shape[0] * 2 // 3, image.shape[1])
            width, height = size or (shape[1], shape[0])
            vstream = container.add_stream("libx264", rate=rate)
            vstream.width, vstream.height = width - width % 2, height - height % 2
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": str(int(crf)), "preset": str(preset)}
            if encoder_threads is not None:
                vstream.options["threads"] = str(int(encoder_threads))
            if x264_params:
                vstream.options["x264-params"] = str(x264_params)
            if keyframe_interval is not None:
                vstream.options["g"] = str(int(keyframe_interval))
            for key, value in (colour or {}).items():
                if key not in ("colorspace", "color_range"):
                    raise ValueError(f"{path}: unknown colour tag {key!r} (colorspace, color_range)")
                setattr(vstream.codec_context, key, int(value))
        if audio is not None:
            astream = container.add_stream(audio_codec, rate=audio_rate or sampling_rate)
            astream.layout = audio_layout
        if cover is not None:
            cstream = container.add_stream("mjpeg")
            cstream.height, cstream.width = cover.shape[:2]
            cstream.pix_fmt = "yuvj420p"
            cstream.disposition = av.stream.Disposition.attached_pic
            for packet in cstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(cover), format="rgb24")):
                container.mux(packet)
            for packet in cstream.encode():
                container.mux(packet)
        if vstream is not None:
            for item in itertools.chain([first], frame_iter):
                index, image = item if isinstance(item, tuple) else (written, item)
                if frame_format == "yuv420p":
                    if image.shape != (vstream.height * 3 // 2, vstream.width):
                        raise ValueError(f"{path}: a yuv420p frame of shape {image.shape} in a "
                                         f"{vstream.width}x{vstream.height} video")
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="yuv420p")
                else:
                    image = np.ascontiguousarray(image[: vstream.height, : vstream.width])
                    vf = av.VideoFrame.from_ndarray(image, format="rgb24")
                vf.pts = int(index)
                vf.time_base = 1 / rate
                for packet in vstream.encode(vf):
                    container.mux(packet)
                written += 1
            for packet in vstream.encode():
                container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, audio, sampling_rate)
    return written


def _encode_audio(container, stream, audio: np.ndarray, sampling_rate: int) -> None:
    """Encode mono ``audio`` into ``stream`` in the codec's own sample format, block size and channel count."""
    import av

    rate = stream.codec_context.sample_rate
    samples = np.clip(resample(np.asarray(audio, dtype=np.float32), sampling_rate, rate), -1.0, 1.0)
    block = stream.codec_context.frame_size or 1024
    fmt_name = stream.codec_context.format.name
    layout = stream.codec_context.layout.name
    channels = stream.codec_context.layout.nb_channels
    dtype = {"flt": np.float32, "s16": np.int16, "s32": np.int32}[fmt_name.rstrip("p")]
    for start in range(0, len(samples), block):
        chunk = np.tile(samples[start : start + block], (channels, 1))
        data = chunk if fmt_name.endswith("p") else chunk.T.reshape(1, -1)  # planar: one row per channel
        if dtype is not np.float32:
            scale = np.iinfo(dtype).max
            data = np.clip(np.round(data * scale), -scale, scale)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, dtype=dtype), format=fmt_name, layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
