"""Executors: who runs the runner's ``plan`` / ``run_rank`` / ``finish`` (see :mod:`mikupal.runner`).

* local (``runner=local``): :meth:`mikupal.runner.PipelineRunner.run`, all three in one process;
* Ray (``runner=ray``): :func:`mikupal.executors.ray.run_ray`, one task per rank and stage with per-stage
  resources, each rank's tasks chained (no barrier between stages);
* SLURM (or local jobs) through Hydra's submitit launcher: :class:`mikupal.executors.hydra.PlanOnce` plans in the
  launching process, each job runs one rank, and the last rank to finish runs ``finish``.

Scheduling, placement and retries are left to the engines (Ray, SLURM); none is written here.
"""
