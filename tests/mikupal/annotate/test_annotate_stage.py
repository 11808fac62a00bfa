"""The annotate stage through the real runner (Hydra config, resume, summary) against a Gemini stub."""

from __future__ import annotations

import json
import logging

import pytest

from mikupal.manifest import iter_jsonl
from mikupal.runner import ConfigChangedError, run_pipeline
from mikupal.testing.annotate import SECRET, all_text_under, compose, stub_overrides
from mikupal.testing.servers import GeminiStub, StubReply, answer_json, gemini_error

TEXTS = ["so much joy today", "this is anger", "pure sadness", "I feel fear", "nothing special, neutral",
         "what a surprise"]
EXPECTED = ["joy", "anger", "sadness", "fear", "neutral", "surprise"]


@pytest.fixture
def stub():
    with GeminiStub(max_lifetime=120) as server:
        yield server


def emotions(run_dir):
    return {o["id"]: o["emotion"] for o in iter_jsonl(run_dir / "utterances.jsonl")}


def test_pipeline_annotates_with_rollouts_votes_counters_and_a_free_rerun(stub, seeded_run, caplog):
    run_dir, source, utterances = seeded_run(TEXTS, faces=[True, False, True, True, False, True])
    cfg = compose(stub_overrides(run_dir, source, stub.url, ["annotator.rollouts=3", "annotator.max_in_flight=4"]))
    with caplog.at_level(logging.DEBUG):
        summary = run_pipeline(cfg)
    assert summary["complete"] and summary["errors"] == 0 and summary["utterances_out"] == 6
    got = emotions(run_dir)
    assert [got[u.id]["label"] for u in utterances] == EXPECTED
    for u in utterances:
        e = got[u.id]
        assert e["votes"] == [e["label"]] * 3
        assert e["annotator"] == "gemini-2.0-flash-001" and e["prompt_version"] == "miku_pal_v2"
        assert 0 <= e["intensity"] <= 1 and e["rationale"]
    assert len(stub.generate_requests) == 18
    seeds = sorted(r.json["generationConfig"]["seed"] for r in stub.generate_requests)
    assert seeds == [0] * 6 + [1] * 6 + [2] * 6
    counters = summary["counters"]
    assert counters["annotate.requests"] == 18 and counters["annotate.cache_hits"] == 0
    assert counters["annotate.input_tokens"] > 0 and counters["annotate.output_tokens"] > 0
    assert summary["cost_usd"] == pytest.approx(counters["annotate.cost_usd"]) and summary["cost_usd"] > 0
    # utterances without a face sent their audio; the others the clip
    by_text = {}
    for r in stub.generate_requests:
        by_text.setdefault(r.first_user_text, set()).update(m for m, _ in stub.inline_parts(r))
    assert by_text[next(t for t in by_text if "this is anger" in t)] == {"audio/flac"}
    assert by_text[next(t for t in by_text if "so much joy" in t)] == {"video/mp4"}
    # stage.json and the whole run directory hold the key's variable name at most, never the key
    stage_json = json.loads((run_dir / "annotate" / "stage.json").read_text())
    assert stage_json["config"]["annotator"]["model"] == "gemini-2.0-flash"
    assert SECRET not in all_text_under(run_dir) and SECRET not in caplog.text
    # rerun: resume, nothing to do
    assert run_pipeline(cfg)["utterances_out"] == 6
    assert len(stub.generate_requests) == 18
    # recompute the stage: every answer comes from the cache, zero requests
    again = run_pipeline(compose(stub_overrides(run_dir, source, stub.url,
                                                ["annotator.rollouts=3", "recompute=[annotate]"])))
    assert len(stub.generate_requests) == 18
    assert again["counters"]["annotate.cache_hits"] == 18 and again["cost_usd"] == 0
    assert emotions(run_dir) == got


def test_context_utterances_show_preceding_transcripts(stub, seeded_run):
    run_dir, source, _ = seeded_run(TEXTS[:4])
    run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.context_utterances=2"])))
    last = next(r for r in stub.generate_requests if "I feel fear" in r.first_user_text)
    text = last.first_user_text
    assert "Preceding utterances" in text
    assert text.index("this is anger") < text.index("pure sadness") < text.index("I feel fear")
    assert "so much joy" not in text  # only the two preceding ones
    first = next(r for r in stub.generate_requests
                 if '"so much joy today"' in r.first_user_text.split("Transcript")[-1])
    assert "Preceding utterances" not in first.first_user_text


