"""Prosodic features of one utterance, the fusion annotator's ``audio`` channel (:mod:`mikupal.annotate.fusion`).

What is measured (all from the mono waveform, no model):

* **energy**: RMS level, in dBFS, of the 40 ms frames (10 ms hop) that have a pitch (of all frames when none has);
* **pitch**: frame-wise F0 by a YIN-style cumulative-mean-normalised difference function (de Cheveigné and
  Kawahara, 2002) on 40 ms frames with a 10 ms hop, searched in 75–400 Hz, with parabolic interpolation of the
  chosen lag; its median over voiced frames and its variation (standard deviation in semitones around the median);
* **speaking rate**: words per second of speech, from the word count and the seconds the words span.

The fusion annotator turns these into an arousal estimate (``FusionAnnotator.arousal_of``); this module only
measures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

#: A word of a transcript, for the speaking rate when there are no word timings ("don't" is one word).
WORD_PATTERN = re.compile(r"\w+(?:'\w+)?")


@dataclass(frozen=True)
class ProsodyFeatures:
    """Prosodic measurements of one utterance.

    Attributes:
        energy_db: RMS level of the voiced frames, dBFS (``-inf`` if silent).
        f0_median: median pitch of voiced frames, Hz (``None`` if nothing voiced).
        f0_semitone_std: pitch variation, semitones (0 if fewer than 2 voiced frames).
        voiced_fraction: share of frames with a pitch.
        speaking_rate: words per second (``None`` without words or transcript).
        duration: seconds of audio.
    """

    energy_db: float
    f0_median: float | None
    f0_semitone_std: float
    voiced_fraction: float
    speaking_rate: float | None
    duration: float


def yin_pitch(audio: np.ndarray, sampling_rate: int, fmin: float = 75.0, fmax: float = 400.0,
              frame: float = 0.04, hop: float = 0.01, threshold: float = 0.15) -> np.ndarray:
    """Frame-wise F0 (Hz) by the YIN cumulative-mean-normalised difference; ``nan`` for unvoiced frames.

    Args:
        audio: mono float samples.
        sampling_rate: Hz.
        fmin, fmax: pitch search range, Hz.
        frame, hop: analysis frame and hop, seconds.
        threshold: YIN absolute threshold on the normalised difference (lower = stricter voicing).
    """
    n = int(round(frame * sampling_rate))
    h = int(round(hop * sampling_rate))
    tau_min = max(2, int(sampling_rate / fmax))
    tau_max = min(n - 1, int(sampling_rate / fmin))
    if len(audio) < n or tau_max <= tau_min:
        return np.zeros(0)
    starts = np.arange(0, len(audio) - n + 1, h)
    frames = np.stack([audio[s:s + n] for s in starts]).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    w = n - tau_max  # window compared at every lag
    # difference function d(tau) = sum (x_j - x_{j+tau})^2 over j < w, vectorised over lags via FFT correlations
    energy = np.cumsum(np.concatenate([np.zeros((len(frames), 1)), frames ** 2], axis=1), axis=1)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(frames, size)
    head = np.fft.rfft(frames[:, :w], size)
    corr = np.fft.irfft(np.conj(head) * spec, size)[:, : tau_max + 1]  # sum_j x_j x_{j+tau}, j < w
    taus = np.arange(tau_max + 1)
    e0 = energy[:, w][:, None]
    e_tau = energy[:, taus + w] - energy[:, taus]
    d = e0 + e_tau - 2 * corr
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, tau_max + 1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    f0 = np.full(len(frames), np.nan)
    silent = e0[:, 0] < 1e-7 * w
    for i in range(len(frames)):
        if silent[i]:
            continue
        row = cmnd[i, tau_min : tau_max + 1]
        below = np.nonzero(row < threshold)[0]
        if below.size == 0:
            continue
        k = below[0]
        while k + 1 < row.size and row[k + 1] < row[k]:  # walk down to the local minimum
            k += 1
        tau = k + tau_min
        if 0 < k < row.size - 1:  # parabolic interpolation
            a, b, c = row[k - 1], row[k], row[k + 1]
            denom = a - 2 * b + c
            tau = tau + (0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0)
        f0[i] = sampling_rate / tau
    return f0


def prosody_features(audio: np.ndarray, sampling_rate: int, n_words: int | None = None,
                     speech_seconds: float | None = None) -> ProsodyFeatures:
    """Energy, pitch and speaking rate of one utterance (see :class:`ProsodyFeatures`).

    Args:
        audio: mono float samples.
        sampling_rate: Hz.
        n_words: number of words spoken (for the rate).
        speech_seconds: seconds of speech the words span (default: the audio duration).
    """
    duration = len(audio) / float(sampling_rate)
    f0 = yin_pitch(audio, sampling_rate)
    voiced = f0[~np.isnan(f0)] if f0.size else f0
    # energy over the voiced frames (fall back to all frames when nothing is voiced)
    n, h = int(0.04 * sampling_rate), int(0.01 * sampling_rate)
    if len(audio) >= n:
        starts = np.arange(0, len(audio) - n + 1, h)
        rms = np.sqrt(np.array([np.mean(np.square(audio[s:s + n], dtype=np.float64)) for s in starts]))
        mask = ~np.isnan(f0[: len(rms)]) if f0.size else np.zeros(len(rms), bool)
        level = rms[mask] if mask.any() else rms
        energy = float(20 * np.log10(np.sqrt(np.mean(level ** 2)) + 1e-10))
    else:
        energy = float(20 * np.log10(np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-10)) if len(audio) \
            else -math.inf
    f0_median = float(np.median(voiced)) if voiced.size else None
    semis = 12 * np.log2(voiced / f0_median) if voiced.size > 1 and f0_median else np.zeros(0)
    rate = None
    if n_words:
        span = speech_seconds if speech_seconds and speech_seconds > 0 else duration
        rate = n_words / span if span > 0 else None
    return ProsodyFeatures(
        energy_db=energy,
        f0_median=f0_median,
        f0_semitone_std=float(np.std(semis)) if semis.size > 1 else 0.0,
        voiced_fraction=float(voiced.size / f0.size) if f0.size else 0.0,
        speaking_rate=rate,
        duration=duration,
    )


def count_words(transcript: str) -> int:
    """Number of words in a transcript (:data:`WORD_PATTERN`)."""
    return len(WORD_PATTERN.findall(transcript))
