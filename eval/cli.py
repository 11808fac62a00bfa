"""``mikupal-eval``: the evaluation CLI (a Hydra app; config ``conf/eval.yaml``).

``mikupal-eval task=TASK key=value ... out=REPORT.json`` runs one task, prints its table(s) to stdout, logs to
stderr and writes the report JSON to ``out``. Bad input exits with status 2 and one clear error line. A task that
ran but did not finish its work exits with status 1 after writing its report, with one error line giving the
counts: ``task=predict`` when an ablation stopped (a rejected key, a capability error, a budget) or every item it
attempted failed (:func:`eval.predict.incomplete`).

Tasks: ``meld``, ``agreement``, ``rating_sheet``, ``rationality``, ``baseline``, ``predict``, ``tables`` (see
``conf/eval.yaml`` for an example of each). :func:`run` is the same thing without Hydra, for a composed config.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig, OmegaConf

from eval.errors import EvalInputError
from eval.io import as_path_list, sibling, write_json
from eval.report import print_block
from mikupal.paths import conf_dir

log = logging.getLogger(__name__)


def _require(cfg: DictConfig, *keys: str) -> None:
    missing = [k for k in keys if cfg.get(k) in (None, "", [])]
    if missing:
        raise EvalInputError(f"task={cfg.task} needs {', '.join(f'{k}=...' for k in missing)}")


def split_name(path: str | Path) -> str:
    """``train``/``dev``/``test`` from a MELD file name (``dev_sent_emo.csv`` → ``dev``), else the file stem."""
    stem = Path(path).stem.lower()
    for split in ("train", "dev", "test"):
        if stem.startswith(split) or f"_{split}" in stem or f"-{split}" in stem:
            return split
    return Path(path).stem


def _bootstrap(cfg: DictConfig) -> dict[str, Any]:
    return {"n_resamples": int(cfg.bootstrap.n_resamples), "seed": int(cfg.bootstrap.seed),
            "level": float(cfg.bootstrap.level)}


def task_meld(cfg: DictConfig) -> dict:
    """Score predictions against MELD gold labels; also writes the confusion matrix PNG beside ``out``."""
    from eval.meld import load_gold, load_predictions, score
    from eval.report import format_meld, plot_confusion

    _require(cfg, "gold", "predictions")
    if len(as_path_list(cfg.predictions)) != 1:
        raise EvalInputError("task=meld scores one predictions file at a time (several files: task=agreement)")
    gold = load_gold(cfg.gold)
    predictions = load_predictions(cfg.predictions, label_column=cfg.label_column, id_column=cfg.id_column,
                                   label_set=cfg.label_set, duplicates=cfg.duplicates)
    report = score(gold, predictions, **_bootstrap(cfg))
    report.update({"name": _name(cfg), "split": split_name(cfg.gold),
                   "inputs": {"gold": str(cfg.gold), "predictions": str(cfg.predictions)}})
    png = plot_confusion(report["confusion"], sibling(cfg.out, ".confusion.png"),
                         title=f"{report['name']} — MELD {report['split']} (n={report['n']})")
    report["confusion"]["png"] = str(png)
    print_block(format_meld(report))
    return report


def _agreement_references(cfg: DictConfig) -> list[dict]:
    return [{"name": r.name, "kappa": r.kappa, "raters": r.get("raters") or "", "source": r.source}
            for r in cfg.references.agreement]


def task_agreement(cfg: DictConfig) -> dict:
    """Agreement from a ratings CSV, a run's rollout votes, several runs, or several prediction files."""
    from eval.agreement import (agreement_report, format_agreement, ratings_from_prediction_files,
                                ratings_from_runs, ratings_from_votes, read_ratings_csv)

    sources = {k: cfg.get(k) for k in ("ratings", "run_dir", "runs", "predictions") if cfg.get(k) not in (None, [])}
    if len(sources) != 1:
        raise EvalInputError(
            "task=agreement needs exactly one of ratings=<csv item,rater,label>, run_dir=<run> (rollout votes), "
            f"runs=[<run>,<run>,...] or predictions=[<file>,<file>,...]; got {sorted(sources) or 'none'}"
        )
    (kind, value), = sources.items()
    if kind == "ratings":
        ratings = read_ratings_csv(value, item_column=cfg.item_column, rater_column=cfg.rater_column,
                                   label_column=cfg.rating_label_column)
    elif kind == "run_dir":
        ratings = ratings_from_votes(value)
    elif kind == "runs":
        runs = as_path_list(value)
        if len(runs) < 2:
            raise EvalInputError("runs=[...] needs at least two run directories (or use run_dir= for rollout votes)")
        ratings = ratings_from_runs(runs)
    else:
        files = as_path_list(value)
        if len(files) < 2:
            raise EvalInputError("predictions=[...] needs at least two prediction files, one per rater")
        ratings = ratings_from_prediction_files(files, label_column=cfg.label_column, id_column=cfg.id_column,
                                                label_set=cfg.label_set, duplicates=cfg.duplicates)
    report = agreement_report(ratings, level_of_measurement=cfg.level_of_measurement,
                              max_pairs=int(cfg.agreement.max_pairs), **_bootstrap(cfg))
    report.update({"name": _name(cfg), "inputs": {kind: OmegaConf.to_container(value) if OmegaConf.is_config(value)
                                                  else str(value)},
                   "references": _agreement_references(cfg)})
    print_block(format_agreement(report, report["references"]))
    return report


