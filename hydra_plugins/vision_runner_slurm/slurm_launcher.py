"""Where Hydra finds :class:`runner.launch.slurm_launcher.SlurmLauncher` (``hydra/launcher=submitit_slurm``).

Hydra only instantiates launchers defined in the ``hydra_plugins`` namespace package; the launcher
itself lives in ``runner/launch/slurm_launcher.py``.
"""

from runner.launch.slurm_launcher import SlurmLauncher as _RunnerSlurmLauncher

__all__ = ["SlurmLauncher"]


class SlurmLauncher(_RunnerSlurmLauncher):
    """:class:`runner.launch.slurm_launcher.SlurmLauncher`, registered with Hydra's plugin discovery."""
