"""``mikupal-report``: write the static report site of a run directory.

A Hydra app over ``conf/report.yaml``::

    mikupal-report run_dir=runs/a out=reports/a
    mikupal-report run_dir=runs/a out=reports/a media=copy publish_source_paths=true

Exit status: 0 on success, 2 when the report is refused (no such run directory, unusable ``out``, bad option);
the message says what to fix.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from mikupal.paths import conf_dir
from mikupal.report import ReportError, ReportOptions, SiteResult, build_report

log = logging.getLogger("mikupal.report")


def run(cfg: DictConfig) -> SiteResult:
    """Write the report a composed ``report`` config describes."""
    for key in ("run_dir", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise ReportError(f"{key}=... is required: mikupal-report run_dir=RUN_DIR out=REPORT_DIR")
    return build_report(cfg.run_dir, cfg.out, ReportOptions.from_config(cfg), title=cfg.get("title"))


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="report")
def _app(cfg: DictConfig) -> None:
    try:
        result = run(cfg)
    except ReportError as e:
        log.error("mikupal-report: %s", e)
        sys.exit(2)
    # The location of the page is the command's result, so it goes to stdout.
    print(f"report written: {result.index.as_uri()}  ({result.utterances:,} utterances, "  # noqa: T201
          f"{result.media_files:,} media files, {result.missing_media:,} missing, {result.seconds:.1f} s)")


def main() -> None:
    """Console-script entry point (``mikupal-report``)."""
    _app()


if __name__ == "__main__":
    main()