def _scale(cfg: DictConfig):
    from eval.rationality import Scale

    return Scale.from_config(cfg.rationality)


def task_rating_sheet(cfg: DictConfig) -> dict:
    """Export a stratified rating sheet (CSV + Label Studio) from a run directory into the folder ``out``."""
    from eval.rationality import export_rating_sheet
    from eval.report import text_table

    _require(cfg, "run_dir")
    r = cfg.rationality
    design = export_rating_sheet(cfg.run_dir, cfg.out, per_label=int(r.per_label), seed=int(r.seed),
                                 scale=_scale(cfg), media_url_prefix=str(r.media_url_prefix), media_root=r.media_root)
    rows = [[lab, n, design["sample"].get(lab, 0)] for lab, n in design["population"].items()]
    title = f"rating sheet — {design['n_items']} items in {cfg.out}"
    table = text_table(["label", "in run", "sampled"], rows, title=title)
    print_block(table + "\n\n" + design["instructions"])
    return design


def _sheet_info(sheet: str | Path | None) -> tuple[dict[str, str], dict[str, int] | None]:
    """Labels by item and the label population from a rating sheet folder, JSON or CSV."""
    from eval.io import read_json, read_table

    if not sheet:
        return {}, None
    path = Path(sheet)
    folder = path if path.is_dir() else path.parent
    labels: dict[str, str] = {}
    population = None
    csv_path = folder / "rating_sheet.csv" if path.is_dir() or path.suffix == ".json" else path
    if csv_path.is_file():
        df = read_table(csv_path, what="rating sheet")
        labels = dict(zip(df["item"].astype(str), df["label"].astype(str)))
    json_path = folder / "rating_sheet.json" if path.is_dir() or path.suffix == ".csv" else path
    if json_path.is_file():
        population = read_json(json_path, what="rating sheet design").get("population")
    if not labels and population is None:
        raise EvalInputError(f"sheet={sheet}: no rating_sheet.csv or rating_sheet.json found")
    return labels, population


def task_rationality(cfg: DictConfig) -> dict:
    """Share of labels rated rational, overall and per label, with intervals and rater agreement."""
    from eval.io import load_utterances
    from eval.rationality import format_rationality, rationality_report, read_ratings

    _require(cfg, "ratings")
    scale = _scale(cfg)
    ratings = read_ratings(as_path_list(cfg.ratings), scale, rating_column=cfg.rationality.rating_column,
                           control=cfg.rationality.control)
    labels, population = _sheet_info(cfg.get("sheet"))
    if cfg.get("run_dir"):
        for utt in load_utterances(cfg.run_dir):
            if utt.emotion is not None:
                labels.setdefault(utt.id, utt.emotion.label)
    report = rationality_report(ratings, scale=scale, labels=labels, population=population, **_bootstrap(cfg))
    paper = next((float(r.share) for r in cfg.references.rationality), None)
    report.update({"name": _name(cfg), "paper_claim": paper,
                   "inputs": {"ratings": [str(p) for p in as_path_list(cfg.ratings)], "sheet": cfg.get("sheet")}})
    print_block(format_rationality(report, paper))
    return report


