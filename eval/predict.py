"""Produce MELD predictions with a configured annotator (``mikupal-eval task=predict``).

Every MELD utterance becomes one :class:`mikupal.records.Utterance`:

- ``id`` = ``dia{D}_utt{U}`` (the scoring key), ``video_id`` = ``meld-dia{D}`` (one "video" per dialogue, so an
  annotator that uses the preceding utterances of a video as context sees the dialogue so far);
- ``source`` = the clip ``<clips>/dia{D}_utt{U}.mp4`` (or the bare clip name when no clip folder is given);
- ``start`` = 0, ``end`` = the clip duration from the CSV's start and end times (0 when the CSV has none);
- ``audio`` = ``""`` (no utterance audio yet; :func:`annotate_with_stage` writes ``audio/<id>.flac`` for ablations
  that use audio);
- ``text`` = the MELD transcript, ``language`` = ``en``; ``words``, ``face``, ``emotion`` = ``None``.

For each ablation (``predict.ablations``: ``text``, ``audio``, ``video``, ``all``, each a list of modalities in
``predict.modalities``) the driver

1. copies ``cfg.annotator`` (the ``annotator=...`` group) with ``modalities`` set to the ablation's modalities;
2. imports the function named by ``predict.annotate_fn`` (lazily, :func:`hydra.utils.get_method`) and calls it
   once with every pending utterance::

       annotate_fn(utterances, *, annotator_cfg, labels, modalities, work_dir, cfg) -> Iterator[(Utterance, result)]

   ``utterances``: list of Utterance (above); ``annotator_cfg``: the annotator's DictConfig (``_target_`` and its
   keys, ``modalities`` set); ``labels``: the ``meld7`` :class:`mikupal.labels.LabelSet`; ``modalities``: e.g.
   ``["text"]``; ``work_dir``: the ablation's folder (a run directory the function may write ``audio/`` and
   ``faces/`` artefacts into); ``cfg``: the whole eval config. It yields ``(utterance, result)`` pairs as items
   finish, in any order: ``result`` is the utterance with ``emotion`` filled, or an exception for an item that
   failed. It may yield ``(utterance, result, counters)`` instead, ``counters`` being the item's
   ``annotate.*`` usage counters (requests, retries, tokens, cost, ...), which the report sums. An exception
   raised by the function itself (not yielded) stops the ablation: e.g. the stage's
   :class:`~mikupal.stage.StopStage` after a rejected key or a capability error. The default,
   :func:`annotate_with_stage`, runs the pipeline's ``annotate`` stage adapter
   (``mikupal.runner.STAGE_CLASSES["annotate"]``), which builds the backend from ``annotator_cfg``;
3. appends each labelled utterance to ``<work_dir>/<ablation>/utterances.jsonl`` as it arrives (flushed per
   record), so a killed run loses at most the items in flight and a rerun continues where it stopped; failed
   items go to ``errors.jsonl`` and are retried on a rerun. ``predict.json`` records a hash of the annotator
   config, modalities and label set; resuming with a changed config is refused unless ``recompute=true``;
4. scores the ablation's predictions against the gold file (:mod:`eval.meld`).

Accounting (as the pipeline's ``summary.json``): each ablation's report has ``counters`` (the summed
``annotate.*`` counters of this invocation: ``requests``, ``retries``, ``input_tokens``, ``output_tokens``,
``cost_usd``, ``cache_hits``, ``validation_retries``, ``uploads``), ``wall_time_s`` (of the annotation),
``s_per_item`` (wall time per attempted item), ``n_attempted`` and ``stopped`` (why the annotation stopped, or
``null``); the top level has the totals. ``mikupal-eval`` exits with status 1 when an ablation stopped or every item
it attempted failed (:func:`incomplete`).

Media (:func:`annotate_with_stage`): text needs none (the MELD transcript is the text; ``audio`` is left empty).
With ``audio`` the clip's sound is decoded to ``<work_dir>/audio/<id>.flac`` (16 kHz mono, :mod:`mikupal.media`).
With ``video`` the annotator needs the active speaker's face: a :class:`mikupal.records.Face` record in
``<work_dir>/faces/<id>.json`` whose ``clip`` (e.g. ``faces/<id>.mp4``) is the face-crop clip, as the pipeline's
``faces``/``asd`` stages make them; an utterance without one fails with a message saying so.

Each ablation folder is a run directory, so ``task=agreement run_dir=<work_dir>/<ablation>`` (rollout votes)
and ``task=rating_sheet`` work on it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

from eval.errors import EvalInputError

log = logging.getLogger(__name__)


def meld_utterances(gold, clips_dir: str | Path | None = None, clip_extension: str = ".mp4") -> list[Any]:
    """One :class:`mikupal.records.Utterance` per row of a MELD gold DataFrame (see the module docstring)."""
    from mikupal.records import Utterance

    clips = Path(clips_dir) if clips_dir else None
    utterances = []
    for row in gold.itertuples(index=False):
        duration = 0.0
        if row.start is not None and row.end is not None and row.start == row.start and row.end == row.end:
            duration = max(0.0, float(row.end) - float(row.start))
        name = f"{row.id}{clip_extension}"
        utterances.append(Utterance(
            id=row.id,
            video_id=f"meld-dia{row.dialogue_id}",
            source=str(clips / name) if clips else name,
            start=0.0,
            end=round(duration, 3),
            audio="",
            text=str(row.text),
            language="en",
        ))
    return utterances


def _fingerprint(annotator_cfg: dict, modalities: list[str], labels: str, gold: str) -> str:
    blob = json.dumps({"annotator": annotator_cfg, "modalities": modalities, "labels": labels, "gold": gold},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_annotate_fn(name: str) -> Callable[..., Iterable[Any]]:
    from hydra.utils import get_method

    try:
        return get_method(name)
    except Exception as e:  # hydra wraps ImportError/AttributeError in its own exception types
        raise EvalInputError(
            f"predict.annotate_fn={name!r} cannot be imported ({e}). It must name a function "
            "annotate_fn(utterances, *, annotator_cfg, labels, modalities, work_dir, cfg) "
            "-> Iterator[(Utterance, result)] "
            "(see eval/predict.py); point predict.annotate_fn at the pipeline's implementation."
        ) from e


def predict_ablation(cfg: Any, gold, name: str, modalities: list[str], work_dir: Path) -> dict:
    """Label the MELD utterances of ``gold`` with one modality ablation, resumably; returns progress counts.

    Raises:
        EvalInputError: no annotator configured, changed config on resume, or the annotate function is missing.
    """
    from omegaconf import OmegaConf

    from mikupal.labels import load_label_set
    from mikupal.manifest import ManifestWriter, iter_jsonl
    from mikupal.records import ItemError, Utterance

    if cfg.get("annotator") is None:
        raise EvalInputError("task=predict needs an annotator: pass annotator=<name> (a group in conf/annotator/)")
    labels = load_label_set("meld7")
    annotator_cfg = OmegaConf.to_container(cfg.annotator, resolve=True)
    annotator_cfg["modalities"] = list(modalities)
    fingerprint = _fingerprint(annotator_cfg, list(modalities), labels.name, Path(cfg.gold).name)

    work_dir.mkdir(parents=True, exist_ok=True)
    meta_path = work_dir / "predict.json"
    manifest = work_dir / "utterances.jsonl"
    errors_path = work_dir / "errors.jsonl"
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if old.get("fingerprint") != fingerprint:
            if not cfg.get("recompute"):
                raise EvalInputError(
                    f"{work_dir} holds predictions made with another annotator config, modalities or gold file "
                    f"(was {old.get('annotator', {}).get('_target_')} with {old.get('modalities')}); use another "
                    "work_dir or pass recompute=true to start this ablation over"
                )
            log.warning("%s: config changed and recompute=true: earlier predictions removed", work_dir)
            for path in (manifest, errors_path):
                path.unlink(missing_ok=True)
    meta_path.write_text(json.dumps({"fingerprint": fingerprint, "annotator": annotator_cfg,
                                     "modalities": list(modalities), "labels": labels.name,
                                     "gold": str(cfg.gold), "ablation": name}, indent=2) + "\n", encoding="utf-8")

    done: set[str] = set()
    if manifest.exists():
        done = {obj["id"] for obj in iter_jsonl(manifest) if obj.get("emotion") is not None}
    utterances = meld_utterances(gold, cfg.get("clips"), str(cfg.predict.clip_extension))
    limit = cfg.predict.get("limit")
    if limit:
        utterances = utterances[: int(limit)]
    pending = [u for u in utterances if u.id not in done]
    missing_media: list[Any] = []
    if any(m in ("audio", "video") for m in modalities):
        if not cfg.get("clips"):
            raise EvalInputError(f"ablation {name!r} uses {modalities}: pass clips=<folder of MELD dia*_utt*.mp4>")
        missing_media = [u for u in pending if not Path(u.source).is_file()]
        pending = [u for u in pending if Path(u.source).is_file()]
    log.info("ablation %s (%s): %d utterances, %d done, %d to do, %d without a clip", name, ",".join(modalities),
             len(utterances), len(done), len(pending), len(missing_media))

    failed = 0
    counters: Counter = Counter()
    stopped: str | None = None
    started = time.perf_counter()
    new_errors = errors_path.with_name("errors.jsonl.new")
    new_errors.unlink(missing_ok=True)
    # Failures of earlier attempts are retried: this attempt writes a fresh errors file.
    with ManifestWriter(new_errors) as errors:
        for utt in missing_media:
            errors.write(ItemError("predict", utt.id, "FileNotFoundError", f"clip {utt.source} not found", utt.source))
        failed += len(missing_media)
        if pending:
            annotate_fn = _load_annotate_fn(str(cfg.predict.annotate_fn))
            seen: set[str] = set()
            with ManifestWriter(manifest) as out:
                try:
                    for pair in annotate_fn(pending, annotator_cfg=OmegaConf.create(annotator_cfg),
                                            labels=labels, modalities=list(modalities), work_dir=work_dir, cfg=cfg):
                        item, result = pair[0], pair[1]
                        if len(pair) > 2 and pair[2]:
                            counters.update({k: v for k, v in dict(pair[2]).items() if isinstance(v, (int, float))})
                        seen.add(item.id)
                        if isinstance(result, Utterance) and result.emotion is not None:
                            out.write(result)
                            continue
                        if isinstance(result, BaseException) and cfg.get("fail_fast"):
                            raise result
                        error_type = type(result).__name__ if isinstance(result, BaseException) else "NoLabel"
                        message = str(result) if isinstance(result, BaseException) else "no emotion returned"
                        log.error("ablation %s: %s failed: %s: %s", name, item.id, error_type, message)
                        errors.write(ItemError("predict", item.id, error_type, message, item.source))
                        failed += 1
                        if len(seen) % 100 == 0:
                            log.info("ablation %s: %d/%d done", name, len(seen), len(pending))
                except EvalInputError:
                    raise
                except Exception as e:  # noqa: BLE001 - the annotator stopped: record what is left, resume later
                    if cfg.get("fail_fast"):
                        raise
                    stopped = f"{type(e).__name__}: {e}"
                    left = sum(1 for utt in pending if utt.id not in seen)
                    log.error("ablation %s: annotation stopped after %d of %d item(s), %d left: %s; fix the cause and "
                              "rerun the same command to resume", name, len(seen), len(pending), left, stopped)
                    for utt in pending:
                        if utt.id not in seen:
                            errors.write(ItemError("predict", utt.id, type(e).__name__, str(e), utt.source))
                            failed += 1
                    seen.update(u.id for u in pending)
            for utt in pending:
                if utt.id not in seen:
                    errors.write(ItemError("predict", utt.id, "NoLabel", "the annotate function returned nothing "
                                           "for this utterance", utt.source))
                    failed += 1
    wall = time.perf_counter() - started
    shutil.move(str(new_errors), errors_path)
    n_labelled = len({obj["id"] for obj in iter_jsonl(manifest)}) if manifest.exists() else 0
    attempted = len(pending) + len(missing_media)
    return {"ablation": name, "modalities": list(modalities), "work_dir": str(work_dir), "n_utterances":
            len(utterances), "n_labelled": n_labelled, "n_failed_this_run": failed, "n_resumed": len(done),
            "n_attempted": attempted, "stopped": stopped, "counters": _rounded(counters),
            "wall_time_s": round(wall, 3), "s_per_item": round(wall / attempted, 3) if attempted else None}


def _rounded(counters: Counter) -> dict[str, float]:
    return {k: round(v, 6) for k, v in sorted(counters.items())}


def incomplete(report: dict) -> str | None:
    """Why a ``task=predict`` report is not a success (an ablation stopped, or every item it attempted failed),
    with the counts; ``None`` when it is. ``mikupal-eval`` then exits with status 1."""
    problems = []
    for name, r in report.get("ablations", {}).items():
        attempted, failed = int(r.get("n_attempted") or 0), int(r.get("n_failed_this_run") or 0)
        if r.get("stopped"):
            problems.append(f"ablation {name} stopped with {failed} of {attempted} item(s) not labelled "
                            f"({r['stopped']}); fix the cause and rerun the same command to resume")
        elif attempted and failed == attempted:
            problems.append(f"ablation {name}: every item failed ({failed} of {attempted}); see "
                            f"{Path(r['work_dir']) / 'errors.jsonl'}")
    return "; ".join(problems) or None


def _with_media(utt: Any, modalities: list[str], work_dir: Path, sampling_rate: int) -> Any:
    """The utterance with the media its ablation needs inside ``work_dir`` (see the module docstring).

    Raises:
        FileNotFoundError: ``video`` is requested and no face record ``faces/<id>.json`` exists.
        mikupal.media.MediaError: the clip's audio cannot be decoded.
    """
    import dataclasses

    from mikupal.records import Face

    changes: dict[str, Any] = {}
    if "audio" in modalities:
        rel = f"audio/{utt.id}.flac"
        target = work_dir / rel
        if not target.is_file():
            from mikupal.media import decode_audio, write_audio

            audio, _ = decode_audio(utt.source, sampling_rate)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.stem + ".tmp.flac")
            write_audio(tmp, audio, sampling_rate)
            tmp.replace(target)
        changes["audio"] = rel
    if "video" in modalities and utt.face is None:
        record = work_dir / "faces" / f"{utt.id}.json"
        if not record.is_file():
            raise FileNotFoundError(
                f"{utt.id}: the video modality needs the active speaker's face: faces/{utt.id}.json (a Face record "
                f"whose clip is the face-crop clip, e.g. faces/{utt.id}.mp4) in {work_dir}; run the pipeline's faces "
                "and asd stages over the MELD clips first (see eval/predict.py)"
            )
        changes["face"] = Face.from_dict(json.loads(record.read_text(encoding="utf-8")))
    return dataclasses.replace(utt, **changes) if changes else utt


def annotate_with_stage(utterances, *, annotator_cfg, labels, modalities, work_dir, cfg):
    """Default ``predict.annotate_fn``: run the pipeline's ``annotate`` stage adapter over MELD utterances.

    The stage (``mikupal.runner.STAGE_CLASSES["annotate"]``) gets a config with ``annotator`` (``annotator_cfg``),
    ``labels`` (the meld7 set) and ``prompt`` (``cfg.prompt`` when the eval config has one), and a
    :class:`mikupal.stage.StageContext` whose run directory is ``work_dir``. It builds the backend from
    ``annotator_cfg`` in ``setup()`` and frees it in ``teardown()``.

    Yields:
        ``(utterance, labelled utterance | exception, annotate.* counters)`` as items finish.
    """
    import importlib

    from omegaconf import OmegaConf

    from mikupal.runner import STAGE_CLASSES
    from mikupal.stage import Drop, StageContext

    module_name, class_name = STAGE_CLASSES["annotate"].split(":")
    try:
        stage_cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise EvalInputError(f"the pipeline's annotate stage {STAGE_CLASSES['annotate']} is not available: {e}") from e
    import yaml

    from mikupal.paths import conf_dir

    with open(conf_dir() / "labels" / f"{labels.name}.yaml", encoding="utf-8") as f:
        labels_cfg = yaml.safe_load(f)
    stage_cfg = OmegaConf.create({
        "annotator": OmegaConf.to_container(annotator_cfg, resolve=True),
        "labels": labels_cfg,
        "prompt": OmegaConf.to_container(cfg.prompt, resolve=True) if cfg.get("prompt") is not None else None,
        "fail_fast": bool(cfg.get("fail_fast")),
    })
    work_dir = Path(work_dir).resolve()
    ready, failures = [], []
    for utt in utterances:
        try:
            ready.append(_with_media(utt, list(modalities), work_dir, int(cfg.predict.sampling_rate)))
        except Exception as e:  # noqa: BLE001 - a media problem fails this item only
            failures.append((utt, e))
    yield from failures
    if not ready:
        return
    stage = stage_cls(stage_cfg)
    ctx = StageContext(run_dir=work_dir, rank=0, world_size=1, cfg=stage_cfg)
    stage.setup(ctx)
    try:
        for item, result, counts in stage.map(ready, ctx):
            if isinstance(result, Drop):
                yield item, RuntimeError(f"dropped by the annotate stage: {result.reason}"), counts
            elif isinstance(result, BaseException):
                usage = getattr(result, "usage", None)  # what a failed item spent (AnnotationError)
                yield item, result, usage.counters() if hasattr(usage, "counters") else counts
            else:
                outputs = list(result)
                yield item, outputs[0] if outputs else RuntimeError("the annotate stage returned no utterance"), counts
    finally:
        stage.teardown()


def run_predict(cfg: Any) -> dict:
    """Run every configured ablation and score each against the gold file.

    Returns:
        ``{"task": "predict", "ablations": {name: MELD report + progress}}``.
    """
    from eval.meld import load_gold, load_predictions, score

    if not cfg.get("gold"):
        raise EvalInputError("task=predict needs gold=<MELD csv>")
    if not cfg.get("work_dir"):
        raise EvalInputError("task=predict needs work_dir=<folder> (predictions are kept there; rerun to resume)")
    gold = load_gold(cfg.gold)
    ablations = cfg.predict.ablations
    if isinstance(ablations, str):
        ablations = [ablations]
    results = {}
    totals: Counter = Counter()
    wall = 0.0
    for name in ablations:
        if name not in cfg.predict.modalities:
            raise EvalInputError(f"unknown ablation {name!r}; known: {list(cfg.predict.modalities)}")
        modalities = list(cfg.predict.modalities[name])
        progress = predict_ablation(cfg, gold, name, modalities, Path(cfg.work_dir) / name)
        totals.update(progress["counters"])
        wall += progress["wall_time_s"]
        manifest = Path(progress["work_dir"]) / "utterances.jsonl"
        if progress["n_labelled"] == 0:
            results[name] = {"task": "meld", "name": name, **progress, "n": 0, "coverage": 0.0, "accuracy": None,
                             "weighted_f1": None, "warnings": ["no utterance was labelled"]}
            continue
        scored_gold = gold.iloc[: int(cfg.predict.limit)] if cfg.predict.get("limit") else gold
        report = score(scored_gold, load_predictions(manifest, label_set="meld7"),
                       n_resamples=int(cfg.bootstrap.n_resamples), seed=int(cfg.bootstrap.seed),
                       level=float(cfg.bootstrap.level))
        report.update({"name": name, **progress})
        results[name] = report
    return {"task": "predict", "gold": str(cfg.gold), "annotator": cfg.annotator.get("_target_"),
            "ablations": results, "counters": _rounded(totals),
            "cost_usd": round(totals.get("annotate.cost_usd", 0.0), 6), "wall_time_s": round(wall, 3)}


def format_predict(report: dict) -> str:
    """Terminal view: one row per ablation."""
    from eval.report import fmt_interval, text_table

    rows = []
    for name, r in report["ablations"].items():
        iv = r.get("intervals", {})
        c = r.get("counters") or {}
        tokens = int(c.get("annotate.input_tokens", 0) + c.get("annotate.output_tokens", 0))
        rows.append([name, ",".join(r["modalities"]), r["n"], r["coverage"], r["accuracy"],
                     fmt_interval(iv.get("accuracy")), r["weighted_f1"], fmt_interval(iv.get("weighted_f1")),
                     r["n_failed_this_run"], int(c.get("annotate.requests", 0)), int(c.get("annotate.retries", 0)),
                     tokens, r.get("wall_time_s"), "stopped" if r.get("stopped") else ""])
    return text_table(["ablation", "modalities", "n", "coverage", "accuracy", "CI", "weighted F1", "CI", "failed",
                       "requests", "retries", "tokens", "wall s", ""],
                      rows, title=f"MELD predictions — {report['annotator']} on {Path(report['gold']).name}")
