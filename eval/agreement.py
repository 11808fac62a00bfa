"""Inter-rater agreement (``mikupal-eval task=agreement``).

Input is a long table of ratings ``(item, rater, label)``; it can come from a CSV, from the ``votes`` of a run
directory (each rollout a rater), from several run directories (each run a rater) or from several MELD-style
prediction files (each file a rater).

Statistics, with the library that computes the point estimate:

- Fleiss' kappa (:func:`statsmodels.stats.inter_rater.fleiss_kappa`). It needs the same number of ratings per
  item; when counts differ it is computed on the items that have the largest count, and the report says how
  many items that left out. The free-marginal (Randolph) variant is reported beside it.
- Per-category kappa (Fleiss 1971, eq. 10), computed here; the overall kappa is its ``p_j q_j``-weighted mean.
- Krippendorff's alpha (``krippendorff.alpha``), which handles missing ratings; nominal for labels, ordinal or
  interval for ratings scales.
- Pairwise Cohen's kappa (:func:`sklearn.metrics.cohen_kappa_score`) over the items both raters rated.
- Percent agreement: the mean over items of the share of agreeing rater pairs (Fleiss' ``P_i``), and the share
  of unanimous items.

Bootstrap intervals resample items. Fleiss' kappa, nominal alpha and percent agreement are sums over items, so
each resample is a weighted sum of per-item terms (vectorised; equal to the libraries' values at unit weights,
which the tests check).

Agreement among rollouts of one model measures *self-consistency*; it is not comparable with agreement
between human annotators (MELD's 0.43). Reports say which kind they are.
"""

from __future__ import annotations

import itertools
import logging
import warnings as warnings_module
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eval.errors import EvalInputError
from eval.io import first_examples, load_utterances, read_table
from eval.metrics import percentile_interval

log = logging.getLogger(__name__)


@dataclass
class Ratings:
    """Ratings as an items × raters matrix of category indices (``-1`` = not rated).

    Attributes:
        items: item ids, row order.
        raters: rater ids, column order.
        categories: category values, index order (sorted; numbers numerically).
        matrix: ``(len(items), len(raters))`` int array.
        kind: what the raters are (``"ratings"``, ``"rollouts"``, ``"runs"``, ``"prediction files"``).
    """

    items: list[str]
    raters: list[str]
    categories: list[Any]
    matrix: np.ndarray
    kind: str = "ratings"

    def counts(self) -> np.ndarray:
        """Items × categories table of how many raters chose each category."""
        table = np.zeros((len(self.items), len(self.categories)), dtype=np.int64)
        rows, cols = np.nonzero(self.matrix >= 0)
        np.add.at(table, (rows, self.matrix[rows, cols]), 1)
        return table


def _sort_categories(values: Sequence[Any]) -> list[Any]:
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def ratings_from_records(records: Sequence[tuple[Any, Any, Any]], *, kind: str = "ratings",
                         categories: Sequence[Any] | None = None) -> Ratings:
    """Build :class:`Ratings` from ``(item, rater, label)`` triples.

    Args:
        records: the ratings; empty labels must be removed before.
        kind: what the raters are, carried into the report.
        categories: the category order (default: the labels seen, sorted); labels outside it are an error.

    Raises:
        EvalInputError: no ratings, or one rater rated one item twice.
    """
    if not records:
        raise EvalInputError("no ratings")
    pairs = Counter((str(i), str(r)) for i, r, _ in records)
    repeated = [p for p, c in pairs.items() if c > 1]
    if repeated:
        raise EvalInputError(
            f"{len(repeated)} (item, rater) pairs are rated more than once, e.g. {first_examples(repeated)}; "
            "keep one rating per rater and item"
        )
    labels = [lab for _, _, lab in records]
    cats = list(categories) if categories is not None else _sort_categories(set(labels))
    index = {c: k for k, c in enumerate(cats)}
    outside = sorted({str(lab) for lab in labels if lab not in index})
    if outside:
        raise EvalInputError(f"labels outside the category list {cats}: {outside}")
    items = list(dict.fromkeys(str(i) for i, _, _ in records))
    raters = list(dict.fromkeys(str(r) for _, r, _ in records))
    item_index = {v: k for k, v in enumerate(items)}
    rater_index = {v: k for k, v in enumerate(raters)}
    matrix = np.full((len(items), len(raters)), -1, dtype=np.int64)
    for i, r, lab in records:
        matrix[item_index[str(i)], rater_index[str(r)]] = index[lab]
    return Ratings(items=items, raters=raters, categories=cats, matrix=matrix, kind=kind)


