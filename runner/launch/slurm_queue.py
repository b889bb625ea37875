"""What SLURM says about jobs: their state and why a pending one waits, from ``squeue``.

``sacct`` needs SLURM's accounting database, which many small clusters (and the local cluster of
``scripts/slurm_local.py``) do not run, so states come from ``squeue --states=all``, which also
lists finished jobs for ``MinJobAge`` seconds (300 by default) after they end. Imports nothing heavy.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

__all__ = ["ACTIVE_STATES", "NEVER_STARTS_REASONS", "JobState", "cancel", "parse_squeue", "query_states"]

# States in which a job has not ended (a requeued job goes back to PENDING with the same id).
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
})
# Reasons a pending job gives when it can never start as asked (more CPUs, memory or time than the
# partition allows, unknown constraints or accounts): such a job is cancelled and reported at once.
NEVER_STARTS_REASONS = frozenset({
    "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidAccount",
    "InvalidQOS", "DependencyNeverSatisfied",
})


@dataclass(frozen=True)
class JobState:
    """One job as ``squeue`` shows it.

    Attributes:
        job_id: ``12``, or ``12_3`` for an element of a job array.
        state: SLURM's state (``PENDING``, ``RUNNING``, ``COMPLETED``, ``CANCELLED``, ...).
        reason: why a pending job waits (``Resources``, ``PartitionConfig``, ...), ``None`` when it does not.
        start: when the job (last) started; a requeued job that runs again has a new one.
    """

    job_id: str
    state: str
    reason: str
    start: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def never_starts(self) -> bool:
        return self.state == "PENDING" and self.reason in NEVER_STARTS_REASONS


def query_states(job_ids: list[str], timeout: float = 30) -> dict[str, JobState]:
    """The state of each of ``job_ids`` (``12`` or array elements ``12_3``) that SLURM still knows.

    Raises:
        RuntimeError: squeue is missing or fails (its message included).
    """
    masters = sorted({job_id.split("_")[0] for job_id in job_ids})
    cmd = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r|%S", "--jobs", ",".join(masters)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"squeue failed: {err}") from err
    if proc.returncode != 0:
        # squeue exits 1 ("Invalid job id specified") once every job of the list has been purged
        if "Invalid job id" in proc.stderr:
            return {}
        raise RuntimeError(f"squeue failed: {proc.stderr.strip() or proc.stdout.strip()}")
    found = parse_squeue(proc.stdout)
    return {job_id: found[job_id] for job_id in job_ids if job_id in found}


def parse_squeue(stdout: str) -> dict[str, JobState]:
    """The jobs of ``squeue --noheader --format=%i|%T|%r|%S`` output, by job id; other lines are skipped.

    A state such as ``CANCELLED by 0`` keeps its first word.
    """
    found: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[1].split():
            found[parts[0]] = JobState(parts[0], parts[1].split()[0], parts[2], parts[3])
    return found


def cancel(job_id: str) -> None:
    """``scancel <job_id>``; a failure only matters to the caller through the job's state."""
    subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=30)
