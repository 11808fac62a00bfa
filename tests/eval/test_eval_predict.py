"""The MELD prediction driver (task=predict) against a fake annotator that follows the documented contract."""

from __future__ import annotations

import json

import pytest

import eval_helpers
from eval.cli import run
from eval.errors import EvalInputError
from eval_helpers import compose_eval
from mikupal.manifest import iter_jsonl

ANNOTATOR = {"_target_": "eval_helpers.KeywordAnnotator", "modalities": ["video", "audio", "text"], "rollouts": 1}


@pytest.fixture(autouse=True)
def _reset_fake():
    eval_helpers.CALLS.clear()
    eval_helpers.FAIL_IDS.clear()
    yield
    eval_helpers.CALLS.clear()
    eval_helpers.FAIL_IDS.clear()


def _cfg(meld_dev, tmp_path, *extra, annotator=ANNOTATOR):
    return compose_eval("task=predict", f"gold={meld_dev}", f"work_dir={tmp_path / 'work'}",
                        f"out={tmp_path / 'predict.json'}", "predict.annotate_fn=eval_helpers.annotate_utterances",
                        "predict.limit=40", "predict.chunk_size=8", "bootstrap.n_resamples=100", *extra,
                        annotator=annotator)


def test_text_ablation_end_to_end(meld_dev, dev_gold, tmp_path):
    report = run(_cfg(meld_dev, tmp_path))
    text = report["ablations"]["text"]
    assert text["n"] == 40 and text["coverage"] == 1.0 and text["n_labelled"] == 40
    assert 0.0 < text["accuracy"] < 1.0
    calls = eval_helpers.CALLS
    assert [len(c["ids"]) for c in calls] == [8] * 5
    assert all(c["modalities"] == ["text"] and c["annotator_modalities"] == ["text"] for c in calls)
    assert all(c["labels"] == "meld7" for c in calls)
    first = calls[0]
    assert first["ids"][0] == "dia0_utt0" and first["video_ids"][0] == "meld-dia0"
    assert first["texts"][0] == dev_gold.iloc[0]["text"]  # the MELD transcript, no ASR
    assert first["sources"][0] == "dia0_utt0.mp4"
    # the ablation folder is a run directory of Utterance records
    records = list(iter_jsonl(tmp_path / "work" / "text" / "utterances.jsonl"))
    assert len(records) == 40 and records[0]["emotion"]["annotator"] == "keyword-a"
    assert json.loads((tmp_path / "predict.json").read_text())["ablations"]["text"]["accuracy"] == text["accuracy"]


def test_failed_items_are_recorded_and_retried_on_rerun(meld_dev, tmp_path):
    eval_helpers.FAIL_IDS.update({"dia0_utt1", "dia1_utt2"})
    first = run(_cfg(meld_dev, tmp_path))["ablations"]["text"]
    assert first["n_labelled"] == 38 and first["n_failed_this_run"] == 2 and first["coverage"] == pytest.approx(38 / 40)
    errors = list(iter_jsonl(tmp_path / "work" / "text" / "errors.jsonl"))
    assert {e["item_id"] for e in errors} == {"dia0_utt1", "dia1_utt2"}
    eval_helpers.FAIL_IDS.clear()
    eval_helpers.CALLS.clear()
    second = run(_cfg(meld_dev, tmp_path))["ablations"]["text"]
    assert [c["ids"] for c in eval_helpers.CALLS] == [["dia0_utt1", "dia1_utt2"]]  # only the failed ones
    assert second["n_labelled"] == 40 and second["n_resumed"] == 38 and second["coverage"] == 1.0
    assert list(iter_jsonl(tmp_path / "work" / "text" / "errors.jsonl")) == []


def test_resume_after_a_partial_run_does_only_the_rest(meld_dev, tmp_path):
    run(_cfg(meld_dev, tmp_path, "predict.limit=16"))
    eval_helpers.CALLS.clear()
    run(_cfg(meld_dev, tmp_path))
    done_now = [i for c in eval_helpers.CALLS for i in c["ids"]]
    assert len(done_now) == 24 and "dia0_utt0" not in done_now


def test_changed_annotator_config_is_refused_unless_recompute(meld_dev, tmp_path):
    run(_cfg(meld_dev, tmp_path))
    changed = {**ANNOTATOR, "tag": "b"}
    with pytest.raises(EvalInputError, match="recompute=true"):
        run(_cfg(meld_dev, tmp_path, annotator=changed))
    report = run(_cfg(meld_dev, tmp_path, "recompute=true", annotator=changed))
    records = list(iter_jsonl(tmp_path / "work" / "text" / "utterances.jsonl"))
    assert report["ablations"]["text"]["n_labelled"] == 40
    assert {r["emotion"]["annotator"] for r in records} == {"keyword-b"}


def test_media_ablations_need_clips_and_record_missing_ones(meld_dev, tmp_path):
    with pytest.raises(EvalInputError, match="clips="):
        run(_cfg(meld_dev, tmp_path, "predict.ablations=[audio]"))
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("dia0_utt0", "dia0_utt1", "dia1_utt0"):
        (clips / f"{name}.mp4").write_bytes(b"stand-in")
    report = run(_cfg(meld_dev, tmp_path, "predict.ablations=[audio,all]", f"clips={clips}"))
    for name, mods in (("audio", ["audio"]), ("all", ["video", "audio", "text"])):
        r = report["ablations"][name]
        assert r["n_labelled"] == 3 and r["n_failed_this_run"] == 37 and r["modalities"] == mods
        errors = list(iter_jsonl(tmp_path / "work" / name / "errors.jsonl"))
        assert len(errors) == 37 and errors[0]["error_type"] == "FileNotFoundError"
    assert eval_helpers.CALLS[0]["sources"][0] == str(clips / "dia0_utt0.mp4")


def test_missing_annotator_or_annotate_function_is_a_clear_error(meld_dev, tmp_path):
    with pytest.raises(EvalInputError, match="annotator="):
        run(compose_eval("task=predict", f"gold={meld_dev}", f"work_dir={tmp_path}", f"out={tmp_path / 'p.json'}"))
    with pytest.raises(EvalInputError, match="cannot be imported"):
        run(_cfg(meld_dev, tmp_path, "predict.annotate_fn=no_such_module.annotate"))
