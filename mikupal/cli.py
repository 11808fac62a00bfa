"""The ``mikupal`` command: a Hydra app over :func:`mikupal.runner.run_pipeline`.

    mikupal input=PATH run_dir=DIR [preset=offline|paper] [labels=emobench26|meld7] [vad=webrtc] [key=value ...]

The CLI only composes the config and calls the library; everything it does is available as a function.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from mikupal.paths import conf_dir
from mikupal.runner import ConfigError, format_summary, run_pipeline

log = logging.getLogger("mikupal")


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="pipeline")
def _app(cfg: DictConfig) -> None:
    try:
        summary = run_pipeline(cfg)
    except ConfigError as e:
        log.error("%s", e)
        sys.exit(2)
    # The summary table is the command's result, so it goes to stdout (logs go to stderr and the log file).
    print(format_summary(summary))  # noqa: T201
    if summary["errors"]:
        log.warning("%d item(s) failed; see %s/errors.jsonl", summary["errors"], cfg.run_dir)


def main() -> None:
    """Console-script entry point."""
    _app()


if __name__ == "__main__":
    main()
