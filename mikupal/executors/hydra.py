"""SLURM (and local jobs) through Hydra's submitit launcher: one job per rank, a plan before and a finish after.

    mikupal -m hydra/launcher=submitit_slurm runner.rank='range(0,N)' runner.world_size=N input=... run_dir=...

Hydra composes the sweep and the launcher submits one job per value of ``runner.rank``. :class:`PlanOnce` (a Hydra
callback, registered in ``conf/pipeline.yaml``) runs the runner's ``plan`` once in the launching process before any
job is submitted, so ``recompute`` deletes exactly once and no job races another. Each job then runs only its rank
(:meth:`mikupal.runner.PipelineRunner.run` with ``planned=True``) and the last rank to finish runs ``finish``. A job
that dies or times out loses at most its items in flight: rerun the same command to resume.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

log = logging.getLogger("mikupal")

#: ``hydra/launcher`` choices that need the hydra-submitit-launcher package.
SUBMITIT_LAUNCHERS = ("submitit_slurm", "submitit_local", "slurm", "local")


class PlanOnce(Callback):
    """Plan a ``-m`` sweep over ``runner.rank`` once, in the launching process, before the jobs start."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mikupal.runner import ConfigError, PipelineRunner

        cfg = config.copy()
        with open_dict(cfg):
            cfg.pop("hydra", None)
        runner = cfg.get("runner") or {}
        if int(runner.get("world_size", 1)) <= 1 or str(runner.get("executor", "local")) != "local":
            return  # not a rank sweep: every job plans for itself
        try:
            with open_dict(cfg):
                cfg.runner.rank = 0  # the sweep's ranks are not set yet in the launching process
            PipelineRunner(cfg).plan()
        except ConfigError as e:
            log.error("%s", e)
            sys.exit(2)
        self.run_dir = cfg.run_dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print the merged summary the last rank wrote (the launcher has waited for every job)."""
        run_dir = getattr(self, "run_dir", None)
        if run_dir is None:
            return
        from mikupal.rundir import RunDir
        from mikupal.runner import format_summary

        path = RunDir(run_dir).summary
        if not path.is_file():
            log.warning("no %s: a rank did not finish; see the job logs under %s/logs and rerun the command",
                        path, run_dir)
            return
        summary = json.loads(path.read_text(encoding="utf-8"))
        print(format_summary(summary))  # noqa: T201 - the command's result, as in a single run


def check_launcher(argv: Sequence[str]) -> None:
    """Exit with status 2 and one line if ``hydra/launcher=`` names a submitit launcher that is not installed."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "hydra/launcher" and value in SUBMITIT_LAUNCHERS:
            try:
                found = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
                log.error(
                    "hydra/launcher=%s needs Hydra's submitit launcher, which is not installed. Fix: pip install "
                    "'mikupal[slurm]' (hydra-submitit-launcher==1.2.0) or bash scripts/setup.sh", value
                )
                sys.exit(2)
