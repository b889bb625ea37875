"""The config of ``hydra/launcher=submitit_slurm``: hydra-submitit-launcher's, plus this runner's launcher.

:class:`SlurmQueueConf` extends hydra-submitit-launcher's ``SlurmQueueConf`` (every key of it works:
``hydra.launcher.partition=gpu``, ``hydra.launcher.timeout_min=600``, ...) with the options of
:class:`runner.launch.slurm_launcher.SlurmLauncher` and defaults for this runner. It replaces the plugin's
``submitit_slurm`` entry in Hydra's ConfigStore (``run.py`` registers it before Hydra starts; a SLURM
job gets the submitting process's ConfigStore with the rest of Hydra's state), so
``hydra/launcher=submitit_slurm`` (and ``slurm``, ``slurm_cpu``, which build on it) use it. Being a structured config, a wrong key or type fails at compose, naming the key.
Without the ``sweep`` extra (no hydra-submitit-launcher) nothing is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["register_slurm_launcher_config"]


def register_slurm_launcher_config() -> None:
    """Store :class:`SlurmQueueConf` as ``hydra/launcher/submitit_slurm`` (over the plugin's own)."""
    try:
        from hydra_plugins.hydra_submitit_launcher import config as plugin_config
    except ImportError:
        return
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    # Hydra's plugin discovery (re-)executes the plugin's config module, storing its entry again:
    # discover first (a singleton, done once per process), then store this one over it
    Plugins.instance()

    @dataclass
    class SlurmQueueConf(plugin_config.SlurmQueueConf):
        """hydra-submitit-launcher's SLURM options, run by :class:`runner.launch.slurm_launcher.SlurmLauncher`."""

        _target_: str = "hydra_plugins.vision_runner_slurm.slurm_launcher.SlurmLauncher"
        # one CPU per task unless asked (SLURM's own default differs between clusters)
        cpus_per_task: Any = 1
        # USR1 or USR2: sent signal_delay_s before the time limit (and by `scancel --signal=USR1 <job>`);
        # the job is then requeued and resumes from its checkpoints/last.ckpt
        preempt_signal: str = "USR1"
        # how many times a job that reaches its time limit is requeued (preemptions do not count)
        max_num_timeout: int = 3
        # srun appends to each job's log, so a requeued job keeps the log of its first run
        srun_args: list[str] = field(default_factory=lambda: ["--open-mode=append"])
        # seconds between two squeue calls while waiting, and the longest time without a progress line
        poll_s: float = 2.0
        progress_every_s: float = 30.0

    ConfigStore.instance().store(group="hydra/launcher", name="submitit_slurm", node=SlurmQueueConf,
                                 provider="vision-runner")
