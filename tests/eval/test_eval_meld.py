"""MELD gold loading, prediction loading and scoring, on the real MELD dev labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from eval.cli import run
from eval.errors import EvalInputError
from eval.meld import canonical_id, load_predictions, parse_meld_time, score
from mikupal.testing.eval_suite import compose_eval, utterance, write_run

BOOT = {"n_resamples": 200, "seed": 0, "level": 0.95}


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_dev_gold_matches_the_published_counts(dev_gold):
    assert len(dev_gold) == 1109 and dev_gold["id"].is_unique
    assert dev_gold["label"].value_counts().to_dict() == {
        "neutral": 470, "joy": 163, "anger": 153, "surprise": 150, "sadness": 111, "fear": 40, "disgust": 22}
    first = dev_gold.iloc[0]
    assert first["id"] == "dia0_utt0" and first["start"] == pytest.approx(20 * 60 + 57.256)
    assert parse_meld_time("00:00:01,5") == pytest.approx(1.5) and parse_meld_time("") is None


def test_canonical_ids():
    assert canonical_id("dia03_utt007") == "dia3_utt7"
    assert canonical_id("clips/dia3_utt1.mp4") == "dia3_utt1"
    assert canonical_id("interview-1a2b3c4d-00003") is None


def test_perfect_predictions_score_one(dev_gold, tmp_path):
    preds = load_predictions(_write(dev_gold[["id", "label"]], tmp_path / "p.csv"))
    report = score(dev_gold, preds, **BOOT)
    assert report["accuracy"] == 1.0 and report["weighted_f1"] == 1.0 and report["coverage"] == 1.0
    assert report["uar"] == 1.0 and report["n_invalid"] == 0 and report["warnings"] == []


def test_meld_columns_key_the_same_as_ids(dev_gold, meld_dev, tmp_path):
    raw = pd.read_csv(meld_dev)
    labels = ["neutral" if i % 3 else e for i, e in enumerate(raw["Emotion"])]
    by_cols = _write(pd.DataFrame({"Dialogue_ID": raw["Dialogue_ID"], "Utterance_ID": raw["Utterance_ID"],
                                   "label": labels}), tmp_path / "cols.csv")
    by_id = _write(pd.DataFrame({"id": dev_gold["id"], "label": labels}), tmp_path / "ids.csv")
    a = score(dev_gold, load_predictions(by_cols), **BOOT)
    b = score(dev_gold, load_predictions(by_id), **BOOT)
    assert a["accuracy"] == b["accuracy"] < 1.0
    assert a["confusion"]["matrix"] == b["confusion"]["matrix"]


def test_outside_labels_count_as_wrong_and_are_reported(dev_gold, tmp_path):
    df = dev_gold[["id", "label"]].copy()
    correct_rows = df.index[:5]
    df.loc[correct_rows[:3], "label"] = "happy"  # not a MELD label, not an emobench26 label
    df.loc[correct_rows[3], "label"] = "Calmness"  # emobench26 → neutral
    df.loc[correct_rows[4], "label"] = "  JOY "  # case/space-insensitive MELD label
    report = score(dev_gold, load_predictions(_write(df, tmp_path / "p.csv")), **BOOT)
    assert report["n_invalid"] == 3 and report["invalid_labels"] == {"happy": 3}
    assert report["confusion"]["predicted_labels"][-1] == "(invalid)"
    assert sum(row[-1] for row in report["confusion"]["matrix"]) == 3
    assert report["label_mapping"] == {"Calmness -> neutral": 1}
    expected_correct = 1109 - 3 - (dev_gold.loc[correct_rows[3], "label"] != "neutral") \
        - (dev_gold.loc[correct_rows[4], "label"] != "joy")
    assert report["accuracy"] == pytest.approx(expected_correct / 1109)
    assert any("happy" in w for w in report["warnings"])


def test_strict_label_set_refuses_fine_grained_labels(dev_gold, tmp_path):
    df = dev_gold[["id", "label"]].copy()
    df.loc[0, "label"] = "Calmness"
    report = score(dev_gold, load_predictions(_write(df, tmp_path / "p.csv"), label_set="meld7"), **BOOT)
    assert report["n_invalid"] == 1 and report["label_mapping"] == {}


def test_partial_coverage_is_reported_beside_the_metrics(dev_gold, tmp_path):
    half = dev_gold[["id", "label"]].iloc[::2]
    report = score(dev_gold, load_predictions(_write(half, tmp_path / "p.csv")), **BOOT)
    assert report["n"] == 555 and report["coverage"] == pytest.approx(555 / 1109)
    assert report["accuracy"] == 1.0 and report["accuracy_all_gold"] == pytest.approx(555 / 1109)
    assert any("cover" in w for w in report["warnings"])


def test_unknown_ids_warn_and_all_unknown_is_an_error(dev_gold, tmp_path):
    df = pd.concat([dev_gold[["id", "label"]], pd.DataFrame({"id": ["dia9999_utt0"], "label": ["joy"]})])
    report = score(dev_gold, load_predictions(_write(df, tmp_path / "p.csv")), **BOOT)
    assert report["n_unknown_ids"] == 1 and report["unknown_ids"] == ["dia9999_utt0"]
    assert report["accuracy"] == 1.0
    alien = _write(pd.DataFrame({"id": ["dia9999_utt0", "dia9999_utt1"], "label": ["joy", "joy"]}), tmp_path / "a.csv")
    with pytest.raises(EvalInputError, match="wrong split"):
        score(dev_gold, load_predictions(alien), **BOOT)


@pytest.mark.parametrize("content,match", [
    ("", "empty"),
    ("id,label\n", "no rows"),
    ("id,emotion\ndia0_utt0,joy\n", "no 'label' column"),
    ("utt,label\ndia0_utt0,joy\n", "neither an 'id' column"),
    ("id,label\ndia0_utt0,joy\ndia0_utt0,anger\n", "more than once"),
])
def test_bad_prediction_files_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(EvalInputError, match=match):
        load_predictions(path)


def test_jsonl_predictions_and_bad_jsonl(dev_gold, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "label": lab}) for i, lab in zip(dev_gold["id"], dev_gold["label"])))
    assert score(dev_gold, load_predictions(path), **BOOT)["accuracy"] == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "dia0_utt0", "label": "joy"}\nnot json\n{"id": "dia0_utt1", "label": "joy"}\n')
    with pytest.raises(EvalInputError, match=r"bad.jsonl:2"):
        load_predictions(bad)


def test_run_directory_predictions_map_fine_labels_and_resolve_clip_names(dev_gold, tmp_path):
    gold = dev_gold.set_index("id")["label"]
    utts = [
        # pipeline-style ids; the MELD id comes from the source clip name
        utterance("dia0-utt0-1a2b3c4d-00000", "Sadness", source="meld/dev/dia0_utt0.mp4"),
        utterance("dia0-utt1-1a2b3c4d-00000", "Awe", source="meld/dev/dia0_utt1.mp4"),  # Awe -> surprise
        utterance("dia1-utt0-1a2b3c4d-00000", None, source="meld/dev/dia1_utt0.mp4"),  # not annotated
        utterance("other-00000", "Joy", source="elsewhere/interview.mp4"),  # not a MELD clip
    ]
    run_dir = write_run(tmp_path / "run", utts)
    report = score(dev_gold, load_predictions(run_dir), **BOOT)
    assert gold["dia0_utt0"] == "sadness" and gold["dia0_utt1"] == "surprise"
    assert report["n"] == 2 and report["accuracy"] == 1.0
    assert report["label_mapping"] == {"Awe -> surprise": 1}  # "Sadness" is a MELD name, case aside
    assert report["n_unannotated"] == 1 and report["n_unresolved_ids"] == 1
    assert report["predictions_format"] == "run"


def test_split_clips_need_an_explicit_duplicate_policy(dev_gold, tmp_path):
    utts = [utterance("a-00000", "Anger", source="dia0_utt0.mp4", end=0.5),
            utterance("a-00001", "Sadness", source="dia0_utt0.mp4", end=2.5)]
    run_dir = write_run(tmp_path / "run", utts)
    with pytest.raises(EvalInputError, match="duplicates=longest"):
        load_predictions(run_dir)
    preds = load_predictions(run_dir, duplicates="longest")
    assert preds.labels == {"dia0_utt0": "sadness"}
    assert any("duplicate" in w for w in preds.warnings)


def test_cli_meld_report_has_the_contract_keys_and_a_png(meld_dev, dev_gold, tmp_path):
    preds = dev_gold[["id", "label"]].copy()
    preds.loc[preds.index[:100], "label"] = "neutral"
    _write(preds, tmp_path / "p.csv")
    out = tmp_path / "reports" / "meld.json"
    cfg = compose_eval("task=meld", f"gold={meld_dev}", f"predictions={tmp_path / 'p.csv'}", f"out={out}",
                       "bootstrap.n_resamples=100")
    run(cfg)
    report = json.loads(out.read_text())
    for key in ("n", "coverage", "accuracy", "weighted_f1", "macro_f1", "uar", "per_class", "confusion"):
        assert key in report
    assert 0 < report["accuracy"] < 1 and report["split"] == "dev" and report["name"] == "meld"
    assert set(report["per_class"]) == {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    png = Path(report["confusion"]["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_reports_bad_input_with_exit_status_2(meld_dev, tmp_path):
    (tmp_path / "p.csv").write_text("id,label\ndia0_utt0,joy\ndia0_utt0,joy\n")
    proc = subprocess.run(
        [sys.executable, "-m", "eval.cli", "task=meld", f"gold={meld_dev}", f"predictions={tmp_path / 'p.csv'}",
         f"out={tmp_path / 'r.json'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "more than once" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------------------------------------- risk-coverage
def test_risk_coverage_ranks_by_confidence_and_breaks_ties_by_their_mean():
    from eval.meld import risk_coverage

    correct = [True, True, False, True, False, False, True, False]
    confidence = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    table = risk_coverage(correct, confidence)
    assert [r["n"] for r in table["rows"]] == [2, 4, 6, 8]
    assert [r["accuracy"] for r in table["rows"]] == pytest.approx([1.0, 0.75, 0.5, 0.5])
    assert table["rows"][1]["min_confidence"] == 0.6
    # equal confidences: the input order does not matter, the cut tie group counts at its mean accuracy
    flat = risk_coverage([True, False, False, True], [0.5] * 4)
    assert [r["accuracy"] for r in flat["rows"]] == pytest.approx([0.5] * 4)
    swapped = risk_coverage([False, True, True, False], [0.5] * 4)
    assert swapped == flat
    with pytest.raises(EvalInputError, match="0..1"):
        risk_coverage([True], [1.5])


def test_confidence_column_adds_a_risk_coverage_table(meld_dev, dev_gold, tmp_path, capsys):
    df = dev_gold[["id", "label"]].copy()
    wrong = df.index[::2]
    df.loc[wrong, "label"] = ["anger" if g != "anger" else "joy" for g in df.loc[wrong, "label"]]
    df["confidence"] = 0.9
    df.loc[wrong, "confidence"] = 0.1  # a confidence that knows which half is wrong
    out = tmp_path / "meld.json"
    run(compose_eval("task=meld", f"gold={meld_dev}", f"predictions={_write(df, tmp_path / 'p.csv')}",
                     f"out={out}", "bootstrap.n_resamples=50"))
    report = json.loads(out.read_text())
    assert report["accuracy"] == pytest.approx(554 / 1109)  # the contract keys keep their meaning
    rows = {r["coverage"]: r for r in report["risk_coverage"]["rows"]}
    assert rows[0.25]["accuracy"] == 1.0 and rows[0.5]["accuracy"] == pytest.approx(1.0, abs=0.002)
    assert rows[1.0]["accuracy"] == pytest.approx(report["accuracy"])
    assert "risk-coverage" in capsys.readouterr().out
    # without confidences there is no table; with some missing, a warning says why
    assert score(dev_gold, load_predictions(_write(df[["id", "label"]], tmp_path / "n.csv")),
                 **BOOT)["risk_coverage"] is None
    df.loc[df.index[:3], "confidence"] = None
    partial = score(dev_gold, load_predictions(_write(df, tmp_path / "q.csv")), **BOOT)
    assert partial["risk_coverage"] is None and any("confidence" in w for w in partial["warnings"])
    df.loc[df.index[:3], "confidence"] = 2.0
    with pytest.raises(EvalInputError, match=r"q2.csv:2: confidence 2.0 is outside 0..1"):
        load_predictions(_write(df, tmp_path / "q2.csv"))


def test_fusion_confidence_on_meld_dev_ranks_its_right_answers_first(meld_dev, dev_gold, tmp_path):
    """The offline fusion annotator (text channel) on all of MELD dev, through task=predict then task=meld."""
    report = run(compose_eval("task=predict", "annotator=fusion", f"gold={meld_dev}", f"work_dir={tmp_path / 'w'}",
                              "predict.ablations=[text]", f"out={tmp_path / 'p.json'}", "bootstrap.n_resamples=50"))
    text = report["ablations"]["text"]
    assert text["n"] == 1109 and 0.45 < text["accuracy"] < 0.55  # README: 49.4% text-only
    rows = {r["coverage"]: r["accuracy"] for r in text["risk_coverage"]["rows"]}
    assert rows[1.0] == pytest.approx(text["accuracy"])
    assert rows[0.5] > rows[1.0] + 0.08 and rows[0.25] > rows[0.5]  # measured: 0.612 and 0.715 vs 0.494
    # calibrated on train: on dev the mean confidence is close to the accuracy
    records = [json.loads(line) for line in (tmp_path / "w" / "text" / "utterances.jsonl").open()]
    confidences = [r["emotion"]["confidence"] for r in records]
    assert all(0 < c < 1 for c in confidences)
    assert abs(sum(confidences) / len(confidences) - text["accuracy"]) < 0.05
    # task=meld on the run directory reads emotion.confidence and gives the same table
    again = run(compose_eval("task=meld", f"gold={meld_dev}", f"predictions={tmp_path / 'w' / 'text'}",
                             f"out={tmp_path / 'm.json'}", "bootstrap.n_resamples=50"))
    assert again["risk_coverage"] == text["risk_coverage"]
