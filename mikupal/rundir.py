"""The run-directory format: the stage order, every artifact path, ``stage.json``, and atomic writes.

This module is the one place that knows where things live in a run directory (DESIGN §2)::

    <run_dir>/
      inputs.jsonl                     the resolved input videos (written by ``plan``; later stages read it)
      plan.json                        what ``plan`` resolved: stages, world size, stage hashes
      utterances.jsonl                 final manifest (written by ``finish``)
      summary.json                     counts, hours, drops, errors, time and throughput per stage (``finish``)
      errors.jsonl                     one line per failed item, all stages, all ranks (``finish``)
      ranks/rank-RRRRR-of-WWWWW.json   a rank's completion marker: complete | stopped (``run_rank``)
      audio/<id>.flac, faces/<id>.mp4  utterance audio and face clips
      <stage>/stage.json               resolved stage config, its hash, package and schema versions (``plan``)
      <stage>/part-RRRRR-of-WWWWW.jsonl          output records of rank R of W
      <stage>/part-RRRRR-of-WWWWW.done.jsonl     one line per finished input item of that rank
      <stage>/part-RRRRR-of-WWWWW.errors.jsonl   failed items of that rank (retried on the next run)
      <stage>/part-RRRRR-of-WWWWW.stats.json     that rank's time and audio processed, summed over runs

Only ``plan`` writes ``stage.json``, ``inputs.jsonl`` and ``plan.json`` and only ``plan`` deletes (``recompute``); a
rank writes only files whose name carries its own ``part-RRRRR-of-WWWWW`` / ``rank-RRRRR-of-WWWWW``; only
``finish`` writes the merged files. Every whole-file write goes through :func:`atomic_write`, whose temporary name is
unique, so two processes writing the same file never clobber each other's temporary file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from mikupal.manifest import iter_jsonl


# ---------------------------------------------------------------------------------------------------- stage order
@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage: its name (== folder in the run directory), adapter class and resource kind.

    Attributes:
        name: stage name, used in ``stages=[...]``, ``recompute=[...]`` and ``runner.resources.<name>``.
        adapter: ``module:Class`` of the :class:`~mikupal.stage.Stage` adapter (imported only when needed).
        uses_model: the stage runs a neural model that can use a GPU (the Ray executor gives it 1 GPU by
            default when the device is CUDA).
    """

    name: str
    adapter: str
    uses_model: bool = False


#: Every stage, in pipeline order. Adding a stage is one line here.
STAGES: tuple[StageSpec, ...] = (
    StageSpec("extract", "mikupal.extract.stage:ExtractStage"),
    StageSpec("separate", "mikupal.separate.stage:SeparateStage", uses_model=True),
    StageSpec("vad", "mikupal.vad.stage:VadStage"),
    StageSpec("asr", "mikupal.asr.stage:AsrStage", uses_model=True),
    StageSpec("faces", "mikupal.faces.stage:FacesStage", uses_model=True),
    StageSpec("asd", "mikupal.asd.stage:AsdStage", uses_model=True),
    StageSpec("speakers", "mikupal.speakers.stage:SpeakersStage", uses_model=True),
    StageSpec("quality", "mikupal.quality.stage:QualityStage"),  # DNSMOS runs on onnxruntime CPU
    StageSpec("annotate", "mikupal.annotate.stage:AnnotateStage", uses_model=True),
    StageSpec("filter", "mikupal.filter:FilterStage"),
)
STAGE_ORDER: tuple[str, ...] = tuple(s.name for s in STAGES)
STAGE_SPECS: dict[str, StageSpec] = {s.name: s for s in STAGES}


# ---------------------------------------------------------------------------------------------------- atomic writes
def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Write a file under a unique temporary name in the same folder, then rename it into place.

    Args:
        path: final path.
        write: a function taking the temporary path and writing the file there. The temporary name starts with
            ``.`` (so ``part-*`` globs never see it) and keeps the final suffix (so format-by-extension writers
            work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write a JSON file (indented, trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], objects: Iterable[dict[str, Any]]) -> int:
    """Write a whole JSONL file atomically. Returns the line count."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8") as f:
            for obj in objects:
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
    return count


# ---------------------------------------------------------------------------------------------------- stage.json
@dataclass
class StageMeta:
    """Contents of ``<stage>/stage.json``: what a stage's outputs were made with."""

    stage: str
    config: dict[str, Any]
    config_hash: str
    upstream_hash: str
    mikupal_version: str
    schema_version: int

    @classmethod
    def read(cls, path: Path) -> "StageMeta | None":
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def write(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))


# ---------------------------------------------------------------------------------------------------- paths
def part_name(rank: int, world_size: int) -> str:
    return f"part-{rank:05d}-of-{world_size:05d}"


def stage_part_files(stage_dir: str | os.PathLike[str], kind: str = "outputs") -> list[Path]:
    """A stage folder's part files of every rank, in name order: ``kind`` ``"outputs"`` (``part-*.jsonl``, the
    records), ``"done"`` (``part-*.done.jsonl``) or ``"errors"`` (``part-*.errors.jsonl``)."""
    stage_dir = Path(stage_dir)
    if kind == "outputs":
        return sorted(p for p in stage_dir.glob("part-*.jsonl") if p.name.count(".") == 1)
    if kind not in ("done", "errors"):
        raise ValueError(f"kind must be outputs, done or errors, got {kind!r}")
    return sorted(stage_dir.glob(f"part-*.{kind}.jsonl"))


