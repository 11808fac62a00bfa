"""Real-footage test clips with known truth: a video's own speech, voice-overs, and clips joined at a hard cut.

Built at test time with PyAV from real media (:mod:`mikupal.testing.real_media`, LibriVox speech from Debian's
``pocketsphinx-testdata``); nothing here is committed media.

* :func:`dub` — the frames of one video (moving, or its first frame held still) under any audio: a **voice-over**
  when the audio is speech the face is not saying (LibriVox under a smiling face, jwpIntro's sound under testMovie's
  talking man, ...), or the video's **own** sound (a real positive) when ``audio`` is its own track.
* :func:`join` — clips back to back, with no pause, resized to one frame size: a hard scene cut between two
  speakers, for the "no utterance straddles a cut" rule.
* :func:`side_by_side` — two videos' frames next to each other (scaled to one height) under one audio: a real
  two-face scene whose speaker is known when the audio is one of the two videos' own sound.
* :func:`librivox_speech` — LibriVox utterances joined with short pauses to a given length.
* :func:`own_audio` — a file's audio track at 16 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mikupal.media import decode_audio
from mikupal.testing.media import librivox_clips, write_video

SR = 16000


@dataclass(frozen=True)
class Composite:
    """A written test clip: path, its audio (16 kHz mono), duration, frame size and what it is."""

    path: Path
    audio: np.ndarray
    duration: float
    size: tuple[int, int]
    kind: str


def own_audio(path: str | Path, sampling_rate: int = SR) -> np.ndarray:
    """The first audio stream of ``path``, mono float32 at ``sampling_rate``."""
    audio, _start = decode_audio(path, sampling_rate)
    return audio


def librivox_speech(seconds: float, gap: float = 0.35, offset: int = 0, sampling_rate: int = SR) -> np.ndarray:
    """At least ``seconds`` of LibriVox read speech (utterances from ``offset`` on, cycling, ``gap`` s apart), cut."""
    clips = [c.audio for c in librivox_clips(sampling_rate)]
    pieces, total, i = [], 0, offset
    pause = np.zeros(int(gap * sampling_rate), np.float32)
    while total < seconds * sampling_rate:
        pieces += [clips[i % len(clips)], pause]
        total += len(clips[i % len(clips)]) + len(pause)
        i += 1
    return np.concatenate(pieces)[: int(round(seconds * sampling_rate))].astype(np.float32)


def _frames(path: Path, fps: float, start: float = 0.0, end: float | None = None) -> list[np.ndarray]:
    from mikupal.faces.video import read_window, video_info

    info = video_info(path)
    if info is None:
        raise ValueError(f"{path} has no video stream")
    end = end if end is not None else (info.duration or 3600.0)
    return [f.image for f in read_window(path, start, end, fps)]


def _even(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] - size[0] % 2, size[1] - size[1] % 2


def dub(
    out: str | Path,
    video: str | Path,
    audio: np.ndarray,
    sampling_rate: int = SR,
    *,
    still: bool = False,
    start: float = 0.0,
    duration: float | None = None,
    fps: int = 25,
    kind: str = "voice-over",
) -> Composite:
    """Write ``video``'s frames (or its first frame held, ``still=True``) under ``audio``.

    Args:
        out: the MP4 to write.
        video: source of the pictures.
        audio: mono float32 at ``sampling_rate``; padded with silence or cut to the duration.
        still: hold the first frame for the whole clip.
        start: take the pictures from this time of ``video`` on (seconds; ``audio`` is used from its start).
        duration: seconds to write (default: the shorter of the video and the audio; with ``still``, the audio's).
        fps: output frame rate (sources are resampled to it).
        kind: a label kept in the result (``voice-over``, ``own``).
    """
    frames = _frames(Path(video), fps, start)
    if not frames:
        raise ValueError(f"{video}: no frames decoded")
    audio_s = len(audio) / sampling_rate
    if duration is None:
        duration = audio_s if still else min(audio_s, len(frames) / fps)
    n = int(round(duration * fps))
    duration = n / fps
    samples = np.zeros(int(round(duration * sampling_rate)), np.float32)
    samples[: min(len(samples), len(audio))] = audio[: len(samples)]
    size = _even((frames[0].shape[1], frames[0].shape[0]))
    picks = [frames[0]] * n if still else [frames[min(i, len(frames) - 1)] for i in range(n)]
    path = write_video(out, samples, sampling_rate, lambda i, _t: picks[i], duration, fps=fps, size=size)
    return Composite(path, samples, duration, size, kind)


def join(out: str | Path, clips: list[Composite], fps: int = 25, size: tuple[int, int] | None = None) -> Composite:
    """Clips back to back with no pause (a hard cut at each boundary), all resized to ``size`` (default: the first's).

    Returns a :class:`Composite` whose ``audio`` is the clips' audio concatenated; clip ``k`` starts at the sum of
    the earlier clips' durations.
    """
    import cv2

    size = _even(size or clips[0].size)
    pictures: list[np.ndarray] = []
    sound: list[np.ndarray] = []
    for c in clips:
        frames = _frames(c.path, fps)
        n = int(round(c.duration * fps))
        frames = [frames[min(i, len(frames) - 1)] for i in range(n)]
        pictures += [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        audio = np.zeros(int(round(n / fps * SR)), np.float32)
        audio[: min(len(audio), len(c.audio))] = c.audio[: len(audio)]
        sound.append(audio)
    samples = np.concatenate(sound)
    duration = len(pictures) / fps
    path = write_video(out, samples, SR, lambda i, _t: pictures[i], duration, fps=fps, size=size)
    return Composite(path, samples, duration, size, "joined")


def side_by_side(
    out: str | Path, left: str | Path, right: str | Path, audio: np.ndarray, height: int = 288, fps: int = 25
) -> tuple[Composite, int]:
    """``left``'s and ``right``'s frames next to each other, each scaled to ``height`` pixels, under ``audio``
    (16 kHz mono), as long as the shortest of the three.

    Returns the composite and the left video's width in its frames: a face whose box centre lies left of that
    column is the left video's.
    """
    import cv2

    def scaled(video: str | Path) -> list[np.ndarray]:
        frames = _frames(Path(video), fps)
        if not frames:
            raise ValueError(f"{video}: no frames decoded")
        h, w = frames[0].shape[:2]
        size = _even((int(round(w * height / h)), height))
        return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]

    a, b = scaled(left), scaled(right)
    n = min(len(a), len(b), int(len(audio) / SR * fps))
    pictures = [np.hstack([a[i], b[i]]) for i in range(n)]
    duration = n / fps
    samples = np.asarray(audio[: int(round(duration * SR))], np.float32)
    size = (pictures[0].shape[1], pictures[0].shape[0])
    path = write_video(out, samples, SR, lambda i, _t: pictures[i], duration, fps=fps, size=size)
    return Composite(path, samples, duration, size, "side by side"), a[0].shape[1]
