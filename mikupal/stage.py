"""The stage adapter: the fixed part of a pipeline stage (DESIGN §2).

A stage reads the records its upstream stage wrote, processes each *item* with its backend (the swappable
model wrapper, chosen through the Hydra group named after the stage), and returns 0..N output records. The
runner (:mod:`mikupal.runner`) owns everything else: which items are pending (resume), sharding, writing
manifests and the done log, catching per-item errors, timing and the summary.

Writing a stage:

* set ``name`` (== folder in the run directory), ``input_type`` and ``output_type`` (record classes) and
  ``config_keys`` (the top-level config keys whose values define the stage's output; their hash goes into
  ``stage.json`` and a change refuses to resume);
* load models in :meth:`setup`, free them in :meth:`teardown`;
* implement :meth:`process` for one item; return :class:`Drop` to drop it with a counted reason;
* optionally override :meth:`map` to process several items concurrently (API annotators).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

from mikupal.rundir import atomic_write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drop:
    """Returned by :meth:`Stage.process` to drop an item on purpose; ``reason`` is counted in the summary."""

    reason: str


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


class Stage(ABC):
    """Base class of the eight stage adapters (extract … filter)."""

    name: ClassVar[str]
    input_type: ClassVar[type]
    output_type: ClassVar[type]
    config_keys: ClassVar[tuple[str, ...]] = ()
    #: Config group whose node is the backend (``_target_`` + kwargs); the default setup/teardown build and free it.
    backend_group: ClassVar[str | None] = None

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

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
        """The resolved config values that define this stage's output (hashed into ``stage.json``)."""
        return {key: _plain(self.cfg.get(key)) for key in self.config_keys}

    # ------------------------------------------------------------------ lifecycle
    def setup(self, ctx: StageContext) -> None:
        """Load models. Called once per run of the stage, only if there is pending work.

        By default instantiates ``cfg[backend_group]`` as ``self.backend`` and calls its ``setup()``.
        """
        if self.backend_group is not None:
            from hydra.utils import instantiate

            self.backend = instantiate(self.cfg[self.backend_group])
            self.backend.setup()

    def teardown(self) -> None:
        """Free models (and GPU memory): by default the backend's ``teardown()``."""
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.teardown()
            self.backend = None

    @abstractmethod
    def process(self, item: Any, ctx: StageContext) -> Sequence[Any] | Drop:
        """Process one item; return its output records, or :class:`Drop` with a reason."""

    def map(self, items: Iterable[Any], ctx: StageContext) -> Iterator[tuple[Any, Sequence[Any] | Drop | BaseException, dict]]:
        """Yield ``(item, outputs | Drop | exception, counts)`` for each item; sequential by default.

        Per-item exceptions are yielded, not raised, so the runner can record them; :class:`StopStage` and
        ``KeyboardInterrupt`` propagate.
        """
        for item in items:
            try:
                result: Sequence[Any] | Drop | BaseException = self.process(item, ctx)
            except (StopStage, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - per-item failures are recorded by the runner
                result = e
            yield item, result, ctx.take_counts()


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
