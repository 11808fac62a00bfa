"""DNSMOS: the reference's numbers, every window scored, clean vs music on real audio, bad input, filter rules."""

from __future__ import annotations

import numpy as np
import pytest

from mikupal.quality.dnsmos import WINDOW, reference_windows, window_starts
from mikupal.quality.stage import QualityStage
from mikupal.records import Quality, Speaker, Utterance
from mikupal.testing.speakers import make_utterances, run_stage

RATE = 16000


def test_windows_cover_every_sample_where_the_reference_drops_some():
    n = 60 * RATE
    ours = window_starts(n, WINDOW, RATE)  # the reference's 1 s hop
    assert len(ours) == 52 and ours[-1] + WINDOW == n  # 51 hops + one aligned to the end
    assert all(b - a <= RATE for a, b in zip(ours, ours[1:]))
    assert len(reference_windows(np.zeros(n, np.float32) + 0.01)) == 34  # 17 of its 51 windows come out 1 sample short
    plain = window_starts(n, WINDOW, WINDOW)  # default: non-overlapping, last one aligned to the end
    assert plain == [0, WINDOW, 2 * WINDOW, 3 * WINDOW, 4 * WINDOW, 5 * WINDOW, n - WINDOW]
    assert window_starts(WINDOW) == [0]


def test_reproduces_speechmos_on_its_own_windows(dnsmos, librivox, music_audio):
    """Our front end + inference on the reference's windows give speechmos.dnsmos.run's scores (about 1e-6)."""
    pytest.importorskip("librosa")
    pytest.importorskip("requests")
    from speechmos import dnsmos as reference

    from mikupal.testing.audio_eval import mix_music

    long = np.concatenate([c.audio for c in librivox])  # 24.7 s: the reference keeps 7 of its 15 windows
    for audio in (librivox[1].audio, mix_music(librivox[0].audio, music_audio, 3.0), long):
        ref = reference.run(audio, RATE)
        ours = dnsmos.score_windows(reference_windows(audio)).mean(axis=0)
        expected = [ref["sig_mos"], ref["bak_mos"], ref["ovrl_mos"], ref["p808_mos"]]
        np.testing.assert_allclose(ours, expected, atol=2e-6)


def test_clean_speech_scores_high_and_music_mixed_low(dnsmos, librivox, music_audio):
    from mikupal.testing.audio_eval import mix_music

    offsets = (5.0, 35.0, 65.0, 95.0, 125.0)
    clean = [dnsmos.score(c.audio, RATE) for c in librivox]
    mixed = [dnsmos.score(mix_music(c.audio, music_audio, 3.0, offset=o), RATE) for c, o in zip(librivox, offsets)]
    clean_ovrl, mixed_ovrl = np.array([q.dnsmos_ovrl for q in clean]), np.array([q.dnsmos_ovrl for q in mixed])
    assert 2.9 < clean_ovrl.mean() < 3.4 and mixed_ovrl.mean() < 1.8
    assert clean_ovrl.min() > mixed_ovrl.max()
    assert np.mean([q.dnsmos_bak for q in clean]) > np.mean([q.dnsmos_bak for q in mixed]) + 1.5
    assert all(q.dnsmos_windows == 1 for q in clean)  # clips < 9.01 s are repeated to fill one window


def test_stage_scores_utterances_and_gives_null_with_a_reason_for_bad_input(tmp_path, librivox):
    clips = [librivox[0].audio, librivox[0].audio[: int(0.6 * RATE)], np.zeros(3 * RATE, np.float32)]
    items = make_utterances(tmp_path, "q-0000abcd", clips)
    results, counts = run_stage(QualityStage, tmp_path, items, "stages=[extract,quality]")
    assert list(results) == [u.id for u in items]  # nothing lost or dropped
    good, short, silent = (results[u.id][0] for u in items)
    assert good.quality.dnsmos_ovrl > 2.9 and good.quality.dnsmos_windows == 1
    assert counts[items[0].id] == {"quality.scored": 1, "quality.windows": 1}
    assert short.quality is None and counts[items[1].id] == {"quality.skipped.too_short": 1}
    assert silent.quality is None and counts[items[2].id] == {"quality.skipped.silent": 1}


# ---------------------------------------------------------------------------------------------------- filter rules
def _utt(uid: str, ovrl: float | None, n_speakers: int | None) -> Utterance:
    return Utterance(
        uid, "v-1", "v.mp4", 0.0, 3.0, f"audio/{uid}.flac", text="hello there",
        quality=None if ovrl is None else Quality(3.5, 3.5, ovrl, 3.5, 1),
        speaker=None if n_speakers is None else Speaker("v-1-spk0", 0.9, n_speakers),
    )


def test_filter_rules_on_quality_and_speakers(tmp_path):
    from mikupal.filter import FilterStage
    from mikupal.testing.config import compose_pipeline

    def checker(*overrides):
        stage = FilterStage(compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", *overrides))
        stage.setup(None)
        return stage.check

    default = checker()
    assert default(_utt("a", 1.1, 3)) is None  # both rules are off by default
    check = checker("filter.min_dnsmos_ovrl=3.0", "filter.max_speakers_per_utterance=1")
    assert check(_utt("a", 3.2, 1)) is None
    assert check(_utt("b", 2.99, 1)) == "low_dnsmos_ovrl"
    assert check(_utt("c", 3.2, 2)) == "too_many_speakers"
    assert check(_utt("d", None, None)) is None  # no score: the rule does not apply


def test_worker_threads_change_neither_scores_nor_the_config_hash(tmp_path, librivox):
    clips = [c.audio for c in librivox[:3]] + [np.zeros(2 * RATE, np.float32)]
    runs = []
    for workers in (1, 2):
        run_dir = tmp_path / f"w{workers}"
        items = make_utterances(run_dir, "q-0000abcd", clips)
        runs.append(run_stage(QualityStage, run_dir, items, "stages=[extract,quality]", f"quality.workers={workers}"))
    (one, one_counts), (two, two_counts) = runs
    assert [r[0].quality for r in one.values()] == [r[0].quality for r in two.values()]
    assert list(one) == list(two) and one_counts == two_counts

    from mikupal.testing.config import compose_pipeline

    def config(workers: int) -> dict:
        cfg = compose_pipeline(f"input={tmp_path}", f"run_dir={tmp_path}", f"quality.workers={workers}")
        return QualityStage(cfg).stage_config()

    assert config(1) == config(2) and "workers" not in config(1)["quality"]
