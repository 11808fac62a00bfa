"""The Stage base's helpers: ``N items at once in threads`` (``in_threads``, ``Stage.worker_count``), the
operational keys left out of a stage's config hash, and the slow imports started in a thread
(``import_in_background``, ``Stage.background_imports``)."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from omegaconf import OmegaConf

from mikupal.stage import Stage, StageContext, StopStage, import_in_background, in_threads


class _Plain(Stage):
    name = "plain"
    input_type = output_type = object

    def process(self, item, ctx):
        return [item]


class _Counting(Stage):
    """Counts each item; item "bad" fails, item "stop" stops the stage."""

    name = "counting"
    input_type = output_type = object

    def process(self, item, ctx):
        ctx.count("counting.seen")
        if item == "bad":
            raise ValueError("bad item")
        if item == "stop":
            raise StopStage("budget spent")
        return [item]


def test_outcome_returns_a_failure_with_its_counts_and_lets_a_stop_through(tmp_path):
    stage, ctx = _Counting(OmegaConf.create({})), StageContext(run_dir=tmp_path, rank=0, world_size=1, cfg=None)
    assert stage.outcome("a", ctx) == (["a"], {"counting.seen": 1})
    result, counts = stage.outcome("bad", ctx)
    assert isinstance(result, ValueError) and counts == {"counting.seen": 1}
    with pytest.raises(StopStage):
        stage.outcome("stop", ctx)


def test_for_item_keeps_an_items_counts_apart_from_the_others(tmp_path):
    ctx = StageContext(run_dir=tmp_path, rank=0, world_size=1, cfg=None)
    one, two = ctx.for_item(), ctx.for_item()
    one.count("x")
    two.count("x", 2)
    assert (one.take_counts(), two.take_counts(), ctx.take_counts()) == ({"x": 1}, {"x": 2}, {})
    assert one.run_dir == ctx.run_dir


def test_in_threads_runs_workers_at_once_and_keeps_the_input_order():
    both = threading.Barrier(2, timeout=10)  # passes only when two items run at the same time
    names = set()

    def work(i: int) -> int:
        names.add(threading.current_thread().name)
        if i < 2:
            both.wait()
        time.sleep(0.01 * (5 - i))  # later items finish first
        return i * i

    assert list(in_threads(work, list(range(5)), 2, "quality")) == [0, 1, 4, 9, 16]
    assert names and all(n.startswith("quality") for n in names)


@pytest.mark.parametrize("workers, items", [(1, [1, 2, 3]), (4, [7])])
def test_in_threads_with_one_worker_or_one_item_runs_in_the_calling_thread(workers, items):
    seen = []
    out = in_threads(lambda i: seen.append(threading.current_thread()) or i + 1, items, workers, "x")
    assert list(out) == [i + 1 for i in items] and set(seen) == {threading.current_thread()}


@pytest.mark.parametrize("workers", [1, 3])
def test_an_exception_is_raised_at_its_place_after_the_results_before_it(workers):
    def work(i: int) -> int:
        if i == 1:
            raise KeyError("item 1")
        return i

    results = in_threads(work, [0, 1, 2, 3], workers, "x")
    assert next(results) == 0
    with pytest.raises(KeyError, match="item 1"):
        next(results)
    assert list(results) == []  # the iteration is over


def test_worker_count_reads_the_dotted_key():
    def count(node):
        return _Plain(OmegaConf.create({"quality": node})).worker_count("quality.workers")

    assert count({}) == 1 and count({"workers": None}) == 1 and count({"workers": 0}) == 1
    assert count({"workers": 3}) == 3 and count({"workers": "2"}) == 2
    with pytest.raises(ValueError, match=r"quality\.workers must be >= 1, got -1"):
        count({"workers": -1})


def _probe_module(tmp_path, monkeypatch, name: str) -> str:
    """A module file only this test imports (on ``sys.path`` for the test), so its import can be observed."""
    (tmp_path / f"{name}.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_import_in_background_imports_in_a_daemon_thread_past_a_missing_module(tmp_path, monkeypatch):
    probe = _probe_module(tmp_path, monkeypatch, "mikupal_probe_import")
    thread = import_in_background(["no_such_module_for_mikupal", probe])
    assert thread is not None and thread.daemon
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert sys.modules[probe].LOADED  # the failed import before it did not stop it
    assert "no_such_module_for_mikupal" not in sys.modules
    assert import_in_background([probe, "sys"]) is None  # all loaded: no thread


def test_setup_starts_importing_the_stages_background_imports(tmp_path, monkeypatch):
    probe = _probe_module(tmp_path, monkeypatch, "mikupal_probe_setup")

    class _Slow(_Plain):
        background_imports = (probe,)

    started = []
    real = import_in_background

    def spy(modules):
        thread = real(modules)
        started.append(thread)
        return thread

    monkeypatch.setattr("mikupal.stage.import_in_background", spy)
    _Slow(OmegaConf.create({})).setup(StageContext(run_dir=tmp_path, rank=0, world_size=1, cfg=None))
    assert started and started[0] is not None
    started[0].join(timeout=30)
    assert sys.modules[probe].LOADED


# The work of a stage whose work imports slow packages lazily, run in a fresh interpreter after the stage's
# background_imports: it must import no further module of those packages (a lazy import added to the work but not
# to background_imports puts seconds of importing back on the stage's critical path). Stage -> (packages, work).
_WORK = {
    "mikupal.speakers.stage:SpeakersStage": ("sklearn",
        "import numpy as np\n"
        "from mikupal.speakers.clustering import cluster\n"
        "v = np.eye(4)[[0, 0, 1, 2]] + 0.01\n"
        "cluster(v / np.linalg.norm(v, axis=1, keepdims=True), 0.35)\n"
    ),
    "mikupal.asd.stage:AsdStage": ("scipy",
        "import numpy as np\n"
        "from scipy.signal import sosfiltfilt\n"  # what the sync detector filters with
        "from mikupal.asd.sync import _band_sos\n"
        "sosfiltfilt(_band_sos(2, 2.0, 7.0, 25.0), np.random.default_rng(0).normal(size=200))\n"
        "from mikupal.asd.clip import smooth_track_boxes\n"
        "from mikupal.faces.tracking import FaceTrack\n"
        "ones = np.ones(20)\n"
        "smooth_track_boxes(FaceTrack(0, np.arange(20), np.tile([10.0, 10, 50, 50], (20, 1)), ones, ones > 0, ones), 20)\n"
    ),
    "mikupal.faces.stage:FacesStage": ("scipy",
        "import numpy as np\n"
        "from mikupal.faces.tracking import IouTracker\n"
        "t = IouTracker(iou_threshold=0.3, max_gap=2, min_length=1)\n"
        "for k in range(3):\n"
        "    t.update(k, np.array([[10.0 + k, 10, 50, 50], [60, 10, 99, 50]]), np.array([0.9, 0.9]))\n"
        "t.finish()\n"
    ),
}


@pytest.mark.parametrize("stage", sorted(_WORK))
def test_a_stages_work_imports_nothing_its_background_imports_left_out(stage):
    import subprocess
    import textwrap

    module, cls = stage.split(":")
    package, work = _WORK[stage]
    script = textwrap.dedent(f"""
        import importlib, sys
        stage = getattr(importlib.import_module({module!r}), {cls!r})
        for name in stage.background_imports:
            importlib.import_module(name)
        before = set(sys.modules)
    """) + work + textwrap.dedent(f"""
        late = sorted(m for m in set(sys.modules) - before if m.split(".")[0] == {package!r})
        print("LATE", late)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LATE []" in out.stdout, out.stdout
