"""The ``mikupal`` command: a Hydra app over :func:`mikupal.runner.run_pipeline`.

    mikupal input=PATH run_dir=DIR [preset=offline|paper] [labels=emobench26|meld7] [vad=webrtc] [key=value ...]
    mikupal runner=ray runner.world_size=8 input=PATH run_dir=DIR                      # Ray (local or runner.address)
    mikupal -m hydra/launcher=submitit_slurm runner.rank='range(0,8)' runner.world_size=8 input=PATH run_dir=DIR

The CLI only composes the config and calls the library; everything it does is available as a function.
Exit status: 0 done; 1 a stage stopped (e.g. a cost budget; rerun to continue); 2 a config error (the message
names the key and the fix).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from mikupal.paths import conf_dir
from mikupal.runner import ConfigError, PipelineRunner, format_summary, run_pipeline

log = logging.getLogger("mikupal")


def _in_planned_multirun(cfg: DictConfig) -> bool:
    """A job of a ``-m`` sweep over ``runner.rank``: :class:`~mikupal.executors.hydra.PlanOnce` planned it already."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return (
        HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
        and int(cfg.runner.get("world_size", 1)) > 1
        and str(cfg.runner.get("executor", "local")) == "local"
    )


def _job(cfg: DictConfig) -> None:
    """The job: run (or, in a planned ``-m`` sweep, continue) the pipeline and print the summary."""
    try:
        if _in_planned_multirun(cfg):
            summary = PipelineRunner(cfg).run(planned=True)
        else:
            summary = run_pipeline(cfg)
    except ConfigError as e:
        log.error("%s", e)
        sys.exit(2)
    # The summary table is the command's result, so it goes to stdout (logs go to stderr and the log file).
    print(format_summary(summary))  # noqa: T201
    if summary["errors"]:
        log.warning("%d item(s) failed; see %s/errors.jsonl", summary["errors"], cfg.run_dir)
    if summary.get("stopped"):
        left = sum(1 for _ in summary["stopped"].split("; "))
        log.error("%d stage run(s) stopped before finishing: %s. Rerun the same command to continue.", left,
                  summary["stopped"])
        sys.exit(1)


_app = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="pipeline")(_job)


def _run_once(overrides: list[str]) -> None:
    """A plain run (only ``key=value`` overrides): what ``@hydra.main`` does (same config, logging, ``.hydra/``
    files and error reports), composing the config once. ``@hydra.main`` composes it a second time just to read
    ``hydra.mode`` (about 0.3 s of CPU per run)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, run_and_report
    from hydra.core.global_hydra import GlobalHydra

    hydra_app = Hydra.create_main_hydra2(task_name="cli", config_search_path=create_config_search_path(str(conf_dir())))
    try:
        run_and_report(
            lambda: hydra_app.run(config_name="pipeline", task_function=_job, overrides=[*overrides, "hydra.mode=RUN"])
        )
    finally:
        GlobalHydra.instance().clear()


def main() -> None:
    """Console-script entry point."""
    from mikupal.executors.hydra import check_launcher

    args = sys.argv[1:]
    check_launcher(args)
    if args and not any(a.startswith("-") or a.startswith("hydra.mode") for a in args):
        _run_once(args)
    else:  # flags (-m, --cfg, --help, ...) or no overrides (Hydra's own error message): Hydra's full entry point
        _app()


if __name__ == "__main__":
    main()
