"""Produce MELD predictions with a configured annotator (``mikupal-eval task=predict``).

Every MELD utterance becomes one :class:`mikupal.records.Utterance`:

- ``id`` = ``dia{D}_utt{U}`` (the scoring key), ``video_id`` = ``meld-dia{D}`` (one "video" per dialogue, so an
  annotator that uses the preceding utterances of a video as context sees the dialogue so far);
- ``source`` = the clip ``<clips>/dia{D}_utt{U}.mp4`` (or the bare clip name when no clip folder is given);
- ``start`` = 0, ``end`` = the clip duration from the CSV's start and end times (0 when the CSV has none);
- ``audio`` = ``audio/<id>.flac`` (where a media pipeline writes the utterance audio; not read for text only);
- ``text`` = the MELD transcript, ``language`` = ``en``; ``words``, ``face``, ``emotion`` = ``None``.

For each ablation (``predict.ablations``: ``text``, ``audio``, ``video``, ``all``, each a list of modalities in
``predict.modalities``) the driver

1. instantiates ``cfg.annotator`` (:func:`hydra.utils.instantiate`) with ``modalities`` set to the ablation's
   modalities;
2. imports the function named by ``predict.annotate_fn`` (lazily, :func:`hydra.utils.get_method`) and calls it
   on chunks of pending utterances::

       annotate_fn(utterances, *, annotator, labels, modalities, work_dir, cfg) -> Iterable[Utterance]

   ``utterances``: list of Utterance (above); ``annotator``: the instantiated annotator; ``labels``: the
   ``meld7`` :class:`mikupal.labels.LabelSet`; ``modalities``: e.g. ``["text"]``; ``work_dir``: the ablation's
   folder (a run directory the function may write audio/face artefacts into); ``cfg``: the whole eval config.
   It returns the utterances with ``emotion`` filled; an utterance it could not label is returned with
   ``emotion=None`` or left out, and is recorded in ``errors.jsonl``. When video or audio is requested the
   function is responsible for the media stages (audio extraction, faces, active speaker) on ``source``.
3. appends each labelled utterance to ``<work_dir>/<ablation>/utterances.jsonl`` (flushed per chunk), so a killed
   run loses at most one chunk and a rerun continues where it stopped; failed items are retried on a rerun.
   ``predict.json`` records a hash of the annotator config, modalities and label set; resuming with a changed
   config is refused unless ``recompute=true``.
4. scores the ablation's predictions against the gold file (:mod:`eval.meld`).

Each ablation folder is a run directory, so ``task=agreement run_dir=<work_dir>/<ablation>`` (rollout votes)
and ``task=rating_sheet`` work on it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
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
            audio=f"audio/{row.id}.flac",
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
            "annotate_fn(utterances, *, annotator, labels, modalities, work_dir, cfg) -> Iterable[Utterance] "
            "(see eval/predict.py); point predict.annotate_fn at the pipeline's implementation."
        ) from e


def predict_ablation(cfg: Any, gold, name: str, modalities: list[str], work_dir: Path) -> dict:
    """Label the MELD utterances of ``gold`` with one modality ablation, resumably; returns progress counts.

    Raises:
        EvalInputError: no annotator configured, changed config on resume, or the annotate function is missing.
    """
    from hydra.utils import instantiate
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
                    f"(was {old.get('annotator')}, {old.get('modalities')}); use another work_dir or pass "
                    "recompute=true to start this ablation over"
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
    needs_media = any(m in ("audio", "video") for m in modalities)
    missing_media: list[Any] = []
    if needs_media:
        if not cfg.get("clips"):
            raise EvalInputError(f"ablation {name!r} uses {modalities}: pass clips=<folder of MELD dia*_utt*.mp4>")
        missing_media = [u for u in pending if not Path(u.source).is_file()]
        pending = [u for u in pending if Path(u.source).is_file()]
    log.info("ablation %s (%s): %d utterances, %d done, %d to do, %d without a clip", name, ",".join(modalities),
             len(utterances), len(done), len(pending), len(missing_media))

    failed = 0
    # Errors of earlier attempts are retried: the errors file is rewritten by this attempt.
    with ManifestWriter(errors_path.with_suffix(".jsonl.new")) as errors:
        for utt in missing_media:
            errors.write(ItemError("predict", utt.id, "FileNotFoundError", f"clip {utt.source} not found", utt.source))
        failed += len(missing_media)
        if pending:
            annotate_fn = _load_annotate_fn(str(cfg.predict.annotate_fn))
            annotator = instantiate(OmegaConf.create(annotator_cfg))
            chunk = max(1, int(cfg.predict.chunk_size))
            with ManifestWriter(manifest) as out:
                for start in range(0, len(pending), chunk):
                    batch = pending[start : start + chunk]
                    try:
                        results = list(annotate_fn(batch, annotator=annotator, labels=labels,
                                                   modalities=list(modalities), work_dir=work_dir, cfg=cfg))
                    except Exception as e:  # noqa: BLE001 - a failed chunk is recorded and retried on rerun
                        if cfg.get("fail_fast"):
                            raise
                        log.error("ablation %s: chunk at %d failed: %s: %s", name, start, type(e).__name__, e)
                        for utt in batch:
                            errors.write(ItemError("predict", utt.id, type(e).__name__, str(e), utt.source))
                        failed += len(batch)
                        continue
                    by_id = {r.id: r for r in results if isinstance(r, Utterance)}
                    for utt in batch:
                        result = by_id.get(utt.id)
                        if result is None or result.emotion is None:
                            errors.write(ItemError("predict", utt.id, "NoLabel",
                                                   "the annotator returned no emotion", utt.source))
                            failed += 1
                        else:
                            out.write(result)
                    log.info("ablation %s: %d/%d labelled", name, min(start + chunk, len(pending)), len(pending))
    shutil.move(str(errors_path.with_suffix(".jsonl.new")), errors_path)
    n_labelled = len({obj["id"] for obj in iter_jsonl(manifest)}) if manifest.exists() else 0
    return {"ablation": name, "modalities": list(modalities), "work_dir": str(work_dir), "n_utterances":
            len(utterances), "n_labelled": n_labelled, "n_failed_this_run": failed, "n_resumed": len(done)}


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
    for name in ablations:
        if name not in cfg.predict.modalities:
            raise EvalInputError(f"unknown ablation {name!r}; known: {list(cfg.predict.modalities)}")
        modalities = list(cfg.predict.modalities[name])
        progress = predict_ablation(cfg, gold, name, modalities, Path(cfg.work_dir) / name)
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
            "ablations": results}


def format_predict(report: dict) -> str:
    """Terminal view: one row per ablation."""
    from eval.report import fmt_interval, text_table

    rows = []
    for name, r in report["ablations"].items():
        iv = r.get("intervals", {})
        rows.append([name, ",".join(r["modalities"]), r["n"], r["coverage"], r["accuracy"],
                     fmt_interval(iv.get("accuracy")), r["weighted_f1"], fmt_interval(iv.get("weighted_f1")),
                     r["n_failed_this_run"]])
    return text_table(["ablation", "modalities", "n", "coverage", "accuracy", "CI", "weighted F1", "CI", "failed"],
                      rows, title=f"MELD predictions — {report['annotator']} on {Path(report['gold']).name}")
