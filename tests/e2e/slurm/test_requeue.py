"""Preemption: a job signalled with USR1 is requeued by submitit, resumes from last.ckpt and finishes.

The job is held inside epoch 1 (after its second batch) by ``pause.PauseOnce``, then signalled with
``scancel --signal=USR1``, exactly what SLURM sends ``signal_delay_s`` before a time limit. SLURM
makes a requeued job wait about 2 minutes before it may start again (its BeginTime); the test lets
it start at once with ``scontrol update JobId=<id> StartTime=now``, as an admin can.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.slurm import REPO, results, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

EPOCHS, BATCHES = 3, 3


def _scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30).stdout


def test_signalled_job_is_requeued_and_resumes_to_the_full_epochs(slurm_cluster, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    env = {**os.environ, "RUNNER_OUTPUT_DIR": str(out), "PYTHONPATH": str(REPO)}
    args = ["-m", "seed=3", "hydra/launcher=submitit_slurm", f"trainer.max_epochs={EPOCHS}",
            f"++trainer.limit_train_batches={BATCHES}", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2",
            "data.batch_size=16", "++trainer.log_every_n_steps=1", "print_config=false",
            "+callbacks.pause._target_=tests.support.pause.PauseOnce"]
    t0 = time.monotonic()
    sweep = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        paused = wait_for(lambda: next(out.rglob("paused"), None), 240, "the job to reach epoch 1")
        job_id, step_at_pause, _ = paused.read_text().split()
        job_dir = paused.parent
        t_signal = time.monotonic()
        subprocess.run(["scancel", "--signal=USR1", job_id], check=True, timeout=30)
        shown = wait_for(lambda: (lambda s: s if "Restarts=1" in s and "JobState=PENDING" in s else None)(
            _scontrol("show", "job", job_id)), 60, "the job to be requeued (Restarts=1, PENDING)")
        t_requeued = time.monotonic()
        if "Reason=BeginTime" in shown:  # SLURM's ~2 minute hold of a requeued job: let it start now
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
        output, _ = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    elapsed = time.monotonic() - t0
    assert sweep.returncode == 0, output[-4000:]
    log = (job_dir / "train.log").read_text()
    assert "this job is preempted" in log or "preempted" in (job_dir / "slurm.err").read_text(), log[-3000:]
    assert f"SLURM job {job_id} was requeued (restart 1): resuming from" in log, log[-3000:]
    resumed_at = _log_time(next(line for line in log.splitlines() if "was requeued (restart 1)" in line))
    signalled_at = time.time() - (time.monotonic() - t_signal)

    # every epoch once, the global step continues, val/acc_best is the best over the whole run
    with open(job_dir / "csv" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = [r for r in rows if r.get("val/acc")]
    assert [int(r["epoch"]) for r in val] == list(range(EPOCHS)), [(r["epoch"], r["step"]) for r in val]
    assert [int(r["step"]) for r in val] == [BATCHES * (e + 1) - 1 for e in range(EPOCHS)], val
    train_steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert train_steps == sorted(set(train_steps)), train_steps  # no step logged twice
    ckpt = torch.load(job_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == EPOCHS * BATCHES and ckpt["epoch"] == EPOCHS - 1
    (result,) = results(out)
    assert result["status"] == "ok" and result["slurm_job_id"] == job_id, result
    best = max(float(r["val/acc"]) for r in val)
    assert result["metrics"]["val/acc_best"] == pytest.approx(best, abs=1e-6)
    assert f"SLURM job {job_id} was requeued" in output, output[-3000:]  # the submitter saw it
    print(f"\nrequeue round trip: USR1 -> requeued (PENDING) {t_requeued - t_signal:.1f} s, "
          f"USR1 -> resuming from last.ckpt {resumed_at - signalled_at:.1f} s (SLURM's BeginTime hold skipped); "
          f"the whole sweep {elapsed:.1f} s")


def _log_time(line: str) -> float:
    """The epoch seconds of a ``[2026-12-04 19:21:03,261][...]`` log line (local time)."""
    from datetime import datetime

    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
