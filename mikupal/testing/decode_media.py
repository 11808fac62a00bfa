"""Builders of damaged and audio-only media for the decoding tests (written with PyAV at test time, nothing committed).

* :func:`encode` writes real speech (and optionally frames) to any container/codec PyAV has, e.g. AC3 in MP4 or
  Matroska, MP3, Opus, FLAC, WAV, with cover art if asked.
* :func:`packets` lists a file's packets (byte position, size, stream type, time).
* :func:`truncate_in_last_audio_packet` and :func:`zero_packets` damage a file the way real downloads are damaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from mikupal.media import resample


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

    Args:
        fmt: container (``mp4``, ``matroska``, ``mp3``, ``ogg``, ``flac``, ``wav``, ``ipod`` for .m4a ...); ``None``
            guesses from the suffix.
        frames: ``index -> RGB uint8 frame``, for as long as the audio lasts.
        options: muxer options (e.g. ``{"movflags": "faststart"}`` puts the MP4 index first, so a cut file
            still opens).
        cover: an RGB picture stored as cover art (an ``attached_pic`` stream, as in tagged MP3/M4A files).
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = resample(audio, sampling_rate, rate)
    duration = len(samples) / rate
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        vstream = None
        if frames is not None:
            first = frames(0)
            vstream = container.add_stream("libx264", rate=fps)
            vstream.height, vstream.width = first.shape[:2]
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"preset": "ultrafast"}
        astream = container.add_stream(codec, rate=rate)
        astream.layout = layout
        cstream = None
        if cover is not None:
            cstream = container.add_stream("mjpeg")
            cstream.height, cstream.width = cover.shape[:2]
            cstream.pix_fmt = "yuvj420p"
            cstream.disposition = av.stream.Disposition.attached_pic
        if cstream is not None:
            for packet in cstream.encode(av.VideoFrame.from_ndarray(cover, format="rgb24")):
                container.mux(packet)
            for packet in cstream.encode():
                container.mux(packet)
        if vstream is not None:
            for i in range(int(round(duration * fps))):
                for packet in vstream.encode(av.VideoFrame.from_ndarray(frames(i), format="rgb24")):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        block = astream.codec_context.frame_size or 1024
        fmt_name = astream.codec_context.format.name
        channels = astream.codec_context.layout.nb_channels
        for start in range(0, len(samples), block):
            chunk = np.tile(samples[start : start + block].astype(np.float32), (channels, 1))
            if fmt_name.endswith("p"):  # planar
                frame = av.AudioFrame.from_ndarray(_convert(chunk, fmt_name), format=fmt_name, layout=layout)
            else:
                data = chunk.T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(_convert(data, fmt_name), format=fmt_name, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    return path


def _dtype(fmt_name: str):
    return {"flt": np.float32, "s16": np.int16, "s32": np.int32}[fmt_name.rstrip("p")]


def _convert(data: np.ndarray, fmt_name: str) -> np.ndarray:
    dtype = _dtype(fmt_name)
    if dtype is np.float32:
        return data.astype(np.float32)
    scale = np.iinfo(dtype).max
    return np.clip(np.round(data * scale), -scale, scale).astype(dtype)


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
