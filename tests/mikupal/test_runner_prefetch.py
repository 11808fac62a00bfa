"""``runner.prefetch``: later stages are set up in background threads while earlier ones run (PrefetchingHost).

Unit tests drive the host with recording stand-in stages; the pipeline tests run the real extract stage and the
energy VAD with prefetching on and off and compare the run directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mikupal.runner import ConfigError, PrefetchingHost, format_summary, run_pipeline
from mikupal.stage import Stage, StageContext
from mikupal.testing.config import compose_pipeline

FAST = ["separate=passthrough", "vad=energy", "stages=[extract,separate,vad,filter]", "filter.require_text=false"]


class Recorder(Stage):
    """A stand-in stage that records its setups and teardowns (with the thread they ran in)."""

    name = "recorder"
    input_type = output_type = object

    def __init__(self, label: str, log: list, *, background: bool = True, fail: bool = False,
                 gate: threading.Event | None = None) -> None:
        self.label, self.log, self.fail, self.gate = label, log, fail, gate
        self.setup_in_background = background
        self.started = threading.Event()
        self.ready = False

    def setup(self, ctx: StageContext) -> None:
        self.started.set()
        self.log.append(("setup", self.label, threading.current_thread().name))
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise RuntimeError(f"{self.label}: model failed to load")
        self.ready = True

    def teardown(self) -> None:
        self.log.append(("teardown", self.label, threading.current_thread().name))
        self.ready = False

    def process(self, item, ctx):  # pragma: no cover - the host never processes
        raise NotImplementedError


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext(run_dir=tmp_path, rank=0, world_size=1, cfg=None)  # type: ignore[arg-type]


def _events(log: list, kind: str) -> list[str]:
    return [label for k, label, _ in log if k == kind]


def test_next_stages_are_set_up_in_the_background_while_one_runs(tmp_path):
    log: list = []
    a, b, c = (Recorder(x, log) for x in "abc")
    host = PrefetchingHost(1)
    ctx = _ctx(tmp_path)
    host.begin([(a, ctx), (b, ctx), (c, ctx)])
    assert host.open(a, ctx) is a and a.ready
    assert b.started.wait(10), "b was not set up while a ran"
    assert not c.started.is_set(), "prefetch=1 set up two stages ahead"
    host.close(a, failed=False)
    for stage in (b, c):
        assert host.open(stage, ctx) is stage and stage.ready
        host.close(stage, failed=False)
    host.end()
    assert _events(log, "setup") == ["a", "b", "c"] and _events(log, "teardown") == ["a", "b", "c"]
    assert all(thread.startswith("mikupal-setup") for kind, _, thread in log if kind == "setup")
    assert not [t for t in threading.enumerate() if t.name.startswith("mikupal-setup")]


def test_a_failed_background_setup_raises_when_its_stage_is_opened(tmp_path):
    log: list = []
    gate = threading.Event()
    a, b, c = Recorder("a", log), Recorder("b", log, fail=True, gate=gate), Recorder("c", log)
    host = PrefetchingHost(2)
    ctx = _ctx(tmp_path)
    host.begin([(a, ctx), (b, ctx), (c, ctx)])
    host.open(a, ctx)
    gate.set()  # b fails while a "runs": nothing is raised here
    host.close(a, failed=False)
    with pytest.raises(RuntimeError, match="b: model failed to load"):
        host.open(b, ctx)  # the runner does not close a stage whose open raised (a failed setup frees itself)
    host.end()  # c was set up ahead and never opened: torn down here
    assert c.started.is_set() and not c.ready
    teardowns = _events(log, "teardown")
    assert teardowns.count("a") == teardowns.count("c") == 1 and "b" not in teardowns


def test_skipped_and_unprefetchable_stages(tmp_path):
    """A stage never opened (no pending work) is torn down once a later stage opens; a stage that may not be set
    up in the background, or is not eligible (it has outputs already), is set up in place when opened."""
    log: list = []
    a, b, c = Recorder("a", log), Recorder("b", log), Recorder("c", log, background=False)
    d = Recorder("d", log)
    host = PrefetchingHost(3)
    ctx = _ctx(tmp_path)
    host.begin([(a, ctx), (b, ctx), (c, ctx), (d, ctx)], eligible=[True, True, True, False])
    assert b.started.wait(10)
    host.open(a, ctx)
    host.close(a, failed=False)
    host.open(c, ctx)  # b had nothing to do: freed before c runs
    assert _events(log, "teardown") == ["a", "b"] and not b.ready
    host.close(c, failed=False)
    assert not d.started.is_set()
    host.open(d, ctx)
    host.close(d, failed=False)
    host.end()
    threads = {label: thread for kind, label, thread in log if kind == "setup"}
    assert threads["c"] == threads["d"] == threading.current_thread().name
    assert _events(log, "setup") == ["a", "b", "c", "d"]
    assert sorted(_events(log, "teardown")) == ["a", "b", "c", "d"]


def test_a_failed_setup_of_a_stage_never_opened_is_not_raised(tmp_path):
    log: list = []
    a, b = Recorder("a", log), Recorder("b", log, fail=True)
    host = PrefetchingHost(2)
    ctx = _ctx(tmp_path)
    host.begin([(a, ctx), (b, ctx)])
    host.open(a, ctx)
    host.close(a, failed=False)
    host.end()  # b had nothing to do; its failure would not have happened without prefetching
    assert b.started.is_set() and _events(log, "teardown") == ["a"]


def _overrides(input_path, run_dir, *extra):
    return [f"input={input_path}", f"run_dir={run_dir}", *FAST, *extra]


def _run_files(run: Path) -> dict[str, str]:
    """The run directory's outputs that must not depend on prefetching (no logs, times or stats)."""
    keep = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        timed = rel.startswith("logs/") or "stats" in rel or Path(rel).name.startswith("summary")
        if path.is_file() and not timed:
            keep[rel] = path.read_bytes()
    return keep


