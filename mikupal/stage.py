"""The stage adapter: the fixed part of a pipeline stage (DESIGN §2).

A stage reads the records its upstream stage wrote, processes each *item* with its backend (the swappable
model wrapper, chosen through the Hydra group named after the stage), and returns 0..N output records. The
runner (:mod:`mikupal.runner`) owns everything else: which items are pending (resume), sharding, writing
manifests and the done log, catching per-item errors, timing and the summary.

Writing a stage:

* set ``name`` (== folder in the run directory), ``input_type`` and ``output_type`` (record classes) and
  ``config_keys`` (the top-level config keys whose values define the stage's output; their hash goes into
  ``stage.json`` and a change refuses to resume; default: the backend group alone);
* set ``backend_group`` to the config group that chooses the backend (``conf/<group>/<option>.yaml``, a node with
  ``_target_`` and the backend's constructor arguments). The base builds the backend in :meth:`setup` and frees
  it in :meth:`teardown`; the stage uses it as ``self.backend``;
* keys of that node that the *stage* reads (the same meaning for every backend) are declared once, in
  ``conf/<group>/_stage.yaml``; each backend option pulls them in through its defaults list
  (``defaults: [_stage, _self_]``) and may override their values. :meth:`stage_keys` reads that file and the
  base leaves those keys out of the backend's constructor arguments;
* load anything else the stage needs in :meth:`setup` (call ``super().setup(ctx)`` first);
* implement :meth:`process` for one item; return :class:`Drop` to drop it with a counted reason;
* optionally override :meth:`map` to process several items concurrently (API annotators); a stage that works on
  ``N`` utterances at once in threads reads ``N`` with :meth:`Stage.worker_count` and runs them with
  :func:`in_threads` (``quality.workers``, ``speakers.workers``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence, TypeVar

from omegaconf import DictConfig, OmegaConf

from mikupal.paths import conf_dir
from mikupal.rundir import atomic_write

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Drop:
    """Returned by :meth:`Stage.process` to drop an item on purpose; ``reason`` is counted in the summary."""

    reason: str


class BackendConfigError(ValueError):
    """A backend config node cannot build its backend (no ``_target_``, an unknown key); the message says the fix."""


class StopStage(Exception):
    """Raised from inside a stage to stop it cleanly (e.g. a cost budget is spent); the run can resume later."""


@dataclass
class StageContext:
    """What a stage may know about the run.

    Attributes:
        run_dir: the run directory (absolute).
        rank, world_size: this process's shard.
        cfg: the whole resolved pipeline config.
    """

    run_dir: Path
    rank: int
    world_size: int
    cfg: DictConfig
    _counts: Counter = field(default_factory=Counter)

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """Absolute path of a run-directory-relative path."""
        return self.run_dir / relative

    def relative(self, path: str | os.PathLike[str]) -> str:
        """Run-directory-relative POSIX path of an absolute path inside the run directory."""
        return Path(os.path.relpath(path, self.run_dir)).as_posix()

    def count(self, key: str, value: float = 1) -> None:
        """Add to a named counter of the item being processed (e.g. ``vad.segments_too_short``)."""
        self._counts[key] += value

    def take_counts(self) -> dict[str, float]:
        counts = dict(self._counts)
        self._counts.clear()
        return counts

    def for_item(self) -> "StageContext":
        """A copy with counters of its own, for an item processed while others are (in another thread or
        interleaved): its :meth:`take_counts` holds that item's counts alone."""
        return replace(self, _counts=Counter())