def test_max_cost_stops_cleanly_and_a_rerun_resumes_without_paying_twice(stub, seeded_run):
    run_dir, source, utterances = seeded_run(TEXTS)
    # each request costs (1e6 * 0.10 + 0) / 1e6 = $0.10 with these token counts
    stub.responder = lambda req, i: StubReply(text=answer_json(req.label_enum[0]), input_tokens=1_000_000,
                                              output_tokens=0)
    extra = ["annotator.max_in_flight=1", "annotator.max_cost=0.25"]
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url, extra)))
    assert summary["stopped"] and "max_cost" in summary["stopped"] and not summary["complete"]
    done = summary["stages"]["annotate"]["items_done"]
    assert done == 3 and len(stub.generate_requests) == 3  # stopped once $0.30 >= $0.25
    assert summary["cost_usd"] == pytest.approx(0.30)
    assert not (run_dir / "utterances.jsonl").exists()
    # resume with a budget for the rest: only the 3 remaining utterances are asked
    extra = ["annotator.max_in_flight=3", "annotator.max_cost=10"]
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url, extra)))
    assert summary["complete"] and summary["utterances_out"] == 6
    assert len(stub.generate_requests) == 6
    asked = [r.first_user_text for r in stub.generate_requests]
    assert all(sum(t in a for a in asked) == 1 for t in TEXTS)  # every utterance asked exactly once
    assert summary["cost_usd"] == pytest.approx(0.60)


def test_max_cost_with_concurrency_stops_and_loses_nothing(stub, seeded_run):
    run_dir, source, utterances = seeded_run(TEXTS + [t + " again" for t in TEXTS])  # distinct: no cache hits
    stub.responder = lambda req, i: StubReply(text=answer_json(req.label_enum[0]), input_tokens=1_000_000,
                                              output_tokens=0)
    stub.latency = 0.05
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url,
                                                  ["annotator.max_in_flight=3", "annotator.max_cost=0.45"])))
    assert summary["stopped"]
    done = summary["stages"]["annotate"]["items_done"]
    assert 5 <= done <= 7  # the budget is hit after 5 answers; up to 2 requests in flight still finish
    assert len(stub.generate_requests) == done  # nothing paid for was dropped
    assert summary["cost_usd"] == pytest.approx(0.1 * done)
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.max_in_flight=3"])))
    assert summary["complete"] and summary["utterances_out"] == 12 and len(stub.generate_requests) == 12


def test_max_cost_needs_a_price(stub, seeded_run):
    run_dir, source, _ = seeded_run(TEXTS[:1])
    cfg = compose(stub_overrides(run_dir, source, stub.url, ["annotator.max_cost=1", "annotator.model=mystery-model"]))
    with pytest.raises(ValueError, match="needs a price for model 'mystery-model'"):
        run_pipeline(cfg)
    assert stub.generate_requests == []


def test_invalid_replies_become_item_errors_and_others_complete(stub, seeded_run):
    run_dir, source, utterances = seeded_run(TEXTS[:3])

    def responder(req, i):
        if "this is anger" in req.first_user_text:
            return StubReply(text=answer_json("rage-quit"))  # never valid
        return StubReply(text=answer_json("joy"))

    stub.responder = responder
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.max_in_flight=2"])))
    assert summary["errors"] == 1 and summary["stages"]["annotate"]["items_done"] == 2
    (error,) = list(iter_jsonl(run_dir / "errors.jsonl"))
    assert error["stage"] == "annotate" and error["item_id"] == utterances[1].id
    assert "rage-quit" in error["message"] and error["error_type"] == "AnnotationError"
    assert summary["utterances_out"] is not None  # the shard finished; failed items are retried on the next run
    stub.responder = lambda req, i: StubReply(text=answer_json("anger"))
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url)))
    assert summary["errors"] == 0 and emotions(run_dir)[utterances[1].id]["label"] == "anger"


def test_bad_key_stops_the_stage_instead_of_failing_every_item(stub, seeded_run):
    run_dir, source, _ = seeded_run(TEXTS)
    stub.responder = lambda req, i: StubReply(status=403, body=gemini_error(403, "PERMISSION_DENIED", "no access"))
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.max_in_flight=2"])))
    assert summary["stopped"] and "403" in summary["stopped"]
    assert len(stub.generate_requests) <= 4  # at most the requests already started or queued
    assert SECRET not in summary["stopped"]


