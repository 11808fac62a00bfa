"""Scale-out: Ray and submitit executors give the local executor's output; checks before work; bad input exits 2.

Every Ray test starts its own local Ray with 2 CPUs (``runner.num_cpus=2``). The pipeline is the fast one of
``test_runner.py``: the real extract stage (PyAV) and the energy VAD on MP4s made from LibriVox speech.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mikupal.checks import check_chain
from mikupal.runner import ConfigError, format_summary, run_pipeline
from mikupal.testing.config import compose_pipeline
from mikupal.testing.media import concat_with_silences, face_photo, write_video

REPO = Path(__file__).resolve().parents[3]
FAST = ["separate=passthrough", "vad=energy", "stages=[extract,separate,vad,filter]", "filter.require_text=false"]
RAY = ["runner=ray", "runner.num_cpus=2"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _overrides(input_path, run_dir, *extra):
    return [f"input={input_path}", f"run_dir={run_dir}", *FAST, *extra]


def _cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "mikupal.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          timeout=timeout, text=True)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _no_duplicates(run: Path) -> None:
    ids = [u["id"] for u in _lines(run / "utterances.jsonl")]
    assert len(ids) == len(set(ids))
    for stage in ("extract", "separate", "vad", "filter"):
        keys = [e["key"] for p in (run / stage).glob("part-*.done.jsonl") for e in _lines(p)]
        assert len(keys) == len(set(keys)), f"{stage}: an item is in the done logs twice"
        outputs = Counter(json.dumps(o, sort_keys=True) for p in (run / stage).glob("part-*.jsonl")
                          if p.name.count(".") == 1 for o in _lines(p))
        assert max(outputs.values(), default=1) == 1, f"{stage}: an output line is written twice"


@pytest.fixture(scope="module")
def videos(tmp_path_factory, librivox) -> Path:
    """Six speech videos (different clip orders), so that four ranks all get work or none."""
    root = tmp_path_factory.mktemp("scale_videos")
    photo = face_photo()[::4, ::4]
    for i in range(6):
        clips = [c.audio for c in (librivox[i % 4 : i % 4 + 2] if i < 4 else librivox[i - 4 : i - 3])]
        audio, _ = concat_with_silences(clips, gap=1.0, lead=0.5)
        write_video(root / f"talk{i}.mp4", audio, 16000, lambda k, t: photo, duration=len(audio) / 16000, fps=5)
    return root


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> Path:
    """The local executor's run directory on ``videos``."""
    run = tmp_path_factory.mktemp("reference") / "run"
    summary = run_pipeline(compose_pipeline(*_overrides(videos, run, "fail_fast=true")))
    assert summary["complete"] and summary["utterances_out"] > 6
    return run


# ------------------------------------------------------------------------------------------------ Ray
def test_ray_with_four_ranks_gives_the_local_output_byte_for_byte(videos, reference, tmp_path):
    run = tmp_path / "ray"
    summary = run_pipeline(compose_pipeline(*_overrides(videos, run, *RAY, "runner.world_size=4")))
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    assert summary["complete"] and summary["world_size"] == 4 and summary["errors"] == 0
    parts = sorted(p.name for p in (run / "extract").glob("part-*.done.jsonl"))
    assert len(parts) >= 2 and all(p.endswith("-of-00004.done.jsonl") for p in parts)  # ranks really split the work
    assert len(list((run / "ranks").glob("rank-*-of-00004.json"))) == 4
    _no_duplicates(run)
    # throughput per stage, from CPU time measured in the Ray workers
    for name in ("extract", "vad"):
        stage = summary["stages"][name]
        assert stage["cpu_time_s"] > 0 and stage["audio_hours"] > 0
        assert stage["audio_hours_per_cpu_hour"] == pytest.approx(stage["audio_hours"] / (stage["cpu_time_s"] / 3600), rel=0.01)
        assert stage["gpu_time_s"] == 0 and stage["audio_hours_per_gpu_hour"] is None  # CPU-only here
    assert json.loads((run / "summary.json").read_text())["stages"]["vad"]["audio_hours_per_cpu_hour"] > 0
    assert "h/CPU-h" in format_summary(summary)


