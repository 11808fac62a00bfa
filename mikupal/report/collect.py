"""Read what a run directory holds into a :class:`ReportData`: finished runs and runs still in progress.

A finished run has ``utterances.jsonl``, ``summary.json`` and ``errors.jsonl`` (DESIGN §2). A run still in
progress has only its stages' part files: ``<stage>/part-*.jsonl`` (outputs), ``part-*.done.jsonl`` (one line per
finished input item) and ``part-*.errors.jsonl``. Then the report shows the utterances of the latest stage that has
finished items (only outputs whose input item is in a done log, as the runner itself reads them), counts from the
done logs, and is marked incomplete.

Utterances are kept as the plain dicts of the manifest, so fields that other stages add later (``speaker``,
``quality``, ``emotion.confidence``) are read when present and treated as absent when missing or ``null``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mikupal.manifest import ManifestError, iter_jsonl
from mikupal.rundir import stage_part_files
from mikupal.runner import STAGE_CLASSES

log = logging.getLogger(__name__)

#: Stages whose outputs are utterances, in pipeline order (extract and separate output recordings).
UTTERANCE_STAGES = [name for name in STAGE_CLASSES if name not in ("extract", "separate")]


class ReportError(Exception):
    """The report cannot be written as asked; the message names the file or setting and the fix."""


@dataclass
class Item:
    """One utterance of the report: its manifest dict, the run directory its paths are relative to, its split."""

    run_dir: Path
    record: dict[str, Any]
    split: str | None = None


@dataclass
class ReportData:
    """Everything the site shows, independent of where it came from (a run directory or a built dataset).

    Attributes:
        title: page title. complete: false marks the whole page incomplete. status: one sentence on what was read.
        overview: ``(name, value)`` rows of the summary (values already formatted).
        drops: count per drop reason. drops_title: heading of that table.
        stages: per stage ``{name, items_done, outputs, dropped, errors, wall_time_s}`` (``wall_time_s`` may be
            ``None``). hours_in: input audio hours (for throughput), or ``None``.
        errors: ``{stage, item_id, error_type, message, source}`` dicts (at most ``max_errors_listed`` of them).
        error_count: all errors, listed or not. items: the utterances. notes: extra sentences shown under the status.
    """

    title: str
    complete: bool
    status: str
    overview: list[tuple[str, str]] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)
    drops_title: str = "Drops by reason"
    stages: list[dict[str, Any]] = field(default_factory=list)
    hours_in: float | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not readable JSON ({e}); rerun the `mikupal` command to rewrite it") from e
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return list(iter_jsonl(path))
    except ManifestError as e:
        raise ReportError(str(e)) from e


@dataclass
class StageProgress:
    """What one stage's done logs and error files say (all shards)."""

    name: str
    done: dict[str, dict[str, Any]]
    errors: list[dict[str, Any]]
    drops: Counter

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items_done": len(self.done),
            "outputs": int(sum(e.get("n_out") or 0 for e in self.done.values())),
            "dropped": sum(1 for e in self.done.values() if e.get("drop")),
            "errors": len(self.errors),
            "wall_time_s": None,
        }


def stage_progress(run_dir: Path) -> dict[str, StageProgress]:
    """Per stage that has started (in pipeline order): done items, errors and drop counts from its part files."""
    out: dict[str, StageProgress] = {}
    for name in STAGE_CLASSES:
        stage_dir = run_dir / name
        done_files = stage_part_files(stage_dir, "done") if stage_dir.is_dir() else []
        if not done_files and not (stage_dir / "stage.json").exists():
            continue
        done: dict[str, dict[str, Any]] = {}
        for path in done_files:
            for obj in _jsonl(path):
                done[str(obj.get("key"))] = obj
        errors = [obj for path in stage_part_files(stage_dir, "errors") for obj in _jsonl(path)]
        drops: Counter = Counter()
        for entry in done.values():
            if entry.get("drop"):
                drops[f"{name}.{entry['drop']}"] += 1
            for key, value in (entry.get("counts") or {}).items():
                if key.startswith("drop.") and isinstance(value, (int, float)):
                    drops[key[len("drop."):]] += int(value)
        out[name] = StageProgress(name, done, errors, drops)
    return out


def stage_utterances(run_dir: Path, progress: StageProgress) -> list[dict[str, Any]]:
    """The utterance dicts a stage has written for its finished input items (deduplicated by id, sorted by id)."""
    parent = "video_id" if progress.name == "vad" else "id"
    records: dict[str, dict[str, Any]] = {}
    for path in stage_part_files(run_dir / progress.name, "outputs"):
        for obj in _jsonl(path):
            if str(obj.get(parent)) in progress.done and "id" in obj:
                records[str(obj["id"])] = obj
    return [records[k] for k in sorted(records)]


