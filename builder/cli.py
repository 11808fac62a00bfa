"""``mikupal-build``: build MIKU-EmoBench from run directories, export it, and optionally publish it.

A Hydra app over ``conf/build.yaml``::

    mikupal-build run_dir=runs/a output_dir=emobench
    mikupal-build run_dir=[runs/a,runs/b] output_dir=emobench labels=meld7 lenient=true
    mikupal-build run_dir=runs/a output_dir=emobench push_to_hub=ORG/NAME hub.private=false
    mikupal-build run_dir=runs/a output_dir=emobench report=true     # also OUT/report/index.html (mikupal.report)

Exit status: 0 on success, 2 when the build is refused (bad input in strict mode, bad configuration, unusable
output folder, no token for the Hub); the message says what to fix.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from builder.card import CardOptions
from builder.export import ExportResult, export_dataset, push_folder
from builder.miku_emobench import MikuEmoBenchConfig
from builder.scan import SPLITS, BuildError
from mikupal.paths import conf_dir

log = logging.getLogger(__name__)


@dataclass
class BuildOutcome:
    """What :func:`run` did: the export, and the Hub commit when ``push_to_hub`` was set."""

    export: ExportResult
    pushed: Any = None
    report: Any = None  # mikupal.report.SiteResult when report=true


def _container(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def builder_config(cfg: DictConfig) -> MikuEmoBenchConfig:
    """The :class:`MikuEmoBenchConfig` described by a composed ``build`` config."""
    run_dirs = cfg.run_dir
    run_dirs = list(_container(run_dirs)) if isinstance(run_dirs, (ListConfig, list, tuple)) else [run_dirs]
    return MikuEmoBenchConfig(
        run_dirs=[str(p) for p in run_dirs],
        labels=_container(cfg.labels),
        min_asd_score=cfg.filters.min_asd_score,
        min_duration=cfg.filters.min_duration,
        max_duration=cfg.filters.max_duration,
        labels_kept=_container(cfg.filters.labels_kept),
        split_ratios=_container(cfg.split.ratios),
        split_seed=cfg.split.seed,
        split_by=str(cfg.split.by),
        speaker_map=cfg.split.speaker_map,
        min_confidence=cfg.filters.min_confidence,
        min_dnsmos_ovrl=cfg.filters.min_dnsmos_ovrl,
        publish_source_paths=bool(cfg.publish_source_paths),
        annotations_only=bool(cfg.annotations_only),
        lenient=bool(cfg.lenient),
        max_reported_problems=int(cfg.max_reported_problems),
        chunk_size=int(cfg.export.chunk_size),
    )


def run(cfg: DictConfig) -> BuildOutcome:
    """Build, export and (if ``push_to_hub`` is set) upload, as configured.

    Args:
        cfg: a composed ``build`` config (see ``conf/build.yaml``).

    Raises:
        BuildError: the build was refused; the message says why and what to change.
    """
    config = builder_config(cfg)
    result = export_dataset(
        config,
        cfg.output_dir,
        max_shard_size=cfg.export.max_shard_size,
        num_proc=cfg.export.num_proc,
        writer_batch_size=cfg.export.writer_batch_size,
        card=CardOptions(**_container(cfg.card)),
    )
    outcome = BuildOutcome(export=result)
    if cfg.get("report"):
        outcome.report = write_dataset_report(result, cfg)
    if cfg.push_to_hub:
        outcome.pushed = push_folder(
            result.output_dir,
            str(cfg.push_to_hub),
            private=bool(cfg.hub.private),
            token_env=str(cfg.hub.token_env),
            commit_message=str(cfg.hub.commit_message),
        )
    return outcome


def write_dataset_report(result: ExportResult, cfg: DictConfig) -> Any:
    """The static report site (:mod:`mikupal.report`) of a built dataset, in ``report_site.out`` (default OUT/report).

    It shows the utterances that went into the dataset, each with its split, their media from the run directories,
    and what the build left out (counts per reason, and the first offending lines as errors).
    """
    from mikupal.report import Item, ReportData, ReportOptions, write_site

    report = result.report
    assert report is not None
    site_cfg = cfg.report_site
    options = ReportOptions.from_config(site_cfg)
    items = []
    for split in SPLITS:
        for chunk in report.plan.get(split, []):
            with open(chunk["manifest"], "rb") as f:
                for offset in chunk["offsets"]:
                    f.seek(offset)
                    items.append(Item(Path(chunk["run_dir"]), json.loads(f.readline()), split))
    st = report.stats
    overview = [("utterances", f"{st.total:,}"), ("hours", f"{st.total_seconds / 3600:.3f}"),
                ("label set", report.label_set.name), ("run directories", f"{len(report.run_dirs)}")]
    overview += [(f"{split} utterances / hours", f"{st.split_counts[split]:,} / {st.split_seconds[split] / 3600:.3f}")
                 for split in SPLITS if st.split_counts[split]]
    errors = [{"stage": "build", "item_id": f"{Path(p.file).parent.name}/{Path(p.file).name}:{p.line}",
               "error_type": p.reason, "message": p.detail, "source": None}
              for problems in report.problems.values() for p in problems]
    data = ReportData(
        title=site_cfg.get("title") or f"MIKU-EmoBench build {result.output_dir.name}",
        complete=True,
        status=f"Built dataset: {st.total:,} utterances from {report.lines:,} manifest lines of "
               f"{len(report.run_dirs)} run director{'y' if len(report.run_dirs) == 1 else 'ies'}.",
        overview=overview,
        drops={str(k): int(v) for k, v in sorted(report.counts.items())},
        drops_title="Left out of the dataset, by reason",
        errors=errors[:options.max_errors_listed],
        error_count=len(errors),
        items=items,
        notes=["The errors below are the first offending manifest lines of each reason the build left out."]
        if errors else [],
    )
    out = site_cfg.get("out") or result.output_dir / "report"
    return write_site(data, out, options)


def summary(outcome: BuildOutcome, push_to_hub: str | None = None) -> str:
    """The closing summary the CLI prints: rows and hours per split, files, what was left out."""
    result = outcome.export
    report = result.report
    assert report is not None
    st = report.stats
    lines = [f"MIKU-EmoBench written to {result.output_dir}", f"  {'split':<11}{'utterances':>11}{'hours':>9}  files"]
    for split in SPLITS:
        if split in result.split_rows:
            lines.append(
                f"  {split:<11}{result.split_rows[split]:>11,}{st.split_seconds[split] / 3600:>9.2f}  "
                f"{len(result.files[split])} shard(s)"
            )
    lines.append(f"  {'total':<11}{st.total:>11,}{st.total_seconds / 3600:>9.2f}  "
                 f"{result.parquet_bytes / 1e6:,.1f} MB in {result.seconds:.1f} s")
    if report.counts:
        left = ", ".join(f"{name} {n:,}" for name, n in sorted(report.counts.items()))
        lines.append(f"  left out: {left}")
    lines.append(f"  load with: datasets.load_dataset({str(result.output_dir)!r})")
    if outcome.report is not None:
        lines.append(f"  report: {outcome.report.index.as_uri()}")
    if push_to_hub:
        lines.append(f"  uploaded to https://huggingface.co/datasets/{push_to_hub}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="build")
def _main(cfg: DictConfig) -> None:
    try:
        outcome = run(cfg)
    except BuildError as e:
        log.error("mikupal-build: %s", e)
        sys.exit(2)
    print(summary(outcome, cfg.push_to_hub))


def main() -> None:
    """Console entry point (``mikupal-build``)."""
    _main()


if __name__ == "__main__":
    main()
