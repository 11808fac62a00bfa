"""``runner=ray``: each stage runs as a wave of ``runner.world_size`` Ray tasks, one per rank.

The driver (the ``mikupal`` process) plans the run, then for each stage submits one task per rank with the stage's
resources (``runner.resources.<stage>.num_cpus|num_gpus|memory``), waits for the wave while drawing one progress
bar over all ranks (it counts the done logs on the shared run directory), and finally runs ``finish``. Ray places
the tasks (CPU stages fan out over CPU slots, model stages land on GPU nodes) and retries a task whose worker died
(``runner.max_retries``); the retry resumes from the rank's done log, so nothing is done twice.

``runner.address`` connects to a running cluster (``ray start --head`` / ``ray://...``); without it a local Ray
starts with ``runner.num_cpus`` CPUs (null: all). Every node needs MIKU-PAL installed and ``run_dir`` on a
filesystem all nodes share.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from mikupal.rundir import STAGE_SPECS, atomic_write_json
from mikupal.runner import ConfigError, PipelineRunner, RankResult

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


def _rank_task(cfg_yaml: str, rank: int, world_size: int, stage: str, num_gpus: float) -> RankResult:
    """One rank of one stage, inside a Ray worker."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    runner = PipelineRunner(OmegaConf.create(cfg_yaml))
    runner.read_plan()
    return runner.run_rank(rank, world_size, [stage], progress=False, num_gpus=num_gpus)


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
    ray.init(num_cpus=None if num_cpus is None else int(num_cpus), **kwargs)
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
    """Plan in this process, run every stage as a wave of rank tasks on Ray, then ``finish``; returns the summary."""
    ray = _import_ray()
    runner = PipelineRunner(cfg)
    rc = cfg.runner
    max_retries = int(rc.get("max_retries", 3))
    if max_retries < 0:
        raise ConfigError(f"runner.max_retries={max_retries}: must be >= 0")
    t0 = time.perf_counter()
    started = _connect(ray, rc)
    timing: dict[str, Any] = {"executor": "ray", "connect_s": round(time.perf_counter() - t0, 3), "waves_s": {}}
    try:
        runner.plan()
        cfg_yaml = OmegaConf.to_yaml(runner.cfg, resolve=True)
        world_size = runner.world_size
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(_rank_task)
        stopped: list[str] = []
        videos = runner.read_inputs()
        for index, name in enumerate(runner.stage_names):
            options = stage_resources(name, rc, cluster_gpus)
            log.info("stage %s: %d rank task(s), each %s", name, world_size, options)
            task = remote.options(**options, max_retries=max_retries, retry_exceptions=False, name=f"mikupal-{name}")
            wave = time.perf_counter()
            refs = [task.remote(cfg_yaml, r, world_size, name, options["num_gpus"]) for r in range(world_size)]
            results = _wait(ray, refs, runner, index, videos)
            timing["waves_s"][name] = round(time.perf_counter() - wave, 3)
            stopped += [r.stopped for r in results if r.stopped]
            if stopped:
                break
        summary = runner.finish(stopped=stopped)
        summary["executor"] = timing  # elapsed time of Ray's start-up and of each stage's wave
        atomic_write_json(runner.layout.summary, summary)
        return summary
    finally:
        if started:
            ray.shutdown()


def _wait(ray: Any, refs: list[Any], runner: PipelineRunner, index: int, videos: list[Any]) -> list[RankResult]:
    """Wait for a wave of rank tasks, with one progress bar over all ranks (read from the done logs)."""
    name = runner.stage_names[index]
    world_size = runner.world_size
    keys = set()
    for r in range(world_size):
        keys |= {getattr(i, "id", None) or i.video_id for i in runner._inputs(index, videos, r, world_size)}
    store = runner.layout.store(name, 0, 1)
    pending = list(refs)
    with tqdm(total=len(keys), desc=name, unit="item", dynamic_ncols=True) as bar:
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            if store.dir.is_dir():
                finished = (set(store.done_entries()) | {e["item_id"] for e in store.errors()}) & keys
                bar.update(len(finished) - bar.n)
    try:
        return list(ray.get(refs))
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    except ray.exceptions.RayError as e:
        raise RuntimeError(
            f"stage {name}: a rank task failed {runner.cfg.runner.get('max_retries')} retries ({type(e).__name__}: "
            f"{str(e)[:500]}); rerun the same command to resume, or raise runner.max_retries"
        ) from None
