"""The pipeline runner: stage-major execution over a run directory, with item-level resume and sharding.

Run directory (DESIGN §2)::

    <run_dir>/
      utterances.jsonl                 final manifest (written when every shard has finished)
      summary.json                     counts, hours, drops by reason, errors, wall time per stage, cost
      errors.jsonl                     one line per failed item (all stages, all shards)
      audio/<id>.flac, faces/<id>.mp4  utterance audio and face clips
      <stage>/stage.json               resolved stage config, its hash, package and schema versions
      <stage>/part-RRRRR-of-WWWWW.jsonl         output records of shard R of W
      <stage>/part-RRRRR-of-WWWWW.done.jsonl    one line per finished input item (outputs count, drop reason, counters)
      <stage>/part-RRRRR-of-WWWWW.errors.jsonl  failed items of this shard (retried on the next run)

Guarantees:

* An item's outputs are appended and flushed before its done line; a reader only takes outputs whose input item
  is in a done log, so a killed process loses at most the items in flight and a rerun finishes them.
* ``stage.json`` holds a hash of the stage's config chained with its upstream stage's hash: resuming with a
  changed config (of the stage or anything upstream) is refused unless ``recompute`` names the stage (or
  ``all``); recomputing a stage recomputes every stage after it.
* Videos are assigned to shards by a stable hash of their id; every stage of a video runs in the same shard.
  N processes with ``runner.rank=i runner.world_size=N`` split a run with no shared writes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from mikupal import SCHEMA_VERSION, __version__
from mikupal.ids import shard_of, video_id
from mikupal.manifest import ManifestWriter, iter_jsonl, write_jsonl_atomic
from mikupal.records import ItemError, Recording, Utterance, Video
from mikupal.stage import Drop, Stage, StageContext, StopStage

log = logging.getLogger(__name__)

#: Stage name -> adapter class (``module:Class``), in pipeline order. Imported only when the stage runs.
STAGE_CLASSES: dict[str, str] = {
    "extract": "mikupal.extract.stage:ExtractStage",
    "separate": "mikupal.separate.stage:SeparateStage",
    "vad": "mikupal.vad.stage:VadStage",
    "asr": "mikupal.asr.stage:AsrStage",
    "faces": "mikupal.faces.stage:FacesStage",
    "asd": "mikupal.asd.stage:AsdStage",
    "speakers": "mikupal.speakers.stage:SpeakersStage",
    "quality": "mikupal.quality.stage:QualityStage",
    "annotate": "mikupal.annotate.stage:AnnotateStage",
    "filter": "mikupal.filter:FilterStage",
}


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


# ---------------------------------------------------------------------------------------------------- stage store
@dataclass
class DoneEntry:
    key: str
    video_id: str
    n_out: int
    drop: str | None
    counts: dict[str, float]


class StageStore:
    """Files of one stage in the run directory, for one shard."""

    def __init__(self, run_dir: Path, name: str, rank: int, world_size: int) -> None:
        self.dir = run_dir / name
        self.name = name
        part = f"part-{rank:05d}-of-{world_size:05d}"
        self.outputs_path = self.dir / f"{part}.jsonl"
        self.done_path = self.dir / f"{part}.done.jsonl"
        self.errors_path = self.dir / f"{part}.errors.jsonl"
        self.meta_path = self.dir / "stage.json"

    def done_entries(self) -> dict[str, DoneEntry]:
        """Done items of every shard (any world size), by input key."""
        entries: dict[str, DoneEntry] = {}
        for path in sorted(self.dir.glob("part-*.done.jsonl")):
            for obj in iter_jsonl(path):
                entries[obj["key"]] = DoneEntry(**obj)
        return entries

    def outputs(self, record_type: type, parent_key: Any, output_key: Any, done: set[str]) -> dict[str, Any]:
        """Output records of every shard whose input item is done, deduplicated by output key."""
        records: dict[str, Any] = {}
        for path in sorted(p for p in self.dir.glob("part-*.jsonl") if p.name.count(".") == 1):
            for obj in iter_jsonl(path):
                record = record_type.from_dict(obj)
                if parent_key(record) in done:
                    records[output_key(record)] = record
        return records

    def errors(self) -> list[ItemError]:
        return [ItemError.from_dict(obj) for p in sorted(self.dir.glob("part-*.errors.jsonl")) for obj in iter_jsonl(p)]

    def compact_own_outputs(self, parent_key: Any, done: set[str]) -> None:
        """Drop this shard's output lines whose item never finished (left by a killed run)."""
        if not self.outputs_path.exists():
            return
        kept = [obj for obj in iter_jsonl(self.outputs_path) if parent_key(_Lazy(obj)) in done]
        write_jsonl_atomic(self.outputs_path, kept)

    def clear(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)


