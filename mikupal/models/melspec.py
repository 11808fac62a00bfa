"""Mel power spectrograms with numpy only, equal to ``librosa.feature.melspectrogram`` with its defaults.

Two models of the TTS metadata stages were trained on librosa features: Resemblyzer's speaker encoder (40 mels,
25 ms window, 10 ms hop) and DNSMOS P.808 (120 mels, 321-point FFT, 10 ms hop, then ``power_to_db``). This module
computes the same numbers from their definition, so neither stage imports librosa at run time (whose first call
JIT-compiles through numba for several seconds to half a minute):

* frames: the signal is zero-padded by ``n_fft // 2`` on both sides (librosa >= 0.10's ``center=True`` with
  ``pad_mode="constant"``; librosa 0.9 padded by reflection), cut into ``n_fft``-sample frames every ``hop``
  samples and weighted by a periodic Hann window of length ``n_fft``;
* power spectrum: ``|rfft|**2``;
* mel filters: Slaney's mel scale (linear below 1 kHz, logarithmic above), ``n_mels + 2`` edges evenly spaced in
  mel from 0 Hz to the Nyquist frequency, triangles on the FFT bin frequencies, each scaled by
  ``2 / (right edge - left edge)`` in Hz (Slaney's area normalisation);
* :func:`power_to_db`: ``10 log10(max(S, 1e-10))`` relative to the maximum, floored 80 dB below it.

:func:`level_dbfs` (the RMS level both stages use to recognise silent input) lives here too.

``tests/mikupal/models/test_melspec.py`` checks both configurations against librosa to about 1e-6 when librosa is
installed.
"""

from __future__ import annotations

import functools

import numpy as np

_LOG_STEP = np.log(6.4) / 27.0  # Slaney: 27 mel steps per factor 6.4 in frequency above 1 kHz
_F_SP = 200.0 / 3.0  # Hz per mel below 1 kHz


def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (the Auditory Toolbox's; librosa's default, ``htk=False``)."""
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / _LOG_STEP, hz / _F_SP)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(_LOG_STEP * (mel - 15.0)), _F_SP * mel)


@functools.lru_cache(maxsize=8)
def slaney_filterbank(sampling_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Area-normalised triangular mel filters on the rFFT bins, shape ``(n_mels, n_fft // 2 + 1)``, float64."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(0.0), hz_to_mel_slaney(sampling_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    bank = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    bank.setflags(write=False)
    return bank


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic ("fftbins") Hann
    window.setflags(write=False)
    return window


def mel_power_spectrogram(
    audio: np.ndarray, sampling_rate: int, n_fft: int, hop_length: int, n_mels: int
) -> np.ndarray:
    """Mel power spectrogram, shape ``(frames, n_mels)`` (time first), float64.

    ``frames = 1 + (len(audio) + 2 * (n_fft // 2) - n_fft) // hop_length`` (centred frames, see the module
    docstring; ``1 + len(audio) // hop_length`` for an even ``n_fft``).
    """
    y = np.asarray(audio, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"mel_power_spectrogram needs mono audio, got shape {y.shape}")
    half = n_fft // 2
    y = np.pad(y, (half, half))
    n_frames = 1 + (len(y) - n_fft) // hop_length
    if n_frames < 1:
        return np.zeros((0, n_mels))
    index = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
    power = np.abs(np.fft.rfft(y[index] * _hann(n_fft), axis=1)) ** 2
    return power @ slaney_filterbank(sampling_rate, n_fft, n_mels).T


def power_to_db(power: np.ndarray, top_db: float = 80.0, amin: float = 1e-10) -> np.ndarray:
    """``10 log10(power)`` relative to the maximum (``ref=np.max``), floored ``top_db`` below it."""
    db = 10.0 * np.log10(np.maximum(power, amin))
    ref = 10.0 * np.log10(max(float(np.max(power)) if power.size else amin, amin))
    return np.maximum(db - ref, -top_db)


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level of a clip in dB relative to full scale (-inf for digital silence or an empty clip)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")
