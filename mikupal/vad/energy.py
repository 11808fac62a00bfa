"""Energy VAD: frame RMS level against the recording's own dynamic range, with hysteresis. No model.

A simple, fast detector for clean recordings (and the runner's tests). It marks a 20 ms frame as speech when its
RMS level is within ``threshold_db`` of the loudest frames (95th percentile) and above ``floor_db`` absolute;
spans shorter than ``min_speech_duration`` are removed and gaps shorter than ``min_silence_duration`` closed.
It cannot tell speech from music or noise: use ``vad=silero`` for real-world audio.
"""

from __future__ import annotations

import numpy as np

from mikupal.vad.base import VoiceActivityDetector


class EnergyVad(VoiceActivityDetector):
    """Level-based speech detection (see the module docstring)."""

    def __init__(
        self,
        threshold_db: float = 30.0,
        floor_db: float = -55.0,
        frame_ms: float = 20.0,
        min_speech_duration: float = 0.25,
        min_silence_duration: float = 0.3,
    ) -> None:
        self.threshold_db = threshold_db
        self.floor_db = floor_db
        self.frame_ms = frame_ms
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration

    def detect(self, audio: np.ndarray, sampling_rate: int) -> list[tuple[float, float]]:
        hop = int(sampling_rate * self.frame_ms / 1000)
        n = len(audio) // hop
        if n == 0:
            return []
        frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        top = np.percentile(level, 95)
        speech = (level > top - self.threshold_db) & (level > self.floor_db)
        step = hop / sampling_rate
        spans: list[tuple[float, float]] = []
        start = None
        for i, is_speech in enumerate(np.append(speech, False)):
            if is_speech and start is None:
                start = i
            elif not is_speech and start is not None:
                spans.append((start * step, i * step))
                start = None
        closed: list[tuple[float, float]] = []
        for s, e in spans:
            if closed and s - closed[-1][1] < self.min_silence_duration:
                closed[-1] = (closed[-1][0], e)
            else:
                closed.append((s, e))
        return [(round(s, 3), round(e, 3)) for s, e in closed if e - s >= self.min_speech_duration]
