"""The numpy mel front end equals librosa's for the two models that were trained on it."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.models.melspec import mel_power_spectrogram, power_to_db, slaney_filterbank


def test_filterbank_is_slaney_area_normalised():
    bank = slaney_filterbank(16000, 400, 40)
    assert bank.shape == (40, 201) and (bank >= 0).all()
    freqs = np.fft.rfftfreq(400, 1 / 16000)
    peaks = freqs[bank.argmax(axis=1)]
    assert np.all(np.diff(peaks) > 0)  # centres rise
    assert np.all(np.diff(peaks[:8]) < np.diff(peaks[-8:]).min())  # linear below 1 kHz, log above: widths grow
    # area normalisation: wider filters are lower
    assert bank[0].max() > bank[-1].max()


@pytest.mark.parametrize("n_fft,n_mels,to_db", [(400, 40, False), (321, 120, True)])
def test_matches_librosa(librivox, n_fft, n_mels, to_db):
    """Resemblyzer's (400/40, power) and DNSMOS P.808's (321/120, dB) front ends, to about 1e-6."""
    librosa = pytest.importorskip("librosa")
    y = np.resize(librivox[1].audio, 144000)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=n_fft, hop_length=160, n_mels=n_mels).T
    ours = mel_power_spectrogram(y, 16000, n_fft, 160, n_mels)
    assert ours.shape == ref.shape == (1 + (len(y) + 2 * (n_fft // 2) - n_fft) // 160, n_mels)
    if to_db:
        ref, ours = librosa.power_to_db(ref, ref=np.max), power_to_db(ours)
        assert np.max(np.abs(ref - ours)) < 1e-4  # dB; float32 rounding in librosa
        assert np.max(np.abs((ref + 40) / 40 - (ours + 40) / 40)) < 2e-6
    else:
        assert np.max(np.abs(ref - ours)) / np.max(ref) < 1e-6