class Stage(ABC):
    """Base class of the eight stage adapters (extract … filter)."""

    name: ClassVar[str]
    input_type: ClassVar[type]
    output_type: ClassVar[type]
    config_keys: ClassVar[tuple[str, ...]] = ()
    #: Dotted config paths (``quality.workers``) that change how fast the stage runs, not what it writes: left out
    #: of the hash in ``stage.json``, so changing them does not make a run directory recompute.
    operational_keys: ClassVar[tuple[str, ...]] = ()
    #: Config group whose node is the backend (``_target_`` + kwargs); the default setup/teardown build and free it.
    backend_group: ClassVar[str | None] = None
    #: Exception raised when the backend node cannot build its backend.
    config_error: ClassVar[type[Exception]] = BackendConfigError
    #: :meth:`setup` may run in a background thread while an earlier stage processes its items
    #: (``runner.prefetch``): it reads only the config, not the run directory, and changes no process-wide state
    #: (thread counts, environment variables) that another stage's work depends on.
    setup_in_background: ClassVar[bool] = False
    #: Modules the stage's work imports on first use that take seconds to import (scipy's submodules: 1–2 s).
    #: :meth:`setup` imports them in a background thread; with ``runner.prefetch`` the runner's host already does
    #: so when the run starts, for every stage with work, so the import overlaps earlier stages.
    background_imports: ClassVar[tuple[str, ...]] = ()
    #: Wall seconds the last :meth:`setup` took, set by the runner's stage host (``mikupal.runner.set_up``) and
    #: reported as the stage's ``setup_time_s`` in ``summary.json``.
    setup_wall_s: float = 0.0

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.backend: Any = None
        self.backends: dict[str, Any] = {}

    # ------------------------------------------------------------------ identity of items and outputs
    @staticmethod
    def item_key(item: Any) -> str:
        """Id of an input item (the key of the done log)."""
        return item.id if hasattr(item, "id") else item.video_id

    @staticmethod
    def parent_key(output: Any) -> str:
        """Id of the input item an output record came from (default: same id as the output)."""
        return output.id if hasattr(output, "id") else output.video_id

    @staticmethod
    def output_key(output: Any) -> str:
        return output.id if hasattr(output, "id") else output.video_id

    # ------------------------------------------------------------------ configuration
    def stage_config(self) -> dict[str, Any]:
        """The resolved config values that define this stage's output (hashed into ``stage.json``): those of
        ``config_keys``, by default of the backend group alone."""
        keys = self.config_keys or ((self.backend_group,) if self.backend_group else ())
        config = {key: _plain(self.cfg.get(key)) for key in keys}
        for dotted in self.operational_keys:
            *parents, last = dotted.split(".")
            node = config
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
        return config

    def worker_count(self, key: str) -> int:
        """The number of items to work on at once, from the dotted config key ``key`` (``quality.workers``).

        Absent, null or 0: 1. List ``key`` in :attr:`operational_keys` when each item's result does not depend on it.

        Raises:
            ValueError: a negative number.
        """
        workers = int(OmegaConf.select(self.cfg, key, default=None) or 1)
        if workers < 1:
            raise ValueError(f"{key} must be >= 1, got {workers}")
        return workers

    # ------------------------------------------------------------------ backends
    @classmethod
    def stage_keys(cls) -> frozenset[str]:
        """Keys of the backend node that the stage reads: the top-level keys of ``conf/<backend_group>/_stage.yaml``."""
        return stage_keys_of(cls.backend_group) if cls.backend_group else frozenset()

    def backend_kwargs(self, ctx: StageContext | None = None) -> dict[str, Any]:
        """The resolved backend node without its stage-level keys: ``_target_`` and the constructor arguments.

        Resolved against the whole config, so backend keys may interpolate others (``device: ${runner.device}``).
        A ``defaults`` list (an option file loaded as plain YAML rather than composed by Hydra) is left out too.
        Stages override this to add arguments that do not come from the node (the annotator's prompt).
        """
        node = OmegaConf.to_container(self.cfg[self.backend_group], resolve=True)
        keys = self.stage_keys() | {"defaults"}
        return {k: v for k, v in dict(node or {}).items() if k not in keys}

    def build_backends(self, ctx: StageContext | None = None) -> dict[str, Any]:
        """The stage's backends by config key, constructed but not set up (construction loads nothing).

        :meth:`setup` sets each up, :meth:`teardown` frees them, and the runner's checks (:mod:`mikupal.checks`)
        check their packages and model files. The first entry is ``self.backend``; a stage with a second model
        (the face mesh of ``faces.landmarks``) adds it here.
        """
        if self.backend_group is None:
            return {}
        kwargs = self.backend_kwargs(ctx)
        return {self.backend_group: build_backend(self.backend_group, kwargs, self.stage_keys(), self.config_error)}

    # ------------------------------------------------------------------ lifecycle
    def setup(self, ctx: StageContext) -> None:
        """Load models. Called once per run of the stage, only if there is pending work.

        By default builds :meth:`build_backends`, calls each one's ``setup()`` and keeps the first as
        ``self.backend``. A backend whose setup fails frees the ones already set up.
        """
        import_in_background(self.background_imports)
        self.backends = {}
        for key, backend in self.build_backends(ctx).items():
            try:
                backend.setup()
            except BaseException:
                self.teardown()
                raise
            self.backends[key] = backend
        self.backend = next(iter(self.backends.values()), None)

    def teardown(self) -> None:
        """Free models (and GPU memory): by default each backend's ``teardown()``, the last built first."""
        backends, self.backends, self.backend = self.backends, {}, None
        for backend in reversed(list(backends.values())):
            backend.teardown()

    @abstractmethod
    def process(self, item: Any, ctx: StageContext) -> Sequence[Any] | Drop:
        """Process one item; return its output records, or :class:`Drop` with a reason."""

    def map(self, items: Iterable[Any], ctx: StageContext) -> Iterator[tuple[Any, Sequence[Any] | Drop | BaseException, dict]]:
        """Yield ``(item, outputs | Drop | exception, counts)`` for each item; sequential by default.

        Per-item exceptions are yielded, not raised, so the runner can record them; :class:`StopStage` and
        ``KeyboardInterrupt`` propagate.
        """
        for item in items:
            result, counts = self.outcome(item, ctx)
            yield item, result, counts

    def outcome(self, item: Any, ctx: StageContext) -> tuple[Sequence[Any] | Drop | BaseException, dict]:
        """:meth:`process` of one item as ``(outputs | Drop | exception, counts)``: a per-item failure is returned,
        not raised; :class:`StopStage` and ``KeyboardInterrupt`` propagate. Counts are taken from ``ctx`` (give
        items processed alongside others their own, :meth:`StageContext.for_item`)."""
        try:
            result: Sequence[Any] | Drop | BaseException = self.process(item, ctx)
        except (StopStage, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - per-item failures are recorded by the runner
            result = e
        return result, ctx.take_counts()


def in_threads(function: Callable[[T], R], items: Sequence[T], workers: int, name: str) -> Iterator[R]:
    """``function(item)`` for each of ``items``, ``workers`` at once in threads named ``name``; results in input order.

    For stages that work on several utterances at once (``quality.workers``, ``speakers.workers``): ``function``
    must be thread-safe and give each item exactly the result it gets alone, and is worth running in threads when
    its work releases the GIL (onnxruntime, torch). With one worker, or one item, everything runs in the calling
    thread. An exception ``function`` raises is raised here when its result is reached; items not started by then
    are not run (as with ``ThreadPoolExecutor.map``). Catch per-item failures inside ``function`` to record them.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield function(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        yield from pool.map(function, items)


def stage_keys_of(group: str) -> frozenset[str]:
    """The stage-level keys of a backend group: the top-level keys of ``conf/<group>/_stage.yaml`` (none if absent)."""
    return _stage_keys(str(conf_dir()), group)


@functools.lru_cache(maxsize=None)
def _stage_keys(conf: str, group: str) -> frozenset[str]:
    path = Path(conf) / group / "_stage.yaml"
    if not path.is_file():
        return frozenset()
    return frozenset(str(k) for k in OmegaConf.load(path) if k != "defaults")


def build_backend(
    group: str, kwargs: dict[str, Any], stage_keys: Iterable[str] = (), error: type[Exception] = BackendConfigError
) -> Any:
    """Construct the backend ``kwargs["_target_"]`` with the other entries as its arguments (nothing is loaded).

    Args:
        group: the config group, for messages (``faces``, ``annotator``).
        kwargs: ``_target_`` and the constructor arguments (plain values, resolved).
        stage_keys: the stage-level keys of the group, named in the message about an unknown key.
        error: the exception class raised on a bad node.

    Raises:
        error: no ``_target_``, a target that cannot be imported, or a key the constructor does not take (a typo).
    """
    from hydra.utils import get_class, get_method

    kwargs = dict(kwargs)
    target = kwargs.pop("_target_", None)
    if not target:
        raise error(f"{group}: the config node has no _target_; choose a backend with {group}=OPTION "
                    f"(an option of conf/{group}/)")
    try:
        factory: Any = get_class(str(target))
    except Exception:  # noqa: BLE001 - maybe a function; get_method raises the clear import error otherwise
        try:
            factory = get_method(str(target))
        except Exception as e:  # noqa: BLE001
            raise error(f"{group}._target_={target} cannot be imported ({e})") from e
    accepted = _accepted_arguments(factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            stage_level = sorted(stage_keys)
            raise error(
                f"{group} ({factory.__name__}): unknown setting(s) {unknown}: neither an argument of "
                f"{target} nor a stage-level key of conf/{group}/_stage.yaml ({', '.join(stage_level) or 'none'})"
            )
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise error(f"{group} ({target}): {e}") from e


def _accepted_arguments(factory: Any) -> set[str] | None:
    """Keyword arguments ``factory`` takes, following ``**kwargs`` passed on to base classes; ``None``: any."""
    if not isinstance(factory, type):
        functions = [factory]
    else:
        functions = [klass.__dict__["__init__"] for klass in factory.__mro__ if "__init__" in klass.__dict__]
    accepted: set[str] = set()
    for function in functions:
        if function is object.__init__:
            return accepted
        parameters = inspect.signature(function).parameters.values()
        accepted |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return accepted - {"self"}
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def write_atomic(path: Path, write: Any) -> Path:
    """Write an artifact under a unique temporary name in the same folder, then rename it into place.

    Args:
        path: final path.
        write: a function taking the temporary path and writing the file there. The temporary name keeps the
            final suffix (so format-by-extension writers work). Same as :func:`mikupal.rundir.atomic_write`.
    """
    return atomic_write(path, write)


def import_in_background(modules: Iterable[str]) -> threading.Thread | None:
    """Import ``modules`` in a daemon thread, so that a later ``import`` finds them loaded (or waits for the import
    under way instead of starting its own). Returns the thread, or ``None`` when all of them are loaded already. A
    failed import is only logged at debug level: the ``import`` where the module is used raises it."""
    missing = [name for name in dict.fromkeys(modules) if name not in sys.modules]
    if not missing:
        return None

    def run() -> None:
        for name in missing:
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - the import where the module is used raises it
                log.debug("background import of %s failed: %s", name, e)

    thread = threading.Thread(target=run, name="mikupal-import", daemon=True)
    thread.start()
    return thread
