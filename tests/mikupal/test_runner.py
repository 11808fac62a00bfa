"""The runner: run directory layout, resume, kill-and-rerun, sharding, config hashes, bad inputs.

These tests run the real extract stage (PyAV) on MP4s made from LibriVox speech, and the energy VAD (a real,
model-free detector), so they are fast enough to run many times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mikupal.testing.config import compose_pipeline
from mikupal.media import read_audio
from mikupal.runner import ConfigChangedError, ConfigError, run_pipeline
from mikupal.testing.media import concat_with_silences, face_photo, write_video

REPO = Path(__file__).resolve().parents[2]
FAST = ["separate=passthrough", "vad=energy", "stages=[extract,separate,vad,filter]", "filter.require_text=false"]


def _overrides(input_path, run_dir, *extra):
    return [f"input={input_path}", f"run_dir={run_dir}", *FAST, *extra]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory, librivox) -> Path:
    """Four speech videos (different clip orders) in nested folders, plus a non-video file that must be ignored."""
    root = tmp_path_factory.mktemp("videos")
    photo = face_photo()[::4, ::4]
    for i in range(4):
        clips = [c.audio for c in librivox[i : i + 2]]
        audio, _ = concat_with_silences(clips, gap=1.0, lead=0.5)
        folder = root / ("a" if i % 2 else "b")
        write_video(folder / f"talk{i}.mp4", audio, 16000, lambda k, t: photo, duration=len(audio) / 16000, fps=5)
    (root / "notes.txt").write_text("not a video")
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_directory_layout_and_utterance_contract(speech_video, tmp_path):
    video, intervals = speech_video
    summary = run_pipeline(compose_pipeline(*_overrides(video, tmp_path / "run", "fail_fast=true")))
    run = tmp_path / "run"
    utterances = _lines(run / "utterances.jsonl")
    assert len(utterances) == len(intervals) == summary["utterances_out"]
    for u, (start, end) in zip(utterances, intervals):
        assert abs(u["start"] - start) < 0.3 and abs(u["end"] - end) < 0.3
        assert u["id"].startswith(u["video_id"] + "-") and u["id"][-5:].isdigit()
        assert u["text"] is None and u["face"] is None and u["emotion"] is None
        audio = read_audio(run / u["audio"])
        assert abs(len(audio) / 16000 - (u["end"] - u["start"])) < 0.01
    assert summary["videos"] == 1 and summary["errors"] == 0
    assert abs(summary["hours_in"] * 3600 - 33.7) < 0.2
    for stage in ("extract", "separate", "vad", "filter"):
        meta = json.loads((run / stage / "stage.json").read_text())
        assert meta["stage"] == stage and len(meta["config_hash"]) == 16 and meta["schema_version"] == 1
    assert json.loads((run / "summary.json").read_text())["utterances_out"] == len(intervals)
    assert (run / "errors.jsonl").read_text() == ""


def test_rerun_skips_finished_items_and_refuses_a_changed_config(video_dir, tmp_path):
    run = tmp_path / "run"
    first = run_pipeline(compose_pipeline(*_overrides(video_dir, run)))
    assert first["videos"] == 4 and first["errors"] == 0
    done_before = {p: p.read_text() for p in run.glob("*/part-*.done.jsonl")}
    second = run_pipeline(compose_pipeline(*_overrides(video_dir, run)))
    assert {p: p.read_text() for p in run.glob("*/part-*.done.jsonl")} == done_before  # nothing redone
    assert all(s["items_done"] == first["stages"][n]["items_done"] for n, s in second["stages"].items())
    assert second["utterances_out"] == first["utterances_out"]

    with pytest.raises(ConfigChangedError, match=r"stage 'vad'.*recompute=\[vad\]"):
        run_pipeline(compose_pipeline(*_overrides(video_dir, run, "segmentation.min_duration=2.0")))
    # an upstream change invalidates the stages after it too
    with pytest.raises(ConfigChangedError, match="stage 'extract'"):
        run_pipeline(compose_pipeline(*_overrides(video_dir, run, "media.sampling_rate=8000")))

    third = run_pipeline(compose_pipeline(*_overrides(video_dir, run, "segmentation.min_duration=3.5", "recompute=[vad]")))
    assert third["utterances_out"] < first["utterances_out"]
    assert third["drops"].get("vad.too_short", 0) > 0
    meta = json.loads((run / "vad" / "stage.json").read_text())
    assert meta["config"]["segmentation"]["min_duration"] == 3.5


def test_two_shards_produce_the_same_union_as_one_process(video_dir, tmp_path):
    single = tmp_path / "single"
    run_pipeline(compose_pipeline(*_overrides(video_dir, single)))
    sharded = tmp_path / "sharded"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mikupal.cli", *_overrides(video_dir, sharded, f"runner.rank={r}", "runner.world_size=2")],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for r in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    assert (sharded / "utterances.jsonl").read_text() == (single / "utterances.jsonl").read_text()
    per_rank = [json.loads((sharded / f"summary.{r:05d}-of-00002.json").read_text()) for r in range(2)]
    # each rank did exactly its share (video ids hash the absolute path, so the split differs between runs)
    from mikupal.ids import shard_of, video_id

    shares = [sum(shard_of(video_id(v), 2) == r for v in video_dir.rglob("*.mp4")) for r in range(2)]
    logs = [sharded / "extract" / f"part-{r:05d}-of-00002.done.jsonl" for r in range(2)]
    assert [len(_lines(log)) if log.exists() else 0 for log in logs] == shares
    assert all("extract" in s["stages"] for s in per_rank)
    assert sum(len(_lines(p)) for p in sharded.glob("extract/part-*.done.jsonl")) == 4


def test_killed_run_resumes_to_the_same_output(video_dir, tmp_path):
    slow = ["vad._target_=mikupal.testing.slow_backends.SlowEnergyVad", "+vad.delay=0.6"]
    reference = tmp_path / "reference"
    run_pipeline(compose_pipeline(*_overrides(video_dir, reference, "vad=energy")))

    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mikupal.cli", *_overrides(video_dir, run), *slow]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done_log = run / "vad" / "part-00000-of-00001.done.jsonl"
    while time.time() < deadline and (not done_log.exists() or len(done_log.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(done_log.read_text().splitlines()) < 4, "the run finished before it could be killed"
    assert not (run / "utterances.jsonl").exists()

    finished = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert (run / "utterances.jsonl").read_text() == (reference / "utterances.jsonl").read_text()
    for u in _lines(run / "utterances.jsonl"):
        np.testing.assert_array_equal(read_audio(run / u["audio"]), read_audio(reference / u["audio"]))
    assert len(_lines(done_log)) == 4  # each video exactly once in the done log
    assert "MIKU-PAL run summary" in finished.stdout.decode()


def test_bad_inputs_are_recorded_and_the_rest_completes(tmp_path, librivox, speech_video):
    good, intervals = speech_video
    media = tmp_path / "media"
    media.mkdir()
    (media / "empty.mp4").write_bytes(b"")
    (media / "text.mp4").write_text("this is not a video\n" * 50)
    data = good.read_bytes()
    (media / "truncated.mp4").write_bytes(data[: len(data) // 3])
    photo = face_photo()[::4, ::4]
    write_video(media / "silent_video.mp4", None, 16000, lambda i, t: photo, duration=2.0, fps=5)
    write_video(media / "no_speech.mp4", np.zeros(16000 * 3, np.float32), 16000, lambda i, t: photo, duration=3.0, fps=5)
    listing = tmp_path / "inputs.txt"
    listing.write_text(
        "# one path per line\n"
        f"{good}\nmissing/never_there.mp4\nmedia/empty.mp4\nmedia/text.mp4\nmedia/truncated.mp4\n"
        "media/silent_video.mp4\nmedia/no_speech.mp4\n"
    )
    run = tmp_path / "run"
    summary = run_pipeline(compose_pipeline(*_overrides(listing, run)))
    errors = {Path(e["source"]).name: e for e in _lines(run / "errors.jsonl")}
    assert set(errors) == {"never_there.mp4", "empty.mp4", "text.mp4", "truncated.mp4", "silent_video.mp4"}
    assert "file not found" in errors["never_there.mp4"]["message"]
    assert "empty (0 bytes)" in errors["empty.mp4"]["message"]
    assert "not a readable media file" in errors["text.mp4"]["message"]
    assert "not a readable media file" in errors["truncated.mp4"]["message"] or "truncated" in errors["truncated.mp4"]["message"]
    assert "no audio stream" in errors["silent_video.mp4"]["message"]
    assert all(e["stage"] == "extract" for e in errors.values())
    assert summary["drops"] == {"vad.no_speech": 1}
    assert summary["utterances_out"] == len(intervals) and summary["errors"] == 5

    done_before = (run / "extract" / "part-00000-of-00001.done.jsonl").read_text()
    again = run_pipeline(compose_pipeline(*_overrides(listing, run)))
    assert (run / "extract" / "part-00000-of-00001.done.jsonl").read_text() == done_before
    assert again["errors"] == 5 and len(_lines(run / "errors.jsonl")) == 5  # retried, recorded once each


def test_config_errors_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="input=.*no such file"):
        run_pipeline(compose_pipeline(*_overrides(tmp_path / "nope", tmp_path / "run")))
    with pytest.raises(ConfigError, match="runner.rank"):
        run_pipeline(compose_pipeline(*_overrides(tmp_path, tmp_path / "run", "runner.rank=2", "runner.world_size=2")))
    with pytest.raises(ConfigError, match="pipeline order"):
        run_pipeline(compose_pipeline(*_overrides(tmp_path, tmp_path / "run"), "stages=[extract,vad,separate]"))


def test_cli_fail_fast_reraises(tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text("missing.mp4\n")
    result = subprocess.run(
        [sys.executable, "-m", "mikupal.cli", *_overrides(listing, tmp_path / "run", "fail_fast=true")],
        cwd=tmp_path, capture_output=True, timeout=120,
    )
    assert result.returncode != 0 and b"file not found" in result.stderr
    shutil.rmtree(tmp_path / "run", ignore_errors=True)