def _hours_from_extract(run_dir: Path, progress: dict[str, StageProgress]) -> float | None:
    if "extract" not in progress:
        return None
    seconds = 0.0
    for path in stage_part_files(run_dir / "extract", "outputs"):
        for obj in _jsonl(path):
            if str(obj.get("video_id")) in progress["extract"].done and isinstance(obj.get("duration"), (int, float)):
                seconds += float(obj["duration"])
    return seconds / 3600


def _duration(record: dict[str, Any]) -> float:
    start, end = record.get("start"), record.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return max(0.0, float(end) - float(start))
    return 0.0


def _fmt_hours(hours: float | None) -> str:
    return "-" if hours is None else f"{hours:.3f}"


def load_run(run_dir: str | Path, *, title: str | None = None, max_errors_listed: int = 200) -> ReportData:
    """Read a run directory (finished or still in progress) into a :class:`ReportData`.

    Raises:
        ReportError: the folder is missing, is not a run directory, or holds unreadable JSON (the message names
            the file).
    """
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise ReportError(f"run_dir={run_dir}: no such directory (give the run_dir of a `mikupal` run)")
    manifest = run_dir / "utterances.jsonl"
    summary = _read_json(run_dir / "summary.json")
    progress = stage_progress(run_dir)
    if not manifest.exists() and not progress:
        raise ReportError(
            f"{run_dir} is not a MIKU-PAL run directory: it has no utterances.jsonl and no <stage>/part-*.done.jsonl "
            "(run `mikupal input=... run_dir=...` first)"
        )
    data = ReportData(title=title or f"MIKU-PAL run {run_dir.name}", complete=False, status="")
    notes = data.notes

    if manifest.exists():
        records = _jsonl(manifest)
        data.complete = summary is None or bool(summary.get("complete", True))
        if data.complete:
            data.status = f"Finished run: {len(records):,} utterances from utterances.jsonl."
        else:
            data.status = (
                f"Incomplete: the last run stopped ({summary.get('stopped') or 'shards pending'}); the utterances "
                "shown are those of utterances.jsonl from an earlier finished run."
            )
    else:
        latest = next((progress[s] for s in reversed(UTTERANCE_STAGES) if s in progress and progress[s].done), None)
        records = stage_utterances(run_dir, latest) if latest is not None else []
        started = [s for s in STAGE_CLASSES if s in progress]
        if latest is None:
            data.status = (
                f"Incomplete: run in progress, no utterances yet (stages started: {', '.join(started)}); "
                "rerun the report when the run has gone further."
            )
        else:
            data.status = (
                f"Incomplete: run in progress (no utterances.jsonl yet). The {len(records):,} utterances shown are "
                f"those the latest stage with finished items, '{latest.name}', has written so far "
                f"({len(latest.done):,} of its input items done); fields of later stages are empty."
            )
    if summary is not None and summary.get("shard") and summary["shard"].get("world_size", 1) > 1:
        notes.append("summary.json is a merged summary of several shards: wall times per stage are per shard.")
    data.items = [Item(run_dir, r) for r in records]

    # Per-stage table, drops and errors: summary.json of a finished run, else the part files.
    if data.complete and summary is not None and isinstance(summary.get("stages"), dict):
        data.stages = [{"name": name, **values} for name, values in summary["stages"].items()]
        data.drops = {str(k): int(v) for k, v in (summary.get("drops") or {}).items()}
        errors = _jsonl(run_dir / "errors.jsonl") if (run_dir / "errors.jsonl").exists() else []
        data.hours_in = summary.get("hours_in")
    else:
        walls = {n: (v or {}).get("wall_time_s") for n, v in ((summary or {}).get("stages") or {}).items()}
        data.stages = [{**p.row(), "wall_time_s": walls.get(p.name)} for p in progress.values()]
        drops: Counter = Counter()
        for p in progress.values():
            drops.update(p.drops)
        data.drops = dict(sorted(drops.items()))
        errors = [e for p in progress.values() for e in p.errors]
        data.hours_in = _hours_from_extract(run_dir, progress)
    data.error_count = len(errors)
    data.errors = errors[:max_errors_listed]

    videos = summary.get("videos") if data.complete and summary else None
    if videos is None:
        videos = len(progress["extract"].done) if "extract" in progress else len({r.get("video_id") for r in records})
    hours_out = sum(_duration(r) for r in records) / 3600
    data.overview = [
        ("videos", f"{videos:,}"),
        ("hours in", _fmt_hours(data.hours_in)),
        ("utterances", f"{len(records):,}"),
        ("hours out", _fmt_hours(hours_out)),
        ("errors", f"{data.error_count:,}"),
    ]
    if summary and summary.get("cost_usd"):
        data.overview.append(("annotation cost (USD)", f"{float(summary['cost_usd']):.4f}"))
    log.info("read %s: %d utterance(s), complete=%s", run_dir.name, len(records), data.complete)
    return data