def test_ray_survives_a_killed_worker_with_identical_output(videos, reference, tmp_path):
    """SIGKILL one Ray worker in the middle of the vad stage: Ray retries the task, which resumes from its done log."""
    run, pids = tmp_path / "ray", tmp_path / "pids"
    slow = ["vad._target_=mikupal.testing.slow_backends.SlowEnergyVad", "+vad.delay=1.0", f"+vad.pid_dir={pids}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mikupal.cli", *_overrides(videos, run, *RAY, "runner.world_size=2"), *slow],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            done = [line for p in (run / "vad").glob("part-*.done.jsonl") for line in p.read_text().splitlines()]
            busy = sorted(pids.glob("*.busy")) if pids.is_dir() else []
            if done and busy:  # the stage has begun finishing items and this worker is in the middle of one
                pid = int(busy[0].stem)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    out, err = proc.communicate(timeout=400)
    killer.join()
    assert killed, "no worker was found to kill"
    assert proc.returncode == 0, err[-3000:]
    assert len(list(pids.glob("*.pid"))) >= 3  # two ranks' setups, plus the retried task's
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    _no_duplicates(run)
    assert "MIKU-PAL run summary" in out


def test_ray_worker_sets_up_a_model_stage_once_for_its_ranks_and_frees_it_after_the_stage(
    videos, reference, tmp_path, monkeypatch
):
    """Six ranks on two task slots: a worker that runs several ranks of separate (a model stage) sets it up once;
    its first task after every rank's separate has finished frees it."""
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # the Ray workers import the test backends
    run, setups = tmp_path / "ray", tmp_path / "setups"
    counting = ["separate._target_=mikupal.testing.slow_backends.CountingPassthrough", f"+separate.setup_dir={setups}"]
    summary = run_pipeline(compose_pipeline(*_overrides(videos, run, *RAY, "runner.world_size=6", *counting)))
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    made = [int(p.name.split("-")[0]) for p in setups.glob("*.setup")]
    ranks_with_work = [p for p in (run / "separate").glob("part-*-of-00006.done.jsonl") if _lines(p)]
    assert len(made) == len(set(made)), f"a worker set separate up more than once: {sorted(made)}"
    # one setup per worker (two task slots), however many of their ranks have work: fewer setups than ranks where
    # more than two ranks have work (which ranks get work depends on the input paths, so sometimes only two do)
    assert len(made) <= min(2, len(ranks_with_work))
    tasks = summary["executor"]["tasks"]
    separate = [t for t in tasks if t["stage"] == "separate"]
    assert sum(t["built"] for t in separate) == len(made)  # the executor's own count agrees with the backend's
    assert len({t["pid"] for t in separate if not t["built"]}) >= 1
    last_separate = max(t["end"] for t in separate)
    freed = {int(p.stem.split("-")[0]): int(p.stem.split("-")[1]) / 1e9 for p in setups.glob("*.teardown")}
    later = {t["pid"] for t in tasks if t["start"] > last_separate}
    assert set(made) & later, "no worker that set separate up ran a task after the stage"
    # A worker's task frees a kept stage once Ray reports all of that stage's tasks done; whether any later task
    # starts after that depends on scheduling, so here only "never before the stage ended, only where it was set up"
    # (freeing itself: test_worker_frees_a_kept_stage_once_all_its_tasks_are_done).
    assert all(t > last_separate for t in freed.values())
    assert set(freed) <= set(made)


def test_worker_frees_a_kept_stage_once_all_its_tasks_are_done():
    """The worker's stage host keeps a model stage while any rank's task of it runs and frees it after."""
    from mikupal.executors.ray import WorkerStages

    class FakeStage:
        name, torn_down = "separate", 0

        def teardown(self):
            self.torn_down += 1

    class FakeRay:
        done: set = set()

        def wait(self, refs, num_returns, timeout, fetch_local):
            ready = [r for r in refs if r in self.done]
            return ready, [r for r in refs if r not in self.done]

    host, ray, stage = WorkerStages(keep=2), FakeRay(), FakeStage()
    host.kept[("separate", "cfg", "run")] = stage
    host.free_finished(ray, {"separate": ["r0", "r1"]})
    assert stage.torn_down == 0 and host.kept  # rank 1's task still runs
    ray.done = {"r0", "r1"}
    host.free_finished(ray, {"asr": ["r0"]})
    assert stage.torn_down == 0  # only its own stage's tasks count
    host.free_finished(ray, {"separate": ["r0", "r1"]})
    assert stage.torn_down == 1 and not host.kept


