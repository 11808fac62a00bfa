"""The pipeline runner: stage-major execution over a run directory, split into ``plan``, ``run_rank`` and ``finish``.

The run-directory format (paths, stage order, ``stage.json``) lives in :mod:`mikupal.rundir`. The runner has three
parts, which the executors call (DESIGN §2):

* :meth:`PipelineRunner.plan` runs once per launch: it runs the checks (:mod:`mikupal.checks`), resolves the inputs
  into ``inputs.jsonl``, checks or writes every stage's ``stage.json`` and applies ``recompute``. It is the only
  part that deletes anything.
* :meth:`PipelineRunner.run_rank` runs the given stages for one rank of ``world_size``: it reads the inputs
  manifest and the upstream stages' outputs and writes only its own part files and its completion marker.
* :meth:`PipelineRunner.finish` runs once every rank has a marker: it merges the parts into ``utterances.jsonl``,
  ``errors.jsonl`` and ``summary.json`` (counts, drops, time and throughput per stage).

Executors: the local one (:meth:`PipelineRunner.run`, ``runner=local``) calls the three in one process;
``runner=ray`` runs one Ray task per rank and stage, chained rank by rank (:mod:`mikupal.executors.ray`); SLURM
jobs come from Hydra's submitit launcher (``-m hydra/launcher=submitit_slurm runner.rank='range(0,N)'
runner.world_size=N``), where :class:`mikupal.executors.hydra.PlanOnce` plans in the launching process and the last
rank to finish runs ``finish``. Who sets stages up and frees them is a :class:`StageHost`: with ``runner.prefetch``
the local executor's :class:`PrefetchingHost` sets later stages up in background threads while earlier ones run.

Guarantees:

* An item's outputs are appended and flushed before its done line; a reader only takes outputs whose input item
  is in the same part's done log, so a killed process loses at most the items in flight and a rerun (or a Ray
  retry) finishes them without duplicates.
* ``stage.json`` holds a hash of the stage's config chained with its upstream stage's hash: resuming with a
  changed config (of the stage or anything upstream) is refused unless ``recompute`` names the stage (or
  ``all``); recomputing a stage recomputes every stage after it.
* Videos are assigned to ranks by a stable hash of their id; every stage of a video runs in the same rank. Done
  items of any rank and world size count as done, so a run directory started with one ``world_size`` resumes
  with another.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm.auto import tqdm

from mikupal import SCHEMA_VERSION, __version__
from mikupal.ids import shard_of, video_id
from mikupal.manifest import ManifestWriter, iter_jsonl
from mikupal.records import ItemError, Recording, Utterance, Video
from mikupal.rundir import (
    STAGE_ORDER,
    STAGE_SPECS,
    STAGES,
    DoneEntry,
    RunDir,
    StageMeta,
    StageStore,
    atomic_write_json,
    atomic_write_jsonl,
)
from mikupal.stage import Drop, Stage, StageContext, StopStage, import_in_background

log = logging.getLogger(__name__)

#: Stage name -> adapter class (``module:Class``), in pipeline order (derived from :data:`mikupal.rundir.STAGES`).
STAGE_CLASSES: dict[str, str] = {s.name: s.adapter for s in STAGES}

__all__ = ["ConfigError", "ConfigChangedError", "PipelineRunner", "StageHost", "StageStore", "DoneEntry",
           "resolve_inputs", "run_pipeline", "format_summary", "load_stage", "STAGE_CLASSES", "PrefetchingHost"]


class ConfigError(ValueError):
    """The configuration cannot run as given; the message names the key and the fix."""


class ConfigChangedError(ConfigError):
    """A stage's config differs from the one its existing outputs were made with."""


