"""Fit the fusion annotator's confidence calibration on MELD train, evaluate it on MELD dev, write it to conf/.

The fusion annotator (``mikupal/annotate/fusion.py``) labels each MELD transcript (text channel: MELD's clips are
not available here) with the calibration switched off. For each label set a logistic regression from the
:data:`~mikupal.annotate.fusion.CALIBRATION_FEATURES` of the fused distribution to "the label is right" is fitted on
**train** (``meld7``: the label equals the gold emotion; ``emobench26``: the label's MELD class does) and scored on
**dev**: expected calibration error (ECE, 10 equal-width bins) and Brier score before and after, and the accuracy
of the most confident 25/50/75/100% of dev. The coefficients, the annotator settings they were fitted with and
these dev figures go to ``conf/calibration/fusion-v1.yaml``, which ``annotator.calibration`` names.

Usage::

    python scripts/calibrate_fusion.py [--meld-dir /work/shared/data/meld] [--out conf/calibration/fusion-v1.yaml]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_MELD = [ROOT / "data" / "meld", ROOT.parent / "shared" / "data" / "meld", Path("/work/shared/data/meld")]
#: the CSV's Windows-1252 punctuation read as Latin-1 (MELD's mojibake), repaired before embedding
_MOJIBAKE = {"\u0092": "'", "\u0091": "'", "\u0093": '"', "\u0094": '"', "\u0085": "...", "\u0097": "-"}

log = logging.getLogger("calibrate_fusion")


def load_meld(meld_dir: Path, split: str) -> tuple[list[str], list[str]]:
    """Transcripts and gold emotions of a MELD split."""
    with open(meld_dir / f"{split}_sent_emo.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = ["".join(_MOJIBAKE.get(ch, ch) for ch in r["Utterance"]) or "." for r in rows]
    return texts, [r["Emotion"].strip().lower() for r in rows]


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(total)


def fused(fusion, texts: list[str], label_set, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fused probabilities ``(n, K)`` and the chosen label index of each text (text channel only)."""
    from mikupal.annotate.base import AnnotationRequest

    sims = embeddings @ fusion._prototype_matrix(label_set).T
    probs, top = [], []
    for i, text in enumerate(texts):
        request = AnnotationRequest(item_id=f"t{i}", label_set=label_set, modalities=frozenset({"text"}),
                                    transcript=text)
        answer = fusion._fuse(request, sims[i])
        probs.append([answer.scores[n] for n in label_set.names])
        top.append(label_set.index(answer.label))
    return np.array(probs), np.array(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meld-dir")
    parser.add_argument("--out", default=str(ROOT / "conf" / "calibration" / "fusion-v1.yaml"))
    parser.add_argument("--label-sets", nargs="+", default=["meld7", "emobench26"])
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import yaml
    from sklearn.linear_model import LogisticRegression

    from eval.meld import risk_coverage
    from mikupal.annotate.fusion import CALIBRATION_FEATURES, FusionAnnotator, calibration_features
    from mikupal.labels import load_label_set

    candidates = [Path(args.meld_dir)] if args.meld_dir else DEFAULT_MELD
    meld_dir = next((c for c in candidates if (c / "train_sent_emo.csv").is_file()), None)
    if meld_dir is None:
        raise SystemExit(f"MELD CSVs not found in {[str(c) for c in candidates]}; pass --meld-dir")
    data = {split: load_meld(meld_dir, split) for split in ("train", "dev")}
    fusion = FusionAnnotator.from_config({"calibration": None})
    fusion._load_text()
    embeddings = {}
    for split, (texts, _) in data.items():
        log.info("embedding %d %s transcripts", len(texts), split)
        embeddings[split] = np.asarray(fusion._encoder.encode(texts, normalize_embeddings=True, batch_size=64,
                                                              show_progress_bar=False), dtype=np.float64)
    out: dict = {
        "annotator": fusion.model_id,
        "fitted_with": fusion.fitted_settings(),
        "data": {"fit": f"MELD train ({len(data['train'][0])} transcripts, text channel)",
                 "evaluated": f"MELD dev ({len(data['dev'][0])} transcripts, text channel)",
                 "source": str(meld_dir.name)},
        "method": f"logistic regression (scikit-learn, C={args.C}) on {list(CALIBRATION_FEATURES)}",
        "label_sets": {},
    }
    report_lines = []
    for name in args.label_sets:
        label_set = load_label_set(name)
        split_xy = {}
        for split, (texts, gold) in data.items():
            probs, top = fused(fusion, texts, label_set, embeddings[split])
            predicted = [label_set.names[t] for t in top]
            coarse = predicted if name == "meld7" else [label_set.to_meld7(p) for p in predicted]
            correct = np.array([c == g for c, g in zip(coarse, gold)], dtype=float)
            features = np.stack([calibration_features(p, t, label_set.names[t] in fusion.neutral_labels)
                                 for p, t in zip(probs, top)])
            raw = probs[np.arange(len(top)), top]
            split_xy[split] = (features, correct, raw)
        x_train, y_train, _ = split_xy["train"]
        model = LogisticRegression(C=args.C, max_iter=1000).fit(x_train, y_train)
        x_dev, y_dev, raw_dev = split_xy["dev"]
        calibrated = model.predict_proba(x_dev)[:, 1]
        table_cal = risk_coverage(y_dev.astype(bool), calibrated)
        table_raw = risk_coverage(y_dev.astype(bool), raw_dev)
        target = ("the label equals MELD's gold emotion" if name == "meld7"
                  else "the label's MELD class (conf/labels/emobench26.yaml meld7) equals MELD's gold emotion")
        dev = {
            "n": int(len(y_dev)),
            "accuracy": round(float(y_dev.mean()), 4),
            "mean_confidence": round(float(calibrated.mean()), 4),
            "ece_uncalibrated": round(ece(raw_dev, y_dev), 4),
            "ece_calibrated": round(ece(calibrated, y_dev), 4),
            "brier_uncalibrated": round(float(np.mean((raw_dev - y_dev) ** 2)), 4),
            "brier_calibrated": round(float(np.mean((calibrated - y_dev) ** 2)), 4),
            "accuracy_at_coverage": {f"{r['coverage']:.2f}": round(r["accuracy"], 4) for r in table_cal["rows"]},
            "aurc": round(table_cal["aurc"], 4),
            "aurc_uncalibrated_ranking": round(table_raw["aurc"], 4),
        }
        out["label_sets"][name] = {
            "features": list(CALIBRATION_FEATURES),
            "coef": [round(float(c), 6) for c in model.coef_[0]],
            "intercept": round(float(model.intercept_[0]), 6),
            "target": target,
            "train_n": int(len(y_train)),
            "train_accuracy": round(float(y_train.mean()), 4),
            "dev": dev,
        }
        report_lines.append(f"{name}: dev n={dev['n']} accuracy {dev['accuracy']:.3f}, mean confidence "
                            f"{dev['mean_confidence']:.3f}, ECE {dev['ece_uncalibrated']:.3f} -> "
                            f"{dev['ece_calibrated']:.3f}, Brier {dev['brier_uncalibrated']:.3f} -> "
                            f"{dev['brier_calibrated']:.3f}, accuracy at coverage "
                            + ", ".join(f"{k}: {v:.3f}" for k, v in dev["accuracy_at_coverage"].items()))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Confidence calibration of the fusion annotator, written by `python scripts/calibrate_fusion.py`\n"
              "# (do not edit by hand: rerun the script after changing the fusion settings in fitted_with).\n")
    path.write_text(header + yaml.safe_dump(out, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print("\n".join(report_lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