def task_baseline(cfg: DictConfig) -> dict:
    """Majority, stratified and MiniLM + logistic-regression baselines, trained on ``train``, scored on ``gold``."""
    from eval.baselines import format_baselines, run_baselines

    _require(cfg, "train", "gold")
    report = run_baselines(cfg.train, cfg.gold, cfg.out, cfg)
    for r in report["baselines"].values():
        r["split"] = split_name(cfg.gold)
    report["name"] = _name(cfg)
    print_block(format_baselines(report))
    return report


def task_predict(cfg: DictConfig) -> dict:
    """Run the configured annotator over MELD utterances (modality ablations, resumable) and score each."""
    from eval.predict import format_predict, run_predict

    report = run_predict(cfg)
    for r in report["ablations"].values():
        r["split"] = split_name(cfg.gold)
    report["name"] = _name(cfg)
    print_block(format_predict(report))
    return report


def task_tables(cfg: DictConfig) -> dict:
    """The paper's comparison tables (Markdown, LaTeX, plots) from saved reports and run summaries."""
    from eval.report import text_table
    from eval.tables import bar_plot, build_tables, to_latex, to_markdown

    reports, summaries = as_path_list(cfg.get("reports")), as_path_list(cfg.get("summaries"))
    if not reports and not summaries:
        raise EvalInputError("task=tables needs reports=[...] (report JSONs) and/or summaries=[...] (run summary.json)")
    result = build_tables(reports, summaries, cfg)
    tables = result["tables"]
    files = {"markdown": sibling(cfg.out, ".md"), "latex": sibling(cfg.out, ".tex")}
    files["markdown"].parent.mkdir(parents=True, exist_ok=True)
    files["markdown"].write_text(to_markdown(tables), encoding="utf-8")
    files["latex"].write_text(to_latex(tables), encoding="utf-8")
    meld_png = bar_plot(tables["meld"].pop("plot"), sibling(cfg.out, ".meld.png"), ylabel="MELD accuracy (%)",
                        title="MELD accuracy: measured vs reference", percent=True)
    kappa_png = bar_plot(tables["agreement"].pop("plot"), sibling(cfg.out, ".agreement.png"),
                         ylabel="Fleiss' kappa", title="Agreement: measured vs reference", percent=False)
    files.update({"meld_plot": meld_png, "agreement_plot": kappa_png})
    result["files"] = {k: str(v) for k, v in files.items() if v is not None}
    result["name"] = _name(cfg)
    print_block("\n\n".join(text_table(t["headers"], t["rows"], title=f"{name}: {t['caption']}")
                            for name, t in tables.items()))
    return result


TASKS: dict[str, Callable[[DictConfig], dict]] = {
    "meld": task_meld,
    "agreement": task_agreement,
    "rating_sheet": task_rating_sheet,
    "rationality": task_rationality,
    "baseline": task_baseline,
    "predict": task_predict,
    "tables": task_tables,
}


def _name(cfg: DictConfig) -> str:
    return str(cfg.get("name") or Path(cfg.out).stem)


def run(cfg: DictConfig) -> dict:
    """Run the task named by ``cfg.task`` and write its report to ``cfg.out``; returns the report.

    Raises:
        EvalInputError: unknown task, missing ``out``, or bad input.
    """
    task = cfg.get("task")
    if task not in TASKS:
        raise EvalInputError(f"task={task!r} is not a task; choose one of {sorted(TASKS)}")
    if not cfg.get("out"):
        raise EvalInputError(f"task={task} needs out=<report.json> (for rating_sheet: an output folder)")
    report = TASKS[task](cfg)
    if task != "rating_sheet":  # the sheet's design JSON is written into its folder by the export
        write_json(cfg.out, report)
    return report


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        report = run(cfg)
    except EvalInputError as e:
        log.error("%s", e)
        sys.exit(2)
    problem = incomplete(cfg.task, report)
    if problem:
        log.error("task=%s did not finish: %s (report written to %s)", cfg.task, problem, cfg.out)
        sys.exit(1)


def incomplete(task: str, report: dict) -> str | None:
    """Why a task's report is not a success (``mikupal-eval`` then exits with status 1), or ``None``."""
    if task == "predict":
        from eval.predict import incomplete as predict_incomplete

        return predict_incomplete(report)
    return None


def main() -> None:
    """Console-script entry point of ``mikupal-eval``."""
    _hydra_main()


if __name__ == "__main__":
    main()
