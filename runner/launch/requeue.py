"""Resume a SLURM job that was requeued (preempted, or signalled before its time limit).

When SLURM signals a job launched by :class:`runner.launch.slurm_launcher.SlurmLauncher` (``--signal=USR1@<s>``
before the time limit, or ``scancel --signal=USR1 <job>``), submitit requeues it and the process
exits; SLURM starts the same job again later (same job id, ``SLURM_RESTART_COUNT`` one higher),
and it runs the same Hydra job in the same directory. :func:`requeued_resume_path` then makes the
run continue from its ``checkpoints/last.ckpt``, the checkpoint written at the end of every epoch:
the resume is exact (the epoch, global step, optimizer, LR schedule, ``val/acc_best``, callbacks'
state, as any ``ckpt_path=last`` resume), and only the part of the epoch after that checkpoint is
trained again. Rows that the interrupted run logged to ``csv/metrics.csv`` after the checkpoint are
dropped first, so the file holds every epoch once: :func:`drop_rows_after_checkpoint`, which every
resume in place calls (``ckpt_path=last`` after SIGINT, SIGTERM or ``kill -9``, :mod:`runner.train`).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from runner.artifacts import csv_metrics_files, last_checkpoint

__all__ = ["drop_rows_after_checkpoint", "requeued_resume_path", "slurm_job_id", "slurm_restart_count"]

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    """This process's SLURM job id (``<array job>_<task>`` for an array element), None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def slurm_restart_count() -> int:
    """How many times SLURM has requeued this job (0 outside SLURM and on the first run)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def requeued_resume_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """``<output_dir>/checkpoints/last.ckpt`` when this is a requeued SLURM job and ``ckpt_path`` is unset.

    Args:
        ckpt_path: the run's own ``ckpt_path`` (a resume asked for explicitly wins).
        output_dir: this job's directory.

    Returns:
        The checkpoint to resume from, or None (not requeued, or requeued before the first epoch
        ended: the job then starts over).
    """
    restarts = slurm_restart_count()
    if ckpt_path is not None or restarts < 1:
        return None
    last = last_checkpoint(output_dir)
    if not last.is_file():
        log.info(f"SLURM job {slurm_job_id()} was requeued (restart {restarts}) before its first checkpoint: "
                 "starting over")
        return None
    epoch, step, dropped = drop_rows_after_checkpoint(last, output_dir)
    log.info(f"SLURM job {slurm_job_id()} was requeued (restart {restarts}): resuming from {last} "
             f"(epoch {epoch}, global step {step}; {dropped} csv rows logged after it dropped)")
    return str(last)


def drop_rows_after_checkpoint(ckpt_path: str | Path, output_dir: str | Path) -> tuple[int, int, int]:
    """Drop the ``csv/metrics.csv`` rows of ``output_dir`` that were logged after ``ckpt_path`` was saved.

    A resume trains them again, so they would appear twice. Dropped: rows of a later epoch than the
    checkpoint's, and rows logged at or after its global step (the first step the resumed run logs;
    a checkpoint saved at the end of an epoch keeps that epoch's rows, logged at the step before).

    Returns:
        The checkpoint's epoch, its global step, and how many rows were dropped.
    """
    import torch

    state = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    epoch, step = int(state.get("epoch", 0)), int(state.get("global_step", 0))
    del state
    dropped = sum(_drop_rows_after(path, epoch, step) for path in csv_metrics_files(output_dir))
    return epoch, step, dropped


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _drop_rows_after(path: Path, epoch: int, next_step: int | None = None) -> int:
    """Remove the rows of epochs after ``epoch`` (and, given ``next_step``, of steps from it on) from a
    Lightning ``metrics.csv``; return how many."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = list(reader)
    if "epoch" not in fields:
        return 0

    def later(row: dict[str, str]) -> bool:
        row_epoch, row_step = _number(row.get("epoch")), _number(row.get("step"))
        return ((row_epoch is not None and int(row_epoch) > epoch)
                or (next_step is not None and row_step is not None and row_step >= next_step))

    kept = [r for r in rows if not later(r)]
    if len(kept) != len(rows):
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        tmp.replace(path)
    return len(rows) - len(kept)
