"""Human "rationality" ratings of annotator labels (the paper's 83%).

A rater sees an utterance (audio, face clip, transcript), the label the annotator gave it and its rationale, and
judges whether the label is a rational reading of the utterance: yes/no (``scale: binary``) or on a Likert
scale where ratings at or above a threshold count as rational (``scale: likert``).

1. :func:`export_rating_sheet` (``task=rating_sheet``) draws a sample from a run directory, stratified by label
   (up to ``per_label`` utterances of each label, seeded), and writes a spreadsheet (``rating_sheet.csv``),
   Label Studio tasks (``label_studio_tasks.json``) and labelling config (``label_studio_config.xml``; written by
   :mod:`eval.labelstudio`), and
   ``rating_sheet.json`` with the sample design (population and sample counts per label).
2. :func:`read_ratings` reads the filled sheets (CSV: ``item, rater, rating`` and optionally ``label``) or a
   Label Studio export (JSON or JSON_MIN; parsed by :mod:`eval.labelstudio`).
3. :func:`rationality_report` (``task=rationality``) gives the share of ratings that call the label rational,
   overall and per label, with intervals (Wilson when every item has one rating, else a bootstrap that
   resamples items, since ratings of one item are not independent), the share of items a strict majority of
   their raters calls rational (Wilson), the population-weighted share when the sample design is known, and
   rater agreement (:mod:`eval.agreement`).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eval import labelstudio
from eval.errors import EvalInputError
from eval.io import first_examples, load_utterances, read_table, write_json
from eval.metrics import percentile_interval, wilson_interval

log = logging.getLogger(__name__)

SHEET_COLUMNS = ["item", "label", "intensity", "rationale", "text", "audio", "clip", "source", "start", "end",
                 "annotator", "rater", "rating"]


@dataclass(frozen=True)
class Scale:
    """How ratings are written and when one counts as rational.

    Attributes:
        kind: ``binary`` or ``likert``.
        yes: binary answers meaning rational (case-insensitive).
        no: binary answers meaning not rational.
        likert_min, likert_max: Likert range (inclusive).
        threshold: a Likert rating ``>= threshold`` is rational.
    """

    kind: str = "binary"
    yes: tuple[str, ...] = ("rational", "yes", "y", "true", "1")
    no: tuple[str, ...] = ("not rational", "irrational", "no", "n", "false", "0")
    likert_min: int = 1
    likert_max: int = 5
    threshold: float = 4

    @classmethod
    def from_config(cls, cfg: Any) -> "Scale":
        """Build from ``cfg.rationality`` (``scale``, ``rational_values``, ``irrational_values``, ``likert_min``,
        ``likert_max``, ``threshold``)."""
        scale = cls(
            kind=str(cfg["scale"]),
            yes=tuple(str(v).lower() for v in cfg["rational_values"]),
            no=tuple(str(v).lower() for v in cfg["irrational_values"]),
            likert_min=int(cfg["likert_min"]),
            likert_max=int(cfg["likert_max"]),
            threshold=float(cfg["threshold"]),
        )
        if scale.kind not in ("binary", "likert"):
            raise EvalInputError(f"rationality.scale must be binary or likert, got {scale.kind!r}")
        if scale.kind == "likert" and not scale.likert_min <= scale.threshold <= scale.likert_max:
            raise EvalInputError(f"threshold {scale.threshold} outside the Likert range "
                                 f"{scale.likert_min}..{scale.likert_max}")
        return scale

    def parse(self, value: Any) -> float:
        """The numeric rating: 1/0 for binary, the Likert value otherwise.

        Raises:
            ValueError: a value this scale does not allow.
        """
        text = str(value).strip()
        if self.kind == "binary":
            low = text.lower()
            if low in self.yes:
                return 1.0
            if low in self.no:
                return 0.0
            raise ValueError(f"{text!r} is not a binary rating (rational: {list(self.yes)}; not: {list(self.no)})")
        try:
            number = float(text)
        except ValueError as e:
            raise ValueError(f"{text!r} is not a number on the {self.likert_min}..{self.likert_max} scale") from e
        if not (self.likert_min <= number <= self.likert_max) or number != int(number):
            raise ValueError(f"{text!r} is outside the Likert scale {self.likert_min}..{self.likert_max}")
        return number

    def rational(self, value: float) -> bool:
        """Whether a parsed rating counts as rational."""
        return value >= (0.5 if self.kind == "binary" else self.threshold)


# -- rating sheet -----------------------------------------------------------------------------------------------


def export_rating_sheet(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    per_label: int,
    seed: int,
    scale: Scale,
    media_url_prefix: str = "/data/local-files/?d=",
    media_root: str | None = None,
) -> dict:
    """Write a stratified rating sheet for a run directory.

    Args:
        run_dir: a MIKU-PAL run directory (``utterances.jsonl``).
        out_dir: where the sheet files go.
        per_label: at most this many utterances of each label (all of a label when it has fewer).
        seed: sampling seed.
        scale: the rating scale (for the labelling config).
        media_url_prefix: prefix of media URLs in the Label Studio tasks (default: Label Studio's local-files
            route; the file path follows it).
        media_root: make media paths relative to this folder (Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``).

    Returns:
        The sample design (also written to ``rating_sheet.json``).

    Raises:
        EvalInputError: no utterance of the run has an emotion.
    """
    from mikupal.labels import load_label_set

    run_dir = Path(run_dir)
    out_dir = Path(out_dir)
    utterances = [u for u in load_utterances(run_dir) if u.emotion is not None]
    if not utterances:
        raise EvalInputError(f"{run_dir}: no utterance has an emotion label to rate")
    by_label: dict[str, list[Any]] = {}
    for utt in sorted(utterances, key=lambda u: u.id):
        by_label.setdefault(utt.emotion.label, []).append(utt)
    rng = np.random.default_rng(seed)
    sample = []
    for label in sorted(by_label):
        group = by_label[label]
        take = rng.choice(len(group), size=min(per_label, len(group)), replace=False)
        sample.extend(group[i] for i in sorted(take))

    descriptions: dict[str, str] = {}
    for name in ("emobench26", "meld7"):
        for lab in load_label_set(name).labels:
            descriptions.setdefault(lab.name, lab.description)

    rows, tasks = [], []
    with_video = all(u.face is not None and u.face.clip for u in sample)
    with_audio = all(bool(u.audio) for u in sample)
    for utt in sample:
        emo = utt.emotion
        clip = utt.face.clip if utt.face is not None else None
        rows.append({
            "item": utt.id, "label": emo.label, "intensity": emo.intensity, "rationale": emo.rationale,
            "text": utt.text or "", "audio": utt.audio, "clip": clip or "", "source": utt.source,
            "start": utt.start, "end": utt.end, "annotator": emo.annotator, "rater": "", "rating": "",
        })
        data = {
            "item": utt.id, "label": emo.label, "label_description": descriptions.get(emo.label, ""),
            "rationale": emo.rationale, "text": utt.text or "",
        }
        if with_audio:
            data["audio"] = labelstudio.media_url(run_dir, utt.audio, media_url_prefix, media_root)
        if with_video:
            data["video"] = labelstudio.media_url(run_dir, clip, media_url_prefix, media_root)
        tasks.append({"data": data})

    out_dir.mkdir(parents=True, exist_ok=True)
    sheet = out_dir / "rating_sheet.csv"
    with open(sheet, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tasks_file, config_file = labelstudio.write_project(
        out_dir, tasks, labelstudio.labeling_config(scale, with_video=with_video, with_audio=with_audio))
    design = {
        "task": "rating_sheet",
        "run_dir": str(run_dir),
        "n_items": len(sample),
        "per_label": per_label,
        "seed": seed,
        "scale": scale.kind,
        "population": {lab: len(group) for lab, group in sorted(by_label.items())},
        "sample": dict(sorted(Counter(u.emotion.label for u in sample).items())),
        "files": {"csv": str(sheet), "label_studio_tasks": str(tasks_file),
                  "label_studio_config": str(config_file)},
        "instructions": "Each rater fills 'rater' and 'rating' in a copy of rating_sheet.csv (or rates the tasks in "
                        "Label Studio with the given config); then run task=rationality ratings=<files>.",
    }
    write_json(out_dir / "rating_sheet.json", design)
    return design


# -- ratings ----------------------------------------------------------------------------------------------------


def read_ratings(paths: Sequence[str | Path], scale: Scale, *, rating_column: str = "rating",
                 control: str = "rational"):
    """Read rationality ratings from filled CSV sheets and/or Label Studio exports.

    Args:
        paths: CSV files (columns ``item``, ``rater``, ``rating``; ``label`` when known) or Label Studio JSON /
            JSON_MIN exports (the choice or rating named ``control``).
        scale: how ratings are written.
        rating_column: the CSV column holding the rating.
        control: the Label Studio control name (``rational`` in the exported config).

    Returns:
        A DataFrame with ``item, rater, label, value, rational``.

    Raises:
        EvalInputError: missing columns, no filled ratings, a rating the scale does not allow, or one rater
            rating one item twice.
    """
    import pandas as pd

    frames = []
    for path in map(Path, paths):
        if path.suffix.lower() == ".json":
            records, cancelled = labelstudio.read_export(path, control)
            if cancelled:
                log.warning("%s: %d cancelled annotations skipped", path, cancelled)
            df = pd.DataFrame(records, columns=["item", "rater", "label", "rating"])
        else:
            df = read_table(path, what="ratings")
            missing = [c for c in ("item", "rater", rating_column) if c not in df.columns]
            if missing:
                raise EvalInputError(f"ratings {path} lacks columns {missing} (columns: {list(df.columns)})")
            df = df.rename(columns={rating_column: "rating"})
            if "label" not in df.columns:
                df["label"] = None
            df = df[["item", "rater", "label", "rating"]]
            blank = df["rating"].isna() | df["rater"].isna()
            if blank.any():
                log.warning("%s: %d rows without a rater or rating skipped (not rated yet)", path, int(blank.sum()))
            df = df[~blank]
        frames.append(df)
    ratings = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if ratings.empty:
        raise EvalInputError(f"no filled-in ratings in {[str(p) for p in paths]}")
    values, bad = [], []
    for value in ratings["rating"]:
        try:
            values.append(scale.parse(value))
        except ValueError as e:
            bad.append(str(e))
            values.append(np.nan)
    if bad:
        raise EvalInputError(f"{len(bad)} ratings do not fit scale={scale.kind}: {first_examples(bad, 3)}")
    ratings = ratings.assign(value=values)
    ratings["rational"] = [scale.rational(v) for v in ratings["value"]]
    ratings["item"] = ratings["item"].astype(str)
    ratings["rater"] = ratings["rater"].astype(str)
    dup = ratings.duplicated(["item", "rater"])
    if dup.any():
        examples = first_examples(ratings.loc[dup, ["item", "rater"]].itertuples(index=False, name=None))
        raise EvalInputError(f"{int(dup.sum())} ratings repeat an (item, rater) pair, e.g. {examples}")
    return ratings


def _share_with_interval(frame, *, level: float, n_resamples: int, rng: np.random.Generator) -> dict:
    """Rating-level share of ``rational`` in ``frame``, with Wilson or item-bootstrap interval."""
    per_item = frame.groupby("item")["rational"].agg(["sum", "count"])
    n = int(per_item["count"].sum())
    successes = int(per_item["sum"].sum())
    share = successes / n
    if per_item["count"].max() == 1:
        interval, method = wilson_interval(successes, n, level), "wilson"
    else:
        sums = per_item["sum"].to_numpy(float)
        counts = per_item["count"].to_numpy(float)
        w = rng.multinomial(len(sums), np.full(len(sums), 1.0 / len(sums)), size=n_resamples)
        interval = percentile_interval((w @ sums) / (w @ counts), level)
        method = "bootstrap over items"
    majority = per_item["sum"] * 2 > per_item["count"]
    return {
        "share": share,
        "interval": interval,
        "interval_method": method,
        "n_ratings": n,
        "n_items": int(len(per_item)),
        "majority_share": float(majority.mean()),
        "majority_interval": wilson_interval(int(majority.sum()), int(len(per_item)), level),
    }


def rationality_report(
    ratings,
    *,
    scale: Scale,
    level: float,
    n_resamples: int,
    seed: int,
    labels: dict[str, str] | None = None,
    population: dict[str, int] | None = None,
) -> dict:
    """Aggregate rationality ratings.

    Args:
        ratings: DataFrame from :func:`read_ratings`.
        scale: the rating scale.
        level, n_resamples, seed: interval settings.
        labels: ``{item: label}`` for ratings without a label column (from the sheet or run directory).
        population: ``{label: utterances in the run}`` from the sheet's design, to weight per-label shares back
            to the run's label distribution.

    Returns:
        ``rational_share`` (share of ratings calling the label rational), its ``interval``,
        ``majority_share`` (share of items a strict majority of raters calls rational; ties are not rational),
        ``per_label``, ``population_weighted_share``, ``mean_rating`` (Likert), ``agreement`` and ``warnings``.
    """
    from eval.agreement import agreement_report, ratings_from_records

    warnings: list[str] = []
    ratings = ratings.copy()
    if labels:
        missing_label = ratings["label"].isna()
        ratings.loc[missing_label, "label"] = ratings.loc[missing_label, "item"].map(labels)
    unlabeled = ratings["label"].isna()
    if unlabeled.any():
        warnings.append(f"{int(unlabeled.sum())} ratings have no known label; they count overall, not per label")
    rng = np.random.default_rng(seed)
    overall = _share_with_interval(ratings, level=level, n_resamples=n_resamples, rng=rng)
    per_label = {}
    for label, frame in sorted(ratings[~unlabeled].groupby("label"), key=lambda kv: str(kv[0])):
        per_label[str(label)] = _share_with_interval(frame, level=level, n_resamples=n_resamples, rng=rng)
    weighted = None
    if population and per_label:
        covered = {lab: n for lab, n in population.items() if lab in per_label}
        if set(population) - set(covered):
            warnings.append(f"labels without ratings are left out of the population-weighted share: "
                            f"{sorted(set(population) - set(covered))}")
        total = sum(covered.values())
        if total:
            weighted = sum(per_label[lab]["share"] * n / total for lab, n in covered.items())

    per_item = ratings.groupby("item").size()
    agreement = None
    if per_item.max() < 2:
        warnings.append("every item has a single rating: rater agreement cannot be computed (add a second rater "
                        "for at least part of the sample)")
    else:
        value_of = (lambda v: "rational" if v >= 0.5 else "not rational") if scale.kind == "binary" else int
        records = [(i, r, value_of(v)) for i, r, v in zip(ratings["item"], ratings["rater"], ratings["value"])]
        agree = agreement_report(
            ratings_from_records(records, kind="raters"),
            level_of_measurement="nominal" if scale.kind == "binary" else "ordinal",
            n_resamples=n_resamples, seed=seed, level=level,
        )
        agreement = {k: agree[k] for k in ("n_items", "n_raters", "fleiss_kappa", "krippendorff_alpha",
                                           "percent_agreement", "intervals", "krippendorff", "warnings")}
    for w in warnings:
        log.warning(w)
    report = {
        "task": "rationality",
        "scale": scale.kind,
        "threshold": scale.threshold if scale.kind == "likert" else None,
        "n_items": overall["n_items"],
        "n_ratings": overall["n_ratings"],
        "n_raters": int(ratings["rater"].nunique()),
        "rational_share": overall["share"],
        "interval": overall["interval"],
        "interval_method": overall["interval_method"],
        "level": level,
        "majority_share": overall["majority_share"],
        "majority_interval": overall["majority_interval"],
        "population_weighted_share": weighted,
        "mean_rating": float(ratings["value"].mean()) if scale.kind == "likert" else None,
        "per_label": per_label,
        "agreement": agreement,
        "warnings": warnings,
    }
    return report


def format_rationality(report: dict, paper_claim: float | None = None) -> str:
    """Terminal view of a rationality report."""
    from eval.report import fmt_interval, text_table

    rows = [
        ["ratings", report["n_ratings"], ""],
        ["items", report["n_items"], ""],
        ["raters", report["n_raters"], ""],
        ["rated rational (share of ratings)", report["rational_share"], fmt_interval(report["interval"])],
        ["items rational by majority", report["majority_share"], fmt_interval(report["majority_interval"])],
        ["population-weighted share", report["population_weighted_share"], ""],
    ]
    if report["mean_rating"] is not None:
        rows.append(["mean rating", report["mean_rating"], ""])
    if report["agreement"]:
        rows.append(["rater Fleiss' kappa", report["agreement"]["fleiss_kappa"], ""])
        rows.append(["rater Krippendorff's alpha", report["agreement"]["krippendorff_alpha"], ""])
    if paper_claim is not None:
        rows.append(["paper's claim (MIKU-PAL)", paper_claim, ""])
    title = f"rationality — {report.get('name', '')} ({report['scale']}, interval: {report['interval_method']})"
    parts = [text_table(["statistic", "value", f"{report['level']:.0%} CI"], rows, title=title)]
    parts.append(text_table(
        ["label", "items", "ratings", "share", "CI", "majority"],
        [[lab, s["n_items"], s["n_ratings"], s["share"], fmt_interval(s["interval"]), s["majority_share"]]
         for lab, s in report["per_label"].items()],
        title="per label",
    ))
    if report.get("warnings"):
        parts.append("warnings:\n" + "\n".join(f"  - {w}" for w in report["warnings"]))
    return "\n\n".join(parts)
