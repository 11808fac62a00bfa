"""Speaker clustering purity through the pipeline on one file joining real voices (LibriVox, Allison, ALSA)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mikupal.testing.config import compose_pipeline
from mikupal.testing.rundirs import drop_finish, forget_done


def purity(truth: list[str], predicted: list[str]) -> tuple[float, float]:
    """``(purity, inverse purity)``: the share of items in their cluster's majority speaker, and the share of items
    in their speaker's majority cluster (1.0 and 1.0 only for a perfect clustering)."""

    def majority_share(a: list[str], b: list[str]) -> float:
        groups: dict[str, Counter] = {}
        for x, y in zip(a, b):
            groups.setdefault(x, Counter())[y] += 1
        return sum(c.most_common(1)[0][1] for c in groups.values()) / len(a)

    return majority_share(predicted, truth), majority_share(truth, predicted)


def test_purity_measures_what_it_says():
    assert purity(["a", "a", "b"], ["x", "x", "y"]) == (1.0, 1.0)
    assert purity(["a", "a", "b", "b"], ["x", "x", "x", "x"]) == (0.5, 1.0)
    assert purity(["a", "a"], ["x", "y"]) == (1.0, 0.5)


@pytest.mark.slow
def test_clustering_purity_on_a_file_of_real_voices(tmp_path, voices):
    from mikupal.media import write_audio
    from mikupal.runner import run_pipeline
    from mikupal.testing.media import concat_with_silences
    from mikupal.testing.voices import interleave

    clips = interleave(voices)
    audio, spans = concat_with_silences([c.audio for c in clips], gap=1.2)
    source = tmp_path / "voices.wav"
    write_audio(source, audio)
    cfg = compose_pipeline(
        f"input={source}", f"run_dir={tmp_path / 'run'}", "stages=[extract,separate,vad,speakers,quality]",
        "separate=passthrough", "fail_fast=true",
    )
    summary = run_pipeline(cfg)
    utterances = [json.loads(line) for line in (tmp_path / "run" / "utterances.jsonl").read_text().splitlines()]
    assert summary["errors"] == 0 and len(utterances) >= len(clips) - 2

    def speaker_at(u) -> str:
        overlap = [max(0.0, min(u["end"], e) - max(u["start"], s)) for s, e in spans]
        return clips[int(np.argmax(overlap))].speaker

    embedded = [u for u in utterances if u["speaker"] is not None]
    truth, predicted = [speaker_at(u) for u in embedded], [u["speaker"]["id"] for u in embedded]
    p, inverse = purity(truth, predicted)
    assert p >= 0.95 and inverse >= 0.9, (p, inverse, list(zip(truth, predicted)))
    assert len(set(predicted)) == 3
    skipped = len(utterances) - len(embedded)
    assert summary["counters"].get("speakers.skipped.too_short", 0) == skipped <= 3  # short ALSA clips, counted
    assert all(u["quality"] is not None for u in utterances)
    assert np.mean([u["quality"]["dnsmos_ovrl"] for u in utterances]) > 2.7


def test_a_resumed_video_keeps_its_speaker_ids(tmp_path, voices):
    """Utterances finished before a kill and those done after it are clustered together: same ids as one run."""
    from mikupal.media import write_audio
    from mikupal.runner import run_pipeline
    from mikupal.testing.media import concat_with_silences
    from mikupal.testing.voices import interleave

    clips = interleave([c for c in voices if c.speaker != "alsa"])[:6]
    audio, _ = concat_with_silences([c.audio for c in clips], gap=1.2)
    source = tmp_path / "two.wav"
    write_audio(source, audio)
    run = tmp_path / "run"
    overrides = [f"input={source}", f"run_dir={run}", "stages=[extract,separate,vad,speakers]", "separate=passthrough",
                 "fail_fast=true"]
    run_pipeline(compose_pipeline(*overrides))
    first = (run / "utterances.jsonl").read_text()
    assert len({json.loads(line)["speaker"]["id"] for line in first.splitlines()}) == 2
    # as if killed after three utterances: the rest is redone, against the cached embeddings of the first three
    forget_done(run, "speakers", keep=3)
    for line in first.splitlines()[3:]:
        (run / "speakers" / "embeddings" / f"{json.loads(line)['id']}.npz").unlink()
    drop_finish(run)
    summary = run_pipeline(compose_pipeline(*overrides))
    assert summary["counters"]["speakers.embedded"] == 6
    assert (run / "utterances.jsonl").read_text() == first
