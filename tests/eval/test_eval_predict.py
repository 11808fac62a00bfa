"""The MELD prediction driver (task=predict) against a fake annotator that follows the documented contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mikupal.testing.eval_suite as eval_helpers
from eval.cli import run
from eval.errors import EvalInputError
from mikupal.testing.eval_suite import compose_eval
from mikupal.manifest import iter_jsonl

ANNOTATOR = {"_target_": "mikupal.testing.eval_suite.KeywordAnnotator", "modalities": ["video", "audio", "text"], "rollouts": 1}


@pytest.fixture(autouse=True)
def _reset_fake():
    eval_helpers.CALLS.clear()
    eval_helpers.FAIL_IDS.clear()
    yield
    eval_helpers.CALLS.clear()
    eval_helpers.FAIL_IDS.clear()


def _cfg(meld_dev, tmp_path, *extra, annotator=ANNOTATOR):
    return compose_eval("task=predict", f"gold={meld_dev}", f"work_dir={tmp_path / 'work'}",
                        f"out={tmp_path / 'predict.json'}", "predict.annotate_fn=mikupal.testing.eval_suite.annotate_utterances",
                        "predict.limit=40", "bootstrap.n_resamples=100", *extra,
                        annotator=annotator)


def test_text_ablation_end_to_end(meld_dev, dev_gold, tmp_path):
    report = run(_cfg(meld_dev, tmp_path))
    text = report["ablations"]["text"]
    assert text["n"] == 40 and text["coverage"] == 1.0 and text["n_labelled"] == 40
    assert 0.0 < text["accuracy"] < 1.0
    (call,) = eval_helpers.CALLS
    assert len(call["ids"]) == 40 and call["ids"][0] == "dia0_utt0" and call["video_ids"][0] == "meld-dia0"
    assert call["modalities"] == ["text"] and call["annotator_modalities"] == ["text"] and call["labels"] == "meld7"
    assert call["texts"][0] == dev_gold.iloc[0]["text"]  # the MELD transcript, no ASR
    assert call["sources"][0] == "dia0_utt0.mp4" and call["audio"][0] == ""
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


def test_an_annotator_that_stops_midway_keeps_what_it_finished(meld_dev, tmp_path):
    cfg = _cfg(meld_dev, tmp_path, "predict.annotate_fn=mikupal.testing.eval_suite.annotate_then_crash")
    report = run(cfg)["ablations"]["text"]
    assert report["n_labelled"] == 10 and report["n_failed_this_run"] == 30
    errors = list(iter_jsonl(tmp_path / "work" / "text" / "errors.jsonl"))
    assert len(errors) == 30 and {e["error_type"] for e in errors} == {"ConnectionError"}


def _stage_annotator():
    pytest.importorskip("mikupal.annotate.stage", reason="the pipeline's annotate stage is not in this checkout")
    import mikupal.testing.fake_annotators as eval_stage_fakes

    eval_stage_fakes.REQUESTS.clear()
    return eval_stage_fakes, {"_target_": "mikupal.testing.fake_annotators.RecordingAnnotator",
                              "modalities": ["video", "audio", "text"], "rollouts": 3, "note": "x"}


def test_default_annotate_fn_runs_the_pipeline_annotate_stage_text_only(meld_dev, dev_gold, tmp_path):
    fakes, annotator = _stage_annotator()
    cfg = compose_eval("task=predict", f"gold={meld_dev}", f"work_dir={tmp_path / 'work'}", "predict.limit=12",
                       f"out={tmp_path / 'p.json'}", "bootstrap.n_resamples=50", annotator=annotator)
    report = run(cfg)["ablations"]["text"]
    assert report["n_labelled"] == 12 and report["coverage"] == 1.0
    assert [r[0] for r in fakes.REQUESTS] == dev_gold["id"].tolist()[:12]
    assert all(r[2] is None and r[3] is None and r[4] == ["text"] for r in fakes.REQUESTS)  # no media for text
    assert fakes.REQUESTS[0][1] == dev_gold.iloc[0]["text"]
    record = next(iter_jsonl(tmp_path / "work" / "text" / "utterances.jsonl"))
    assert record["emotion"]["annotator"] == "recording-v1" and len(record["emotion"]["votes"]) == 3


def test_default_annotate_fn_extracts_audio_and_needs_faces_for_video(meld_dev, tmp_path):
    fakes, annotator = _stage_annotator()
    from mikupal.media import read_audio
    from mikupal.testing.media import TestDataMissing, librivox_clips, write_video

    try:
        speech = librivox_clips()[0].audio[: 16000 * 2]
    except TestDataMissing as e:
        pytest.skip(str(e))
    clips = tmp_path / "clips"
    frame = np.full((64, 64, 3), 128, np.uint8)
    for name in ("dia0_utt0", "dia0_utt1"):
        write_video(clips / f"{name}.mp4", speech, 16000, lambda i, t: frame, duration=2.0, fps=10)
    cfg = compose_eval("task=predict", f"gold={meld_dev}", f"work_dir={tmp_path / 'work'}", "predict.limit=2",
                       f"clips={clips}", "predict.ablations=[audio,video]", f"out={tmp_path / 'p.json'}",
                       "bootstrap.n_resamples=50", annotator=annotator)
    report = run(cfg)["ablations"]
    assert report["audio"]["n_labelled"] == 2
    audio_requests = [r for r in fakes.REQUESTS if r[4] == ["audio"]]
    assert len(audio_requests) == 2 and audio_requests[0][2] == tmp_path / "work" / "audio" / "audio" / "dia0_utt0.flac"
    written = read_audio(audio_requests[0][2])
    assert abs(len(written) / 16000 - 2.0) < 0.1 and np.corrcoef(written[:16000], speech[:16000])[0, 1] > 0.9
    assert report["video"]["n_labelled"] == 0 and report["video"]["n_failed_this_run"] == 2
    errors = list(iter_jsonl(tmp_path / "work" / "video" / "errors.jsonl"))
    assert "faces and asd stages" in errors[0]["message"]


# ---------------------------------------------------------------------------------------------- issue 16
def annotate_with_counters(utterances, *, annotator_cfg, labels, modalities, work_dir, cfg):
    """Like ``eval_helpers.annotate_utterances`` but yields each item's annotate.* counters too (as the stage does)."""
    for utt, result in eval_helpers.annotate_utterances(utterances, annotator_cfg=annotator_cfg, labels=labels,
                                                        modalities=modalities, work_dir=work_dir, cfg=cfg):
        failed = isinstance(result, Exception)
        yield utt, result, {"annotate.requests": 3 if failed else 1, "annotate.retries": 2 if failed else 0,
                            "annotate.input_tokens": 100, "annotate.output_tokens": 0 if failed else 20,
                            "annotate.cost_usd": 0.001}


