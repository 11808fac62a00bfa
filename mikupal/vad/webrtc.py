"""WebRTC VAD, the paper's voice activity detector, as an optional ``vad`` backend.

Model: the WebRTC project's voice activity detector (a Gaussian mixture model over sub-band energies, with
hand-set parameters; no trained weight file). Licence: BSD-3-Clause (WebRTC); Python binding ``webrtcvad-wheels``
(MIT). Expected input: mono float32 at 8, 16, 32 or 48 kHz (other rates are resampled to 16 kHz), cut here into
10, 20 or 30 ms frames of 16-bit PCM.

Frame decisions are smoothed into spans: runs of non-speech shorter than ``min_silence_duration`` inside speech
are closed, then speech runs shorter than ``min_speech_duration`` are removed. WebRTC VAD labels music as speech,
so run a separator first (the paper runs MDX-Net before it) or use ``vad=silero``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mikupal.media import resample
from mikupal.vad.base import VoiceActivityDetector

log = logging.getLogger(__name__)

_RATES = (8000, 16000, 32000, 48000)


class WebrtcVad(VoiceActivityDetector):
    """Frame-level WebRTC VAD smoothed into speech spans (see the module docstring).

    Args:
        mode: aggressiveness 0 (least) to 3 (most likely to call a frame non-speech).
        frame_ms: frame length, 10, 20 or 30 ms.
        min_speech_duration: speech runs shorter than this (seconds) are discarded.
        min_silence_duration: non-speech runs shorter than this (seconds) between speech are bridged.
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"webrtcvad": "webrtcvad-wheels"}

    def __init__(
        self,
        mode: int = 3,
        frame_ms: int = 30,
        min_speech_duration: float = 0.25,
        min_silence_duration: float = 0.3,
    ) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"vad.mode must be 0, 1, 2 or 3, got {mode}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"vad.frame_ms must be 10, 20 or 30 (WebRTC VAD frame sizes), got {frame_ms}")
        if min_speech_duration < 0 or min_silence_duration < 0:
            raise ValueError("vad.min_speech_duration and vad.min_silence_duration must be >= 0")
        self.mode = mode
        self.frame_ms = frame_ms
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self._vad: Any = None

    def setup(self) -> None:
        try:
            import webrtcvad
        except ImportError as e:
            raise ImportError(
                f"vad=webrtc needs the webrtcvad module ({e}). Fix: pip install webrtcvad-wheels"
            ) from e
        self._vad = webrtcvad.Vad(self.mode)

    def teardown(self) -> None:
        self._vad = None

    def frame_decisions(self, audio: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, float]:
        """Raw per-frame speech decisions. Returns ``(decisions, frame duration in seconds)``."""
        if self._vad is None:
            raise RuntimeError("WebrtcVad.setup() must be called before detect()")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        rate = sampling_rate
        if rate not in _RATES:
            audio = resample(audio, rate, 16000)
            rate = 16000
        hop = rate * self.frame_ms // 1000
        n = len(audio) // hop
        pcm = (np.clip(audio[: n * hop], -1.0, 1.0) * 32767).astype("<i2").tobytes()
        width = 2 * hop
        is_speech = self._vad.is_speech
        decisions = np.fromiter(
            (is_speech(pcm[i * width : (i + 1) * width], rate) for i in range(n)), dtype=bool, count=n
        )
        return decisions, hop / rate

    def detect(self, audio: np.ndarray, sampling_rate: int) -> list[tuple[float, float]]:
        """Speech spans ``(start, end)`` in seconds from the start of ``audio``, sorted and non-overlapping."""
        decisions, step = self.frame_decisions(audio, sampling_rate)
        return smooth_decisions(decisions, step, self.min_speech_duration, self.min_silence_duration)


def smooth_decisions(
    decisions: np.ndarray, step: float, min_speech: float, min_silence: float
) -> list[tuple[float, float]]:
    """Turn per-frame booleans into spans: bridge short pauses, then drop short bursts.

    Args:
        decisions: one boolean per frame.
        step: frame duration in seconds.
        min_speech: minimum span length kept (seconds).
        min_silence: pauses shorter than this between two speech runs are bridged (seconds).
    """
    padded = np.concatenate([[False], np.asarray(decisions, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    runs = list(zip(edges[::2], edges[1::2]))  # [start, end) frame indices of speech runs
    bridged: list[list[int]] = []
    for s, e in runs:
        if bridged and (s - bridged[-1][1]) * step < min_silence:
            bridged[-1][1] = e
        else:
            bridged.append([s, e])
    return [
        (round(float(s * step), 3), round(float(e * step), 3)) for s, e in bridged if (e - s) * step >= min_speech
    ]
