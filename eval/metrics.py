"""Classification metrics (scikit-learn) and their bootstrap intervals.

Point estimates come from :mod:`sklearn.metrics`. Bootstrap intervals resample *items* with replacement; since
items are exchangeable, a resample's confusion matrix is a multinomial draw over the cells of the observed
confusion matrix, which is what :func:`bootstrap_classification` draws (exactly equivalent to resampling item
indices, and fast enough for thousands of resamples).

A prediction outside the label set is kept as its own column of the confusion matrix (:data:`INVALID`): it is
wrong for accuracy and recall, and counts as a prediction of no class for precision.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Column name of the confusion matrix for predictions outside the label set.
INVALID = "(invalid)"


def percentile_interval(values: np.ndarray, level: float) -> list[float]:
    """Percentile interval ``[lo, hi]`` holding ``level`` of the finite ``values`` (``[nan, nan]`` if none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [float("nan"), float("nan")]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def classification_metrics(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, weighted and macro F1, unweighted average recall, per-class scores and the confusion matrix.

    Args:
        gold: gold labels, each in ``labels``.
        pred: predicted labels; anything outside ``labels`` must already be replaced by :data:`INVALID`.
        labels: the label set, in report order.

    Returns:
        ``accuracy``, ``weighted_f1`` (F1 weighted by gold support), ``macro_f1`` (mean F1 over the labels that
        occur in gold or among valid predictions, as scikit-learn does by default), ``uar`` (mean recall over
        the labels that occur in gold), ``per_class`` (``{label: {precision, recall, f1, support}}`` for every
        label; 0 where undefined), ``confusion`` (rows: gold labels; columns: labels, plus :data:`INVALID`
        when any prediction is invalid).

    Raises:
        ValueError: empty input, length mismatch, or a gold label outside ``labels``.
    """
    from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support,
                                 recall_score)

    gold = list(gold)
    pred = list(pred)
    labels = list(labels)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("no items to score")
    unknown_gold = sorted(set(gold) - set(labels))
    if unknown_gold:
        raise ValueError(f"gold labels outside the label set: {unknown_gold}")
    unexpected = sorted(set(pred) - set(labels) - {INVALID})
    if unexpected:
        raise ValueError(f"predictions outside the label set must be mapped to {INVALID!r} first: {unexpected}")

    present = [lab for lab in labels if lab in set(gold) | set(pred)]
    gold_present = [lab for lab in labels if lab in set(gold)]
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, pred, labels=labels, zero_division=0
    )
    columns = labels + ([INVALID] if INVALID in pred else [])
    matrix = confusion_matrix(gold, pred, labels=columns)[: len(labels)]
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "weighted_f1": float(f1_score(gold, pred, labels=gold_present, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
        "uar": float(recall_score(gold, pred, labels=gold_present, average="macro", zero_division=0)),
        "per_class": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion": {"labels": labels, "predicted_labels": columns, "matrix": matrix.astype(int).tolist()},
    }


def _accuracy_and_weighted_f1(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and support-weighted F1 of a stack of confusion matrices ``(B, K, C)``, ``C >= K``."""
    k = matrices.shape[1]
    n = matrices.sum(axis=(1, 2)).astype(float)
    tp = np.einsum("bkk->bk", matrices[:, :, :k]).astype(float)
    support = matrices.sum(axis=2).astype(float)
    predicted = matrices[:, :, :k].sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        accuracy = tp.sum(axis=1) / n
        weighted_f1 = (f1 * support).sum(axis=1) / support.sum(axis=1)
    return accuracy, weighted_f1


def weighted_f1_from_confusion(matrix: np.ndarray) -> float:
    """Support-weighted F1 of one confusion matrix (rows gold, first ``K`` columns the same labels)."""
    return float(_accuracy_and_weighted_f1(np.asarray(matrix)[None])[1][0])


def bootstrap_classification(
    matrix: np.ndarray | Sequence[Sequence[int]], *, n_resamples: int, seed: int, level: float
) -> dict:
    """Percentile bootstrap intervals for accuracy and weighted F1, resampling items with replacement.

    Args:
        matrix: confusion matrix, rows = gold labels (K), columns = the same K labels then optional extra
            columns (e.g. :data:`INVALID`).
        n_resamples: number of bootstrap resamples.
        seed: seed of the random generator (the same seed gives the same interval).
        level: coverage of the interval, e.g. 0.95.

    Returns:
        ``{"accuracy": [lo, hi], "weighted_f1": [lo, hi], "method", "n_resamples", "seed", "level"}``.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    n = int(matrix.sum())
    if n == 0:
        raise ValueError("empty confusion matrix")
    rng = np.random.default_rng(seed)
    probs = matrix.ravel() / n
    accuracies, f1s = [], []
    chunk = max(1, min(n_resamples, 2_000_000 // max(1, probs.size)))
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        draws = rng.multinomial(n, probs, size=b).reshape(b, *matrix.shape)
        acc, wf1 = _accuracy_and_weighted_f1(draws)
        accuracies.append(acc)
        f1s.append(wf1)
        done += b
    return {
        "accuracy": percentile_interval(np.concatenate(accuracies), level),
        "weighted_f1": percentile_interval(np.concatenate(f1s), level),
        "method": "percentile bootstrap over items",
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "level": float(level),
    }


def wilson_interval(successes: int, n: int, level: float) -> list[float]:
    """Wilson score interval for a binomial proportion (statsmodels); ``[nan, nan]`` when ``n == 0``.

    Args:
        successes: number of successes.
        n: number of independent trials.
        level: coverage, e.g. 0.95.
    """
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return [float("nan"), float("nan")]
    lo, hi = proportion_confint(successes, n, alpha=1.0 - level, method="wilson")
    return [float(lo), float(hi)]
