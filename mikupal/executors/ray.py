"""``runner=ray``: every rank runs the stage chain as Ray tasks, one task per rank and stage, chained rank by rank.

The driver (the ``mikupal`` process) plans the run, then submits for every rank one task per stage, each with its
stage's resources (``runner.resources.<stage>.num_cpus|num_gpus|memory``) and each taking the ObjectRef of the
same rank's previous stage as its argument. Ray starts a rank's next stage as soon as that rank's previous stage is
done, so there is no barrier between stages: a fast rank's ``asr`` runs while a slow rank's ``vad`` still does (no
stage reads another rank's outputs; ``finish`` is the one step that waits for all ranks). The driver draws one
progress bar per stage over all ranks (from the done logs on the shared run directory) and finally runs
``finish``. Ray places the tasks (CPU stages fan out over CPU slots, model stages land on GPU nodes) and retries a
task whose worker died (``runner.max_retries``); the retry resumes from the rank's done log, so nothing is done
twice.

Ray reuses its worker processes from task to task, and each worker keeps what it built: the parsed config and
checked plan, and the last ``runner.keep_backends`` model stages it set up (:class:`WorkerStages`), so that a
worker running several ranks of ``asr`` loads Whisper once. A kept stage is freed by the worker's first task after
that stage's tasks have all finished, when the worker sets up another model stage beyond that count, when a task
of it fails, or when the worker exits at the end of the run. Tasks that hold a GPU are the exception: they keep
Ray's default for GPU functions (``max_calls=1``, a fresh worker per task, which frees GPU memory and sees the GPU
Ray assigned), so a GPU stage loads its model once per rank task.

The driver plans in a helper thread while Ray starts (Ray's start-up is mostly its own processes booting), and
warm-up tasks import the stage modules in the idle workers while the plan finishes.

``runner.address`` connects to a running cluster (``ray start --head`` / ``ray://...``); without it a lean local
Ray starts with ``runner.num_cpus`` CPUs (null: all): no dashboard, an object store of ``runner.object_store_mb``
(tasks pass only small results; the data stays on the run directory). Every node needs MIKU-PAL installed and
``run_dir`` on a filesystem all nodes share.

``summary.json`` gets an ``executor`` entry: Ray's start-up time, the plan's, the time from both to the merged output,
and per task its stage, rank, worker pid, start and end (``time.time()`` of the node that ran it) and whether it
built its stage or reused one the worker kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from mikupal.manifest import iter_jsonl
from mikupal.rundir import STAGE_SPECS, atomic_write_json
from mikupal.runner import ConfigError, PipelineRunner, StageHost, set_up
from mikupal.stage import Stage, StageContext

log = logging.getLogger(__name__)

GiB = 1 << 30


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            f"runner=ray needs the ray package ({e}). Fix: pip install 'mikupal[ray]' (ray==2.60.0) or bash "
            "scripts/setup.sh"
        ) from None
    return ray


def stage_resources(name: str, runner_cfg: DictConfig, cluster_gpus: float) -> dict[str, Any]:
    """Ray task options of a stage: ``runner.resources.<stage>`` over ``runner.resources.default``.

    ``num_gpus: null`` means automatic: 1 for a model stage when ``runner.device`` is CUDA (``auto``: when the
    cluster has GPUs), else 0. ``memory`` is in GiB (null: no reservation).
    """
    resources = runner_cfg.get("resources") or {}
    default = resources.get("default") or {}
    own = resources.get(name) or {}

    def pick(key: str) -> Any:
        value = own.get(key)
        return default.get(key) if value is None else value

    num_cpus = pick("num_cpus")
    num_cpus = 1.0 if num_cpus is None else float(num_cpus)
    num_gpus = pick("num_gpus")
    if num_gpus is None:
        device = str(runner_cfg.get("device", "auto")).lower()
        cuda = device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)
        num_gpus = 1.0 if STAGE_SPECS[name].uses_model and cuda else 0.0
    options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": float(num_gpus)}
    memory = pick("memory")
    if memory is not None:
        options["memory"] = int(float(memory) * GiB)
    for key, value in options.items():
        if value < 0:
            raise ConfigError(f"runner.resources.{name}.{key}={value}: must be >= 0")
    return options


#: How long a worker waits for the driver (the owner of the task refs) to say whether an earlier model stage's tasks
#: are done. With no wait, a worker that has not yet heard back from the owner sees a finished stage as running and
#: keeps its model; the wait ends as soon as the answer comes, so it costs this long only while that stage runs.
STATUS_WAIT_S = 0.1


class WorkerStages(StageHost):
    """A Ray worker's stage host: keeps up to ``keep`` set-up model stages between rank tasks (least recent first out).

    A kept stage is reused only by a task of the same stage, config and run directory. Stages without a model
    (``STAGE_SPECS[name].uses_model`` false) are set up and torn down per task, as in the local executor: they are
    cheap, and keeping them would push a model out.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.kept: OrderedDict[tuple[str, str, str], Stage] = OrderedDict()
        self.config_key = ""
        self.built = 0  # stages set up by the current task (0 or 1)

    def open(self, stage: Stage, ctx: StageContext) -> Stage:
        key = (stage.name, self.config_key, str(ctx.run_dir))
        if key in self.kept:
            self.kept.move_to_end(key)
            return self.kept[key]
        if self.keep > 0 and STAGE_SPECS[stage.name].uses_model:
            while len(self.kept) >= self.keep:  # free before loading the next model
                self.kept.popitem(last=False)[1].teardown()
        set_up(stage, ctx)
        self.built += 1
        if self.keep > 0 and STAGE_SPECS[stage.name].uses_model:
            self.kept[key] = stage
        return stage

    def free_finished(self, ray: Any, stage_refs: dict[str, list[Any]]) -> None:
        """Free every kept stage whose tasks (``stage_refs[name]``, all ranks) have all finished."""
        for key in list(self.kept):
            refs = stage_refs.get(key[0])
            if not refs:
                continue
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=STATUS_WAIT_S, fetch_local=False)
            if len(done) == len(refs):
                self.kept.pop(key).teardown()

    def close(self, stage: Stage, *, failed: bool) -> None:
        key = next((k for k, s in self.kept.items() if s is stage), None)
        if key is not None and not failed:
            return  # kept for this stage's next rank on this worker
        if key is not None:
            del self.kept[key]
        stage.teardown()


