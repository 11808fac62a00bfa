"""MELD: gold labels, predictions, and scoring (``mikupal-eval task=meld``).

MELD (Poria et al., ACL 2019) names an utterance by its dialogue and utterance numbers; the video release
names the clip ``dia{Dialogue_ID}_utt{Utterance_ID}.mp4``. This module uses ``dia{D}_utt{U}`` as the id
everywhere.

Predictions come as

- a CSV with an ``id`` column (``dia3_utt0``; a clip file name such as ``dia3_utt0.mp4`` is accepted) or the
  two MELD columns ``Dialogue_ID`` and ``Utterance_ID``, and a ``label`` column;
- a JSONL file of ``{"id": ..., "label": ...}`` objects; or
- a MIKU-PAL run directory (or its ``utterances.jsonl``): the label is ``emotion.label``, the MELD id is the
  utterance id when it has the MELD form, else the file stem of the utterance's ``source`` clip.

Each prediction may carry a **confidence** (a ``confidence`` column or key, or ``emotion.confidence`` in a run
directory). When every scored prediction has one, the report gains ``risk_coverage``: the accuracy of the most
confident 25/50/75/100% of the predictions (:func:`risk_coverage`), so a confidence that ranks well shows accuracy
falling as coverage grows.

Labels are matched to MELD's seven case-insensitively; a label of the fine-grained ``emobench26`` set is mapped
to its MELD class (:meth:`mikupal.labels.LabelSet.to_meld7`) and the mapping is counted in the report. Anything
else is an *invalid* prediction: it is scored as wrong and listed. Metrics are computed over the gold items that
have a prediction; ``coverage`` (their share of the gold file) and ``accuracy_all_gold`` (missing predictions
counted as wrong) stand beside them, so a low-coverage run cannot look better than it is.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.errors import EvalInputError
from eval.io import first_examples, iter_json_objects, read_table
from eval.metrics import INVALID, bootstrap_classification, classification_metrics

log = logging.getLogger(__name__)

#: MELD CSV columns this module needs.
GOLD_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
_ID_RE = re.compile(r"^dia0*(\d+)_utt0*(\d+)$")
_MEDIA_SUFFIXES = {".mp4", ".wav", ".flac", ".mkv", ".avi", ".mov", ".mp3"}
#: Coverages of the risk-coverage table (shares of the scored predictions, most confident first).
COVERAGES = (0.25, 0.5, 0.75, 1.0)


def risk_coverage(correct, confidence, coverages=COVERAGES) -> dict:
    """Accuracy of the most confident predictions at each coverage (a selective-prediction table).

    Predictions are ranked by confidence, highest first. At coverage ``c`` the top ``round(c * n)`` count; a group
    of equal confidences cut by that boundary contributes its mean accuracy for the places it fills (the expected
    accuracy of breaking the tie at random), so the table does not depend on the order of the input.

    Args:
        correct: one bool per prediction. confidence: one number per prediction (0..1).
        coverages: shares of the predictions, in (0, 1].

    Returns:
        ``{"coverages": [...], "rows": [{"coverage", "n", "accuracy", "min_confidence"}], "aurc"}``: ``aurc`` is the
        area under the risk (error rate) - coverage curve over every cut-off (lower is better).

    Raises:
        EvalInputError: lengths differ, no prediction, a confidence outside 0..1, or a coverage outside (0, 1].
    """
    import numpy as np

    correct = np.asarray(correct, dtype=float)
    conf = np.asarray(confidence, dtype=float)
    if correct.shape != conf.shape or correct.ndim != 1 or not len(correct):
        raise EvalInputError(f"risk_coverage: need equal, non-empty lists (got {correct.shape} and {conf.shape})")
    if not np.all((conf >= 0) & (conf <= 1)):
        raise EvalInputError(f"confidences must be numbers in 0..1, got e.g. {conf[~((conf >= 0) & (conf <= 1))][:5]}")
    n = len(conf)
    order = np.argsort(-conf, kind="stable")
    c_sorted, ok_sorted = conf[order], correct[order]
    # expected number correct among the top k, ties resolved by their mean accuracy
    values, starts, counts = np.unique(-c_sorted, return_index=True, return_counts=True)
    group_acc = np.add.reduceat(ok_sorted, starts) / counts
    expected = np.repeat(group_acc, counts)  # per position: its tie group's mean accuracy
    cum_correct = np.cumsum(expected)
    rows = []
    for c in coverages:
        c = float(c)
        if not 0.0 < c <= 1.0:
            raise EvalInputError(f"coverage {c} is outside (0, 1]")
        k = max(1, int(round(c * n)))
        rows.append({"coverage": c, "n": k, "accuracy": float(cum_correct[k - 1] / k),
                     "min_confidence": float(c_sorted[k - 1])})
    risks = 1.0 - cum_correct / np.arange(1, n + 1)
    return {"coverages": [float(c) for c in coverages], "rows": rows, "aurc": float(risks.mean()),
            "ranked_by": "confidence"}


def format_risk_coverage(table: dict | None) -> str:
    """The terminal view of a ``risk_coverage`` table ("" when there is none)."""
    from eval.report import text_table

    if not table:
        return ""
    rows = [[f"{r['coverage']:.0%}", r["n"], r["accuracy"], r["min_confidence"]] for r in table["rows"]]
    return text_table(["coverage", "n", "accuracy", "min confidence"], rows,
                      title=f"risk-coverage (most confident first; AURC {table['aurc']:.3f})")


def meld_id(dialogue_id: int | str, utterance_id: int | str) -> str:
    """``dia{Dialogue_ID}_utt{Utterance_ID}``, the MELD clip name without extension."""
    return f"dia{int(dialogue_id)}_utt{int(utterance_id)}"


def canonical_id(value: Any) -> str | None:
    """Normalise an id such as ``dia03_utt1`` or ``clips/dia3_utt1.mp4`` to ``dia3_utt1``; ``None`` if not MELD."""
    if value is None:
        return None
    text = str(value).strip()
    if Path(text).suffix.lower() in _MEDIA_SUFFIXES:
        text = Path(text).stem
    m = _ID_RE.match(text)
    return f"dia{int(m.group(1))}_utt{int(m.group(2))}" if m else None


def parse_meld_time(text: Any) -> float | None:
    """Seconds of a MELD timestamp ``"00:14:38,127"`` (``None`` when empty or malformed)."""
    m = re.match(r"^\s*(\d+):(\d+):(\d+)[,.](\d+)\s*$", str(text)) if text is not None else None
    if not m:
        return None
    h, mnt, s, frac = m.groups()
    return int(h) * 3600 + int(mnt) * 60 + int(s) + int(frac) / 10 ** len(frac)


def load_gold(path: str | Path):
    """Read a MELD label CSV (``train_sent_emo.csv``, ``dev_sent_emo.csv``, ...).

    Returns:
        A DataFrame with columns ``id``, ``label``, ``text``, ``speaker``, ``dialogue_id``, ``utterance_id``,
        ``start``, ``end`` (seconds in the episode, ``NaN`` when the CSV has no times), in file order.

    Raises:
        EvalInputError: a needed column is missing, an id repeats, or an emotion is not one of MELD's seven.
    """
    from mikupal.labels import load_label_set

    df = read_table(path, what="MELD gold")
    missing = [c for c in GOLD_COLUMNS if c not in df.columns]
    if missing:
        raise EvalInputError(
            f"MELD gold file {path} lacks columns {missing}; expected the MELD CSV header "
            f"(Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, ...), got {list(df.columns)}"
        )
    labels = load_label_set("meld7").names
    gold = df.assign(
        id=[meld_id(d, u) for d, u in zip(df["Dialogue_ID"], df["Utterance_ID"])],
        label=df["Emotion"].fillna("").str.strip().str.lower(),
        text=df["Utterance"].fillna(""),
        speaker=df["Speaker"].fillna(""),
        dialogue_id=df["Dialogue_ID"].astype(int),
        utterance_id=df["Utterance_ID"].astype(int),
        start=[parse_meld_time(t) for t in df.get("StartTime", [None] * len(df))],
        end=[parse_meld_time(t) for t in df.get("EndTime", [None] * len(df))],
    )[["id", "label", "text", "speaker", "dialogue_id", "utterance_id", "start", "end"]]
    dup = gold["id"][gold["id"].duplicated()]
    if len(dup):
        raise EvalInputError(f"MELD gold file {path} repeats ids: {first_examples(dup.unique())}")
    bad = gold[~gold["label"].isin(labels)]
    if len(bad):
        raise EvalInputError(
            f"MELD gold file {path}: {len(bad)} emotions outside {labels}, e.g. {first_examples(bad['label'].unique())}"
        )
    return gold.reset_index(drop=True)


class LabelNormaliser:
    """Map raw predicted labels to MELD's seven, counting how each was matched.

    Args:
        mode: ``auto`` (MELD names case-insensitively, else an ``emobench26`` name mapped to its MELD class),
            ``meld7`` (MELD names only), or ``emobench26`` (fine-grained names only, all mapped).
    """

    def __init__(self, mode: str = "auto") -> None:
        from mikupal.labels import load_label_set

        if mode not in ("auto", "meld7", "emobench26"):
            raise EvalInputError(f"label_set must be auto, meld7 or emobench26, got {mode!r}")
        self.mode = mode
        self.meld7 = load_label_set("meld7")
        self.fine = load_label_set("emobench26")
        self._meld_lower = {name.lower(): name for name in self.meld7.names}
        self._fine_lower = {name.lower(): name for name in self.fine.names}
        self.mapped: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()

    def __call__(self, raw: Any) -> str:
        """The MELD label for ``raw``, or :data:`eval.metrics.INVALID`."""
        text = "" if raw is None or (isinstance(raw, float) and raw != raw) else str(raw).strip()
        key = text.lower()
        if self.mode in ("auto", "meld7") and key in self._meld_lower:
            return self._meld_lower[key]
        if self.mode in ("auto", "emobench26") and key in self._fine_lower:
            name = self._fine_lower[key]
            target = self.fine.to_meld7(name)
            self.mapped[f"{name} -> {target}"] += 1
            return target
        self.invalid[text or "(empty)"] += 1
        return INVALID


@dataclass
class Predictions:
    """Predicted MELD labels keyed by MELD id, with what loading them found.

    Attributes:
        labels: ``{id: MELD label or INVALID}``.
        raw: ``{id: label as written in the file}``.
        source_format: ``csv``, ``jsonl`` or ``run``.
        n_rows: rows/records read.
        unannotated: run utterances without an emotion (no prediction).
        unresolved_ids: records whose MELD id could not be determined.
        mapped: ``{"Fine -> meld": count}`` labels mapped from ``emobench26``.
        invalid: ``{raw label: count}`` of invalid predictions.
        warnings: messages that belong in the report.
        confidences: ``{id: confidence}`` for the predictions that carry one.
    """

    labels: dict[str, str]
    raw: dict[str, str]
    source_format: str
    n_rows: int
    unannotated: int = 0
    unresolved_ids: list[str] = field(default_factory=list)
    mapped: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    confidences: dict[str, float] = field(default_factory=dict)


def _confidence(value: Any, where: str) -> float | None:
    """A prediction's confidence: ``None`` when absent/empty, else a number in 0..1."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EvalInputError(f"{where}: confidence {value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise EvalInputError(f"{where}: confidence {number} is outside 0..1")
    return number


