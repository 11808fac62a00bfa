"""The paper's comparison tables from saved reports and run summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from eval.cli import run
from eval.errors import EvalInputError
from eval.tables import latex_escape, summary_value
from mikupal.testing.eval_suite import compose_eval

DATA = Path(__file__).resolve().parent / "data"  # published ratings with known results

RUNNER_SUMMARY = {  # the shape mikupal.runner writes
    "complete": True, "videos": 2, "hours_in": 1.5, "utterances_out": 300, "hours_out": 0.5, "errors": 0,
    "cost_usd": 3.0,
    "stages": {"extract": {"wall_time_s": 600.0}, "vad": {"wall_time_s": 300.0}, "annotate": {"wall_time_s": 900.0}},
}


@pytest.fixture()
def reports(meld_dev, dev_gold, tmp_path):
    preds = dev_gold[["id", "label"]].copy()
    preds.loc[preds.index[::3], "label"] = "neutral"
    preds.to_csv(tmp_path / "p.csv", index=False)
    meld = tmp_path / "ours_meld.json"
    run(compose_eval("task=meld", f"gold={meld_dev}", f"predictions={tmp_path / 'p.csv'}", f"out={meld}",
                     "bootstrap.n_resamples=100", "name=fusion_text"))
    agreement = tmp_path / "agreement.json"
    run(compose_eval("task=agreement", f"ratings={DATA / 'fleiss1971_diagnoses.csv'}", f"out={agreement}",
                     "bootstrap.n_resamples=100"))
    pd.DataFrame({"item": [f"u{i}" for i in range(10)], "rater": "r1", "label": "Joy",
                  "rating": ["yes"] * 8 + ["no"] * 2}).to_csv(tmp_path / "r.csv", index=False)
    rationality = tmp_path / "rationality.json"
    run(compose_eval("task=rationality", f"ratings={tmp_path / 'r.csv'}", f"out={rationality}",
                     "bootstrap.n_resamples=100"))
    summary = tmp_path / "run" / "summary.json"
    summary.parent.mkdir()
    summary.write_text(json.dumps(RUNNER_SUMMARY))
    return {"meld": meld, "agreement": agreement, "rationality": rationality, "summary": summary}


def test_tables_from_reports(reports, tmp_path):
    out = tmp_path / "tables" / "tables.json"
    result = run(compose_eval("task=tables", f"reports=[{reports['meld']},{reports['agreement']},"
                              f"{reports['rationality']}]", f"summaries=[{reports['summary']}]", f"out={out}"))
    tables = result["tables"]
    meld_rows = {row[0]: row for row in tables["meld"]["rows"]}
    ours = json.loads(reports["meld"].read_text())
    assert meld_rows["fusion_text"][1] == "measured" and meld_rows["fusion_text"][2] == "dev"
    assert meld_rows["fusion_text"][4] == f"{100 * ours['accuracy']:.1f}"
    claim = meld_rows["MIKU-PAL (Gemini 2.0 Flash), paper claim"]
    assert claim[1] == "paper claim" and claim[4] == "68.5"
    kappa_rows = {row[0]: row for row in tables["agreement"]["rows"]}
    assert kappa_rows["agreement"][4] == "0.430" and kappa_rows["MELD emotion, human annotators"][4] == "0.43"
    assert kappa_rows["MIKU-PAL runs, paper claim"][4] == "0.93–0.95"
    rat_rows = {row[0]: row for row in tables["rationality"]["rows"]}
    assert rat_rows["rationality"][4] == "80.0" and rat_rows["MIKU-PAL 26-category labels, paper claim"][4] == "83.0"
    cost = tables["cost"]["rows"][0]
    # 3 USD / 0.5 h = 6 USD per labelled hour; (600+300+900) s = 0.5 h wall, 1.0 wall h per labelled h
    assert cost[0] == "run" and cost[4] == "6.00" and cost[5] == "0.500" and cost[6] == "1.000"
    md = (tmp_path / "tables" / "tables.md").read_text()
    assert "| fusion_text | measured | dev |" in md and "paper claim" in md
    tex = (tmp_path / "tables" / "tables.tex").read_text()
    assert r"\begin{tabular}" in tex and "fusion\\_text" in tex
    assert r"judged rational (\%), 95\% interval" in tex  # % escaped, or LaTeX would drop the rest of the line
    for key in ("meld_plot", "agreement_plot"):
        assert open(result["files"][key], "rb").read(4) == b"\x89PNG"
    assert json.loads(out.read_text())["task"] == "tables"


def test_baseline_reports_expand_into_rows(tmp_path):
    fake = {"task": "baseline", "baselines": {"majority": {"n": 10, "accuracy": 0.4, "weighted_f1": 0.25,
                                                           "coverage": 1.0, "split": "dev", "intervals": {}}}}
    (tmp_path / "b.json").write_text(json.dumps(fake))
    result = run(compose_eval("task=tables", f"reports=[{tmp_path / 'b.json'}]", f"out={tmp_path / 't.json'}"))
    assert result["tables"]["meld"]["rows"][0][:5] == ["baseline: majority", "measured", "dev", "10", "40.0"]


def test_merged_shard_summary_has_no_wall_time_and_says_so():
    merged = {**RUNNER_SUMMARY, "stages": {"extract": {"wall_time_s": None}, "vad": {"wall_time_s": None}}}
    keys = ["wall_time_s", "stages.*.wall_time_s"]
    assert summary_value(RUNNER_SUMMARY, keys) == 1800.0
    assert summary_value(merged, keys) is None
    assert summary_value({"cost": {"a": 1.0, "b": 2.5}}, ["cost"]) == 3.5


def test_unknown_report_and_no_input_are_errors(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"task": "something"}))
    with pytest.raises(EvalInputError, match="not a report of a known task"):
        run(compose_eval("task=tables", f"reports=[{tmp_path / 'x.json'}]", f"out={tmp_path / 't.json'}"))
    with pytest.raises(EvalInputError, match="reports="):
        run(compose_eval("task=tables", f"out={tmp_path / 't.json'}"))


def test_latex_escape():
    assert latex_escape("50% of a_b & c#") == r"50\% of a\_b \& c\#"
