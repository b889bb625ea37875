"""Run ``python run.py ...`` for real, in a subprocess, with outputs under a tmp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    out_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, out_dir: Path, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """``python run.py <args>`` from the repo root with RUNNER_OUTPUT_DIR=out_dir."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"RUNNER_OUTPUT_DIR": str(out_dir), **(env or {})})
    proc = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, out_dir)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def cli(tmp_path: Path):
    """``cli(*args, quiet=True, env=None)``: run.py with outputs under ``tmp_path/outputs``."""

    def _run(*args: str, quiet: bool = True, **kwargs) -> CliResult:
        extra = ("print_config=false",) if quiet else ()
        return run_cli(*args, *extra, out_dir=tmp_path / "outputs", **kwargs)

    return _run