def test_prefetching_gives_the_same_run_directory(speech_video, tmp_path):
    video, _ = speech_video
    runs = {}
    for prefetch in (0, 2):
        run = tmp_path / f"prefetch{prefetch}"
        summary = run_pipeline(compose_pipeline(*_overrides(video, run, f"runner.prefetch={prefetch}")))
        assert summary["complete"] and summary["errors"] == 0
        runs[prefetch] = _run_files(run)
    assert runs[0].keys() == runs[2].keys() and "utterances.jsonl" in runs[0]
    assert runs[0] == runs[2]
    stage_json = json.loads(runs[2]["vad/stage.json"])
    assert "prefetch" not in json.dumps(stage_json["config"])


def test_a_stage_whose_background_setup_fails_fails_the_run_as_before(speech_video, tmp_path):
    video, _ = speech_video
    bad = ["vad._target_=mikupal.testing.slow_backends.FailingSetupVad", "+vad.delay=0.3"]
    for prefetch in (0, 2):
        run = tmp_path / f"prefetch{prefetch}"
        with pytest.raises(RuntimeError, match="VAD model failed to load"):
            run_pipeline(compose_pipeline(*_overrides(video, run, f"runner.prefetch={prefetch}", *bad)))
        done = [json.loads(line) for p in (run / "extract").glob("part-*.done.jsonl") for line in p.read_text().splitlines()]
        assert len(done) == 1, "extract ran to the end before the failing stage"
        assert not list((run / "vad").glob("part-*.done.jsonl")) or not any(
            p.read_text() for p in (run / "vad").glob("part-*.done.jsonl"))
    assert not [t for t in threading.enumerate() if t.name.startswith("mikupal-setup")]