class _Lazy:
    """Attribute view of a raw dict, so ``parent_key`` works before full parsing."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.__dict__.update(obj)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_stage(name: str, cfg: DictConfig) -> Stage:
    if name not in STAGE_CLASSES:
        raise ConfigError(f"stages: unknown stage {name!r}; known stages: {list(STAGE_CLASSES)}")
    module_name, class_name = STAGE_CLASSES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(cfg)


# ---------------------------------------------------------------------------------------------------- runner
class PipelineRunner:
    """Runs the configured stages over a run directory. ``run()`` returns the summary dict."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        if cfg.get("input") in (None, "???") or OmegaConf.is_missing(cfg, "input"):
            raise ConfigError("input=PATH is required (a video file, a folder of videos, or a text file listing paths)")
        if OmegaConf.is_missing(cfg, "run_dir"):
            raise ConfigError("run_dir=DIR is required (where outputs go; rerunning the same command resumes)")
        self.run_dir = Path(cfg.run_dir).expanduser().resolve()
        self.rank = int(cfg.runner.rank)
        self.world_size = int(cfg.runner.world_size)
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"runner.rank={self.rank} must be in 0..runner.world_size-1 ({self.world_size})")
        self.fail_fast = bool(cfg.fail_fast)
        self.stage_names = list(cfg.stages)
        order = list(STAGE_CLASSES)
        unknown = [s for s in self.stage_names if s not in STAGE_CLASSES]
        if unknown:
            raise ConfigError(f"stages: unknown {unknown}; known stages in order: {order}")
        if self.stage_names != sorted(self.stage_names, key=order.index):
            raise ConfigError(f"stages must be in pipeline order {order}, got {self.stage_names}")
        if self.stage_names[0] != "extract":
            raise ConfigError("stages must start with 'extract'")
        recompute = cfg.get("recompute") or []
        self.recompute = set([recompute] if isinstance(recompute, str) else recompute)
        self.wall: dict[str, float] = {}

    def _ctx(self) -> StageContext:
        return StageContext(run_dir=self.run_dir, rank=self.rank, world_size=self.world_size, cfg=self.cfg)

    def _mine(self, video: str) -> bool:
        return shard_of(video, self.world_size) == self.rank

    def _check_stage_meta(self, stage: Stage, store: StageStore, upstream_hash: str, recompute: bool) -> tuple[str, bool]:
        """Write or check ``stage.json``; returns (config hash, whether the stage's old outputs were wiped).

        With ``recompute`` the stage's existing outputs are removed; otherwise existing outputs made with another
        config hash make the run refuse to resume.
        """
        config = stage.stage_config()
        config_hash = _hash({"config": config, "upstream": upstream_hash, "schema": SCHEMA_VERSION})
        wiped = False
        has_work = any(store.dir.glob("part-*.done.jsonl"))
        if has_work and recompute:
            log.warning("stage %s: recomputing (its earlier outputs are removed, and every later stage's)", stage.name)
            store.clear()
            wiped = True
        elif has_work and store.meta_path.exists():
            old = json.loads(store.meta_path.read_text())
            if old.get("config_hash") != config_hash:
                changed = sorted(k for k in config if old.get("config", {}).get(k) != config[k])
                why = f"config keys {changed} changed" if changed else "an upstream stage's config changed"
                raise ConfigChangedError(
                    f"stage {stage.name!r} in {self.run_dir} was run with a different configuration ({why}). "
                    f"Resume with the original configuration, use a new run_dir, or pass "
                    f"recompute=[{stage.name}] (or recompute=all) to recompute it and every later stage."
                )
        store.dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "stage": stage.name,
            "config": config,
            "config_hash": config_hash,
            "upstream_hash": upstream_hash,
            "mikupal_version": __version__,
            "schema_version": SCHEMA_VERSION,
        }
        tmp = store.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tmp.replace(store.meta_path)
        return config_hash, wiped

    def _inputs(self, index: int, videos: list[Video]) -> list[Any]:
        """This shard's input items of stage ``index`` (from the upstream stage's outputs)."""
        if index == 0:
            return [v for v in videos if self._mine(v.video_id)]
        upstream = _load_stage(self.stage_names[index - 1], self.cfg)
        store = StageStore(self.run_dir, upstream.name, self.rank, self.world_size)
        done = set(store.done_entries())
        records = store.outputs(upstream.output_type, upstream.parent_key, upstream.output_key, done)
        items = [r for r in records.values() if self._mine(r.video_id)]
        return sorted(items, key=Stage.item_key)

    def run(self) -> dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        media = self.cfg.media
        videos = resolve_inputs(
            self.cfg.input, media.video_extensions, media.list_extensions, media.get("audio_extensions", ())
        )
        log.info("%d input video(s); run_dir=%s; shard %d/%d", len(videos), self.run_dir, self.rank, self.world_size)
        upstream_hash = _hash({"inputs": "v1"})
        recomputing = False  # once a stage is recomputed, every later stage is too
        stopped: str | None = None
        for index, name in enumerate(self.stage_names):
            stage = _load_stage(name, self.cfg)
            store = StageStore(self.run_dir, name, self.rank, self.world_size)
            explicit = name in self.recompute or "all" in self.recompute
            upstream_hash, wiped = self._check_stage_meta(stage, store, upstream_hash, recomputing or explicit)
            recomputing = recomputing or wiped
            try:
                self._run_stage(stage, store, self._inputs(index, videos))
            except StopStage as e:
                log.warning("stage %s stopped: %s (rerun the same command to continue)", name, e)
                stopped = f"{name}: {e}"
                break
        (self.run_dir / f"_SHARD_DONE.{self.rank:05d}-of-{self.world_size:05d}").write_text(
            "stopped" if stopped else "complete"
        )
        return self._finish(videos, stopped)

    def _run_stage(self, stage: Stage, store: StageStore, items: list[Any]) -> None:
        done_entries = store.done_entries()
        done = set(done_entries)
        store.compact_own_outputs(stage.parent_key, done)
        store.errors_path.unlink(missing_ok=True)  # failed items are retried; they re-record if they fail again
        if not self.cfg.runner.retry_errors:
            done |= {e.item_id for e in store.errors()}
        pending = [item for item in items if Stage.item_key(item) not in done]
        log.info("stage %s: %d item(s), %d already done, %d to do", stage.name, len(items), len(items) - len(pending), len(pending))
        start = time.perf_counter()
        if not pending:
            self.wall[stage.name] = 0.0
            return
        ctx = self._ctx()
        stage.setup(ctx)
        try:
            with ManifestWriter(store.outputs_path) as out, ManifestWriter(store.done_path) as done_log, ManifestWriter(
                store.errors_path
            ) as errors, tqdm(total=len(pending), desc=stage.name, unit="item", dynamic_ncols=True) as bar:
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
        finally:
            stage.teardown()
            self.wall[stage.name] = time.perf_counter() - start

    # ------------------------------------------------------------------------------------------ summary
    def _finish(self, videos: list[Video], stopped: str | None) -> dict[str, Any]:
        """Write errors.jsonl, summary.json and (when every shard is done) utterances.jsonl."""
        errors: list[ItemError] = []
        per_stage: dict[str, Any] = {}
        drops: Counter = Counter()
        counters: Counter = Counter()
        last = self.stage_names[-1]
        for name in self.stage_names:
            store = StageStore(self.run_dir, name, self.rank, self.world_size)
            entries = store.done_entries()
            stage_errors = store.errors()
            errors.extend(stage_errors)
            stage_drops = Counter(f"{name}.{e.drop}" for e in entries.values() if e.drop)
            drops.update(stage_drops)
            for e in entries.values():
                counters.update({k: v for k, v in e.counts.items()})
            per_stage[name] = {
                "items_done": len(entries),
                "outputs": sum(e.n_out for e in entries.values()),
                "dropped": sum(stage_drops.values()),
                "errors": len(stage_errors),
                "wall_time_s": round(self.wall.get(name, 0.0), 3),
            }
        # Segment-level drops that a stage counted inside an item (e.g. ``drop.vad.too_short``) join the drop table.
        for key, value in list(counters.items()):
            if key.startswith("drop."):
                drops[key[len("drop."):]] += int(value)
                del counters[key]
        write_jsonl_atomic(self.run_dir / "errors.jsonl", (e.to_dict() for e in errors))

        final = self._final_utterances(last)
        hours_in = self._hours_in()
        summary = {
            "complete": stopped is None and final is not None,
            "stopped": stopped,
            "videos": len(videos),
            "hours_in": round(hours_in, 6),
            "utterances_out": len(final) if final is not None else None,
            "hours_out": round(sum(u.duration for u in final) / 3600, 6) if final is not None else None,
            "drops": dict(sorted(drops.items())),
            "errors": len(errors),
            "errors_by_stage": dict(Counter(e.stage for e in errors)),
            "stages": per_stage,
            "counters": {k: round(v, 6) for k, v in sorted(counters.items())},
            "cost_usd": round(counters.get("annotate.cost_usd", 0.0), 6),
            "shard": {"rank": self.rank, "world_size": self.world_size},
            "mikupal_version": __version__,
        }
        name = "summary.json" if self.world_size == 1 else f"summary.{self.rank:05d}-of-{self.world_size:05d}.json"
        tmp = self.run_dir / (name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.run_dir / name)
        if final is not None and self.world_size > 1:
            # Every shard has finished: whichever finishes last writes the merged summary too.
            tmp = self.run_dir / "summary.json.tmp"
            merged = {**summary, "shard": None, "stages": {k: {**v, "wall_time_s": None} for k, v in per_stage.items()}}
            tmp.write_text(json.dumps(merged, indent=2) + "\n")
            tmp.replace(self.run_dir / "summary.json")
        return summary

    def _final_utterances(self, last: str) -> list[Utterance] | None:
        """Merge the last stage's outputs into ``utterances.jsonl`` once every shard has finished."""
        markers = [self.run_dir / f"_SHARD_DONE.{r:05d}-of-{self.world_size:05d}" for r in range(self.world_size)]
        if not all(m.exists() and m.read_text() == "complete" for m in markers):
            return None
        stage = _load_stage(last, self.cfg)
        if stage.output_type is not Utterance:
            return None
        store = StageStore(self.run_dir, last, self.rank, self.world_size)
        records = store.outputs(Utterance, stage.parent_key, stage.output_key, set(store.done_entries()))
        final = sorted(records.values(), key=lambda u: u.id)
        write_jsonl_atomic(self.run_dir / "utterances.jsonl", (u.to_dict() for u in final))
        return final

    def _hours_in(self) -> float:
        store = StageStore(self.run_dir, "extract", self.rank, self.world_size)
        records = store.outputs(Recording, Stage.parent_key, Stage.output_key, set(store.done_entries()))
        return sum(r.duration for r in records.values()) / 3600


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Run the pipeline described by a composed config (see ``conf/pipeline.yaml``); returns the summary."""
    return PipelineRunner(cfg).run()


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable summary table printed at the end of a run."""
    rows = [
        ("videos", summary["videos"]),
        ("hours in", f"{summary['hours_in']:.4f}"),
        ("utterances out", summary["utterances_out"] if summary["utterances_out"] is not None else "(shards pending)"),
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
    lines += ["", f"{'stage':<10} {'done':>6} {'out':>7} {'dropped':>8} {'errors':>7} {'wall s':>9}"]
    for name, s in summary["stages"].items():
        wall = "-" if s["wall_time_s"] is None else f"{s['wall_time_s']:.2f}"
        lines.append(f"{name:<10} {s['items_done']:>6} {s['outputs']:>7} {s['dropped']:>8} {s['errors']:>7} {wall:>9}")
    if summary["drops"]:
        lines += ["", "drops by reason:"]
        lines += [f"  {reason:<36} {n:>6}" for reason, n in summary["drops"].items()]
    return "\n".join(lines)