def stage_records(stage_dir: str | os.PathLike[str], kind: str = "outputs") -> list[dict[str, Any]]:
    """The lines of :func:`stage_part_files` as dicts, all parts in name order. Raw lines: an output line of an
    item redone later shows up once per time it was written (:meth:`StageStore.outputs` keeps only finished ones)."""
    return [obj for path in stage_part_files(stage_dir, kind) for obj in iter_jsonl(path)]


@dataclass
class DoneEntry:
    """One line of a done log: a finished input item, how many outputs it gave, its drop reason and counters."""

    key: str
    video_id: str
    n_out: int
    drop: str | None
    counts: dict[str, float] = field(default_factory=dict)


class RunDir:
    """Paths of a run directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def inputs(self) -> Path:
        return self.root / "inputs.jsonl"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def utterances(self) -> Path:
        return self.root / "utterances.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def errors(self) -> Path:
        return self.root / "errors.jsonl"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stage_meta(self, stage: str) -> Path:
        return self.stage_dir(stage) / "stage.json"

    def rank_marker(self, rank: int, world_size: int) -> Path:
        return self.root / "ranks" / f"rank-{rank:05d}-of-{world_size:05d}.json"

    def rank_summary(self, rank: int, world_size: int) -> Path:
        """The summary a rank writes when it is done (``summary.json`` is the merged one, from ``finish``)."""
        return self.root / f"summary.{rank:05d}-of-{world_size:05d}.json"

    def store(self, stage: str, rank: int, world_size: int) -> "StageStore":
        return StageStore(self.root, stage, rank, world_size)

    def read_inputs(self) -> list[Any]:
        """The planned input videos (:class:`~mikupal.records.Video` records of ``inputs.jsonl``)."""
        from mikupal.records import Video

        return [Video.from_dict(obj) for obj in iter_jsonl(self.inputs)]


class StageStore:
    """Files of one stage in the run directory, as seen by one rank (it writes only its own part files)."""

    def __init__(self, run_dir: Path, name: str, rank: int, world_size: int) -> None:
        self.dir = Path(run_dir) / name
        self.name = name
        self.rank, self.world_size = rank, world_size
        part = part_name(rank, world_size)
        self.outputs_path = self.dir / f"{part}.jsonl"
        self.done_path = self.dir / f"{part}.done.jsonl"
        self.errors_path = self.dir / f"{part}.errors.jsonl"
        self.stats_path = self.dir / f"{part}.stats.json"
        self.meta_path = self.dir / "stage.json"

    def _parts(self) -> list[str]:
        """Part names (``part-RRRRR-of-WWWWW``) of every rank and world size that has a done log."""
        return sorted(p.name[: -len(".done.jsonl")] for p in self.dir.glob("part-*.done.jsonl"))

    def has_work(self) -> bool:
        return any(self.dir.glob("part-*.done.jsonl"))

    def done_entries(self) -> dict[str, DoneEntry]:
        """Done items of every rank (any world size), by input key."""
        entries: dict[str, DoneEntry] = {}
        for part in self._parts():
            for obj in iter_jsonl(self.dir / f"{part}.done.jsonl"):
                entries[obj["key"]] = DoneEntry(**obj)
        return entries

    def outputs(self, record_type: type, parent_key: Any, output_key: Any, done: set[str] | None = None) -> dict[str, Any]:
        """Output records whose input item is in the *same part's* done log, deduplicated by output key.

        An output line counts only if its item finished in that part: lines left by a killed process (its item
        was redone later, maybe by another rank or world size) are ignored. ``done`` (optional) narrows the
        input items further.
        """
        records: dict[str, Any] = {}
        for part in self._parts():
            outputs = self.dir / f"{part}.jsonl"
            if not outputs.exists():
                continue
            part_done = {obj["key"] for obj in iter_jsonl(self.dir / f"{part}.done.jsonl")}
            if done is not None:
                part_done &= done
            for obj in iter_jsonl(outputs):
                record = record_type.from_dict(obj)
                if parent_key(record) in part_done:
                    records[output_key(record)] = record
        return records

    def errors(self) -> list[dict[str, Any]]:
        """Error lines of every part (raw dicts)."""
        return [obj for p in sorted(self.dir.glob("part-*.errors.jsonl")) for obj in iter_jsonl(p)]

    def stats(self) -> list[dict[str, Any]]:
        """Time and audio processed of every part (see :meth:`add_stats`)."""
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.dir.glob("part-*.stats.json"))]

    def add_stats(self, **values: float) -> None:
        """Add this rank's numbers (wall, CPU and GPU seconds, audio seconds processed) to its stats file; a number
        the file holds and this call does not give is kept."""
        old = json.loads(self.stats_path.read_text(encoding="utf-8")) if self.stats_path.exists() else {}
        atomic_write_json(self.stats_path, {**old, **{k: round(old.get(k, 0.0) + v, 6) for k, v in values.items()}})

    def compact_own_outputs(self, parent_key: Any, done: set[str]) -> None:
        """Drop this rank's output lines whose item never finished in this part (left by a killed run)."""
        if not self.outputs_path.exists():
            return
        kept = [obj for obj in iter_jsonl(self.outputs_path) if parent_key(_Lazy(obj)) in done]
        atomic_write_jsonl(self.outputs_path, kept)

    def own_done_keys(self) -> set[str]:
        return {obj["key"] for obj in iter_jsonl(self.done_path)} if self.done_path.exists() else set()

    def clear(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)


class _Lazy:
    """Attribute view of a raw dict, so ``parent_key`` works before full parsing."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.__dict__.update(obj)