def test_a_stages_setup_time_is_reported_wherever_the_setup_ran(speech_video, tmp_path):
    """summary.json's setup_time_s: the setup's own wall time, in place (prefetch=0) or in the background (2), where
    wall_time_s leaves a background setup out."""
    video, _ = speech_video
    slow = ["vad._target_=mikupal.testing.slow_backends.SlowSetupVad", "+vad.setup_delay=1.5"]
    stages = {}
    for prefetch in (0, 2):
        run = tmp_path / f"prefetch{prefetch}"
        summary = run_pipeline(compose_pipeline(*_overrides(video, run, f"runner.prefetch={prefetch}", *slow)))
        assert summary["complete"]
        stages[prefetch] = summary["stages"]
        assert 1.5 <= stages[prefetch]["vad"]["setup_time_s"] < 10
        assert all(0 <= s["setup_time_s"] < 10 for s in stages[prefetch].values())
    assert stages[0]["vad"]["wall_time_s"] >= stages[0]["vad"]["setup_time_s"]  # in place: inside the stage's time
    vad_row = next(line for line in format_summary(summary).splitlines() if line.startswith("vad "))
    assert f"{stages[2]['vad']['setup_time_s']:.2f}" in vad_row.split()  # the printed table shows it too
    resumed = run_pipeline(compose_pipeline(*_overrides(video, tmp_path / "prefetch0", "runner.prefetch=0", *slow)))
    assert resumed["stages"]["vad"]["setup_time_s"] == stages[0]["vad"]["setup_time_s"]  # nothing to do: no setup


def test_stage_stats_add_up_and_keep_the_numbers_a_call_leaves_out(tmp_path):
    from mikupal.rundir import StageStore

    store = StageStore(tmp_path, "vad", 0, 1)
    store.dir.mkdir(parents=True)
    store.add_stats(wall_s=1.5, setup_s=0.25)
    store.add_stats(wall_s=2.0)  # e.g. a caller that measures no setup
    assert json.loads(store.stats_path.read_text()) == {"wall_s": 3.5, "setup_s": 0.25}


def test_negative_prefetch_is_a_config_error(tmp_path, speech_video):
    video, _ = speech_video
    with pytest.raises(ConfigError, match="runner.prefetch"):
        run_pipeline(compose_pipeline(*_overrides(video, tmp_path / "run", "runner.prefetch=-1")))


def test_omp_wait_policy_is_set_unless_the_environment_has_one(monkeypatch):
    from mikupal.runner import set_omp_wait_policy

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    set_omp_wait_policy(None)
    assert "OMP_WAIT_POLICY" not in os.environ
    set_omp_wait_policy("passive")
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    set_omp_wait_policy("passive")
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    with pytest.raises(ConfigError, match="runner.omp_wait_policy"):
        set_omp_wait_policy("sleepy")


def test_the_cli_config_sets_a_passive_policy_for_the_libraries_it_loads(tmp_path):
    """A child process (nothing loaded yet): the runner sets OMP_WAIT_POLICY before any stage imports CTranslate2."""
    code = (
        "import os, sys; from mikupal.testing.config import compose_pipeline; from mikupal.runner import PipelineRunner;"
        f"PipelineRunner(compose_pipeline('input={tmp_path}', 'run_dir={tmp_path / 'run'}'));"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'ctranslate2' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["PASSIVE", "False"]


def test_the_slow_imports_of_every_stage_with_work_start_when_the_run_does(tmp_path, monkeypatch):
    for name in ("mikupal_probe_a", "mikupal_probe_b", "mikupal_probe_done"):
        (tmp_path / f"{name}.py").write_text("")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    log: list = []
    a, b, done = Recorder("a", log), Recorder("b", log, background=False), Recorder("done", log)
    a.background_imports, b.background_imports = ("mikupal_probe_a",), ("mikupal_probe_b",)
    done.background_imports = ("mikupal_probe_done",)
    host = PrefetchingHost(1)
    ctx = _ctx(tmp_path)
    host.begin([(a, ctx), (b, ctx), (done, ctx)], eligible=[True, True, False])  # "done" has its outputs already
    assert host.imports is not None
    host.imports.join(timeout=30)
    # b's setup may not run early, but its imports may; the finished stage's are not wanted
    assert "mikupal_probe_a" in sys.modules and "mikupal_probe_b" in sys.modules
    assert "mikupal_probe_done" not in sys.modules
    host.end()
