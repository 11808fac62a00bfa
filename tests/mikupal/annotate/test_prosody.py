"""The prosody measurements module (moved out of the fusion annotator, issue 14.4)."""

from __future__ import annotations

import numpy as np

from mikupal.annotate import fusion, prosody


def test_fusion_reads_prosody_from_its_own_module():
    assert fusion.prosody_features is prosody.prosody_features
    assert fusion.yin_pitch is prosody.yin_pitch
    assert fusion.ProsodyFeatures is prosody.ProsodyFeatures


def test_count_words_counts_contractions_as_one_word():
    assert prosody.count_words("Don't stop, it's fine.") == 4
    assert prosody.count_words("  ") == 0


def test_speaking_rate_uses_the_span_of_the_words():
    sr = 16000
    t = np.arange(2 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    over_audio = prosody.prosody_features(tone, sr, n_words=4)
    over_span = prosody.prosody_features(tone, sr, n_words=4, speech_seconds=1.0)
    assert over_audio.speaking_rate == 2.0 and over_span.speaking_rate == 4.0
    assert abs(over_audio.f0_median - 150.0) < 2.0
    assert over_audio.voiced_fraction > 0.9
