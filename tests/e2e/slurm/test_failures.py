"""Failures do not kill a SLURM sweep: failed and cancelled jobs are reported, the others finish.

A job that raises is ``failed`` with its error, one cancelled with ``scancel`` is ``cancelled``, each
with the path of its log, and the sweep exits 0 while one job is ``ok``; a job that can never start
(more CPUs than any node has) is cancelled at once with SLURM's reason, and a sweep whose every job
failed exits 1.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.slurm import REPO, TINY, results, squeue_ids, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def test_failed_and_cancelled_jobs_are_reported_and_the_others_finish(slurm_cluster, tmp_path: Path) -> None:
    """Job 0 names a backbone timm does not have (an exception), job 1 trains, job 2 is scancel'ed."""
    out = tmp_path / "outputs"
    import os

    env = {**os.environ, "RUNNER_OUTPUT_DIR": str(out)}
    args = ["-m", "hydra/launcher=submitit_slurm", "model.backbone=no_such_net,resnet18,resnet10t", *TINY]
    sweep = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    cancelled: list[str] = []

    def _cancel_job_2() -> None:
        job = wait_for(lambda: next((i for i in squeue_ids(slurm_cluster) if i.endswith("_2")), None), 120,
                       "job #2 in the queue")
        subprocess.run(["scancel", job], check=True, timeout=30)
        cancelled.append(job)

    canceller = threading.Thread(target=_cancel_job_2)
    canceller.start()
    try:
        output, _ = sweep.communicate(timeout=480)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
        canceller.join(timeout=150)
    assert sweep.returncode == 0, output[-4000:]  # one job is ok: the sweep succeeds
    jobs = results(out)
    assert [j["status"] for j in jobs] == ["failed", "ok", "cancelled"], [(j["status"], j.get("error")) for j in jobs]
    failed, ok, gone = jobs
    assert "no_such_net" in failed["error"] and failed["slurm_state"] == "COMPLETED", failed
    assert gone["slurm_job_id"] == cancelled[0] and gone["slurm_state"].startswith("CANCELLED"), gone
    assert ok["optimized_metric"] > 0 and ok["slurm_state"] == "COMPLETED", ok
    for job in (failed, gone):
        assert str(job["optimized_metric"]) == "nan"
        # the summary names each job that did not end ok, with its log
        line = f"job {job['job_num']} {job['status']} (log: {job['log']}): "
        assert line in output, output[-3000:]
    assert Path(failed["log"]).resolve().is_file() and "no_such_net" in Path(failed["log"]).read_text()
    assert "CANCELLED" in output and "SLURM job " + cancelled[0] + " was cancelled" in output, output[-3000:]


def test_a_job_that_can_never_start_fails_fast_with_slurms_reason(slurm_cluster, tmp_path: Path) -> None:
    """64 CPUs per task on a 2-CPU cluster: SLURM keeps it pending (PartitionConfig) forever; the
    launcher cancels it at once and reports why; every job failed, so the sweep exits 1."""
    from tests.support.slurm import run_py

    t0 = time.monotonic()
    proc = run_py("-m", "hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=64", "seed=1", *TINY,
                  out_dir=tmp_path / "outputs", timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout[-3000:]
    (job,) = results(tmp_path / "outputs")
    assert job["status"] == "failed" and "PartitionConfig" in job["error"], job
    assert "hydra.launcher.cpus_per_task=64" in job["error"], job
    assert "can never start as asked (PartitionConfig)" in proc.stdout
    assert "Every job of the multirun failed" in proc.stdout
    assert elapsed < 60, elapsed  # fails fast: no training, no waiting for a node
    assert job["slurm_job_id"] not in squeue_ids(slurm_cluster)  # and it is not left in the queue


def test_jobs_sbatch_refuses_fail_the_sweep_at_once_with_sbatchs_message(slurm_cluster, tmp_path: Path) -> None:
    """An unknown partition: sbatch refuses at submission; one line says why, status 1, no traceback."""
    from tests.support.slurm import run_py

    proc = run_py("-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=no_such_partition", "seed=1",
                  *TINY, out_dir=tmp_path / "outputs", timeout=120)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "Error: SLURM refused the jobs: sbatch: error: invalid partition specified: no_such_partition" in proc.stdout
    assert "hydra.launcher.partition=no_such_partition" in proc.stdout and "Traceback" not in proc.stdout
    assert not results(tmp_path / "outputs")  # nothing ran