def _resolve_duplicates(rows: list[tuple[str, Any, float | None]], policy: str, path: Path) -> list[tuple[str, Any]]:
    """Apply the duplicate-id policy to ``(id, raw_label, duration)`` rows (the label may be any payload)."""
    counts = Counter(r[0] for r in rows)
    dups = [i for i, c in counts.items() if c > 1]
    if not dups:
        return [(i, lab) for i, lab, _ in rows]
    if policy == "error":
        raise EvalInputError(
            f"predictions {path}: {len(dups)} ids appear more than once (e.g. {first_examples(sorted(dups))}); "
            "each MELD utterance needs exactly one prediction. For a run directory where a clip was split into "
            "several utterances, pass duplicates=longest to keep the longest utterance per clip."
        )
    if policy == "longest":
        if any(r[2] is None for r in rows if r[0] in set(dups)):
            raise EvalInputError(f"predictions {path}: duplicates=longest needs utterance times (a run directory)")
        best: dict[str, tuple[Any, float]] = {}
        order: list[str] = []
        for i, lab, dur in rows:
            if i not in best:
                order.append(i)
                best[i] = (lab, dur)
            elif dur > best[i][1]:
                best[i] = (lab, dur)
        return [(i, best[i][0]) for i in order]
    raise EvalInputError(f"duplicates must be 'error' or 'longest', got {policy!r}")