#: What a Ray worker process keeps between tasks: config key -> (runner with its plan checked, stage host).
_WORKER: dict[str, tuple[PipelineRunner, WorkerStages]] = {}


def _worker_runner(cfg_yaml: str) -> tuple[PipelineRunner, WorkerStages]:
    """This worker's runner for ``cfg_yaml`` (built and plan-checked once per process), and its stage host."""
    key = hashlib.sha256(cfg_yaml.encode()).hexdigest()
    if key not in _WORKER:
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
        for _, (_, old_host) in list(_WORKER.items()):  # another run's kept stages go
            for stage in old_host.kept.values():
                stage.teardown()
        _WORKER.clear()
        runner = PipelineRunner(OmegaConf.create(cfg_yaml))
        runner.read_plan()
        host = WorkerStages(int(runner.cfg.runner.get("keep_backends", 2)))
        host.config_key = key
        runner.host = host
        _WORKER[key] = (runner, host)
    return _WORKER[key]


def _rank_task(
    cfg_yaml: str,
    rank: int,
    world_size: int,
    stage: str,
    num_gpus: float,
    previous: dict[str, Any] | None,
    upstream_tasks: dict[str, list[Any]],
) -> dict[str, Any]:
    """One stage of one rank, inside a Ray worker.

    Args:
        previous: the same rank's previous stage's result (Ray passes it once that task is done).
        upstream_tasks: the ObjectRefs of every rank's task of each earlier model stage (not waited for): a kept
            stage whose tasks have all finished is freed before this task runs.

    Returns the :class:`RankResult` fields plus this task's timing (stage, rank, pid, start, end, built).
    """
    import ray

    start = time.time()
    if previous is not None and previous["stopped"]:  # the rank stopped upstream: nothing to do here
        return {**previous, "stage": stage, "pid": os.getpid(), "start": start, "end": time.time(), "built": 0,
                "skipped": True}
    runner, host = _worker_runner(cfg_yaml)
    host.free_finished(ray, upstream_tasks)
    host.built = 0
    result = runner.run_rank(rank, world_size, [stage], progress=False, num_gpus=num_gpus)
    return {**dataclasses.asdict(result), "stage": stage, "pid": os.getpid(), "start": start, "end": time.time(),
            "built": host.built, "skipped": False}


