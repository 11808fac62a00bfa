"""Agreement statistics: published worked examples, library equivalence of the bootstrap formulas, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa

from eval.agreement import (agreement_report, alpha_nominal_from_weights, fleiss_from_weights,
                            ratings_from_prediction_files, ratings_from_records, ratings_from_votes, read_ratings_csv)
from eval.cli import run
from eval.errors import EvalInputError
from mikupal.testing.eval_suite import compose_eval, utterance, write_run

DATA = Path(__file__).resolve().parent / "data"  # published ratings with known results

FAST = {"n_resamples": 300, "seed": 0, "level": 0.95}


def _krippendorff_records():
    df = pd.read_csv(DATA / "krippendorff2011_reliability.csv")
    records = []
    for _, row in df.iterrows():
        for unit in df.columns[1:]:
            if not pd.isna(row[unit]):
                records.append((unit, row["observer"], int(row[unit])))
    return records


def test_fleiss_1971_psychiatric_diagnoses():
    ratings = read_ratings_csv(DATA / "fleiss1971_diagnoses.csv")
    report = agreement_report(ratings, **FAST)
    assert report["n_items"] == 30 and report["n_raters"] == 6
    assert round(report["fleiss_kappa"], 3) == 0.430
    per_cat = {c: round(v["kappa"], 3) for c, v in report["fleiss"]["per_category"].items()}
    assert per_cat == {"1": 0.245, "2": 0.245, "3": 0.520, "4": 0.471, "5": 0.566}
    lo, hi = report["intervals"]["fleiss_kappa"]
    assert lo < report["fleiss_kappa"] < hi


def test_overall_kappa_is_the_pq_weighted_mean_of_category_kappas():
    report = agreement_report(read_ratings_csv(DATA / "fleiss1971_diagnoses.csv"), **FAST)
    cats = report["fleiss"]["per_category"].values()
    pq = [c["share"] * (1 - c["share"]) for c in cats]
    weighted = sum(w * c["kappa"] for w, c in zip(pq, cats)) / sum(pq)
    assert weighted == pytest.approx(report["fleiss_kappa"])


def test_wikipedia_fourteen_rater_example():
    counts = pd.read_csv(DATA / "wikipedia_fleiss_counts.csv")
    records = []
    for _, row in counts.iterrows():
        rater = 0
        for cat in counts.columns[1:]:
            for _ in range(int(row[cat])):
                records.append((row["item"], f"r{rater}", cat))
                rater += 1
    report = agreement_report(ratings_from_records(records), **FAST)
    assert report["n_items"] == 10 and report["n_raters"] == 14
    assert round(report["fleiss_kappa"], 3) == 0.210


@pytest.mark.parametrize("level,expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                            ("ratio", 0.797)])
def test_krippendorff_2011_example_with_missing_values(level, expected):
    report = agreement_report(ratings_from_records(_krippendorff_records()), level_of_measurement=level,
                              n_resamples=100, seed=0, level=0.95)
    assert round(report["krippendorff_alpha"], 3) == expected
    assert report["n_items"] == 12 and report["n_raters"] == 4
    # unequal ratings per item: Fleiss uses only the fully rated items, and says so
    assert report["fleiss"]["n_items"] == 8 and any("Fleiss' kappa uses" in w for w in report["warnings"])
    # unit u12 has one rating: it cannot enter agreement, and the report says so
    assert any("single rating" in w for w in report["warnings"])


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_bootstrap_terms_equal_the_libraries_at_unit_weights(seed):
    rng = np.random.default_rng(seed)
    n_items, n_raters, n_cat = 60, 5, 4
    labels = rng.integers(0, n_cat, size=(n_items, n_raters))
    full = ratings_from_records([(i, r, int(labels[i, r])) for i in range(n_items) for r in range(n_raters)])
    counts = full.counts()
    assert fleiss_from_weights(counts, np.ones((1, n_items)))[0] == pytest.approx(fleiss_kappa(counts))
    # with missing ratings
    mask = rng.random((n_items, n_raters)) < 0.3
    sparse = ratings_from_records([(i, r, int(labels[i, r])) for i in range(n_items) for r in range(n_raters)
                                   if not mask[i, r]])
    data = np.where(sparse.matrix >= 0, sparse.matrix, np.nan).T.astype(float)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert alpha_nominal_from_weights(sparse.counts(), np.ones((1, len(sparse.items))))[0] == pytest.approx(expected)
    # integer weights = duplicating items
    w = rng.integers(0, 3, size=len(sparse.items)).astype(float)
    dup = np.repeat(np.arange(len(sparse.items)), w.astype(int))
    expected_dup = krippendorff.alpha(reliability_data=data[:, dup], level_of_measurement="nominal")
    assert alpha_nominal_from_weights(sparse.counts(), w[None])[0] == pytest.approx(expected_dup)


def test_percent_agreement_and_cohen_by_hand():
    records = [("i1", "A", "x"), ("i1", "B", "x"), ("i1", "C", "x"),
               ("i2", "A", "x"), ("i2", "B", "x"), ("i2", "C", "y"),
               ("i3", "A", "x"), ("i3", "B", "y"), ("i3", "C", "z")]
    report = agreement_report(ratings_from_records(records), **FAST)
    assert report["percent_agreement"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert report["unanimous_share"] == pytest.approx(1 / 3)
    pairs = {tuple(p["raters"]): p for p in report["cohen_pairwise"]["pairs"]}
    assert pairs[("A", "B")]["agreement"] == pytest.approx(2 / 3)
    from sklearn.metrics import cohen_kappa_score

    assert pairs[("A", "C")]["kappa"] == pytest.approx(cohen_kappa_score(["x", "x", "x"], ["x", "y", "z"]))


def test_single_rater_per_item_is_an_error_and_duplicates_are_refused():
    with pytest.raises(EvalInputError, match="single rating"):
        agreement_report(ratings_from_records([("i1", "A", "x"), ("i2", "B", "y")]), **FAST)
    with pytest.raises(EvalInputError, match="more than once"):
        ratings_from_records([("i1", "A", "x"), ("i1", "A", "y")])


def test_constant_ratings_give_undefined_kappa_not_a_number():
    records = [(f"i{i}", r, "x") for i in range(5) for r in ("A", "B")]
    report = agreement_report(ratings_from_records(records), **FAST)
    assert report["fleiss_kappa"] is None and report["krippendorff_alpha"] is None
    assert report["percent_agreement"] == 1.0
    assert any("undefined" in w for w in report["warnings"])


def test_rollout_votes_of_a_run_directory(tmp_path):
    utts = [utterance(f"v-{i:05d}", "Joy", votes=["Joy", "Joy", "Joy"]) for i in range(8)]
    utts += [utterance(f"v-{i:05d}", "Anger", votes=["Anger", "Anger", "Anger"]) for i in range(8, 14)]
    utts += [utterance("v-00014", "Anger", votes=["Anger", "Joy", "Anger"]),
             utterance("v-00015", None)]
    ratings = ratings_from_votes(write_run(tmp_path / "run", utts))
    assert ratings.kind == "rollouts" and ratings.raters == ["rollout0", "rollout1", "rollout2"]
    assert len(ratings.items) == 15  # the utterance without emotion is skipped
    report = agreement_report(ratings, **FAST)
    assert 0.8 < report["fleiss_kappa"] < 1.0
    assert report["unanimous_share"] == pytest.approx(14 / 15)


def test_prediction_files_as_raters(dev_gold, tmp_path):
    a = dev_gold[["id", "label"]].iloc[:200]
    b = a.copy()
    b.loc[b.index[:20], "label"] = "neutral"
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    ratings = ratings_from_prediction_files([tmp_path / "a.csv", tmp_path / "b.csv"])
    report = agreement_report(ratings, **FAST)
    changed = int((a["label"].iloc[:20] != "neutral").sum())
    assert report["percent_agreement"] == pytest.approx(1 - changed / 200)
    assert report["n_raters"] == 2 and report["cohen_pairwise"]["n_pairs"] == 1


def test_cli_agreement_contract_keys_and_references(tmp_path):
    out = tmp_path / "agreement.json"
    run(compose_eval("task=agreement", f"ratings={DATA / 'fleiss1971_diagnoses.csv'}", f"out={out}",
                     "bootstrap.n_resamples=100"))
    report = json.loads(out.read_text())
    for key in ("n_items", "n_raters", "fleiss_kappa", "krippendorff_alpha", "percent_agreement"):
        assert key in report
    assert report["n_items"] == 30 and 0 <= report["percent_agreement"] <= 1
    assert any(r["kappa"] == "0.43" for r in report["references"])


def test_cli_agreement_needs_exactly_one_source(tmp_path):
    with pytest.raises(EvalInputError, match="exactly one"):
        run(compose_eval("task=agreement", f"out={tmp_path / 'a.json'}"))
    with pytest.raises(EvalInputError, match="at least two"):
        run(compose_eval("task=agreement", f"predictions=[{tmp_path / 'a.csv'}]", f"out={tmp_path / 'a.json'}"))


def test_several_runs_as_raters(tmp_path):
    labels_a = ["Joy", "Anger", "Joy", "Calmness", "Joy", "Sadness"]
    labels_b = ["Joy", "Anger", "Calmness", "Calmness", "Joy", "Sadness"]
    a = write_run(tmp_path / "a", [utterance(f"v-{i:05d}", lab) for i, lab in enumerate(labels_a)])
    b = write_run(tmp_path / "b", [utterance(f"v-{i:05d}", lab) for i, lab in enumerate(labels_b)]
                  + [utterance("v-00099", "Joy")])  # only in run b: a single rating, left out with a warning
    report = run(compose_eval("task=agreement", f"runs=[{a},{b}]", f"out={tmp_path / 'r.json'}",
                              "bootstrap.n_resamples=100"))
    assert report["kind"] == "runs" and report["n_raters"] == 2 and report["n_items"] == 7
    assert report["percent_agreement"] == pytest.approx(5 / 6)
    assert any("single rating" in w for w in report["warnings"])


def test_single_rollout_runs_name_the_fix(tmp_path):
    run_dir = write_run(tmp_path / "run", [utterance(f"v-{i:05d}", "Joy") for i in range(5)])
    with pytest.raises(EvalInputError, match="rollouts >= 2"):
        ratings_from_votes(run_dir)