def load_predictions(
    path: str | Path,
    *,
    label_column: str = "label",
    id_column: str = "id",
    label_set: str = "auto",
    duplicates: str = "error",
    confidence_column: str = "confidence",
) -> Predictions:
    """Read MELD predictions from a CSV, a JSONL file, or a run directory (see the module docstring).

    Args:
        path: the predictions file or run directory.
        label_column: column (CSV) or key (JSONL) holding the label.
        id_column: column or key holding the MELD id (``Dialogue_ID``/``Utterance_ID`` are used without it).
        label_set: ``auto``, ``meld7`` or ``emobench26`` (see :class:`LabelNormaliser`).
        duplicates: ``error`` (default) or ``longest`` (run directories: keep the longest utterance of a clip).
        confidence_column: column (CSV) or key (JSONL) holding an optional confidence in 0..1 (run directories:
            ``emotion.confidence``).

    Raises:
        EvalInputError: missing or empty file, no label column, no id column, duplicate ids (policy ``error``),
            or no usable record.
    """
    path = Path(path)
    norm = LabelNormaliser(label_set)
    warnings: list[str] = []
    unannotated = 0
    unresolved: list[str] = []
    rows: list[tuple[str, Any, float | None]] = []

    if path.is_dir() or path.name == "utterances.jsonl" or path.suffix.lower() in (".jsonl", ".json"):
        from mikupal.records import RecordError, Utterance

        from eval.io import run_manifest

        file = run_manifest(path) if path.is_dir() else path
        if not file.is_file():
            raise EvalInputError(f"predictions file {file} does not exist")
        if file.stat().st_size == 0:
            raise EvalInputError(f"predictions file {file} is empty (0 bytes)")
        source_format = "run" if path.is_dir() or file.name == "utterances.jsonl" else "jsonl"
        n_rows = 0
        for number, obj in enumerate(iter_json_objects(file, what="predictions"), start=1):
            n_rows += 1
            if "emotion" in obj:
                source_format = "run"
                try:
                    utt = Utterance.from_dict(obj)
                except (RecordError, KeyError, TypeError, ValueError) as e:
                    raise EvalInputError(f"{file}:{number}: not an Utterance record: {e}") from e
                mid = canonical_id(utt.id) or canonical_id(utt.source)
                if mid is None:
                    unresolved.append(utt.id)
                    continue
                if utt.emotion is None:
                    unannotated += 1
                    continue
                rows.append((mid, (utt.emotion.label, _confidence(utt.emotion.confidence, f"{file}:{number}")),
                             float(utt.end - utt.start)))
            else:
                if label_column not in obj:
                    raise EvalInputError(
                        f"{file}:{number}: no {label_column!r} key (keys: {sorted(obj)}); set label_column=..."
                    )
                if id_column in obj:
                    mid = canonical_id(obj[id_column])
                elif "Dialogue_ID" in obj and "Utterance_ID" in obj:
                    mid = meld_id(obj["Dialogue_ID"], obj["Utterance_ID"])
                else:
                    raise EvalInputError(
                        f"{file}:{number}: no {id_column!r} key and no Dialogue_ID/Utterance_ID (keys: {sorted(obj)})"
                    )
                if mid is None:
                    unresolved.append(str(obj[id_column]))
                    continue
                rows.append((mid, (obj[label_column], _confidence(obj.get(confidence_column), f"{file}:{number}")),
                             None))
        if n_rows == 0:
            raise EvalInputError(f"predictions file {file} holds no records")
    else:
        df = read_table(path, what="predictions")
        source_format = "csv"
        n_rows = len(df)
        if label_column not in df.columns:
            raise EvalInputError(
                f"predictions {path} has no {label_column!r} column (columns: {list(df.columns)}); "
                "name the label column 'label' or pass label_column=<name>"
            )
        if id_column in df.columns:
            raw_ids = df[id_column].tolist()
            ids = [canonical_id(v) for v in raw_ids]
        elif "Dialogue_ID" in df.columns and "Utterance_ID" in df.columns:
            raw_ids = [f"{d}/{u}" for d, u in zip(df["Dialogue_ID"], df["Utterance_ID"])]
            ids = []
            for d, u in zip(df["Dialogue_ID"], df["Utterance_ID"]):
                try:
                    ids.append(meld_id(d, u))
                except (TypeError, ValueError):
                    ids.append(None)
        else:
            raise EvalInputError(
                f"predictions {path} has neither an {id_column!r} column nor Dialogue_ID and Utterance_ID "
                f"(columns: {list(df.columns)})"
            )
        confs = df[confidence_column].tolist() if confidence_column in df.columns else [None] * len(df)
        for number, (raw_id, mid, lab, conf) in enumerate(zip(raw_ids, ids, df[label_column].tolist(), confs), 2):
            if mid is None:
                unresolved.append(str(raw_id))
                continue
            rows.append((mid, (lab, _confidence(conf, f"{path}:{number}")), None))

    if unresolved:
        warnings.append(
            f"{len(unresolved)} prediction ids are not MELD ids (dia<D>_utt<U>) and were ignored, "
            f"e.g. {first_examples(unresolved)}"
        )
    if unannotated:
        warnings.append(f"{unannotated} utterances have no emotion (not annotated or failed): no prediction")
    if not rows:
        raise EvalInputError(f"predictions {path}: no record with a MELD id and a label")
    kept = _resolve_duplicates(rows, duplicates, path)
    if len(kept) < len(rows):
        warnings.append(f"{len(rows) - len(kept)} duplicate utterances dropped (duplicates={duplicates})")
    labels: dict[str, str] = {}
    raw: dict[str, str] = {}
    confidences: dict[str, float] = {}
    for mid, (lab, conf) in kept:
        labels[mid] = norm(lab)
        raw[mid] = "" if lab is None else str(lab)
        if conf is not None:
            confidences[mid] = conf
    if norm.mapped:
        warnings.append(f"{sum(norm.mapped.values())} fine-grained labels mapped to MELD classes: {dict(norm.mapped)}")
    return Predictions(
        labels=labels,
        raw=raw,
        source_format=source_format,
        n_rows=n_rows,
        unannotated=unannotated,
        unresolved_ids=unresolved,
        mapped=dict(norm.mapped),
        invalid=dict(norm.invalid),
        warnings=warnings,
        confidences=confidences,
    )