def test_the_report_counts_requests_tokens_retries_and_wall_time(meld_dev, tmp_path):
    from eval.predict import incomplete

    eval_helpers.FAIL_IDS.update({"dia0_utt1", "dia1_utt2"})
    report = run(_cfg(meld_dev, tmp_path, "predict.annotate_fn=test_eval_predict.annotate_with_counters"))
    text = report["ablations"]["text"]
    assert text["counters"] == {"annotate.cost_usd": 0.04, "annotate.input_tokens": 4000,
                                "annotate.output_tokens": 38 * 20, "annotate.requests": 38 + 2 * 3,
                                "annotate.retries": 4}
    assert report["counters"] == text["counters"] and report["cost_usd"] == 0.04
    assert text["n_attempted"] == 40 and text["stopped"] is None
    assert text["wall_time_s"] > 0 and text["s_per_item"] == pytest.approx(text["wall_time_s"] / 40, abs=1e-3)
    assert incomplete(report) is None  # some items failed, not all: a success with errors
    # a rerun attempts only the two failed items; the counters are this invocation's
    eval_helpers.FAIL_IDS.clear()
    again = run(_cfg(meld_dev, tmp_path, "predict.annotate_fn=test_eval_predict.annotate_with_counters"))
    assert again["ablations"]["text"]["n_attempted"] == 2 and again["counters"]["annotate.requests"] == 2


def test_a_stop_or_an_all_failed_ablation_is_incomplete_with_the_count(meld_dev, tmp_path):
    from eval.cli import incomplete

    stopped = run(_cfg(meld_dev, tmp_path, "predict.annotate_fn=mikupal.testing.eval_suite.annotate_then_crash"))
    problem = incomplete("predict", stopped)
    assert "ablation text stopped with 30 of 40 item(s) not labelled (ConnectionError: connection lost)" in problem
    assert problem.count("rerun") == 1
    eval_helpers.FAIL_IDS.update(f"dia{d}_utt{u}" for d in range(40) for u in range(40))
    failed = run(_cfg(meld_dev, tmp_path / "b"))
    assert "every item failed (40 of 40)" in incomplete("predict", failed)


def test_mikupal_eval_exits_1_after_a_stop(meld_dev, tmp_path, monkeypatch, capsys):
    import logging
    import sys

    from hydra.core.global_hydra import GlobalHydra

    from eval.cli import main

    root = logging.getLogger()  # the Hydra app configures logging; give the next tests theirs back
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)

    GlobalHydra.instance().clear()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "mikupal-eval", "task=predict", f"gold={meld_dev}", f"work_dir={tmp_path / 'work'}",
        f"out={tmp_path / 'predict.json'}", "predict.limit=12", "bootstrap.n_resamples=20",
        "predict.annotate_fn=mikupal.testing.eval_suite.annotate_then_crash", "+annotator._target_=mikupal.testing.eval_suite.KeywordAnnotator",
        "+annotator.modalities=[text]"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    report = json.loads((tmp_path / "predict.json").read_text())  # the report is still written
    assert report["ablations"]["text"]["n_labelled"] == 10 and report["ablations"]["text"]["stopped"]
    assert "did not finish: ablation text stopped with 2 of 12 item(s) not labelled" in capsys.readouterr().err