# ---------------------------------------------------------------------------------------------------- inputs
def resolve_inputs(
    spec: str | Path,
    video_extensions: Iterable[str],
    list_extensions: Iterable[str],
    audio_extensions: Iterable[str] = (),
) -> list[Video]:
    """Turn ``input=PATH`` into :class:`Video` items.

    PATH is a media file, a directory (searched recursively for files with a video or audio extension), or a text
    file (by extension, e.g. ``.txt``/``.list``) listing one path per line (relative paths are relative to the list
    file; blank lines and ``#`` comments are ignored). Audio files (``media.audio_extensions``) run the audio path
    with ``face: null``. A directory scan logs the files it skipped and why, counted by extension (hidden files,
    such as macOS ``._name.mp4`` companions, are skipped too). Listed paths are not checked here: a missing or
    unreadable one becomes an item error of the ``extract`` stage, so the other inputs still complete.

    Raises:
        ConfigError: PATH itself does not exist.
    """
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"input={spec}: no such file or directory (give a media file, a folder or a list file)")
    media_ext = {e.lower() for e in video_extensions} | {e.lower() for e in audio_extensions}
    if path.is_dir():
        sources = []
        skipped = {
            "hidden (name starts with a dot)": Counter(),
            "not a video or audio extension (add it to media.video_extensions or media.audio_extensions)": Counter(),
        }
        hidden, other = skipped
        for p in sorted(path.rglob("*")):
            if not p.is_file():
                continue
            ext = p.suffix.lower() or "(no extension)"
            if any(part.startswith(".") for part in p.relative_to(path).parts):
                skipped[hidden][ext] += 1
            elif p.suffix.lower() in media_ext:
                sources.append(str(p))
            else:
                skipped[other][ext] += 1
        for why, counts in skipped.items():
            if counts:
                by_ext = ", ".join(f"{n} {e}" for e, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
                log.warning("input=%s: skipped %d file(s), %s: %s", spec, sum(counts.values()), why, by_ext)
        if not sources:
            log.warning("input=%s: no files with extensions %s found", spec, sorted(media_ext))
    elif path.suffix.lower() in {e.lower() for e in list_extensions}:
        sources = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                listed = Path(line).expanduser()
                sources.append(str(listed if listed.is_absolute() else path.parent / listed))
    else:
        sources = [str(path)]
    videos: dict[str, Video] = {}
    for source in sources:
        vid = video_id(source)
        videos.setdefault(vid, Video(video_id=vid, source=source, path=str(Path(source).resolve())))
    return list(videos.values())


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_stage(name: str, cfg: DictConfig) -> Stage:
    """The stage adapter of ``name``, built from the config (its backend is not loaded)."""
    if name not in STAGE_CLASSES:
        raise ConfigError(f"stages: unknown stage {name!r}; known stages: {list(STAGE_CLASSES)}")
    module_name, class_name = STAGE_CLASSES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(cfg)


def _duration(record: Any) -> float:
    value = getattr(record, "duration", None)
    return float(value) if isinstance(value, (int, float)) else 0.0


def set_up(stage: Stage, ctx: StageContext) -> None:
    """``stage.setup(ctx)``, timed: its wall seconds go to ``stage.setup_wall_s``, which the runner reports as the
    stage's ``setup_time_s`` in ``summary.json`` wherever the setup ran (in place, or in a background thread with
    ``runner.prefetch``). Every stage host sets stages up through this."""
    t0 = time.perf_counter()
    stage.setup(ctx)
    stage.setup_wall_s = time.perf_counter() - t0


class StageHost:
    """Sets up and frees the stages a process runs: set up for each run of a stage, torn down right after.

    The Ray executor's workers use a subclass that keeps a model stage's backend between the rank tasks of one
    stage (:class:`mikupal.executors.ray.WorkerStages`).
    """

    def open(self, stage: Stage, ctx: StageContext) -> Stage:
        """The stage, set up (models loaded, :func:`set_up`), to process ``ctx``'s rank."""
        set_up(stage, ctx)
        return stage

    def close(self, stage: Stage, *, failed: bool) -> None:
        """The stage's run ended (``failed``: by an exception, e.g. :class:`StopStage`)."""
        stage.teardown()

    def begin(self, plan: Sequence[tuple[Stage, StageContext]], eligible: Sequence[bool] | None = None) -> None:
        """A rank is about to run ``plan``'s stages in this order (each may still be skipped: no pending work);
        ``eligible[i]``: stage ``i`` may be set up before it is opened (it has no outputs yet)."""

    def end(self) -> None:
        """The rank's stages have run or stopped: free whatever :meth:`begin` set up that was not opened."""


class PrefetchingHost(StageHost):
    """The local executor's host with ``runner.prefetch: N``: while a stage runs, the next ``N`` stages of the plan
    whose setup may run in the background (:attr:`Stage.setup_in_background`) are set up in worker threads, and
    the slow imports of every planned stage (:attr:`Stage.background_imports`) start in a thread when the run does.

    A stage's model then loads while earlier stages decode, detect and write (on the audio path Whisper loads
    while extract and VAD run) instead of after them. Outputs are the same: setup reads only the config. A
    background setup that fails raises its exception when the runner opens that stage, as a setup in place
    would; a prefetched stage the runner skips (no pending items) or never reaches (a stop or an error) is torn
    down, at the latest by :meth:`end`. Stages with outputs in the run directory already (a resumed run) are not
    prefetched, so resuming a finished stage loads nothing.

    Accounting: a stage's ``wall_time_s`` in ``summary.json`` leaves out the part of its setup that ran while
    earlier stages worked, and those stages' ``cpu_time_s`` (CPU time of the whole process) include it. Its
    ``setup_time_s`` is the setup's own wall time, wherever it ran.
    """

    def __init__(self, ahead: int) -> None:
        if ahead < 1:
            raise ValueError(f"runner.prefetch must be >= 1 here (0 turns prefetching off), got {ahead}")
        self.ahead = ahead
        self._plan: list[tuple[Stage, StageContext]] = []
        self._eligible: list[bool] = []
        self._futures: dict[int, Future] = {}  # plan index -> its background setup
        self._opened: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None
        self.imports: threading.Thread | None = None  # the thread importing the plan's background_imports

    def begin(self, plan: Sequence[tuple[Stage, StageContext]], eligible: Sequence[bool] | None = None) -> None:
        """Start setting up the first eligible stage and the ``ahead`` eligible stages after it (default eligible:
        every stage whose :attr:`~Stage.setup_in_background` is true)."""
        self.end()
        self._plan = list(plan)
        with_work = [bool(e) for e in (eligible if eligible is not None else [True] * len(self._plan))]
        self._eligible = [e and s.setup_in_background for (s, _), e in zip(self._plan, with_work)]
        # the slow imports of every stage with work start now, whether or not its setup may run early
        self.imports = import_in_background(
            name for (s, _), e in zip(self._plan, with_work) if e for name in s.background_imports
        )
        # the first stage is about to run: it and the next ``ahead`` stages start setting up now
        self._pool = ThreadPoolExecutor(max_workers=self.ahead + 1, thread_name_prefix="mikupal-setup")
        first = next((i for i, e in enumerate(self._eligible) if e), None)
        if first is not None:
            self._submit_after(first - 1, count=1)
            self._submit_after(first)

    def _index(self, stage: Stage) -> int | None:
        return next((i for i, (s, _) in enumerate(self._plan) if s is stage), None)

    def _submit_after(self, current: int, count: int | None = None) -> None:
        """Submit the setups of the next ``count`` (default ``ahead``) eligible stages after plan index ``current``."""
        waiting = [i for i in range(current + 1, len(self._plan)) if self._eligible[i]][: count or self.ahead]
        for i in waiting:
            if i not in self._futures and self._pool is not None:
                stage, ctx = self._plan[i]
                self._futures[i] = self._pool.submit(set_up, stage, ctx)

    def _discard(self, i: int) -> None:
        """Tear down the prefetched stage ``i`` (waits for its setup; a failed setup freed itself)."""
        future = self._futures.pop(i)
        if future.exception() is None:
            self._plan[i][0].teardown()
        else:
            log.debug("stage %s: background setup failed, not used: %s", self._plan[i][0].name, future.exception())

    def open(self, stage: Stage, ctx: StageContext) -> Stage:
        i = self._index(stage)
        if i is None:  # not in the plan: set up in place
            return super().open(stage, ctx)
        for skipped in [j for j in self._futures if j < i and j not in self._opened]:
            self._discard(skipped)  # a stage before this one that had nothing to do
        self._opened.add(i)
        self._submit_after(i)
        future = self._futures.get(i)
        if future is None:  # not prefetchable (or not reached by the window): set up in place
            return super().open(stage, ctx)
        future.result()  # re-raises a failed setup here, where a setup in place would have raised it
        return stage

    def close(self, stage: Stage, *, failed: bool) -> None:
        i = self._index(stage)
        if i is not None:
            self._futures.pop(i, None)
        stage.teardown()

    def end(self) -> None:
        for i in list(self._futures):
            self._discard(i)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._plan, self._eligible, self._opened = [], [], set()


@dataclass
class RankResult:
    """What :meth:`PipelineRunner.run_rank` did: ``stopped`` is ``"<stage>: <reason> (...)"`` if a stage stopped."""

    rank: int
    world_size: int
    stopped: str | None = None


# ---------------------------------------------------------------------------------------------------- runner
class PipelineRunner:
    """Runs the configured stages over a run directory; ``run()`` (the local executor) returns the summary dict."""

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.get("input") in (None, "???") or OmegaConf.is_missing(cfg, "input"):
            raise ConfigError("input=PATH is required (a video file, a folder of videos, or a text file listing paths)")
        if OmegaConf.is_missing(cfg, "run_dir"):
            raise ConfigError("run_dir=DIR is required (where outputs go; rerunning the same command resumes)")
        self.run_dir = Path(cfg.run_dir).expanduser().resolve()
        self.layout = RunDir(self.run_dir)
        # who sets up and frees stages (the Ray workers keep model stages between ranks; runner.prefetch sets up
        # the next stages in the background)
        prefetch = int(cfg.runner.get("prefetch", 0) or 0)
        if prefetch < 0:
            raise ConfigError(f"runner.prefetch={prefetch} must be >= 0 (0: set each stage up when it starts)")
        self.host: StageHost = PrefetchingHost(prefetch) if prefetch else StageHost()
        set_omp_wait_policy(cfg.runner.get("omp_wait_policy"))
        self._prepared: tuple[tuple, list[Stage], list[StageContext]] | None = None  # see _rank_stages
        self.rank, self.world_size = check_rank(cfg.runner.rank, cfg.runner.world_size)
        self.fail_fast = bool(cfg.fail_fast)
        self.stage_names = check_stage_names(cfg.get("stages"))
        # Stages read ``cfg.stages`` (e.g. annotate finds its upstream stage): give them the resolved list.
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.stages = list(self.stage_names)
        self.cfg = cfg
        recompute = cfg.get("recompute") or []
        self.recompute = set([recompute] if isinstance(recompute, str) else recompute)
        unknown = sorted(self.recompute - set(STAGE_ORDER) - {"all"})
        if unknown:
            raise ConfigError(f"recompute: unknown stage(s) {unknown}; give stage names from {list(STAGE_ORDER)} or [all]")

    # ------------------------------------------------------------------------------------------ plan
    def _stage_hashes(self) -> dict[str, tuple[Stage, dict[str, Any], str, str]]:
        """Per stage: (adapter, config, config hash, upstream hash), hashes chained in pipeline order."""
        out = {}
        upstream = _hash({"inputs": "v1"})
        for name in self.stage_names:
            stage = load_stage(name, self.cfg)
            config = stage.stage_config()
            config_hash = _hash({"config": config, "upstream": upstream, "schema": SCHEMA_VERSION})
            out[name] = (stage, config, config_hash, upstream)
            upstream = config_hash
        return out

    def plan(self, *, allow_recompute: bool = True, checks: bool = True) -> list[Video]:
        """Check the config, resolve the inputs, write ``inputs.jsonl``, every ``stage.json`` and ``plan.json``.

        Args:
            allow_recompute: whether ``recompute`` may delete outputs here. False where other ranks may already
                be running (independently started processes), which makes a ``recompute`` a :class:`ConfigError`.
            checks: run :func:`mikupal.checks.run_checks` first.

        Raises:
            ConfigError: a check failed, ``input`` does not exist, or ``recompute`` is not allowed here.
            ConfigChangedError: a stage has outputs made with another config and ``recompute`` does not name it.
        """
        if checks:
            from mikupal.checks import run_checks

            run_checks(self.cfg, self.stage_names)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        media = self.cfg.media
        videos = resolve_inputs(
            self.cfg.input, media.video_extensions, media.list_extensions, media.get("audio_extensions", ())
        )
        atomic_write_jsonl(self.layout.inputs, (v.to_dict() for v in videos))
        recomputing = False  # once a stage is recomputed, every later stage is too
        wiped = False
        hashes = {}
        for name, (stage, config, config_hash, upstream_hash) in self._stage_hashes().items():
            store = self.layout.store(name, 0, 1)
            explicit = name in self.recompute or "all" in self.recompute
            if store.has_work() and (recomputing or explicit):
                if not allow_recompute:
                    raise ConfigError(
                        f"recompute={sorted(self.recompute)} with runner.world_size={self.world_size} in separately "
                        "started processes would let one rank delete another's work. Plan once: use runner=ray, or "
                        "-m hydra/launcher=submitit_local|submitit_slurm runner.rank='range(0,N)', or run "
                        "runner.world_size=1 with the recompute first"
                    )
                log.warning("stage %s: recomputing (its earlier outputs are removed, and every later stage's)", name)
                store.clear()
                recomputing = wiped = True
            elif store.has_work():
                old = StageMeta.read(store.meta_path)
                if old is not None and old.config_hash != config_hash:
                    changed = sorted(k for k in config if old.config.get(k) != config[k])
                    why = f"config keys {changed} changed" if changed else "an upstream stage's config changed"
                    raise ConfigChangedError(
                        f"stage {name!r} in {self.run_dir} was run with a different configuration ({why}). "
                        f"Resume with the original configuration, use a new run_dir, or pass "
                        f"recompute=[{name}] (or recompute=all) to recompute it and every later stage."
                    )
            StageMeta(name, config, config_hash, upstream_hash, __version__, SCHEMA_VERSION).write(store.meta_path)
            hashes[name] = config_hash
        if wiped:  # completion markers of earlier runs no longer describe the outputs
            for marker in (self.run_dir / "ranks").glob("rank-*.json"):
                marker.unlink()
        atomic_write_json(self.layout.plan, {
            "stages": list(self.stage_names),
            "stage_hashes": hashes,
            "world_size": self.world_size,
            "fingerprint": self._fingerprint(videos, hashes),
            "mikupal_version": __version__,
        })
        log.info("%d input video(s); run_dir=%s; %d rank(s)", len(videos), self.run_dir, self.world_size)
        return videos

    def _fingerprint(self, videos: Sequence[Video], hashes: dict[str, str]) -> str:
        """What a rank's completion marker must match: the inputs, the stage hashes and the world size."""
        return _hash({"videos": sorted(v.video_id for v in videos), "stages": hashes, "world_size": self.world_size})

    def read_plan(self) -> dict[str, Any]:
        """``plan.json``, checked against this config (a rank started apart from its plan runs only if they match).

        Raises:
            ConfigError: no plan, or the plan was made with another configuration or world size.
        """
        if not self.layout.plan.is_file() or not self.layout.inputs.is_file():
            raise ConfigError(f"run_dir={self.run_dir} has no plan.json/inputs.jsonl: plan the run first (the "
                              "executors do: runner=local, runner=ray, or -m with the submitit launcher)")
        plan = json.loads(self.layout.plan.read_text(encoding="utf-8"))
        hashes = {name: h for name, (_, _, h, _) in self._stage_hashes().items()}
        if plan.get("stage_hashes") != hashes or plan.get("world_size") != self.world_size:
            raise ConfigError(
                f"run_dir={self.run_dir} was planned with another configuration (stages {plan.get('stages')}, "
                f"world_size {plan.get('world_size')}); start every rank with the same overrides as the plan"
            )
        return plan

    def read_inputs(self) -> list[Video]:
        """The planned input videos (``inputs.jsonl``)."""
        return [Video.from_dict(obj) for obj in iter_jsonl(self.layout.inputs)]

    # ------------------------------------------------------------------------------------------ ranks
    def _inputs(self, index: int, videos: list[Video], rank: int, world_size: int) -> list[Any]:
        """Rank ``rank``'s input items of stage ``index`` (from the upstream stage's outputs)."""
        if index == 0:
            return [v for v in videos if shard_of(v.video_id, world_size) == rank]
        upstream = load_stage(self.stage_names[index - 1], self.cfg)
        store = self.layout.store(upstream.name, rank, world_size)
        records = store.outputs(upstream.output_type, upstream.parent_key, upstream.output_key)
        items = [r for r in records.values() if shard_of(r.video_id, world_size) == rank]
        return sorted(items, key=Stage.item_key)

    def run_rank(
        self,
        rank: int | None = None,
        world_size: int | None = None,
        stages: Sequence[str] | None = None,
        *,
        progress: bool = True,
        num_gpus: float | None = None,
    ) -> RankResult:
        """Run ``stages`` (default: all configured) for one rank; writes only that rank's part files and marker.

        Args:
            rank, world_size: the rank (default: ``runner.rank`` / ``runner.world_size``).
            stages: a contiguous run of the configured stages (the Ray executor passes one stage per task).
            progress: show a per-stage progress bar (executors that draw their own pass False).
            num_gpus: GPUs held by this rank while it runs a model stage, for the GPU-hour accounting (default:
                1 for a model stage when a CUDA device is in use, else 0).
        """
        rank = self.rank if rank is None else rank
        world_size = self.world_size if world_size is None else world_size
        check_rank(rank, world_size)
        names = list(stages) if stages is not None else list(self.stage_names)
        videos = self.read_inputs()
        result = RankResult(rank, world_size)
        stages, ctxs = self._rank_stages(names, rank, world_size)
        stores = [self.layout.store(name, rank, world_size) for name in names]
        try:
            for name, stage, store, ctx in zip(names, stages, stores, ctxs):
                index = self.stage_names.index(name)
                items = self._inputs(index, videos, rank, world_size)
                try:
                    self._run_stage(stage, store, items, progress, num_gpus, ctx)
                except StopStage as e:
                    done = len(set(store.done_entries()) & {Stage.item_key(i) for i in items})
                    log.warning("stage %s stopped on rank %d: %s (rerun the same command to continue)", name, rank, e)
                    result.stopped = (f"{name}: {e} (rank {rank}: {done} of {len(items)} item(s) done, "
                                      f"{len(items) - done} left)")
                    break
        finally:
            self._end_rank()
        if result.stopped or names[-1] == self.stage_names[-1]:
            plan = json.loads(self.layout.plan.read_text(encoding="utf-8"))
            atomic_write_json(self.layout.rank_marker(rank, world_size), {
                "status": "stopped" if result.stopped else "complete",
                "stopped": result.stopped,
                "fingerprint": plan["fingerprint"],
            })
        return result

    def _rank_stages(
        self, names: Sequence[str], rank: int, world_size: int
    ) -> tuple[list[Stage], list[StageContext]]:
        """The stage adapters and contexts a rank runs, handed to the host (which may start setting them up).

        The local executor calls this before :meth:`plan`, so models load while the run is planned; a stage with
        outputs already (a resumed run) is set up only once it is known to have work."""
        key = (tuple(names), rank, world_size)
        if self._prepared is not None and self._prepared[0] == key:
            return self._prepared[1], self._prepared[2]
        self._end_rank()
        stages = [load_stage(name, self.cfg) for name in names]
        ctxs = [StageContext(run_dir=self.run_dir, rank=rank, world_size=world_size, cfg=self.cfg) for _ in names]
        eligible = [not self.layout.store(name, rank, world_size).has_work() for name in names]
        self.host.begin(list(zip(stages, ctxs)), eligible=eligible)
        self._prepared = (key, stages, ctxs)
        return stages, ctxs

    def _end_rank(self) -> None:
        """Free what the host set up ahead and did not use (see :meth:`_rank_stages`)."""
        if self._prepared is not None:
            self._prepared = None
            self.host.end()

    def _run_stage(
        self, stage: Stage, store: StageStore, items: list[Any], progress: bool, num_gpus: float | None,
        ctx: StageContext | None = None,
    ) -> None:
        done_entries = store.done_entries()
        done = set(done_entries)
        store.compact_own_outputs(stage.parent_key, store.own_done_keys())
        store.errors_path.unlink(missing_ok=True)  # failed items are retried; they re-record if they fail again
        if not self.cfg.runner.retry_errors:
            done |= {e["item_id"] for e in store.errors()}
        pending = [item for item in items if Stage.item_key(item) not in done]
        log.info("stage %s: %d item(s), %d already done, %d to do", stage.name, len(items), len(items) - len(pending), len(pending))
        if not pending:
            return
        wall0, cpu0 = time.perf_counter(), time.process_time()
        audio = 0.0
        if ctx is None:
            ctx = StageContext(run_dir=self.run_dir, rank=store.rank, world_size=store.world_size, cfg=self.cfg)
        stage = self.host.open(stage, ctx)
        setup_s, stage.setup_wall_s = stage.setup_wall_s, 0.0  # a stage a Ray worker kept set up reports 0 next time
        failed = True
        try:
            with ManifestWriter(store.outputs_path) as out, ManifestWriter(store.done_path) as done_log, ManifestWriter(
                store.errors_path
            ) as errors, tqdm(total=len(pending), desc=stage.name, unit="item", dynamic_ncols=True, disable=not progress) as bar:
                for item, result, counts in stage.map(pending, ctx):
                    key = Stage.item_key(item)
                    if isinstance(result, BaseException):
                        if self.fail_fast:
                            raise result
                        message = str(result) or repr(result)
                        log.error("stage %s: item %s failed: %s: %s", stage.name, key, type(result).__name__, message)
                        errors.write(
                            ItemError(stage.name, key, type(result).__name__, message, getattr(item, "source", None))
                        )
                    else:
                        outputs = [] if isinstance(result, Drop) else list(result)
                        for record in outputs:
                            out.write(record)
                        # audio processed: the item's own duration, or (videos) the audio it gave
                        audio += _duration(item) or sum(_duration(r) for r in outputs)
                        done_log.write(
                            DoneEntry(
                                key=key,
                                video_id=item.video_id,
                                n_out=len(outputs),
                                drop=result.reason if isinstance(result, Drop) else None,
                                counts=counts,
                            ).__dict__
                        )
                    bar.update(1)
            failed = False
        finally:
            self.host.close(stage, failed=failed)
            wall = time.perf_counter() - wall0
            gpus = _gpus_held(stage.name, self.cfg) if num_gpus is None else num_gpus
            store.add_stats(wall_s=wall, cpu_s=time.process_time() - cpu0, gpu_s=wall * gpus, audio_s=audio,
                            setup_s=setup_s, runs=1)

    # ------------------------------------------------------------------------------------------ local executor
    def run(self, *, planned: bool = False) -> dict[str, Any]:
        """The local executor: ``plan`` (unless ``planned``), this process's rank, then ``finish`` if it is last.

        Returns ``summary.json``'s contents, or this rank's summary while other ranks are still running.
        """
        self._rank_stages(self.stage_names, self.rank, self.world_size)  # runner.prefetch: setups start now
        try:
            if planned:
                self.read_plan()
            else:
                # Separately started ranks may be running already: only a lone process may delete (recompute).
                self.plan(allow_recompute=self.world_size == 1)
            result = self.run_rank(self.rank, self.world_size)
        finally:
            self._end_rank()
        return self.finish_if_last(result)

    def finish_if_last(self, result: RankResult | None = None) -> dict[str, Any]:
        """Write this rank's summary; then ``finish`` if every rank has its marker (this one is the last).

        Returns the merged summary after ``finish``, else the rank summary.
        """
        summary = None
        if result is not None:
            summary = self._summary(final=None, stopped=[result.stopped] if result.stopped else [])
            summary["shard"] = {"rank": result.rank, "world_size": result.world_size}
            atomic_write_json(self.layout.rank_summary(result.rank, result.world_size), summary)
        if all(m is not None for m in self._markers()):
            return self.finish()
        return summary if summary is not None else self._summary(final=None, stopped=[])

    def _markers(self) -> list[dict[str, Any] | None]:
        """Each rank's completion marker, or None where it is missing or belongs to another plan."""
        plan = json.loads(self.layout.plan.read_text(encoding="utf-8"))
        found = []
        for r in range(self.world_size):
            path = self.layout.rank_marker(r, self.world_size)
            marker = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            found.append(marker if marker and marker.get("fingerprint") == plan["fingerprint"] else None)
        return found

    # ------------------------------------------------------------------------------------------ finish
    def finish(self, stopped: Sequence[str] = ()) -> dict[str, Any]:
        """Merge the ranks' parts: ``errors.jsonl``, ``summary.json`` and (all ranks complete) ``utterances.jsonl``.

        Args:
            stopped: stop messages the executor saw (ranks' markers add theirs).
        """
        markers = self._markers()
        stops = list(stopped) + [m["stopped"] for m in markers if m and m.get("stopped")]
        complete = all(m is not None and m["status"] == "complete" for m in markers) and not stops
        final = self._final_utterances() if complete else None
        summary = self._summary(final=final, stopped=stops)
        atomic_write_jsonl(self.layout.errors, summary.pop("_errors"))
        atomic_write_json(self.layout.summary, summary)
        return summary

    def _final_utterances(self) -> list[Utterance] | None:
        last = load_stage(self.stage_names[-1], self.cfg)
        if last.output_type is not Utterance:
            return None
        store = self.layout.store(last.name, 0, 1)
        records = store.outputs(Utterance, last.parent_key, last.output_key)
        final = sorted(records.values(), key=lambda u: u.id)
        atomic_write_jsonl(self.layout.utterances, (u.to_dict() for u in final))
        return final

    def _summary(self, final: list[Utterance] | None, stopped: Sequence[str]) -> dict[str, Any]:
        errors: list[dict[str, Any]] = []
        per_stage: dict[str, Any] = {}
        drops: Counter = Counter()
        counters: Counter = Counter()
        hours_in = 0.0
        for name in self.stage_names:
            stage = load_stage(name, self.cfg)
            store = self.layout.store(name, 0, 1)
            entries = store.done_entries()
            # one error per item (the latest); an item done since (by a retry or another rank) is not an error
            stage_errors = {e["item_id"]: e for e in store.errors() if e["item_id"] not in entries}
            errors.extend(stage_errors.values())
            stage_drops = Counter(f"{name}.{e.drop}" for e in entries.values() if e.drop)
            drops.update(stage_drops)
            for e in entries.values():
                counters.update(dict(e.counts))
            stats = Counter()
            for s in store.stats():
                stats.update(s)
            per_stage[name] = {
                "items_done": len(entries),
                "outputs": sum(e.n_out for e in entries.values()),
                "dropped": sum(stage_drops.values()),
                "errors": len(stage_errors),
                "wall_time_s": round(stats["wall_s"], 3),
                "setup_time_s": round(stats["setup_s"], 3),
                "cpu_time_s": round(stats["cpu_s"], 3),
                "gpu_time_s": round(stats["gpu_s"], 3),
                "audio_hours": round(stats["audio_s"] / 3600, 6),
                "audio_hours_per_cpu_hour": round(stats["audio_s"] / stats["cpu_s"], 3) if stats["cpu_s"] else None,
                "audio_hours_per_gpu_hour": round(stats["audio_s"] / stats["gpu_s"], 3) if stats["gpu_s"] else None,
            }
            if stage.output_type is Recording and name == self.stage_names[0]:
                records = store.outputs(Recording, stage.parent_key, stage.output_key)
                hours_in = sum(r.duration for r in records.values()) / 3600
        # Segment-level drops that a stage counted inside an item (e.g. ``drop.vad.too_short``) join the drop table.
        for key, value in list(counters.items()):
            if key.startswith("drop."):
                drops[key[len("drop."):]] += int(value)
                del counters[key]
        n_videos = sum(1 for _ in iter_jsonl(self.layout.inputs)) if self.layout.inputs.is_file() else 0
        return {
            "complete": final is not None,
            "stopped": "; ".join(stopped) if stopped else None,
            "videos": n_videos,
            "hours_in": round(hours_in, 6),
            "utterances_out": len(final) if final is not None else None,
            "hours_out": round(sum(u.duration for u in final) / 3600, 6) if final is not None else None,
            "drops": dict(sorted(drops.items())),
            "errors": len(errors),
            "errors_by_stage": dict(Counter(e["stage"] for e in errors)),
            "stages": per_stage,
            "counters": {k: round(v, 6) for k, v in sorted(counters.items())},
            "cost_usd": round(counters.get("annotate.cost_usd", 0.0), 6),
            "shard": None,
            "world_size": self.world_size,
            "mikupal_version": __version__,
            "_errors": errors,
        }


# ---------------------------------------------------------------------------------------------------- helpers
def check_rank(rank: Any, world_size: Any) -> tuple[int, int]:
    """Validate ``runner.rank`` / ``runner.world_size``; returns them as ints.

    Raises:
        ConfigError: ``world_size < 1`` or ``rank`` outside ``0..world_size-1``.
    """
    try:
        rank, world_size = int(rank), int(world_size)
    except (TypeError, ValueError):
        raise ConfigError(f"runner.rank={rank!r} and runner.world_size={world_size!r} must be integers") from None
    if world_size < 1:
        raise ConfigError(f"runner.world_size={world_size} must be >= 1 (the number of ranks splitting the videos)")
    if not 0 <= rank < world_size:
        raise ConfigError(f"runner.rank={rank} must be in 0..runner.world_size-1 (0..{world_size - 1})")
    return rank, world_size


def check_stage_names(stages: Any) -> list[str]:
    """The configured stage list (``null``: every stage), checked for known names and pipeline order."""
    names = list(STAGE_ORDER) if stages is None else [str(s) for s in (stages if not isinstance(stages, str) else [stages])]
    order = list(STAGE_ORDER)
    unknown = [s for s in names if s not in STAGE_SPECS]
    if unknown:
        raise ConfigError(f"stages: unknown {unknown}; known stages in order: {order}")
    if not names:
        raise ConfigError(f"stages: empty; give stages in pipeline order, e.g. stages={order}")
    if len(set(names)) != len(names) or names != sorted(names, key=order.index):
        raise ConfigError(f"stages must be in pipeline order {order}, got {names}")
    if names[0] != "extract":
        raise ConfigError("stages must start with 'extract' (it turns the input videos into audio)")
    return names


def set_omp_wait_policy(policy: Any) -> None:
    """Apply ``runner.omp_wait_policy`` (``passive``/``active``; null leaves it) as ``OMP_WAIT_POLICY``, unless the
    environment sets it already (that wins). OpenMP reads it when a library that uses it (CTranslate2, torch)
    loads, so it applies to those loaded later in this process. With the default active policy the idle OpenMP
    threads spin; on 2 shared cores that spinning cost about 1.5 s of CPU while Whisper base loaded.

    Raises:
        ConfigError: another value.
    """
    if policy is None:
        return
    value = str(policy).strip().upper()
    if value not in ("PASSIVE", "ACTIVE"):
        raise ConfigError(f"runner.omp_wait_policy={policy!r}: use passive, active or null (leave OMP_WAIT_POLICY)")
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = value
        loaded = [name for name in ("ctranslate2", "torch") if name in sys.modules]
        if loaded:
            log.debug("runner.omp_wait_policy=%s: %s already loaded, keeps its policy", policy, loaded)


def _gpus_held(stage: str, cfg: DictConfig) -> float:
    """GPUs a local-process stage held: 1 for a model stage on a CUDA device (torch already loaded), else 0."""
    if not STAGE_SPECS[stage].uses_model or str(cfg.runner.get("device", "auto")).startswith("cpu"):
        return 0.0
    torch = sys.modules.get("torch")
    try:
        return 1.0 if torch is not None and torch.cuda.is_available() else 0.0
    except Exception:  # noqa: BLE001 - accounting only
        return 0.0


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Run the pipeline described by a composed config (see ``conf/pipeline.yaml``); returns the summary.

    ``runner.executor`` picks the executor: ``local`` (this process) or ``ray``.
    """
    executor = str(cfg.runner.get("executor", "local"))
    if executor == "ray":
        from mikupal.executors.ray import run_ray

        return run_ray(cfg)
    if executor != "local":
        raise ConfigError(f"runner.executor={executor!r}: use runner=local or runner=ray")
    return PipelineRunner(cfg).run()


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable summary table printed at the end of a run."""
    rows = [
        ("videos", summary["videos"]),
        ("hours in", f"{summary['hours_in']:.4f}"),
        ("utterances out", summary["utterances_out"] if summary["utterances_out"] is not None else "(ranks pending or stopped)"),
        ("hours out", f"{summary['hours_out']:.4f}" if summary["hours_out"] is not None else "-"),
        ("errors", summary["errors"]),
    ]
    if summary.get("cost_usd"):
        rows.append(("cost (USD)", f"{summary['cost_usd']:.4f}"))
    if summary.get("stopped"):
        rows.append(("stopped", summary["stopped"]))
    width = max(len(r[0]) for r in rows)
    lines = ["", "MIKU-PAL run summary", "-" * 40]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines += ["", f"{'stage':<10} {'done':>6} {'out':>7} {'dropped':>8} {'errors':>7} {'wall s':>9} {'setup s':>8} "
              f"{'CPU s':>9} {'audio h':>9} {'h/CPU-h':>9} {'h/GPU-h':>9}"]
    for name, s in summary["stages"].items():
        def num(key: str, fmt: str) -> str:
            return "-" if s.get(key) is None else format(s[key], fmt)

        lines.append(
            f"{name:<10} {s['items_done']:>6} {s['outputs']:>7} {s['dropped']:>8} {s['errors']:>7} "
            f"{num('wall_time_s', '.2f'):>9} {num('setup_time_s', '.2f'):>8} {num('cpu_time_s', '.2f'):>9} "
            f"{num('audio_hours', '.4f'):>9} "
            f"{num('audio_hours_per_cpu_hour', '.1f'):>9} {num('audio_hours_per_gpu_hour', '.1f'):>9}"
        )
    lines.append("(setup s: the stage's model loading, in wall s or, prefetched, in the background; h/CPU-h, h/GPU-h: "
                 "audio hours a stage processes per CPU-hour / GPU-hour, from this run directory)")
    if summary["drops"]:
        lines += ["", "drops by reason:"]
        lines += [f"  {reason:<36} {n:>6}" for reason, n in summary["drops"].items()]
    return "\n".join(lines)

