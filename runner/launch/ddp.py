"""DDP and the launching process: the rank, one directory and one rendezvous per multirun job, child ranks.

:func:`global_rank` reads this process's rank before DDP starts; :func:`without_distributed_env`
hides the rendezvous variables from submitted SLURM jobs; :func:`end_child_ranks` ends the ranks a
failed single run started. The rest keeps a multirun job that trains with DDP in its own directory.

Lightning's subprocess DDP launcher starts the other ranks by re-running ``sys.argv`` with
``hydra.run.dir=<HydraConfig.run.dir>`` appended. Inside a multirun that would re-launch the
whole sweep, into the single-run directory. Before the Trainer starts we point ``run.dir`` at
this job's own directory and make ``sys.argv`` this job's single run, so every rank of a job
writes into that job's directory.

Every job of a multirun also gets its own rendezvous: a fresh ``MASTER_PORT`` (a port inherited
from the environment would be shared by all jobs of the sweep), and the process group, TCP store
and gloo sockets a failed job left behind are released before the next job starts. torch creates
rank 0's TCP store with ``multi_tenant=True``, so a job that reuses the port of an earlier job's
store still alive in this process joins that store and reads the earlier job's keys: its gloo
rendezvous then connects to the earlier job's (killed) ranks and fails with
``connectFullMesh ... Connection refused``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)

__all__ = [
    "prepare_ddp_subprocess_launch", "global_rank", "isolated_distributed_state", "end_child_ranks",
    "without_distributed_env",
]

# Variables Lightning and torch.distributed set in the launching process; a later job of the
# same multirun must not see them (LOCAL_RANK makes Lightning think the ranks already exist).
_DISTRIBUTED_ENV = (
    "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK",
    "LOCAL_WORLD_SIZE", "GROUP_RANK", "PL_GLOBAL_SEED", "PL_SEED_WORKERS",
)


def global_rank() -> int:
    """This process's rank from the environment Lightning/SLURM/torchrun set (0 before DDP starts)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                continue
    return 0


def _reap_child_ranks(timeout: float) -> None:
    """Wait for (or kill) the ranks Lightning started for a finished job, and retire its watcher.

    Lightning's ``child-process-observer`` thread kills the *launching* process when a child rank
    exits non-zero, even after the job is over, which would end the whole sweep. Taking its
    child list away makes it stop at its next check.
    """
    for thread in threading.enumerate():
        if thread.name != "child-process-observer" or not hasattr(thread, "_child_processes"):
            continue
        procs = list(thread._child_processes)
        thread._child_processes = []
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning(f"Rank process {proc.pid} did not exit {timeout:.0f} s after its job ended: killing it")
                proc.kill()
                proc.wait()


def end_child_ranks(timeout: float) -> None:
    """After a failed single run: give the ranks Lightning started ``timeout`` s to exit, then kill them."""
    _reap_child_ranks(timeout=timeout)


# Set when a job of this process failed: the next job first releases what that job left behind.
_left_behind = False


def _release_earlier_job() -> None:
    """Free what a failed DDP job of this sweep process still holds: trainer, DDP wrapper, process group.

    ``destroy_process_group`` only unregisters the group; a failed job's Trainer is kept alive by
    reference cycles (trainer, strategy, DDP wrapper, module), and with it the group's TCP store
    (still listening on the job's ``MASTER_PORT``), its gloo sockets and threads. The exception
    that ended the job has been handled by now, so a collection frees them.
    """
    global _left_behind
    if _left_behind:
        _left_behind = False
        gc.collect()


@contextlib.contextmanager
def without_distributed_env() -> Iterator[None]:
    """Hide this process's rendezvous variables (``MASTER_PORT``, ``RANK``, ...) for the block, then restore them.

    For submitting cluster jobs: sbatch exports the submitter's environment to every job, so a
    ``MASTER_PORT`` left in it (a user's shell, a process that ran ``ddp_spawn``) would put every DDP job of a
    sweep on one port; without it each job's ranks agree on a port of their own (Lightning's
    ``SLURMEnvironment`` derives it from the job id).
    """
    before = {k: os.environ.pop(k) for k in _DISTRIBUTED_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(before)


@contextlib.contextmanager
def isolated_distributed_state() -> Iterator[None]:
    """Run one multirun job, then end its child ranks and process group and restore the env variables."""
    global _left_behind
    _release_earlier_job()
    before = {k: os.environ.get(k) for k in _DISTRIBUTED_ENV}
    ok = False
    try:
        yield
        ok = True
    finally:
        import torch.distributed as dist

        _reap_child_ranks(timeout=300 if ok else 30)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        _left_behind = _left_behind or not ok
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _uses_subprocess_ddp(trainer_cfg: DictConfig) -> bool:
    strategy: Any = trainer_cfg.get("strategy")
    if isinstance(strategy, str):
        name = strategy
    else:  # a DDPStrategy node: its class and start_method (popen, the default, re-runs the command)
        get = getattr(strategy, "get", lambda *_: "")
        name = f"{get('_target_', '')} {get('start_method', '') or ''}"
    return "ddp" in name.lower() and "spawn" not in name.lower() and "fork" not in name.lower()


def _spare_the_sweep_process() -> None:
    """When a child rank of a multirun job dies, kill the job's other ranks but not the launching process.

    Lightning's ``child-process-observer`` kills the launching process too, which inside a multirun
    is the sweep itself. Rank 0 (in the launching process) then fails on its own (the peer's
    connection closes, or ``trainer.strategy.timeout`` passes), the job is recorded as failed and
    the sweep goes on.
    """
    from lightning.fabric.strategies.launchers import subprocess_script

    observer = subprocess_script._ChildProcessObserver
    if getattr(observer, "_spares_sweep", False):
        return

    def _terminate_children(self: Any) -> None:
        for proc in self._child_processes:
            if proc.poll() is None:
                proc.send_signal(self._termination_signal)
                proc.wait()

    observer._terminate_all = _terminate_children
    observer._spares_sweep = True


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _ranks_launched_here(trainer_cfg: DictConfig) -> bool:
    """Whether this process starts every rank of the job itself (one node, no cluster launcher).

    Only then may it choose the rendezvous port alone: under SLURM, torchelastic, LSF or MPI, or
    across nodes, every rank must read the same ``MASTER_PORT`` from its environment.
    """
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    if int(trainer_cfg.get("num_nodes") or 1) != 1:
        return False
    return not any(env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment))


def prepare_ddp_subprocess_launch(trainer_cfg: DictConfig) -> None:
    """Make Lightning's re-launched ranks join this multirun job in its own directory, on its own port."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or not _uses_subprocess_ddp(trainer_cfg):
        return
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    _spare_the_sweep_process()
    job_dir = hc.runtime.output_dir
    with read_write(hc), open_dict(hc):
        hc.run.dir = job_dir
    sys.argv = [sys.argv[0], *hc.overrides.task, "hydra.mode=RUN"]
    log.info(f"DDP inside a multirun: other ranks re-run this job alone in {job_dir}")
    if _ranks_launched_here(trainer_cfg):
        # One port per job: a MASTER_PORT inherited from the environment would put every job of the
        # sweep on the same TCP store (isolated_distributed_state restores the variable afterwards).
        inherited = os.environ.get("MASTER_PORT")
        os.environ["MASTER_PORT"] = str(_free_port())
        note = f" (instead of the inherited MASTER_PORT={inherited}, shared by every job)" if inherited else ""
        log.info(f"DDP inside a multirun: this job's rendezvous is on port {os.environ['MASTER_PORT']}{note}")