def test_ray_starts_a_ranks_next_stage_while_another_rank_is_still_in_an_earlier_one(
    videos, reference, tmp_path, monkeypatch
):
    """No barrier between stages: rank A's extract of one video waits until rank B has finished items of filter
    (the last stage). With a wave per stage that could never happen (the gate would time out and the item fail)."""
    from mikupal.ids import shard_of, video_id

    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # the Ray workers import the test backends
    run = tmp_path / "ray"
    shards = {p.name: shard_of(video_id(p), 2) for p in sorted(videos.glob("*.mp4"))}
    assert set(shards.values()) == {0, 1}
    gated = next(name for name, rank in shards.items() if rank == 0)
    other = f"{run}/filter/part-00001-of-00002.done.jsonl"
    gate = ["extract._target_=mikupal.testing.slow_backends.GatedExtractor", f"+extract.gate_file={gated}",
            f"+extract.done_glob={other}", "+extract.timeout=120"]
    summary = run_pipeline(compose_pipeline(*_overrides(videos, run, *RAY, "runner.world_size=2", *gate)))
    assert summary["complete"] and summary["errors"] == 0
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    tasks = {(t["stage"], t["rank"]): t for t in summary["executor"]["tasks"]}
    assert tasks["filter", 1]["end"] < tasks["extract", 0]["end"]  # rank 1 was through while rank 0 still extracted
    assert tasks["vad", 1]["start"] < tasks["extract", 0]["end"]
    _no_duplicates(run)


def test_ray_progress_reads_only_whole_new_lines_of_the_logs(tmp_path):
    from mikupal.executors.ray import _Finished

    stage = tmp_path / "asr"
    stage.mkdir()
    done, errors = stage / "part-00000-of-00002.done.jsonl", stage / "part-00001-of-00002.errors.jsonl"
    done.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c"')  # "c" is still being written
    finished = _Finished(stage)
    assert finished.finished() == {"a", "b"}
    with done.open("a") as f:
        f.write('}\n{"key": "d"}\n')
    errors.write_text('{"item_id": "e", "stage": "asr"}\n')
    assert finished.finished() == {"a", "b", "c", "d", "e"}
    errors.unlink()  # a rank's error log restarts with each run of the stage, possibly longer than before
    errors.write_text('{"item_id": "f", "stage": "asr", "error_type": "RuntimeError", "message": "x"}\n')
    assert finished.finished() == {"a", "b", "c", "d", "f"}  # "e" failed in the earlier run, and is being retried


def test_ray_bad_address_exits_2_with_the_fix(videos, tmp_path):
    result = _cli(*_overrides(videos, tmp_path / "run"), "runner=ray", "runner.address=127.0.0.1:9",
                  "runner.connect_timeout=2", cwd=tmp_path)
    assert result.returncode == 2
    output = result.stdout + result.stderr  # Hydra's console log handler writes to stdout
    assert "runner.address=127.0.0.1:9: no Ray cluster answers there" in output and "ray start --head" in output


