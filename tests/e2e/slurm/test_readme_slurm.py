"""The README's ``# [slurm]`` commands, run for real against the local SLURM cluster.

Each command is taken from README.md and run exactly as ``tests/test_readme.py`` runs README commands
(``python`` -> this interpreter, ``trainer.max_epochs=1`` and ``++trainer.limit_*_batches``
appended, in a scratch directory), then its jobs are checked: SLURM job ids, states and metrics in
the summary, per-job stdout/stderr in the job directories, progress while waiting; the DDP job runs
on 2 SLURM tasks and matches the same run under ``trainer=ddp_cpu`` without SLURM.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.slurm import REPO, results

from tests.e2e.test_readme import COMMANDS, _argv, _run  # noqa: E402 - the README's commands and its rules

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SLURM_COMMANDS = {c.text: c for c in COMMANDS if c.slurm}
SWEEP = "python run.py -m seed=1,2 hydra/launcher=submitit_slurm"
OPTUNA = "python run.py -m hparams_search=optuna hydra.sweeper.n_trials=2 hydra.sweeper.n_jobs=2 hydra/launcher=submitit_slurm"
DDP = "python run.py -m trainer=ddp_cpu hydra/launcher=slurm_cpu"


def test_these_are_the_readme_slurm_commands() -> None:
    """Every [slurm] line of the README is run below, and nothing else is."""
    assert sorted(SLURM_COMMANDS) == sorted([SWEEP, OPTUNA, DDP]), sorted(SLURM_COMMANDS)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory like tests/test_readme.py's: run.py next to links to the packages and conf/."""
    root = tmp_path_factory.mktemp("readme_slurm")
    shutil.copy2(REPO / "run.py", root / "run.py")
    for name in ("conf", "runner", "callbacks", "interpret", "hydra_plugins"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    return root


def _run_readme(text: str, cwd: Path) -> tuple[str, list[dict], float]:
    argv = _argv(SLURM_COMMANDS[text])
    code, out, seconds = _run(argv, cwd)
    print(f"\n{seconds:.1f} s: python run.py {' '.join(argv)}")
    assert code == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    sweeps = sorted((cwd / "outputs" / "multirun" / "train").iterdir())
    return out, results(sweeps[-1]), seconds


def test_sweep_through_sbatch(slurm_cluster, workspace: Path) -> None:
    out, jobs, seconds = _run_readme(SWEEP, workspace)
    assert [j["status"] for j in jobs] == ["ok", "ok"], jobs
    ids = [j["slurm_job_id"] for j in jobs]
    assert len(set(ids)) == 2 and all(re.fullmatch(r"\d+_\d", i) for i in ids), ids
    # progress while waiting, then the summary: each job with its SLURM job id, state and metric
    assert re.search(r"SLURM jobs \d+_\[0-1\]: .*RUNNING", out), out[-3000:]
    for job in jobs:
        row = next(line for line in out.splitlines() if f" {job['slurm_job_id']} " in line and "│" in line)
        assert "COMPLETED" in row and "ok" in row and f"{job['optimized_metric']:.4f}" in row, row
        job_dir = Path(job["output_dir"])
        # the job's own stdout and stderr, in its own directory
        assert "Job completed successfully" in (job_dir / "slurm.err").read_text() + (job_dir / "slurm.out").read_text()
        assert (job_dir / "slurm.out").resolve().is_file() and (job_dir / "slurm.err").resolve().is_file()
        assert job["slurm_state"] == "COMPLETED"
    print(f"2-job sweep, submit to finish (interpreter start included): {seconds:.1f} s")


def test_optuna_trials_as_slurm_jobs(slurm_cluster, workspace: Path) -> None:
    out, jobs, _ = _run_readme(OPTUNA, workspace)
    assert len(jobs) == 2 and all(j["status"] == "ok" and j.get("slurm_job_id") for j in jobs), jobs
    assert all(any(o.startswith("model.optimizer.lr=") for o in j["overrides"]) for j in jobs), jobs
    sweep = Path(jobs[0]["output_dir"]).parent
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best and "model.optimizer.lr" in best, best


def _val_rows(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("val/acc")]


def test_ddp_across_two_slurm_tasks_equals_ddp_cpu(slurm_cluster, workspace: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One SLURM job, 2 tasks, Lightning's SLURMEnvironment takes the ranks; the same run under
    trainer=ddp_cpu without SLURM (Lightning starts the second process) gives the same result."""
    # a MASTER_PORT in the submitting environment (a user's shell; this pytest process after a ddp_spawn
    # test) must not reach the SLURM job, whose ranks take a port from their job id: the run without SLURM
    # below listens on it at the same time
    with socket.socket() as sock:
        sock.bind(("", 0))
        monkeypatch.setenv("MASTER_PORT", str(sock.getsockname()[1]))
    # the same run without SLURM, started first so that both share the machine's 2 cores
    local_dir = tmp_path / "ddp_cpu"
    argv = [a for a in _argv(SLURM_COMMANDS[DDP]) if a not in ("-m", "hydra/launcher=slurm_cpu")]
    result: dict = {}
    local = threading.Thread(target=lambda: result.update(run=_run([*argv, f"hydra.run.dir={local_dir}"], workspace)))
    local.start()
    out, (job,), slurm_s = _run_readme(DDP, workspace)
    local.join()
    assert job["status"] == "ok", job
    job_dir = Path(job["output_dir"])
    log = (job_dir / "train.log").read_text()
    # world size 2 from the run's own log: both ranks joined, started by SLURM (srun), not by Lightning
    assert "Starting with 2 processes" in log and "MEMBER: 2/2" in log, log[-3000:]
    assert (job_dir / "slurm.1.out").resolve().is_file(), sorted(p.name for p in job_dir.iterdir())
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in (job_dir / "slurm.1.out").read_text()

    code, local_out, local_s = result["run"]
    assert code == 0, local_out[-4000:]
    assert "Starting with 2 processes" in (local_dir / "train.log").read_text()
    slurm_metrics = job["metrics"]
    local_metrics = json.loads((local_dir / "metrics.json").read_text())["metrics"]
    assert slurm_metrics["val/acc"] == pytest.approx(local_metrics["val/acc"], abs=1e-6)
    assert slurm_metrics["val/loss"] == pytest.approx(local_metrics["val/loss"], rel=1e-4)
    assert [r["step"] for r in _val_rows(job_dir)] == [r["step"] for r in _val_rows(local_dir)]
    import torch

    steps = [torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
             for d in (job_dir, local_dir)]
    assert steps[0] == steps[1] > 0, steps
    print(f"DDP 2 SLURM tasks: {slurm_s:.1f} s (submit to finish), val/acc {slurm_metrics['val/acc']:.4f}, "
          f"val/loss {slurm_metrics['val/loss']:.6f}; trainer=ddp_cpu: {local_s:.1f} s, val/acc "
          f"{local_metrics['val/acc']:.4f}, val/loss {local_metrics['val/loss']:.6f}; {steps[0]} steps each "
          "(both at once on the same 2 cores)")


def test_squeue_is_empty_after_the_readme_commands(slurm_cluster) -> None:
    """Nothing the commands submitted is still queued or running."""
    proc = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
