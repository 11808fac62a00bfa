"""RNNoise separator on real speech and real music."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.registry import ModelNotFoundError
from mikupal.separate.rnnoise import RnnoiseSeparator
from mikupal.testing.audio_eval import si_sdr


def test_keeps_rate_length_and_dtype(rnnoise, speech_set):
    clip = speech_set.clips[1].audio
    for rate, audio in ((16000, clip), (16000, clip[:1234]), (8000, clip[::2].copy())):
        out = rnnoise.separate(audio, rate)
        assert out.dtype == np.float32 and out.shape == audio.shape


def test_output_is_time_aligned_with_input(speech_set):
    """The two-frame RNNoise delay is compensated: plain output correlates best with the input at lag 0."""
    plain = RnnoiseSeparator(attenuation_limit_db=None)
    plain.setup()
    clip = speech_set.clips[0].audio
    out = plain.separate(clip, 16000)
    corr = {lag: float(np.dot(np.roll(out, lag), clip)) for lag in range(-8, 9)}
    assert max(corr, key=corr.get) == 0
    assert corr[0] / np.sqrt(np.dot(out, out) * np.dot(clip, clip)) > 0.9  # clean speech passes nearly unchanged


def test_improves_si_sdr_on_speech_over_music(rnnoise, speech_set, noisy_clips):
    before = np.mean([si_sdr(c.audio, n) for c, n in zip(speech_set.clips, noisy_clips)])
    after = np.mean([si_sdr(c.audio, rnnoise.separate(n, 16000)) for c, n in zip(speech_set.clips, noisy_clips)])
    assert before == pytest.approx(3.0, abs=0.3)  # the mix really is at 3 dB
    assert after > before + 2.0  # measured +3.4 dB with the default 10 dB attenuation limit


def test_attenuation_limit_bounds_the_suppression(speech_set, music_audio):
    """Music alone is attenuated by about the limit, never more; without a limit RNNoise removes far more."""
    music = music_audio[16000 * 20 : 16000 * 30] * 0.3
    limited, plain = RnnoiseSeparator(attenuation_limit_db=10.0), RnnoiseSeparator(attenuation_limit_db=None)
    limited.setup()
    plain.setup()
    level = lambda x: 10 * np.log10(np.mean(x.astype(np.float64) ** 2))
    drop_limited = level(music) - level(limited.separate(music, 16000))
    drop_plain = level(music) - level(plain.separate(music, 16000))
    assert 6.0 < drop_limited <= 10.5
    assert drop_plain > drop_limited + 3.0


def test_chunking_does_not_change_the_output(speech_set):
    whole, chunked = RnnoiseSeparator(chunk_seconds=600), RnnoiseSeparator(chunk_seconds=1.0)
    whole.setup()
    chunked.setup()
    audio = speech_set.audio[: 16000 * 8]
    np.testing.assert_array_equal(whole.separate(audio, 16000), chunked.separate(audio, 16000))


def test_segments_tile_the_recording_with_a_warm_up_before_each():
    rnn = RnnoiseSeparator(segment_seconds=15, warmup_seconds=1.0)
    assert rnn.segments(3300) == [(0, 0, 1500), (1400, 1500, 3000), (2900, 3000, 3300)]
    assert RnnoiseSeparator(segment_seconds=None).segments(3300) == [(0, 0, 3300)]


def test_segments_on_two_workers_give_the_one_worker_output_close_to_one_pass(speech_set, noisy_concat):
    """Segments on 2 threads = on 1 (``separate.workers`` is operational); the first segment is the one-pass output
    exactly, the rest differs by far less than the denoising does, and SI-SDR and the speech probability keep."""
    one_pass, serial, threaded = (
        RnnoiseSeparator(segment_seconds=None),
        RnnoiseSeparator(segment_seconds=15, workers=1),
        RnnoiseSeparator(segment_seconds=15, workers=2),
    )
    for rnn in (one_pass, serial, threaded):
        rnn.setup()
    assert len(noisy_concat) > 16000 * 30  # three segments
    (whole, p_whole), (seg, p_seg), (seg2, p_seg2) = (r.denoise(noisy_concat, 16000) for r in (one_pass, serial, threaded))
    np.testing.assert_array_equal(seg, seg2)
    np.testing.assert_array_equal(p_seg, p_seg2)
    first = 16000 * 14  # the first segment, short of the resampler's reach across its end
    np.testing.assert_array_equal(seg[:first], whole[:first])
    rel = np.sqrt(np.mean((seg - whole) ** 2) / np.mean(whole.astype(np.float64) ** 2))
    removed = np.sqrt(np.mean((noisy_concat - whole) ** 2) / np.mean(whole.astype(np.float64) ** 2))
    assert rel < 0.06 and removed > 0.5  # measured 3.0 % (-30 dB) here, against the denoiser's change of > 50 %
    assert np.mean(np.abs(p_seg - p_whole)) < 0.02
    sdr = [si_sdr(speech_set.audio, r.separate(noisy_concat, 16000)) for r in (one_pass, threaded)]
    assert sdr[1] == pytest.approx(sdr[0], abs=0.1)


def test_speech_probability_separates_speech_from_silence(rnnoise, speech_set):
    _, prob = rnnoise.denoise(speech_set.audio, 16000)
    t = np.arange(len(prob)) * 0.01
    inside = np.zeros(len(prob), bool)
    for s, e in speech_set.speech_intervals:
        inside |= (t >= s) & (t < e)
    assert prob[inside].mean() > 0.6 and prob[~inside].mean() < 0.1


def test_missing_library_and_bad_config_are_explained(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a registry name"):
        RnnoiseSeparator(model=str(tmp_path / "librnnoise.so")).setup()
    with pytest.raises(ValueError, match="attenuation_limit_db"):
        RnnoiseSeparator(attenuation_limit_db=0)
    with pytest.raises(ValueError, match="segment_seconds"):
        RnnoiseSeparator(segment_seconds=0)
    with pytest.raises(ValueError, match="workers"):
        RnnoiseSeparator(workers=0)
    with pytest.raises(RuntimeError, match="setup"):
        RnnoiseSeparator().separate(np.zeros(480, np.float32), 16000)