# ------------------------------------------------------------------------------------------------ submitit
def test_submitit_local_ranks_match_and_recompute_deletes_once(videos, reference, tmp_path):
    run = tmp_path / "submitit"
    sweep = ["-m", "hydra/launcher=local", "runner.rank=range(0,2)", "runner.world_size=2"]
    first = _cli(*sweep, *_overrides(videos, run), cwd=tmp_path, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    assert "MIKU-PAL run summary" in first.stdout  # the launching process prints the merged summary
    assert len(list((run / "ranks").glob("rank-*-of-00002.json"))) == 2

    # Both ranks start together with recompute=[vad]: only the plan (in the launching process) deletes.
    second = _cli(*sweep, *_overrides(videos, run, "recompute=[vad]"), cwd=tmp_path, timeout=400)
    assert second.returncode == 0, second.stderr[-3000:]
    job_logs = "".join(p.read_text(errors="replace") for p in (run / "logs").rglob("*.log"))
    assert (second.stdout + second.stderr + job_logs).count("stage vad: recomputing") == 1
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    for stats in (run / "vad").glob("part-*.stats.json"):
        assert json.loads(stats.read_text())["runs"] == 1  # each rank ran vad once after the single deletion
    _no_duplicates(run)


def test_separately_started_ranks_refuse_recompute(videos, reference, tmp_path):
    run = tmp_path / "run"
    run_pipeline(compose_pipeline(*_overrides(videos, run)))
    with pytest.raises(ConfigError, match="recompute.*one rank delete another's work"):
        run_pipeline(compose_pipeline(*_overrides(videos, run, "runner.world_size=2", "recompute=[vad]")))
    assert (run / "vad").is_dir()  # nothing was deleted


def test_missing_submitit_launcher_exits_2(monkeypatch, caplog):
    import importlib.util

    from mikupal.executors import hydra as hydra_executor

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins.hydra_submitit") else real(name, *a))
    with pytest.raises(SystemExit) as info:
        hydra_executor.check_launcher(["-m", "hydra/launcher=submitit_slurm", "runner.rank=range(0,2)"])
    assert info.value.code == 2
    assert "hydra-submitit-launcher==1.2.0" in caplog.text and "hydra/launcher=submitit_slurm" in caplog.text
    hydra_executor.check_launcher(["input=x"])  # no launcher named: nothing to check


# ------------------------------------------------------------------------------------------------ world sizes
def test_a_run_started_with_two_ranks_resumes_with_one(videos, reference, tmp_path):
    run = tmp_path / "run"
    half = run_pipeline(compose_pipeline(*_overrides(videos, run, "runner.rank=0", "runner.world_size=2")))
    assert not half["complete"] and not (run / "utterances.jsonl").exists()
    rank0 = {e["key"] for e in _lines(run / "extract" / "part-00000-of-00002.done.jsonl")}
    assert 0 < len(rank0) < 6
    done_before = (run / "extract" / "part-00000-of-00002.done.jsonl").read_text()

    full = run_pipeline(compose_pipeline(*_overrides(videos, run)))
    assert full["complete"]
    assert (run / "utterances.jsonl").read_bytes() == (reference / "utterances.jsonl").read_bytes()
    assert (run / "extract" / "part-00000-of-00002.done.jsonl").read_text() == done_before
    redone = {e["key"] for e in _lines(run / "extract" / "part-00000-of-00001.done.jsonl")}
    assert redone and not redone & rank0  # the one-rank run did only what rank 0 of 2 had not done
    _no_duplicates(run)


# ------------------------------------------------------------------------------------------------ checks
def test_stage_chain_is_checked_before_any_item(videos, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"'asr' reads Utterance records but 'extract' writes Recording.*add vad"):
        run_pipeline(compose_pipeline(f"input={videos}", f"run_dir={run}", "stages=[extract,asr]"))
    assert not (run / "extract").exists()
    check_chain(["extract", "vad", "filter"])  # separate is optional: recordings go straight to vad
    result = _cli(f"input={videos}", f"run_dir={run}", "stages=[extract,asr]", cwd=tmp_path)
    assert result.returncode == 2 and "e.g. stages=[extract,vad,asr]" in result.stdout + result.stderr


def test_missing_model_file_is_caught_before_any_item(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("MIKUPAL_MODELS_DIR", str(tmp_path / "empty_models"))
    run = tmp_path / "run"
    stages = "stages=[extract,separate,vad,asr,filter]"
    with pytest.raises(ConfigError, match=r"asr.model=whisper-base: .*is missing\. Fix: mikupal-models fetch whisper-base"):
        run_pipeline(compose_pipeline(*_overrides(videos, run, "asr=faster_whisper", stages)))
    with pytest.raises(ConfigError, match=r"vad.model=/no/such/silero.onnx: .*neither a registry name"):
        run_pipeline(compose_pipeline(*_overrides(videos, run, "vad=silero", "vad.model=/no/such/silero.onnx")))
    assert not (run / "extract").exists()


def test_missing_extra_is_caught_before_any_item(videos, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "webrtcvad" else real(name, *a))
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"vad \(WebrtcVad\) needs the Python package 'webrtcvad'.*pip install webrtcvad-wheels"):
        run_pipeline(compose_pipeline(*_overrides(videos, run, "vad=webrtc")))
    assert not (run / "extract").exists()


@pytest.mark.parametrize("overrides,message", [
    (["runner.world_size=0"], "runner.world_size=0 must be >= 1"),
    (["runner.world_size=-3"], "runner.world_size=-3 must be >= 1"),
    (["runner.rank=2", "runner.world_size=2"], "runner.rank=2 must be in 0..runner.world_size-1 (0..1)"),
])
def test_bad_rank_and_world_size_exit_2(videos, tmp_path, overrides, message):
    result = _cli(*_overrides(videos, tmp_path / "run"), *overrides, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stdout + result.stderr


def test_a_stopped_stage_makes_mikupal_exit_1_with_the_count(videos, tmp_path):
    stop = ["vad._target_=mikupal.testing.slow_backends.StoppingEnergyVad", "+vad.stop_after=2"]
    result = _cli(*_overrides(videos, tmp_path / "run"), *stop, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert "1 stage run(s) stopped" in output and "2 of 6 item(s) done, 4 left" in output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert not summary["complete"] and "test stop after 2" in summary["stopped"]
    assert not (tmp_path / "run" / "utterances.jsonl").exists()
