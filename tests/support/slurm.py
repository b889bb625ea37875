"""Helpers of the SLURM tests: the local cluster's handle, job results, waiting with a deadline."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

# every SLURM test trains tiny runs: 2 epochs of 3 batches of 16 images
TINY = ("trainer.max_epochs=2", "++trainer.limit_train_batches=3", "++trainer.limit_val_batches=2",
        "++trainer.limit_test_batches=2", "data.batch_size=16", "print_config=false")


@dataclass
class Cluster:
    conf: Path
    started_here: bool

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}


def squeue_ids(cluster: Cluster) -> list[str]:
    """The ids of every job the cluster still runs or holds (not the finished ones)."""
    proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **cluster.env})
    return proc.stdout.split()


def results(root: Path) -> list[dict]:
    """Every ``job_result.json`` under ``root``, by job number."""
    found = [json.loads(p.read_text()) for p in root.rglob("job_result.json")]
    return sorted(found, key=lambda r: r.get("job_num") or 0)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def run_py(*args: str, out_dir: Path, timeout: float = 600, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess:
    """``python run.py <args>`` from the repo root with ``RUNNER_OUTPUT_DIR=out_dir`` (stderr into stdout)."""
    import sys

    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"RUNNER_OUTPUT_DIR": str(out_dir), **(env or {})})
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