def _connect(ray: Any, runner_cfg: DictConfig) -> bool:
    """Connect to ``runner.address`` or start a local Ray; returns whether this process started it."""
    if ray.is_initialized():
        return False
    address = runner_cfg.get("address")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        _probe(str(address), float(runner_cfg.get("connect_timeout", 10.0)))
        try:
            ray.init(address=str(address), **kwargs)
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ... for a dead address
            raise ConfigError(
                f"runner.address={address}: no Ray cluster answers there ({type(e).__name__}: {str(e)[:300]}). "
                "Fix: start one (ray start --head) and give its address, or drop runner.address to start a local Ray"
            ) from None
        return True
    num_cpus = runner_cfg.get("num_cpus")
    store_mb = runner_cfg.get("object_store_mb")
    ray.init(
        num_cpus=None if num_cpus is None else int(num_cpus),
        object_store_memory=None if store_mb is None else int(float(store_mb) * (1 << 20)),
        **kwargs,
    )
    return True


def _probe(address: str, timeout: float) -> None:
    """Fail fast when nothing listens at ``host:port`` (Ray itself retries a dead address for minutes)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"runner.address={address}: expected HOST:PORT or ray://HOST:PORT (or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(
            f"runner.address={address}: no Ray cluster answers there within {timeout:g} s ({e}). Fix: start one "
            "(ray start --head) and give its address, or drop runner.address to start a local Ray"
        ) from None


def run_ray(cfg: DictConfig) -> dict[str, Any]:
    """Plan in this process, run every rank's stage chain as chained Ray tasks, then ``finish``; returns the summary."""
    ray = _import_ray()
    runner = PipelineRunner(cfg)
    rc = cfg.runner
    max_retries = int(rc.get("max_retries", 3))
    if max_retries < 0:
        raise ConfigError(f"runner.max_retries={max_retries}: must be >= 0")
    if int(rc.get("keep_backends", 2)) < 0:
        raise ConfigError(f"runner.keep_backends={rc.get('keep_backends')}: must be >= 0 (0: free after each task)")
    timing: dict[str, Any] = {"executor": "ray"}
    t1 = time.perf_counter()
    started = _connect_while_planning(ray, rc, runner, timing)
    try:
        cfg_yaml = OmegaConf.to_yaml(runner.cfg, resolve=True)
        world_size = runner.world_size
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(_rank_task)
        # GPU tasks keep Ray's default for GPU functions: a fresh worker per task, which releases the GPU memory and
        # uses the GPU Ray assigned (a reused process keeps the CUDA devices it first saw), so nothing is kept there.
        remote_gpu = ray.remote(max_calls=1)(_rank_task)
        cfg_ref = ray.put(cfg_yaml)
        tasks, gpus = {}, {}
        for name in runner.stage_names:
            options = stage_resources(name, rc, cluster_gpus)
            log.info("stage %s: %d rank task(s), each %s", name, world_size, options)
            tasks[name] = (remote_gpu if options["num_gpus"] > 0 else remote).options(
                **options, max_retries=max_retries, retry_exceptions=False, name=f"mikupal-{name}"
            )
            gpus[name] = options["num_gpus"]
        # Rank r's stage s takes rank r's stage s-1 result as its argument: Ray runs it once that one is done.
        # It also gets (unresolved) the tasks of earlier model stages, to free a kept one that is finished.
        refs: dict[tuple[str, int], Any] = {}
        upstream: dict[str, list[Any]] = {}
        for index, name in enumerate(runner.stage_names):
            for rank in range(world_size):
                previous = refs[runner.stage_names[index - 1], rank] if index else None
                refs[name, rank] = tasks[name].remote(
                    cfg_ref, rank, world_size, name, gpus[name], previous, dict(upstream)
                )
            if STAGE_SPECS[name].uses_model:
                upstream[name] = [refs[name, rank] for rank in range(world_size)]
        results = _wait(ray, refs, runner)
        stopped = [r["stopped"] for r in results if r["stopped"] and not r["skipped"]]
        summary = runner.finish(stopped=stopped)
        timing["run_s"] = round(time.perf_counter() - t1, 3)  # Ray start-up and plan (overlapping), tasks, finish
        timing["tasks"] = sorted(
            ({k: r[k] for k in ("stage", "rank", "pid", "start", "end", "built", "skipped")} for r in results),
            key=lambda t: t["start"],
        )
        summary["executor"] = timing
        atomic_write_json(runner.layout.summary, summary)
        return summary
    finally:
        if started:
            ray.shutdown()


