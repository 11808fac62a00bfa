"""Classification metrics and their intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from eval.metrics import (INVALID, bootstrap_classification, classification_metrics, weighted_f1_from_confusion,
                          wilson_interval)

LABELS = ["a", "b", "c"]


def test_hand_computed_example_with_an_invalid_prediction():
    gold = ["a", "b", "a", "c", "b"]
    pred = ["a", "a", "a", INVALID, "b"]
    m = classification_metrics(gold, pred, LABELS)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # a: P=2/3 R=1 F=.8; b: P=1 R=.5 F=2/3; c: P=0 R=0 F=0 (its one item was predicted invalid)
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["c"]["recall"] == 0.0 and m["per_class"]["c"]["support"] == 1
    assert m["weighted_f1"] == pytest.approx((2 * 0.8 + 2 * (2 / 3) + 0) / 5)
    assert m["uar"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert m["confusion"]["predicted_labels"] == ["a", "b", "c", INVALID]
    assert m["confusion"]["matrix"] == [[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]]


def test_unmapped_outside_label_is_rejected_not_silently_scored():
    with pytest.raises(ValueError, match="mapped"):
        classification_metrics(["a"], ["happy"], LABELS)
    with pytest.raises(ValueError, match="gold labels outside"):
        classification_metrics(["z"], ["a"], LABELS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_f1_from_confusion_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, size=300, p=[0.6, 0.3, 0.1]).tolist()
    pred = rng.choice(LABELS + [INVALID], size=300).tolist()
    m = classification_metrics(gold, pred, LABELS)
    assert weighted_f1_from_confusion(np.array(m["confusion"]["matrix"])) == pytest.approx(m["weighted_f1"])
    assert m["weighted_f1"] == pytest.approx(f1_score(gold, pred, labels=LABELS, average="weighted", zero_division=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))


def test_bootstrap_interval_is_reproducible_and_has_binomial_width():
    rng = np.random.default_rng(0)
    gold = rng.choice(LABELS, size=1000).tolist()
    pred = [g if rng.random() < 0.7 else "a" for g in gold]
    m = classification_metrics(gold, pred, LABELS)
    iv = bootstrap_classification(m["confusion"]["matrix"], n_resamples=4000, seed=3, level=0.95)
    again = bootstrap_classification(m["confusion"]["matrix"], n_resamples=4000, seed=3, level=0.95)
    assert iv["accuracy"] == again["accuracy"]
    lo, hi = iv["accuracy"]
    assert lo < m["accuracy"] < hi
    p = m["accuracy"]
    expected_width = 2 * 1.96 * math.sqrt(p * (1 - p) / 1000)
    assert (hi - lo) == pytest.approx(expected_width, rel=0.12)
    assert iv["weighted_f1"][0] < m["weighted_f1"] < iv["weighted_f1"][1]


def test_bootstrap_matches_index_resampling_in_distribution():
    """The multinomial draw over confusion cells is the same distribution as resampling item indices."""
    rng = np.random.default_rng(1)
    gold = rng.choice(LABELS, size=200).tolist()
    pred = [g if rng.random() < 0.6 else rng.choice(LABELS) for g in gold]
    m = classification_metrics(gold, pred, LABELS)
    fast = bootstrap_classification(m["confusion"]["matrix"], n_resamples=3000, seed=0, level=0.9)
    g, p = np.array(gold), np.array(pred)
    accs = []
    for _ in range(3000):
        ix = rng.integers(0, len(g), len(g))
        accs.append(np.mean(g[ix] == p[ix]))
    slow = np.quantile(accs, [0.05, 0.95])
    assert fast["accuracy"][0] == pytest.approx(slow[0], abs=0.012)
    assert fast["accuracy"][1] == pytest.approx(slow[1], abs=0.012)


def test_wilson_interval_matches_the_closed_form():
    z = 1.959963984540054
    n, k = 100, 83
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(k, n, 0.95) == pytest.approx([centre - half, centre + half])
    assert all(math.isnan(v) for v in wilson_interval(0, 0, 0.95))
