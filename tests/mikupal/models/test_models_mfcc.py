"""TalkNet's MFCC features (mikupal.models.mfcc): closed-form properties and pinned reference values.

python_speech_features is not a dependency; the pinned numbers below were computed with
``python_speech_features.mfcc(x, 16000, numcep=13, winlen=0.025, winstep=0.010)`` (version 0.6), which our
implementation matched to 0.0 max abs difference on all five LibriVox files of pocketsphinx-testdata.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mikupal.models.mfcc import EPS, mel_filterbank, mfcc, num_frames, talknet_mfcc

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")


def _chirp() -> np.ndarray:
    t = np.arange(1600) / 16000
    return (8000 * np.sin(2 * np.pi * (200 * t + 900 * t**2))).astype(np.int16)


@pytest.mark.parametrize("n", [1, 399, 400, 401, 560, 561, 16000, 160_000])
def test_frame_count_is_100_hz_with_zero_padded_last_frame(n):
    expected = 1 if n <= 400 else 1 + math.ceil((n - 400) / 160)
    assert num_frames(n) == expected
    x = np.random.default_rng(n).normal(0, 1000, n)
    assert mfcc(x).shape == (expected, 13)


def test_ten_seconds_give_about_1000_frames():
    # 1 + ceil((160000 - 400) / 160) = 999: one frame short of 100 per second, as TalkNet's features are.
    assert num_frames(160_000) == 999


def test_silence_gives_log_eps_energy_and_zero_cepstrum():
    out = mfcc(np.zeros(4000, np.int16))
    # every band energy is floored to eps: log-energies are constant, so the DCT puts everything into c0,
    # which is then replaced by log(frame energy) = log(eps).
    np.testing.assert_allclose(out[:, 0], math.log(EPS))
    np.testing.assert_allclose(out[:, 1:], 0.0, atol=1e-12)


def test_gain_only_shifts_c0_by_twice_log_gain():
    x = np.random.default_rng(0).normal(0, 1000, 8000)
    base, louder = mfcc(x), mfcc(10.0 * x)
    np.testing.assert_allclose(louder[:, 0] - base[:, 0], 2 * math.log(10.0), atol=1e-9)
    np.testing.assert_allclose(louder[:, 1:], base[:, 1:], atol=1e-9)


def test_mel_filters_are_triangles_that_sum_to_one_between_first_and_last_centre():
    bank = mel_filterbank()
    assert bank.shape == (26, 257)
    assert (bank >= 0).all() and np.isclose(bank.max(axis=1), 1.0).all()
    # edges for 26 filters, 512-point FFT, 16 kHz: floor(513 f / 16000) at mel-spaced f (2nd and 27th edge)
    np.testing.assert_allclose(bank.sum(axis=0)[2:231], 1.0)
    # outside: the first filter rises from 0 at bin 0, the last falls to 0 at bin 256 (its right edge)
    assert bank[:, 0].sum() == 0 and bank[:, 256].sum() == 0
    assert (np.diff(bank[-1, 231:]) < 0).all() and (np.diff(bank[0, :3]) > 0).all()


def test_matches_pinned_python_speech_features_values():
    out = mfcc(_chirp(), 16000)
    assert out.shape == (9, 13)
    # fmt: off
    pinned = {
        0: [17.796762843728114, 21.732921489186353, 12.315934913953349, 6.152160307065574, -0.2900349732904465,
            -7.561291701228581, -13.748837386344249, -19.863049309292816, -23.42846597004428, -25.16054695700494,
            -23.34985625842681, -20.42763181228369, -16.069286891731117],
        3: [18.195037010186127, 31.222412462499122, 20.929680574530455, 10.794217560064286, 0.13888488701389398,
            -10.459238997175685, -17.90736802190075, -23.036689068655072, -23.70011400992117, -21.032209524663084,
            -14.625686209420541, -8.003271590714135, -1.3103631086235212],
        7: [18.634288944237657, 24.18975613261532, 11.58744671993777, -0.37850742695458145, -12.300203519630323,
            -22.344000032171344, -26.742523389529385, -26.278511033704312, -20.263860682705484, -10.983851185345404,
            -0.3687516455442221, 7.928508233658111, 12.682011873873247],
    }
    # fmt: on
    for row, values in pinned.items():
        np.testing.assert_allclose(out[row], values, rtol=0, atol=1e-9)


@pytest.mark.skipif(not LIBRIVOX.exists(), reason="Debian pocketsphinx-testdata not installed")
def test_real_speech_matches_pinned_reference_statistics():
    from scipy.io import wavfile

    rate, audio = wavfile.read(LIBRIVOX)
    out = talknet_mfcc(audio, rate)
    assert out.shape == (298, 13)
    # fmt: off
    np.testing.assert_allclose(
        out.mean(axis=0),
        [15.52545255173737, -0.7377435248285206, -9.551267156376278, 21.887464463511304, -23.762822274382213,
         10.92145057535784, 0.8505059388787615, -7.4069676570349685, 8.291046147076708, 8.018646284860687,
         -3.720239814747246, 3.2057951291452906, -8.319464971135256],
        atol=1e-9,
    )
    # fmt: on


def test_talknet_mfcc_float_input_is_rescaled_to_int16_scale():
    x = _chirp()
    np.testing.assert_array_equal(talknet_mfcc(x.astype(np.float32) / 32768), mfcc(x))
    np.testing.assert_array_equal(talknet_mfcc(x[:, None]), mfcc(x))


def test_talknet_mfcc_refuses_other_rates_and_bad_shapes():
    with pytest.raises(ValueError, match="16 kHz"):
        talknet_mfcc(np.zeros(4410), 44100)
    with pytest.raises(ValueError, match="1-D"):
        mfcc(np.zeros((100, 2)))
    with pytest.raises(ValueError):
        mfcc(np.zeros(0))