def score(gold, predictions: Predictions, *, n_resamples: int, seed: int, level: float) -> dict:
    """Score predictions against MELD gold labels.

    Args:
        gold: DataFrame from :func:`load_gold`.
        predictions: from :func:`load_predictions`.
        n_resamples, seed, level: bootstrap settings (``conf/eval.yaml`` ``bootstrap``).

    Returns:
        The report: ``n``, ``coverage``, ``accuracy``, ``weighted_f1``, ``macro_f1``, ``uar``, ``per_class``,
        ``confusion``, ``intervals``, ``risk_coverage`` (:func:`risk_coverage` when every scored prediction has a
        confidence, else ``None``) and diagnostics (``n_gold``, ``accuracy_all_gold``, ``n_invalid``,
        ``invalid_labels``, ``n_unknown_ids``, ``unknown_ids``, ``label_mapping``, ``warnings``).

    Raises:
        EvalInputError: no prediction id is in the gold file (wrong split or id scheme).
    """
    from mikupal.labels import load_label_set

    labels = load_label_set("meld7").names
    gold_ids = set(gold["id"])
    unknown = sorted(i for i in predictions.labels if i not in gold_ids)
    matched = gold[gold["id"].isin(predictions.labels)]
    warnings = list(predictions.warnings)
    if matched.empty:
        raise EvalInputError(
            f"none of the {len(predictions.labels)} prediction ids is in the gold file ({len(gold)} utterances), "
            f"e.g. {first_examples(sorted(predictions.labels))}: wrong split, or ids not of the form dia<D>_utt<U>?"
        )
    if unknown:
        warnings.append(
            f"{len(unknown)} prediction ids are not in the gold file and were ignored, e.g. {first_examples(unknown)}"
        )
    y_true = matched["label"].tolist()
    y_pred = [predictions.labels[i] for i in matched["id"]]
    invalid_ids = [i for i in matched["id"] if predictions.labels[i] == INVALID]
    if invalid_ids:
        invalid_counts = Counter(predictions.raw[i] or "(empty)" for i in invalid_ids)
        warnings.append(
            f"{len(invalid_ids)} predictions are not MELD labels and count as wrong: "
            f"{dict(invalid_counts.most_common(10))}"
        )
    else:
        invalid_counts = Counter()
    coverage = len(matched) / len(gold)
    if coverage < 1.0:
        warnings.append(
            f"predictions cover {len(matched)} of {len(gold)} gold utterances ({coverage:.1%}); "
            "metrics are over the covered ones, accuracy_all_gold counts the rest as wrong"
        )
    metrics = classification_metrics(y_true, y_pred, labels)
    intervals = bootstrap_classification(
        metrics["confusion"]["matrix"], n_resamples=n_resamples, seed=seed, level=level
    )
    correct = sum(t == p for t, p in zip(y_true, y_pred))
    table = None
    with_confidence = [i for i in matched["id"] if i in predictions.confidences]
    if with_confidence and len(with_confidence) == len(matched):
        table = risk_coverage([t == p for t, p in zip(y_true, y_pred)],
                              [predictions.confidences[i] for i in matched["id"]])
    elif with_confidence:
        warnings.append(f"only {len(with_confidence)} of {len(matched)} scored predictions have a confidence: "
                        "no risk-coverage table")
    for w in warnings:
        log.warning(w)
    return {
        "task": "meld",
        "n": len(matched),
        "coverage": coverage,
        "accuracy": metrics["accuracy"],
        "weighted_f1": metrics["weighted_f1"],
        "macro_f1": metrics["macro_f1"],
        "uar": metrics["uar"],
        "per_class": metrics["per_class"],
        "confusion": metrics["confusion"],
        "intervals": intervals,
        "n_gold": len(gold),
        "accuracy_all_gold": correct / len(gold),
        "n_predictions": len(predictions.labels),
        "n_invalid": len(invalid_ids),
        "invalid_labels": dict(invalid_counts),
        "n_unknown_ids": len(unknown),
        "unknown_ids": first_examples(unknown, 20),
        "n_unresolved_ids": len(predictions.unresolved_ids),
        "n_unannotated": predictions.unannotated,
        "label_mapping": predictions.mapped,
        "predictions_format": predictions.source_format,
        "gold_distribution": dict(Counter(gold["label"])),
        "risk_coverage": table,
        "warnings": warnings,
    }
