"""Builders of damaged and audio-only media for the decoding tests (written with PyAV at test time, nothing committed).

* :func:`encode` writes real speech (and optionally frames) to any container/codec PyAV has, e.g. AC3 in MP4 or
  Matroska, MP3, Opus, FLAC, WAV, with cover art if asked.
* :func:`packets` lists a file's packets (byte position, size, stream type, time).
* :func:`truncate_in_last_audio_packet` and :func:`zero_packets` damage a file the way real downloads are damaged.
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
