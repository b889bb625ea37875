"""What the detection tests share: running a script of the repo, one trained run's outputs.

(Imported as ``detection_helpers``: a ``from conftest import`` would find another folder's conftest
when the whole suite runs.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

#: every logger at once, and every callback of this project (training is unchanged by them)
LOGGERS = "logger=[csv,tensorboard,wandb,mlflow]"


@dataclass
class Proc:
    returncode: int
    output: str
    seconds: float


def run_script(script: str, *args: str, out_dir: Path, timeout: float = 600) -> Proc:
    """``python <script> <args>`` from the repo root, outputs under ``out_dir``."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["RUNNER_OUTPUT_DIR"] = str(out_dir)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return Proc(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


@dataclass
class DetectionRun:
    run_dir: Path
    output: str
    seconds: float

    @property
    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())


