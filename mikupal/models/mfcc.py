"""100 Hz, 13-dimensional MFCC audio features, the audio input of TalkNet.

TalkNet (Tao et al., ACM MM 2021) feeds its audio encoder with the MFCCs that the ``python_speech_features``
package computes with its defaults at 16 kHz: 25 ms rectangular frames every 10 ms, pre-emphasis 0.97, a
512-point FFT, 26 triangular mel filters from 0 Hz to the Nyquist frequency, log filterbank energies, an
orthonormal DCT-II keeping 13 coefficients, a sinusoidal cepstral lifter with L = 22, and the zeroth
coefficient replaced by the log of the frame's total power-spectrum energy. This module computes the same
features with numpy and scipy only (the standard MFCC recipe, written here from its definition), so
``python_speech_features`` is not a dependency. The signal is used at its own scale: TalkNet passes 16-bit
integer samples, so float audio in [-1, 1] must be multiplied by 32768 first (:func:`talknet_mfcc` does it).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.fft import dct

#: Floor that replaces zero energies before the logarithm (float64 machine epsilon, as the reference recipe uses).
EPS = float(np.finfo(np.float64).eps)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def num_frames(num_samples: int, sample_rate: int = 16000, win_length: float = 0.025, hop_length: float = 0.010) -> int:
    """Number of feature frames for a signal of ``num_samples`` samples.

    One frame when the signal is no longer than a window, else ``1 + ceil((n - win) / hop)``: the last partial
    window is zero-padded, so a 16 kHz signal of ``n`` samples gives ``1 + ceil((n - 400) / 160)`` frames
    (about 100 per second).
    """
    frame_len = _round_half_up(win_length * sample_rate)
    frame_step = _round_half_up(hop_length * sample_rate)
    if num_samples <= frame_len:
        return 1
    return 1 + math.ceil((num_samples - frame_len) / frame_step)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray | float:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    num_filters: int = 26,
    n_fft: int = 512,
    sample_rate: int = 16000,
    low_freq: float = 0.0,
    high_freq: float | None = None,
) -> np.ndarray:
    """Triangular mel filters on FFT bins, shape ``(num_filters, n_fft // 2 + 1)``.

    Filter edges are ``num_filters + 2`` points evenly spaced in mel between ``low_freq`` and ``high_freq``,
    snapped down to FFT bins with ``floor((n_fft + 1) f / sample_rate)``; each filter rises linearly from 0 at
    its left edge to 1 at its centre bin and falls back to 0 at its right edge (the right-edge bin itself is 0).
    """
    high_freq = high_freq or sample_rate / 2
    if high_freq > sample_rate / 2:
        raise ValueError(f"high_freq {high_freq} is above the Nyquist frequency {sample_rate / 2}")
    mel_edges = np.linspace(hz_to_mel(low_freq), hz_to_mel(high_freq), num_filters + 2)
    edges = np.floor((n_fft + 1) * mel_to_hz(mel_edges) / sample_rate)
    bank = np.zeros((num_filters, n_fft // 2 + 1))
    for j in range(num_filters):
        left, centre, right = edges[j], edges[j + 1], edges[j + 2]
        rise = np.arange(int(left), int(centre))
        bank[j, rise] = (rise - left) / (centre - left)
        fall = np.arange(int(centre), int(right))
        bank[j, fall] = (right - fall) / (right - centre)
    bank.setflags(write=False)
    return bank


def mfcc(
    signal: np.ndarray,
    sample_rate: int = 16000,
    *,
    win_length: float = 0.025,
    hop_length: float = 0.010,
    num_ceps: int = 13,
    num_filters: int = 26,
    n_fft: int = 512,
    low_freq: float = 0.0,
    high_freq: float | None = None,
    preemphasis: float = 0.97,
    cep_lifter: int = 22,
    append_energy: bool = True,
) -> np.ndarray:
    """Mel-frequency cepstral coefficients of a mono signal.

    The defaults reproduce ``python_speech_features.mfcc(signal, 16000, numcep=13, winlen=0.025,
    winstep=0.010)``, which is what TalkNet uses (agreement measured on LibriVox speech: see the tests).

    Args:
        signal: 1-D array of samples, any numeric dtype; used at its own scale (no normalisation).
        sample_rate: samples per second.
        win_length: analysis window in seconds (rectangular window).
        hop_length: step between windows in seconds.
        num_ceps: number of cepstral coefficients kept.
        num_filters: number of mel filters.
        n_fft: FFT size; frames are zero-padded (or truncated) to it.
        low_freq: lowest filter edge in Hz.
        high_freq: highest filter edge in Hz (default: ``sample_rate / 2``).
        preemphasis: first-order pre-emphasis coefficient (``y[n] = x[n] - a x[n-1]``); 0 disables it.
        cep_lifter: sinusoidal lifter parameter L (``1 + L/2 sin(pi n / L)``); 0 disables it.
        append_energy: replace coefficient 0 by the log of each frame's total power-spectrum energy.

    Returns:
        float64 array of shape ``(num_frames(len(signal)), num_ceps)``.
    """
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"mfcc expects a 1-D mono signal, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("mfcc needs at least one sample")
    x = x.astype(np.float64)
    emphasised = np.empty_like(x)
    emphasised[0] = x[0]
    emphasised[1:] = x[1:] - preemphasis * x[:-1]

    frame_len = _round_half_up(win_length * sample_rate)
    frame_step = _round_half_up(hop_length * sample_rate)
    n = num_frames(x.size, sample_rate, win_length, hop_length)
    padded = np.zeros((n - 1) * frame_step + frame_len)
    padded[: x.size] = emphasised
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_len)[::frame_step]

    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    energy = power.sum(axis=1)
    energy[energy == 0] = EPS
    band = power @ mel_filterbank(num_filters, n_fft, sample_rate, low_freq, high_freq).T
    band[band == 0] = EPS

    ceps = dct(np.log(band), type=2, axis=1, norm="ortho")[:, :num_ceps]
    if cep_lifter > 0:
        ceps *= 1.0 + (cep_lifter / 2.0) * np.sin(np.pi * np.arange(num_ceps) / cep_lifter)
    if append_energy:
        ceps[:, 0] = np.log(energy)
    return ceps


def talknet_mfcc(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """TalkNet's audio features: :func:`mfcc` at 16 kHz on 16-bit sample scale.

    Args:
        audio: 1-D mono audio at 16 kHz, either integer samples (int16 scale, as TalkNet reads them from WAV)
            or floats in [-1, 1] (multiplied by 32768 here, which recovers the int16 values of 16-bit audio).
        sample_rate: must be 16000; TalkNet was trained on 16 kHz features and other rates are refused rather
            than silently misaligned.

    Returns:
        float64 array ``(frames, 13)``, 100 frames per second.
    """
    if sample_rate != 16000:
        raise ValueError(f"TalkNet needs 16 kHz audio, got {sample_rate} Hz; resample first")
    audio = np.asarray(audio)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if np.issubdtype(audio.dtype, np.floating):
        audio = audio.astype(np.float64) * 32768.0
    return mfcc(audio, 16000, num_ceps=13, win_length=0.025, hop_length=0.010)
