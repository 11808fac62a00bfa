"""Rationality studies: rating sheet export, rating import (CSV, Label Studio), aggregation."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from eval.cli import run
from eval.errors import EvalInputError
from eval.metrics import wilson_interval
from eval.rationality import Scale, export_rating_sheet, rationality_report, read_ratings
from mikupal.testing.eval_suite import compose_eval, utterance, write_run

BINARY = Scale()
LIKERT = Scale(kind="likert", threshold=4)
FAST = {"level": 0.95, "n_resamples": 500, "seed": 0}


@pytest.fixture()
def run_dir(tmp_path):
    utts = [utterance(f"vid-{i:05d}", "Joy", clip=f"faces/vid-{i:05d}.mp4") for i in range(30)]
    utts += [utterance(f"vid-{i:05d}", "Awe", clip=f"faces/vid-{i:05d}.mp4") for i in range(30, 35)]
    utts += [utterance(f"vid-{i:05d}", "Calmness", clip=f"faces/vid-{i:05d}.mp4") for i in range(35, 47)]
    utts += [utterance("vid-00047", None)]
    return write_run(tmp_path / "run", utts)


def test_sheet_is_stratified_by_label_and_seeded(run_dir, tmp_path):
    design = export_rating_sheet(run_dir, tmp_path / "sheet", per_label=10, seed=3, scale=BINARY)
    assert design["population"] == {"Awe": 5, "Calmness": 12, "Joy": 30}
    assert design["sample"] == {"Awe": 5, "Calmness": 10, "Joy": 10}
    rows = list(csv.DictReader(open(tmp_path / "sheet" / "rating_sheet.csv")))
    assert len(rows) == 25
    assert {"item", "label", "rationale", "text", "audio", "clip", "rater", "rating"} <= set(rows[0])
    again = export_rating_sheet(run_dir, tmp_path / "sheet2", per_label=10, seed=3, scale=BINARY)
    rows2 = list(csv.DictReader(open(tmp_path / "sheet2" / "rating_sheet.csv")))
    assert {k: v for k, v in again.items() if k != "files"} == {k: v for k, v in design.items() if k != "files"}
    assert [r["item"] for r in rows] == [r["item"] for r in rows2]
    other = export_rating_sheet(run_dir, tmp_path / "sheet3", per_label=10, seed=4, scale=BINARY)
    rows3 = list(csv.DictReader(open(tmp_path / "sheet3" / "rating_sheet.csv")))
    assert [r["item"] for r in rows] != [r["item"] for r in rows3]
    assert other["sample"] == design["sample"]


def test_label_studio_tasks_and_config(run_dir, tmp_path):
    export_rating_sheet(run_dir, tmp_path / "sheet", per_label=3, seed=0, scale=BINARY,
                        media_url_prefix="/data/local-files/?d=", media_root=str(run_dir))
    tasks = json.loads((tmp_path / "sheet" / "label_studio_tasks.json").read_text())
    assert len(tasks) == 9
    data = tasks[0]["data"]
    assert data["audio"] == f"/data/local-files/?d=audio/{data['item']}.flac"
    assert data["video"] == f"/data/local-files/?d=faces/{data['item']}.mp4"
    assert data["label_description"]  # the label's one-sentence description from conf/labels
    root = ET.fromstring((tmp_path / "sheet" / "label_studio_config.xml").read_text())
    choices = root.find("Choices")
    assert choices.get("name") == "rational" and [c.get("value") for c in choices] == ["rational", "not rational"]
    assert root.find("Video") is not None and root.find("Audio").get("value") == "$audio"
    export_rating_sheet(run_dir, tmp_path / "lik", per_label=3, seed=0, scale=LIKERT)
    rating = ET.fromstring((tmp_path / "lik" / "label_studio_config.xml").read_text()).find("Rating")
    assert rating.get("maxRating") == "5"


def _csv(path, rows):
    pd.DataFrame(rows, columns=["item", "label", "rater", "rating"]).to_csv(path, index=False)
    return path


def test_single_rater_share_uses_wilson_and_reports_per_label(tmp_path):
    rows = [(f"u{i}", "Joy", "r1", "yes" if i < 8 else "no") for i in range(10)]
    rows += [(f"v{i}", "Awe", "r1", "rational" if i < 1 else "not rational") for i in range(4)]
    ratings = read_ratings([_csv(tmp_path / "r.csv", rows)], BINARY)
    report = rationality_report(ratings, scale=BINARY, **FAST)
    assert report["rational_share"] == pytest.approx(9 / 14)
    assert report["interval_method"] == "wilson" and report["interval"] == pytest.approx(wilson_interval(9, 14, 0.95))
    assert report["per_label"]["Joy"]["share"] == pytest.approx(0.8)
    assert report["per_label"]["Awe"]["share"] == pytest.approx(0.25)
    assert report["agreement"] is None and any("single rating" in w for w in report["warnings"])


def test_two_raters_bootstrap_majority_and_agreement(tmp_path):
    a = [(f"u{i}", "Joy", "ann", "yes") for i in range(10)]
    b = [(f"u{i}", "Joy", "bob", "yes" if i < 6 else "no") for i in range(10)]
    ratings = read_ratings([_csv(tmp_path / "a.csv", a), _csv(tmp_path / "b.csv", b)], BINARY)
    report = rationality_report(ratings, scale=BINARY, **FAST)
    assert report["rational_share"] == pytest.approx(16 / 20)
    assert report["interval_method"] == "bootstrap over items"
    assert report["majority_share"] == pytest.approx(0.6)  # ties (1 yes, 1 no) are not a majority
    assert report["agreement"]["n_raters"] == 2
    assert report["agreement"]["percent_agreement"] == pytest.approx(0.6)


def test_likert_threshold_population_weighting_and_labels_from_sheet(tmp_path):
    rows = [("u1", None, "r", "5"), ("u2", None, "r", "4"), ("u3", None, "r", "3"), ("u4", None, "r", "1")]
    ratings = read_ratings([_csv(tmp_path / "r.csv", rows)], LIKERT)
    labels = {"u1": "Joy", "u2": "Joy", "u3": "Awe", "u4": "Awe"}
    report = rationality_report(ratings, scale=LIKERT, labels=labels, population={"Joy": 90, "Awe": 10}, **FAST)
    assert report["rational_share"] == pytest.approx(0.5)
    assert report["per_label"]["Joy"]["share"] == 1.0 and report["per_label"]["Awe"]["share"] == 0.0
    assert report["population_weighted_share"] == pytest.approx(0.9)
    assert report["mean_rating"] == pytest.approx(13 / 4)


def test_label_studio_export_full_and_min(tmp_path):
    full = [
        {"id": 1, "data": {"item": "u1", "label": "Joy"}, "annotations": [
            {"completed_by": {"id": 7, "email": "a@x.org"}, "was_cancelled": False,
             "result": [{"from_name": "rational", "to_name": "text", "type": "choices",
                         "value": {"choices": ["rational"]}}]},
            {"completed_by": 8, "was_cancelled": True, "result": []}]},
        {"id": 2, "data": {"item": "u2", "label": "Awe"}, "annotations": [
            {"completed_by": 7, "result": [{"from_name": "rational", "type": "choices",
                                             "value": {"choices": ["not rational"]}}]}]},
    ]
    (tmp_path / "full.json").write_text(json.dumps(full))
    ratings = read_ratings([tmp_path / "full.json"], BINARY)
    assert sorted(ratings["rater"]) == ["7", "a@x.org"]
    assert ratings.set_index("item")["rational"].to_dict() == {"u1": True, "u2": False}
    minimal = [{"id": 1, "item": "u1", "label": "Joy", "rational": 5, "annotator": "ann"},
               {"id": 2, "item": "u2", "label": "Awe", "rational": 2, "annotator": "ann"}]
    (tmp_path / "min.json").write_text(json.dumps(minimal))
    likert = read_ratings([tmp_path / "min.json"], LIKERT)
    assert likert["value"].tolist() == [5.0, 2.0] and likert["rational"].tolist() == [True, False]


@pytest.mark.parametrize("rows,scale,match", [
    ([("u1", "Joy", "r", "maybe")], BINARY, "binary rating"),
    ([("u1", "Joy", "r", "7")], LIKERT, "outside the Likert scale"),
    ([("u1", "Joy", "r", "yes"), ("u1", "Joy", "r", "no")], BINARY, "repeat an"),
    ([("u1", "Joy", None, None)], BINARY, "no filled-in ratings"),
])
def test_bad_ratings_are_refused(tmp_path, rows, scale, match):
    with pytest.raises(EvalInputError, match=match):
        read_ratings([_csv(tmp_path / "r.csv", rows)], scale)


def test_cli_sheet_then_rationality(run_dir, tmp_path):
    sheet = tmp_path / "sheet"
    run(compose_eval("task=rating_sheet", f"run_dir={run_dir}", f"out={sheet}", "rationality.per_label=4"))
    rows = list(csv.DictReader(open(sheet / "rating_sheet.csv")))
    filled = []
    for rater in ("ann", "bob"):
        for i, row in enumerate(rows):
            filled.append({"item": row["item"], "rater": rater,
                           "rating": "yes" if (row["label"] != "Awe" or (rater == "ann" and i % 2)) else "no"})
    pd.DataFrame(filled).to_csv(tmp_path / "filled.csv", index=False)  # no label column: labels come from the sheet
    out = tmp_path / "rationality.json"
    run(compose_eval("task=rationality", f"ratings={tmp_path / 'filled.csv'}", f"sheet={sheet}", f"out={out}",
                     "bootstrap.n_resamples=200"))
    report = json.loads(out.read_text())
    assert set(report["per_label"]) == {"Joy", "Awe", "Calmness"}
    assert report["per_label"]["Joy"]["share"] == 1.0 and report["per_label"]["Awe"]["share"] < 0.5
    assert report["paper_claim"] == 0.83 and report["agreement"]["n_raters"] == 2
    weighted = (30 * 1.0 + 12 * 1.0 + 5 * report["per_label"]["Awe"]["share"]) / 47
    assert report["population_weighted_share"] == pytest.approx(weighted)


def test_sheet_of_a_text_only_run_has_no_media_tags(tmp_path):
    utts = [utterance(f"t-{i:05d}", "joy") for i in range(3)]
    utts = [u.__class__(**{**u.__dict__, "audio": ""}) for u in utts]  # text-only predictions carry no audio
    export_rating_sheet(write_run(tmp_path / "run", utts), tmp_path / "sheet", per_label=5, seed=0, scale=BINARY)
    root = ET.fromstring((tmp_path / "sheet" / "label_studio_config.xml").read_text())
    assert root.find("Audio") is None and root.find("Video") is None and root.find("Text") is not None
    tasks = json.loads((tmp_path / "sheet" / "label_studio_tasks.json").read_text())
    assert "audio" not in tasks[0]["data"] and tasks[0]["data"]["text"] == "hello"
