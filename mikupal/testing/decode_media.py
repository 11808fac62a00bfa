"""Builders of damaged and audio-only media for the decoding tests (written with PyAV at test time, nothing committed).

* :func:`encode` writes real speech (and optionally frames) to any container/codec PyAV has, e.g. AC3 in MP4 or
  Matroska, MP3, Opus, FLAC, WAV, with cover art if asked.
* :func:`packets` lists a file's packets (byte position, size, stream type, time).
* :func:`truncate_in_last_audio_packet` and :func:`zero_packets` damage a file the way real downloads are damaged.
* :func:`counter_frame` writes a frame's index in its pixels and :func:`counter_index` reads it back, so a test can
  tell which source frame a sampler gave; :func:`write_vfr` writes such frames at irregular (phone-like,
  :func:`phone_times`) times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mikupal.media import resample, write_video


@dataclass(frozen=True)
class PacketInfo:
    """One demuxed packet: byte offset in the file, size in bytes, ``audio``/``video``, time in seconds."""

    pos: int
    size: int
    kind: str
    time: float | None


def encode(
    path: Path,
    audio: np.ndarray,
    sampling_rate: int = 16000,
    fmt: str | None = None,
    codec: str = "ac3",
    rate: int = 48000,
    layout: str = "stereo",
    frames: Callable[[int], np.ndarray] | None = None,
    fps: int = 25,
    options: dict | None = None,
    cover: np.ndarray | None = None,
) -> Path:
    """Write ``audio`` (mono, ``sampling_rate``) with ``codec`` at ``rate``; optional H.264 ``frames`` or cover art.

    Written by :func:`mikupal.media.write_video` (the mono signal on every channel of ``layout``).

    Args:
        fmt: container (``mp4``, ``matroska``, ``mp3``, ``ogg``, ``flac``, ``wav``, ``ipod`` for .m4a ...); ``None``
            guesses from the suffix.
        frames: ``index -> RGB uint8 frame``, for as long as the audio lasts.
        options: muxer options (e.g. ``{"movflags": "faststart"}`` puts the MP4 index first, so a cut file
            still opens).
        cover: an RGB picture stored as cover art (an ``attached_pic`` stream, as in tagged MP3/M4A files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    video = None
    if frames is not None:
        duration = len(resample(audio, sampling_rate, rate)) / rate
        video = (frames(i) for i in range(int(round(duration * fps))))
    write_video(
        path,
        video,
        fps,
        audio,
        sampling_rate,
        audio_rate=rate,
        audio_codec=codec,
        audio_layout=layout,
        preset="ultrafast",
        fmt=fmt,
        options=options,
        cover=cover,
    )
    return path


def packets(path: Path) -> list[PacketInfo]:
    """The file's packets with data, in file order."""
    import av

    out = []
    with av.open(str(path)) as container:
        for p in container.demux():
            if p.size:
                t = float(p.pts * p.time_base) if p.pts is not None and p.time_base else None
                out.append(PacketInfo(p.pos, p.size, p.stream.type, t))
    return sorted(out, key=lambda p: p.pos)


def truncate_in_last_audio_packet(src: Path, dst: Path) -> PacketInfo:
    """Copy ``src`` cut in the middle of its last audio packet (an interrupted download); returns that packet."""
    last = [p for p in packets(src) if p.kind == "audio"][-1]
    dst.write_bytes(src.read_bytes()[: last.pos + last.size // 2])
    return last


def zero_packets(src: Path, dst: Path, chosen: list[PacketInfo], keep: int = 0) -> None:
    """Copy ``src`` with the bytes of the ``chosen`` packets zeroed, but for ``keep`` bytes at either end.

    ``keep=0`` wipes whole packets (in MP4 the decoder then rejects them; in Matroska, where a packet's position is
    its block's, the demuxer loses its way to the next cluster, as ffmpeg's does). ``keep=16`` spares the container's
    block header and the codec's frame header, so only the payload is damaged and the decoder conceals it.
    """
    data = bytearray(src.read_bytes())
    for p in chosen:
        data[p.pos + keep : p.pos + p.size - keep] = bytes(p.size - 2 * keep)
    dst.write_bytes(bytes(data))


def counter_frame(index: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """An RGB frame showing ``index`` (0..255): left half ``index // 16``, right half ``index % 16``, in grey steps.

    The steps survive H.264 and any resize or colour conversion; :func:`counter_index` reads the index back.
    """
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    img[:, : width // 2] = (index // 16) * 16 + 8
    img[:, width // 2 :] = (index % 16) * 16 + 8
    return img


def counter_index(image: np.ndarray) -> int:
    """The index a decoded :func:`counter_frame` shows (RGB, BGR or grey, any size)."""
    h, w = image.shape[:2]
    hi = image[4 : h - 4, 4 : w // 2 - 4].mean()
    lo = image[4 : h - 4, w // 2 + 4 : w - 4].mean()
    return int(round((hi - 8) / 16)) * 16 + int(round((lo - 8) / 16))


def phone_times(duration: float, seed: int = 0) -> np.ndarray:
    """Irregular frame times like a phone's: intervals between 1/60 and 1/10 s, mostly near 1/30, with stalls."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([1 / 60, 1 / 30, 1 / 30, 1 / 30, 1 / 24, 1 / 15, 1 / 10], size=int(duration * 60))
    times = np.concatenate([[0.0], np.cumsum(steps)])
    return times[times < duration]


def write_vfr(
    path: Path,
    times: np.ndarray,
    frame_of: Callable[[int, float], np.ndarray],
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
) -> Path:
    """An MP4 whose frames are shown at the given irregular ``times`` (H.264, 1/90000 time base), with AAC audio."""
    from fractions import Fraction

    import av

    first = frame_of(0, times[0])
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=30)
        vs.height, vs.width = first.shape[:2]
        vs.pix_fmt = "yuv420p"
        vs.options = {"preset": "veryfast"}
        vs.codec_context.time_base = Fraction(1, 90000)
        vs.time_base = Fraction(1, 90000)
        a = None
        if audio is not None:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_of(i, t)), format="rgb24")
            frame.pts = int(round(t * 90000))
            frame.time_base = Fraction(1, 90000)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            samples = resample(audio, sampling_rate, 48000)
            for s in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[s : s + 1024].reshape(1, -1).astype(np.float32),
                                                   format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 48000, s, Fraction(1, 48000)
                for p in a.encode(frame):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path
