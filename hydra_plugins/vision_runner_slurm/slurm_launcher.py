"""Where Hydra finds :class:`runner.slurm_launcher.SlurmLauncher` (``hydra/launcher=submitit_slurm``).

Hydra only instantiates launchers defined in the ``hydra_plugins`` namespace package; the launcher
itself lives in ``runner/slurm_launcher.py``.
"""

from runner.slurm_launcher import SlurmLauncher as _RunnerSlurmLauncher

__all__ = ["SlurmLauncher"]


class SlurmLauncher(_RunnerSlurmLauncher):
    """:class:`runner.slurm_launcher.SlurmLauncher`, registered with Hydra's plugin discovery."""
