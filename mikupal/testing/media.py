"""Real test media from registry packages, and writers for synthetic audio-visual clips with known truth.

Used by the demo, the tests and the benchmarks. Nothing here is committed media: every file is made at run time
from data that Debian or PyPI packages ship:

* LibriVox read speech with transcripts (Debian ``pocketsphinx-testdata``,
  ``/usr/share/pocketsphinx/test/data/librivox/``), 16 kHz mono;
* real music (Debian ``asterisk-moh-opsound-wav``, ``/usr/share/asterisk/moh/``), 8 kHz;
* a real face photo (scikit-image's ``astronaut``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mikupal import media
from mikupal.media import read_audio

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
MUSIC_DIR = Path("/usr/share/asterisk/moh")


class TestDataMissing(FileNotFoundError):
    """A system package with test media is not installed."""


@dataclass(frozen=True)
class SpeechClip:
    """One LibriVox utterance: id, 16 kHz mono samples, reference transcript (lower case, no punctuation)."""

    name: str
    audio: np.ndarray
    transcript: str


def librivox_clips(sampling_rate: int = 16000) -> list[SpeechClip]:
    """The five LibriVox "Sense and Sensibility" utterances of ``pocketsphinx-testdata`` with their transcripts."""
    table = LIBRIVOX_DIR / "transcription"
    if not table.is_file():
        raise TestDataMissing(f"{table} not found: apt-get install pocketsphinx-testdata (or run bash scripts/setup.sh)")
    clips = []
    for line in table.read_text().splitlines():
        m = re.match(r"<s>\s*(.*?)\s*</s>\s*\((\S+)\)", line.strip())
        if m:
            text, name = m.groups()
            clips.append(SpeechClip(name, read_audio(LIBRIVOX_DIR / f"{name}.wav", sampling_rate), text))
    return clips


def music(name: str = "macroform-cold_day", sampling_rate: int = 16000) -> np.ndarray:
    """A real music track from ``asterisk-moh-opsound-wav``, resampled to ``sampling_rate``."""
    path = MUSIC_DIR / f"{name}.wav"
    if not path.is_file():
        raise TestDataMissing(f"{path} not found: apt-get install asterisk-moh-opsound-wav (or bash scripts/setup.sh)")
    return read_audio(path, sampling_rate)


def concat_with_silences(
    clips: list[np.ndarray], gap: float, sampling_rate: int = 16000, lead: float | None = None
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate clips with ``gap`` seconds of silence between (and ``lead`` before the first / after the last).

    Returns:
        ``(audio, intervals)``: the signal and each clip's ``(start, end)`` in seconds.
    """
    lead = gap if lead is None else lead
    pieces = [np.zeros(int(lead * sampling_rate), np.float32)]
    intervals = []
    t = lead
    for i, clip in enumerate(clips):
        pieces.append(clip.astype(np.float32))
        intervals.append((t, t + len(clip) / sampling_rate))
        t += len(clip) / sampling_rate
        silence = gap if i < len(clips) - 1 else lead
        pieces.append(np.zeros(int(silence * sampling_rate), np.float32))
        t += int(silence * sampling_rate) / sampling_rate
    return np.concatenate(pieces), intervals


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` (looped/cut to length) under ``speech`` at the given speech-to-noise ratio (dB, by power)."""
    reps = int(np.ceil(len(speech) / len(noise)))
    noise = np.tile(noise, reps)[: len(speech)]
    p_speech = np.mean(speech.astype(np.float64) ** 2)
    p_noise = np.mean(noise.astype(np.float64) ** 2) + 1e-12
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    mixed = speech + gain * noise
    peak = np.max(np.abs(mixed))
    return (mixed / peak * 0.9 if peak > 0.99 else mixed).astype(np.float32)


def face_photo() -> np.ndarray:
    """scikit-image's ``astronaut`` (Eileen Collins), a real face photo, RGB uint8 512×512."""
    try:
        from skimage import data
    except ImportError as e:
        raise TestDataMissing("scikit-image is not installed: pip install scikit-image") from e
    return data.astronaut()


def write_video(
    path: str | Path,
    audio: np.ndarray | None,
    sampling_rate: int,
    frame_at: Callable[[int, float], np.ndarray] | None,
    duration: float,
    fps: int = 25,
    audio_rate: int = 48000,
    size: tuple[int, int] | None = None,
) -> Path:
    """Write an MP4 (H.264 video, AAC audio) with :func:`mikupal.media.write_video`.

    Args:
        path: output file (its folder is made).
        audio: mono float32 at ``sampling_rate`` (``None``: no audio stream).
        frame_at: ``(index, time) -> RGB uint8 frame`` (``None``: no video stream).
        duration: seconds of video to write.
        fps: video frame rate.
        audio_rate: the AAC stream's sample rate (the pipeline resamples it back to 16 kHz).
        size: ``(width, height)``; defaults to the first frame's size (cut to even sides).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = None
    if frame_at is not None:
        frames = (frame_at(i, i / fps) for i in range(int(round(duration * fps))))
    media.write_video(path, frames, fps, audio, sampling_rate, audio_rate=audio_rate, size=size)
    return path