def test_operational_keys_do_not_block_resume_but_the_model_does(stub, seeded_run):
    run_dir, source, _ = seeded_run(TEXTS[:2])
    run_pipeline(compose(stub_overrides(run_dir, source, stub.url)))
    relaxed = ["annotator.max_in_flight=2", "annotator.max_cost=5", "annotator.timeout=9",
               "annotator.requests_per_minute=10", "annotator.inline_max_bytes=10"]
    assert run_pipeline(compose(stub_overrides(run_dir, source, stub.url, relaxed)))["complete"]
    with pytest.raises(ConfigChangedError, match="annotate"):
        run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.model=gemini-2.5-flash"])))
    with pytest.raises(ConfigChangedError, match="annotate"):
        run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.modalities=[text]"])))


def test_requests_in_flight_reach_but_never_exceed_the_setting(stub, seeded_run):
    run_dir, source, _ = seeded_run([f"utterance {i}" for i in range(12)])
    stub.latency = 0.2
    summary = run_pipeline(compose(stub_overrides(run_dir, source, stub.url, ["annotator.max_in_flight=4"])))
    assert summary["utterances_out"] == 12 and len(stub.generate_requests) == 12
    assert stub.max_in_flight == 4


def test_stage_driven_directly_without_prompt_or_stages_keys(stub, tmp_path):
    """How eval drives the stage: a hand-built config (no ``prompt``, no ``stages``), text-only MELD-style items."""
    import yaml
    from mikupal.testing.annotate import FAST_RETRY, KEY_ENV
    from omegaconf import OmegaConf

    from mikupal.annotate.stage import AnnotateStage
    from mikupal.paths import conf_dir
    from mikupal.records import Utterance
    from mikupal.stage import StageContext

    annotator = yaml.safe_load((conf_dir() / "annotator" / "gemini.yaml").read_text())
    annotator.update(base_url=stub.url, api_key_env=KEY_ENV, retry=FAST_RETRY, modalities=["text"],
                     context_utterances=1, max_in_flight=4)
    cfg = OmegaConf.create({"annotator": annotator, "prompt": None, "fail_fast": False,
                            "labels": yaml.safe_load((conf_dir() / "labels" / "meld7.yaml").read_text())})
    items = [Utterance(id=f"dia1_utt{u}", video_id="meld-dia1", source=f"dia1_utt{u}.mp4", start=0.0, end=1.0,
                       audio="", text=f"line {u}", language="en") for u in range(12)]
    stage = AnnotateStage(cfg)
    ctx = StageContext(run_dir=tmp_path, rank=0, world_size=1, cfg=cfg)
    stage.setup(ctx)
    try:
        results = {item.id: result for item, result, _ in stage.map(items, ctx)}
    finally:
        stage.teardown()
    assert len(results) == 12 and all(isinstance(r, list) for r in results.values())
    assert results["dia1_utt3"][0].emotion.prompt_version == "miku_pal_v2"
    sent = next(r for r in stub.generate_requests if 'en): "line 10"' in r.first_user_text)
    assert '- "line 9"' in sent.first_user_text  # natural order: utt9 precedes utt10 (not utt1)
    assert stub.inline_parts(sent) == []  # text only: no media, and no audio file was needed


def test_stage_setup_prepares_the_backend_for_its_label_set_before_any_request(tmp_path):
    """Label-set work (fusion's text prototypes) happens in setup, which runner.prefetch runs in the background."""
    import yaml
    from omegaconf import OmegaConf

    import mikupal.testing.fake_annotators as fakes
    from mikupal.annotate.stage import AnnotateStage
    from mikupal.paths import conf_dir
    from mikupal.stage import StageContext

    fakes.REQUESTS.clear()
    fakes.PREPARED.clear()
    cfg = OmegaConf.create({"annotator": {"_target_": "mikupal.testing.fake_annotators.RecordingAnnotator",
                                          "modalities": ["text"]},
                            "prompt": None, "fail_fast": False,
                            "labels": yaml.safe_load((conf_dir() / "labels" / "meld7.yaml").read_text())})
    stage = AnnotateStage(cfg)
    stage.setup(StageContext(run_dir=tmp_path, rank=0, world_size=1, cfg=cfg))
    stage.teardown()
    assert fakes.PREPARED == [("meld7", 0)]