def _connect_while_planning(ray: Any, rc: DictConfig, runner: PipelineRunner, timing: dict[str, Any]) -> bool:
    """Start (or connect to) Ray in this thread while a helper thread plans the run; returns whether Ray was started.

    Ray's start-up is seconds of its own processes starting, and the plan is this process's work: they overlap.
    Once Ray is up, warm-up tasks import the stage modules in the idle workers while the plan finishes.
    """

    def plan() -> float:
        t = time.perf_counter()
        runner.plan()
        return time.perf_counter() - t

    with ThreadPoolExecutor(1, thread_name_prefix="mikupal-plan") as pool:
        planning = pool.submit(plan)
        t0 = time.perf_counter()
        try:
            started = _connect(ray, rc)
        except BaseException:
            planning.exception()  # let the plan finish; the connection error is the one to report
            raise
        timing["connect_s"] = round(time.perf_counter() - t0, 3)
        try:
            if not planning.done():
                warm = ray.remote(_import_stages).options(num_cpus=1, name="mikupal-warm-up")
                slots = int(ray.cluster_resources().get("CPU", 1))
                for _ in range(max(1, min(slots, runner.world_size))):
                    warm.remote(list(runner.stage_names))
            timing["plan_s"] = round(planning.result(), 3)
        except BaseException:
            if started:
                ray.shutdown()
            raise
    return started


def _import_stages(names: list[str]) -> None:
    """Warm-up task: import the stage adapters' modules in a worker (the rank tasks find them imported)."""
    for name in names:
        importlib.import_module(STAGE_SPECS[name].adapter.split(":")[0])


def _wait(ray: Any, refs: dict[tuple[str, int], Any], runner: PipelineRunner) -> list[dict[str, Any]]:
    """Wait for every task, drawing one progress bar per stage over all ranks (counted from the done logs).

    A stage's bar grows as ranks finish its upstream stage (that is when their items of this stage are known).
    """
    names = runner.stage_names
    world_size = runner.world_size
    videos = runner.read_inputs()
    keys: dict[str, set[str]] = {name: set() for name in names}
    known: set[tuple[str, int]] = set()
    pending = dict(refs)
    progress = {name: _Finished(runner.layout.stage_dir(name)) for name in names}
    bars = {name: tqdm(total=0, desc=name, unit="item", dynamic_ncols=True, position=i) for i, name in enumerate(names)}
    poll = float(runner.cfg.runner.get("progress_interval", 1.0))
    try:
        while True:
            for (name, rank) in refs:  # items of (stage, rank) are known once the rank's upstream stage is done
                index = names.index(name)
                if (name, rank) in known or (index > 0 and (names[index - 1], rank) in pending):
                    continue
                known.add((name, rank))
                keys[name] |= {Stage.item_key(i) for i in runner._inputs(index, videos, rank, world_size)}
            for name, bar in bars.items():
                finished = progress[name].finished()
                if bar.total != len(keys[name]):
                    bar.total = len(keys[name])
                    bar.refresh()
                bar.update(len(finished & keys[name]) - bar.n)
            if not pending:
                break
            ready, _ = ray.wait(list(pending.values()), num_returns=len(pending), timeout=poll)
            for key in [k for k, ref in pending.items() if ref in set(ready)]:
                del pending[key]
                _check(ray, refs[key], key[0])
    finally:
        for bar in bars.values():
            bar.close()
    return [ray.get(refs[key]) for key in refs]


class _Finished:
    """Keys of a stage's finished items (done or failed, any rank), for the progress bar.

    Done logs are append-only: only their new whole lines are read at each call. Error logs restart with each run
    of a stage and are small: they are read whole.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offsets: dict[Path, int] = {}  # done log -> bytes read
        self.done: set[str] = set()

    def finished(self) -> set[str]:
        for path in self.folder.glob("part-*.done.jsonl"):
            offset = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # whole lines only; the rest is still being written
            self.done.update(json.loads(line)["key"] for line in data[:end].splitlines() if line.strip())
            self.offsets[path] = offset + end
        failed = set()
        for path in self.folder.glob("part-*.errors.jsonl"):
            try:
                failed.update(e["item_id"] for e in iter_jsonl(path))
            except FileNotFoundError:
                continue
        return self.done | failed


def _check(ray: Any, ref: Any, name: str) -> None:
    """Raise a finished task's error: the stage's own exception, or why Ray gave up on the task."""
    try:
        ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    except ray.exceptions.RayError as e:
        raise RuntimeError(
            f"stage {name}: a rank task failed after runner.max_retries retries ({type(e).__name__}: {str(e)[:500]}); "
            "rerun the same command to resume, or raise runner.max_retries"
        ) from None
