"""Launching runs: SLURM submission and watching, requeue and resume, DDP inside a multirun, the sweep summary.

Modules (imported one by one; this package imports none of them, because Hydra imports
:mod:`runner.launch.multirun` at start-up and :mod:`runner.launch.slurm_launcher` needs the ``sweep`` extra):

- :mod:`~runner.launch.multirun`: :class:`MultirunSummary`, the Hydra callback that tabulates a sweep's jobs.
- :mod:`~runner.launch.slurm_launcher`: :class:`SlurmLauncher`, submits a multirun with submitit and watches it.
- :mod:`~runner.launch.slurm_config`: the structured config of ``hydra/launcher=submitit_slurm``.
- :mod:`~runner.launch.slurm_queue`: job states from ``squeue``.
- :mod:`~runner.launch.requeue`: resume a requeued SLURM job from its last checkpoint.
- :mod:`~runner.launch.ddp`: one directory and one rendezvous per DDP job of a multirun.
"""

__all__ = ["ddp", "multirun", "requeue", "slurm_config", "slurm_launcher", "slurm_queue"]