def read_ratings_csv(path: str | Path, *, item_column: str = "item", rater_column: str = "rater",
                     label_column: str = "label") -> Ratings:
    """Read a ratings CSV with columns ``item, rater, label`` (names configurable).

    Rows with an empty label are skipped with a warning (a rater who did not rate the item).
    """
    df = read_table(path, what="ratings")
    missing = [c for c in (item_column, rater_column, label_column) if c not in df.columns]
    if missing:
        raise EvalInputError(f"ratings {path} lacks columns {missing} (columns: {list(df.columns)})")
    empty = df[label_column].isna() | df[item_column].isna() | df[rater_column].isna()
    if empty.any():
        log.warning("%s: %d rows with an empty item, rater or label skipped", path, int(empty.sum()))
    df = df[~empty]
    records = [(i, r, str(lab).strip()) for i, r, lab in zip(df[item_column], df[rater_column], df[label_column])]
    return ratings_from_records(records, kind="ratings")


def ratings_from_votes(run_dir: str | Path) -> Ratings:
    """Ratings from the ``emotion.votes`` of a run directory: rollout ``k`` is rater ``rollout<k>``.

    Raises:
        EvalInputError: no utterance has an emotion.
    """
    utterances = load_utterances(run_dir)
    records = []
    skipped = 0
    for utt in utterances:
        if utt.emotion is None:
            skipped += 1
            continue
        for k, vote in enumerate(utt.emotion.votes):
            if vote is not None and str(vote).strip():
                records.append((utt.id, f"rollout{k}", str(vote)))
    if skipped:
        log.warning("%s: %d utterances without an emotion skipped", run_dir, skipped)
    if not records:
        raise EvalInputError(f"{run_dir}: no utterance has emotion votes")
    if all(len(u.emotion.votes) < 2 for u in utterances if u.emotion is not None):
        raise EvalInputError(
            f"{run_dir}: every utterance has a single vote (the run used annotator.rollouts=1, or a deterministic "
            "annotator): rollout agreement needs annotator.rollouts >= 2; to compare runs use runs=[A,B]"
        )
    return ratings_from_records(records, kind="rollouts")


def ratings_from_runs(run_dirs: Sequence[str | Path]) -> Ratings:
    """Ratings from several run directories over the same input: each run is a rater, ``emotion.label`` the label."""
    records = []
    for run in run_dirs:
        for utt in load_utterances(run):
            if utt.emotion is not None:
                records.append((utt.id, str(run), utt.emotion.label))
    return ratings_from_records(records, kind="runs")


def ratings_from_prediction_files(paths: Sequence[str | Path], **load_kwargs: Any) -> Ratings:
    """Ratings from several MELD prediction files (see :func:`eval.meld.load_predictions`); each file is a rater."""
    from eval.meld import load_predictions

    records = []
    for path in paths:
        preds = load_predictions(path, **load_kwargs)
        records.extend((item, str(path), label) for item, label in preds.labels.items())
    return ratings_from_records(records, kind="prediction files")


# -- statistics -------------------------------------------------------------------------------------------------


def fleiss_terms(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-item agreement ``P_i`` and the common number of ratings ``n`` of an equal-count table."""
    n = int(counts.sum(axis=1)[0])
    p_i = (np.sum(counts * counts, axis=1) - n) / (n * (n - 1))
    return p_i, n


def fleiss_from_weights(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fleiss' kappa of item-weighted tables: ``weights`` is ``(B, N)``, ``counts`` ``(N, K)`` with equal row sums."""
    p_i, n = fleiss_terms(counts)
    total = weights.sum(axis=1)
    p_bar = (weights @ p_i) / total
    p_j = (weights @ counts) / (total[:, None] * n)
    p_e = np.sum(p_j * p_j, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p_bar - p_e) / (1.0 - p_e)


def per_category_kappa(counts: np.ndarray) -> np.ndarray:
    """Fleiss (1971) kappa of each category for an equal-count table (NaN where a category is never/always used)."""
    n_items = counts.shape[0]
    n = int(counts.sum(axis=1)[0])
    p_j = counts.sum(axis=0) / (n_items * n)
    q_j = 1.0 - p_j
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - np.sum(counts * (n - counts), axis=0) / (n_items * n * (n - 1) * p_j * q_j)


def alpha_nominal_from_weights(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Nominal Krippendorff alpha of item-weighted tables (items with fewer than 2 ratings are not pairable)."""
    m = counts.sum(axis=1)
    keep = m >= 2
    counts, m, weights = counts[keep], m[keep].astype(float), weights[:, keep]
    agree = np.sum(counts * (counts - 1), axis=1) / (m - 1)  # sum_c o_cc contribution per item
    n_total = weights @ m
    n_c = weights @ counts
    observed_disagreement = 1.0 - (weights @ agree) / n_total
    expected_disagreement = 1.0 - np.sum(n_c * (n_c - 1), axis=1) / (n_total * (n_total - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - observed_disagreement / expected_disagreement


def percent_agreement_terms(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-item share of agreeing rater pairs and unanimity (items with at least 2 ratings)."""
    m = counts.sum(axis=1).astype(float)
    keep = m >= 2
    pairs = np.sum(counts[keep] * (counts[keep] - 1), axis=1) / (m[keep] * (m[keep] - 1))
    unanimous = (counts[keep].max(axis=1) == m[keep]).astype(float)
    return pairs, unanimous


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _bootstrap_weights(rng: np.random.Generator, n_items: int, n_resamples: int):
    """Yield ``(b, n_items)`` arrays of multinomial resample counts, in chunks bounded in memory."""
    chunk = max(1, min(n_resamples, 5_000_000 // max(1, n_items)))
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        yield rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=b).astype(float)
        done += b


def agreement_report(
    ratings: Ratings,
    *,
    level_of_measurement: str = "nominal",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    max_pairs: int = 200,
) -> dict:
    """Compute every agreement statistic of a ratings matrix, with bootstrap intervals.

    Args:
        ratings: the ratings.
        level_of_measurement: Krippendorff level: ``nominal`` (labels), ``ordinal``, ``interval`` or ``ratio``
            (numeric categories).
        n_resamples, seed, level: bootstrap settings.
        max_pairs: list at most this many rater pairs individually (the summary covers all pairs).

    Returns:
        ``n_items``, ``n_raters``, ``fleiss_kappa``, ``krippendorff_alpha``, ``percent_agreement`` and the
        details described in the module docstring; undefined statistics are ``None`` with a warning.

    Raises:
        EvalInputError: every item has a single rating (agreement is undefined).
    """
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import fleiss_kappa

    warnings: list[str] = []
    counts = ratings.counts()
    per_item = counts.sum(axis=1)
    if per_item.max() < 2:
        raise EvalInputError(
            f"every one of the {len(ratings.items)} items has a single rating: agreement needs at least two raters "
            "per item (check the item and rater columns)"
        )
    single = int((per_item < 2).sum())
    if single:
        warnings.append(f"{single} of {len(ratings.items)} items have a single rating and do not enter agreement")

    # Fleiss: items with the full (largest) number of ratings.
    n_full = int(per_item.max())
    full = per_item == n_full
    fleiss = {"value": None, "free_marginal": None, "n_items": int(full.sum()), "ratings_per_item": n_full,
              "per_category": {}}
    if not np.all(per_item[per_item >= 2] == n_full):
        warnings.append(
            f"items have different numbers of ratings ({dict(sorted(Counter(per_item.tolist()).items()))}); "
            f"Fleiss' kappa uses the {int(full.sum())} items with {n_full} ratings, Krippendorff's alpha uses all"
        )
    full_counts = counts[full]
    if full_counts.shape[0] >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            fleiss["value"] = _none_if_nan(fleiss_kappa(full_counts, method="fleiss"))
            fleiss["free_marginal"] = _none_if_nan(fleiss_kappa(full_counts, method="randolph"))
        pc = per_category_kappa(full_counts)
        p_j = full_counts.sum(axis=0) / full_counts.sum()
        fleiss["per_category"] = {
            str(c): {"kappa": _none_if_nan(k), "share": float(p)} for c, k, p in zip(ratings.categories, pc, p_j)
        }
        if fleiss["value"] is None:
            warnings.append("Fleiss' kappa is undefined: every rating is the same category")
    else:
        warnings.append(f"Fleiss' kappa needs at least two items with {n_full} ratings")

    # Krippendorff: raters × items, NaN = missing.
    if level_of_measurement == "nominal":
        codes = np.arange(len(ratings.categories), dtype=float)
    else:
        try:
            codes = np.array([float(c) for c in ratings.categories])
        except ValueError as e:
            raise EvalInputError(
                f"level_of_measurement={level_of_measurement} needs numeric labels, got {ratings.categories}"
            ) from e
    data = np.where(ratings.matrix >= 0, codes[np.clip(ratings.matrix, 0, None)], np.nan).T
    alpha = None
    if len(set(ratings.matrix[ratings.matrix >= 0].tolist())) > 1:
        alpha = _none_if_nan(
            krippendorff.alpha(reliability_data=data, level_of_measurement=level_of_measurement, value_domain=codes)
        )
    else:
        warnings.append("Krippendorff's alpha is undefined: every rating is the same category")

    pairs, unanimous = percent_agreement_terms(counts)

    # Pairwise Cohen.
    pair_rows = []
    for a, b in itertools.combinations(range(len(ratings.raters)), 2):
        both = (ratings.matrix[:, a] >= 0) & (ratings.matrix[:, b] >= 0)
        if both.sum() < 2:
            continue
        x, y = ratings.matrix[both, a], ratings.matrix[both, b]
        with np.errstate(divide="ignore", invalid="ignore"), warnings_module.catch_warnings():
            # a pair that used one category only has no defined kappa: reported as None below
            warnings_module.simplefilter("ignore")
            kappa = cohen_kappa_score(x, y, labels=np.arange(len(ratings.categories)))
        pair_rows.append({"raters": [ratings.raters[a], ratings.raters[b]], "n_items": int(both.sum()),
                          "kappa": _none_if_nan(kappa), "agreement": float(np.mean(x == y))})
    kappas = [p["kappa"] for p in pair_rows if p["kappa"] is not None]
    cohen = {
        "n_pairs": len(pair_rows),
        "mean": float(np.mean(kappas)) if kappas else None,
        "min": float(np.min(kappas)) if kappas else None,
        "max": float(np.max(kappas)) if kappas else None,
        "pairs": pair_rows[:max_pairs],
    }
    undefined = sum(p["kappa"] is None for p in pair_rows)
    if undefined:
        warnings.append(f"Cohen's kappa is undefined for {undefined} rater pairs (a single category between them)")
    if len(pair_rows) > max_pairs:
        warnings.append(f"{len(pair_rows)} rater pairs; the first {max_pairs} are listed")

    # Bootstrap over items.
    rng = np.random.default_rng(seed)
    boot_fleiss, boot_alpha, boot_pa = [], [], []
    pairable = per_item >= 2
    n_items = int(counts.shape[0])
    for w in _bootstrap_weights(rng, n_items, n_resamples):
        if full_counts.shape[0] >= 2:
            boot_fleiss.append(fleiss_from_weights(full_counts, w[:, full]))
        if level_of_measurement == "nominal":
            boot_alpha.append(alpha_nominal_from_weights(counts, w))
        wp = w[:, pairable]
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_pa.append((wp @ pairs) / wp.sum(axis=1))
    n_alpha = n_resamples
    if level_of_measurement != "nominal" and alpha is not None:
        # No closed form: resample item columns and call the library (capped: meant for small rating studies).
        n_alpha = min(n_resamples, 200)
        idx = rng.integers(0, n_items, size=(n_alpha, n_items))
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_alpha = [np.array([
                krippendorff.alpha(reliability_data=data[:, ix], level_of_measurement=level_of_measurement,
                                   value_domain=codes)
                if np.unique(data[:, ix][~np.isnan(data[:, ix])]).size > 1 else np.nan
                for ix in idx
            ])]
    cat = np.concatenate
    intervals = {
        "fleiss_kappa": percentile_interval(cat(boot_fleiss), level) if boot_fleiss else [None, None],
        "krippendorff_alpha": percentile_interval(cat(boot_alpha), level) if boot_alpha else [None, None],
        "percent_agreement": percentile_interval(cat(boot_pa), level),
        "method": "percentile bootstrap over items",
        "n_resamples": int(n_resamples),
        "krippendorff_alpha_n_resamples": int(n_alpha),
        "seed": int(seed),
        "level": float(level),
    }
    for w in warnings:
        log.warning(w)
    return {
        "task": "agreement",
        "kind": ratings.kind,
        "n_items": len(ratings.items),
        "n_raters": len(ratings.raters),
        "n_ratings": int(counts.sum()),
        "categories": [str(c) for c in ratings.categories],
        "fleiss_kappa": fleiss["value"],
        "krippendorff_alpha": alpha,
        "percent_agreement": float(np.mean(pairs)),
        "unanimous_share": float(np.mean(unanimous)),
        "fleiss": fleiss,
        "krippendorff": {"level_of_measurement": level_of_measurement, "value": alpha},
        "cohen_pairwise": cohen,
        "intervals": intervals,
        "ratings_per_item": dict(sorted(Counter(per_item.tolist()).items())),
        "warnings": warnings,
    }


def format_agreement(report: dict, references: Sequence[dict] = ()) -> str:
    """Terminal view of an agreement report, with human reference values beside it."""
    from eval.report import fmt_interval, text_table

    iv = report["intervals"]
    rows = [
        ["items", report["n_items"], ""],
        ["raters", report["n_raters"], ""],
        ["Fleiss' kappa", report["fleiss_kappa"], fmt_interval(iv["fleiss_kappa"])],
        ["  free-marginal", report["fleiss"]["free_marginal"], ""],
        [f"Krippendorff's alpha ({report['krippendorff']['level_of_measurement']})", report["krippendorff_alpha"],
         fmt_interval(iv["krippendorff_alpha"])],
        ["percent agreement (pairs)", report["percent_agreement"], fmt_interval(iv["percent_agreement"])],
        ["unanimous items", report["unanimous_share"], ""],
        ["Cohen's kappa, mean over pairs", report["cohen_pairwise"]["mean"], ""],
    ]
    title = f"agreement — {report.get('name', '')} ({report['kind']})"
    parts = [text_table(["statistic", "value", f"{iv['level']:.0%} CI"], rows, title=title)]
    per_cat = report["fleiss"]["per_category"]
    if per_cat:
        parts.append(text_table(["category", "kappa", "share"],
                                [[c, v["kappa"], v["share"]] for c, v in per_cat.items()],
                                title="per-category kappa (Fleiss 1971)"))
    if references:
        parts.append(text_table(["reference", "Fleiss' kappa", "raters", "source"],
                                [[r["name"], r["kappa"], r.get("raters", ""), r.get("source", "")] for r in references],
                                title="reference values"))
    if report["kind"] in ("rollouts", "runs"):
        parts.append("note: agreement among rollouts/runs of one annotator measures self-consistency; it is not "
                     "comparable with agreement between human annotators.")
    if report.get("warnings"):
        parts.append("warnings:\n" + "\n".join(f"  - {w}" for w in report["warnings"]))
    return "\n\n".join(parts)
