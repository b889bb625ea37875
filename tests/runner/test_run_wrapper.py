"""The failure policy of runner.run_wrapper, with stand-in pipelines instead of a real training run."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import DictConfig

from runner.artifacts import (
    CONFIG_RESOLVED_FILE,
    CONFIG_TREE_FILE,
    FAILED_FILE,
    JOB_RESULT_FILE,
    METRICS_FILE,
    STATUS_FILE,
)
from runner.run_wrapper import is_fresh_run_dir, keeps_failed_run_dir, optimized_value, rank_message, run_wrapper
from runner.train_result import FitProgress, TrainResult

Compose = Callable[..., DictConfig]
QUIET = ("print_config=false", "report=false", "optimized_metric=val/acc")


@pytest.fixture(autouse=True)
def _short_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(var, raising=False)


def _trained(progress: FitProgress, steps: int = 3, world: int = 1) -> None:
    progress.trainer = SimpleNamespace(global_step=steps, world_size=world)
    progress.fit_started = True
    progress.start_step = 0


# ------------------------------------------------------------------------------------ decisions
def test_fresh_run_dir(tmp_path: Path) -> None:
    assert is_fresh_run_dir(tmp_path / "missing", "train")
    for name in (".hydra", CONFIG_RESOLVED_FILE, CONFIG_TREE_FILE, "train.log"):
        (tmp_path / name).touch()
    assert is_fresh_run_dir(tmp_path, "train")
    assert not is_fresh_run_dir(tmp_path, "other")  # train.log is an earlier run's log for task "other"
    (tmp_path / "checkpoints").mkdir()
    assert not is_fresh_run_dir(tmp_path, "train")


def test_a_failed_run_keeps_its_directory_when_it_trained_or_was_not_fresh() -> None:
    assert keeps_failed_run_dir(trained=True, fresh_dir=True)
    assert keeps_failed_run_dir(trained=False, fresh_dir=False)
    assert not keeps_failed_run_dir(trained=False, fresh_dir=True)


def test_progress_trained_counts_steps_after_the_start() -> None:
    progress = FitProgress()
    assert not progress.trained and progress.world_size == 1
    _trained(progress, steps=3)
    assert progress.trained
    progress.start_step = 3  # resumed at step 3 and failed before the next one
    assert not progress.trained


def test_optimized_value() -> None:
    assert optimized_value(None, {"val/acc": 0.5}, failed=False) is None
    assert optimized_value("val/acc", {"val/acc": 0.5}, failed=False) == 0.5
    assert math.isnan(optimized_value("val/acc", {"val/acc": 0.5}, failed=True))
    assert math.isnan(optimized_value("val/f1", {"val/acc": 0.5}, failed=False))


def test_rank_message() -> None:
    assert rank_message("ValueError: x", rank=0, world=1) == "ValueError: x"
    assert rank_message("ValueError: x", rank=1, world=2) == "rank 1 of 2: ValueError: x"
    timeout = rank_message("RuntimeError: operation timed out", rank=0, world=2)
    assert "trainer.strategy.timeout" in timeout
    assert "trainer.strategy.timeout" not in rank_message("RuntimeError: timed out", rank=0, world=1)


# ------------------------------------------------------------------------------------ the policy
def test_a_finished_run_writes_metrics_and_job_result(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress)
        return TrainResult(metrics={"val/acc": 0.75, "test/acc": 0.5}, best_model_path=str(output_dir / "best.ckpt"))

    assert run_wrapper(train)(cfg) == 0.75
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    assert metrics == json.loads((run_dir / JOB_RESULT_FILE).read_text())
    assert list(metrics) == ["job_num", "overrides", "output_dir", "started_at", "status", "optimized_metric",
                             "metrics", "best_model_path", "seconds", "finished_at"]
    assert metrics["status"] == "ok" and metrics["job_num"] is None and metrics["metrics"]["test/acc"] == 0.5
    assert (run_dir / CONFIG_RESOLVED_FILE).is_file() and (run_dir / CONFIG_TREE_FILE).is_file()
    assert not (run_dir / FAILED_FILE).exists()


def test_a_failure_before_training_removes_the_fresh_run_dir(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        raise ValueError("bad value")

    with pytest.raises(SystemExit) as exit_info:
        run_wrapper(train)(cfg)
    assert exit_info.value.code == 1
    assert not (tmp_path / "run").exists()
    assert "Error: ValueError: bad value (before training: no run directory kept)" in capsys.readouterr().err


def test_a_failure_after_training_keeps_the_run_dir(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress)
        raise RuntimeError("disk full")

    with pytest.raises(SystemExit):
        run_wrapper(train)(cfg)
    run_dir = tmp_path / "run"
    assert "RuntimeError: disk full" in (run_dir / FAILED_FILE).read_text()
    assert not (run_dir / METRICS_FILE).exists()
    assert f"(checkpoints and logs kept in {run_dir})" in capsys.readouterr().err


def test_a_run_stopped_by_a_callback_is_failed(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress)
        return TrainResult(metrics={"val/acc": 0.1}, stopped_by="TerminateOnNaN: loss is nan")

    with pytest.raises(SystemExit):
        run_wrapper(train)(cfg)
    run_dir = tmp_path / "run"
    assert (run_dir / FAILED_FILE).read_text() == "stopped by a callback: TerminateOnNaN: loss is nan\n"
    assert not (run_dir / METRICS_FILE).exists()
    job = json.loads((run_dir / JOB_RESULT_FILE).read_text())
    assert job["status"] == "failed" and job["error"] == "TerminateOnNaN: loss is nan"
    assert math.isnan(job["optimized_metric"])
    assert "Error: the run was stopped: TerminateOnNaN: loss is nan" in capsys.readouterr().err


def test_a_failed_multirun_job_is_recorded_and_the_sweep_goes_on(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg(*QUIET, "hydra.mode=MULTIRUN", job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        raise ValueError("bad value")

    assert math.isnan(run_wrapper(train)(cfg))
    run_dir = tmp_path / "run"
    job = json.loads((run_dir / JOB_RESULT_FILE).read_text())
    assert job["status"] == "failed" and job["error"] == "ValueError: bad value" and job["job_num"] == 0
    assert math.isnan(job["optimized_metric"])
    assert "ValueError: bad value" in (run_dir / FAILED_FILE).read_text()


def test_another_rank_only_says_why(compose_cfg: Compose, tmp_path: Path, capsys,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_cfg(*QUIET, job=True)
    monkeypatch.setenv("RANK", "1")

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress, world=2)
        raise RuntimeError("peer closed")

    with pytest.raises(SystemExit):
        run_wrapper(train)(cfg)
    assert "Error on rank 1: rank 1 of 2: RuntimeError: peer closed" in capsys.readouterr().err
    assert not (tmp_path / "run" / FAILED_FILE).exists()
    assert not (tmp_path / "run" / CONFIG_RESOLVED_FILE).exists()  # only rank 0 writes


def test_full_error_raises(compose_cfg: Compose, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_cfg(*QUIET, job=True)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        run_wrapper(train)(cfg)


# ------------------------------------------------------------------- status.json, signals, disk full
def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / STATUS_FILE).read_text())


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_after_training_started_is_an_interruption(compose_cfg: Compose, tmp_path: Path, capsys,
                                                           signum: int, code: int) -> None:
    """A real signal to this process: exit 128 + signal, status interrupted at the step reached, no records
    of a finished or failed run, and how to resume."""
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress, steps=7)
        os.kill(os.getpid(), signum)
        time.sleep(5)
        raise AssertionError("the signal did not stop the run")

    with pytest.raises(SystemExit) as exit_info:
        run_wrapper(train)(cfg)
    assert exit_info.value.code == code
    run_dir = tmp_path / "run"
    status = _status(run_dir)
    name = signal.Signals(signum).name
    assert (status["state"], status["step"], status["reason"]) == ("interrupted", 7, f"interrupted by {name}")
    assert [a["state"] for a in status["attempts"]] == ["interrupted"]
    assert not (run_dir / METRICS_FILE).exists() and not (run_dir / FAILED_FILE).exists()
    assert json.loads((run_dir / JOB_RESULT_FILE).read_text())["status"] == "interrupted"
    err = capsys.readouterr().err
    assert f"Interrupted by {name} at global step 7" in err and f"ckpt_path=last hydra.run.dir={run_dir}" in err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are given back


def test_a_signal_before_training_keeps_no_fresh_directory(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("the signal did not stop the run")

    with pytest.raises(SystemExit) as exit_info:
        run_wrapper(train)(cfg)
    assert exit_info.value.code == 143 and not (tmp_path / "run").exists()
    assert "Interrupted by SIGTERM before training: no run directory kept" in capsys.readouterr().err


def test_an_exit_raised_inside_the_run_is_recorded_and_goes_on(compose_cfg: Compose, tmp_path: Path) -> None:
    """submitit's exit after requeueing a SLURM job (``sys.exit(-1)``) keeps its code: SLURM's requeue works as before."""
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress, steps=4)
        sys.exit(-1)

    with pytest.raises(SystemExit) as exit_info:
        run_wrapper(train)(cfg)
    assert exit_info.value.code == -1
    status = _status(tmp_path / "run")
    assert (status["state"], status["step"], status["reason"]) == ("interrupted", 4, "interrupted by exit -1")


def test_a_resume_that_finishes_after_a_failed_one_leaves_the_directory_finished(compose_cfg: Compose,
                                                                               tmp_path: Path) -> None:
    cfg = compose_cfg(*QUIET, job=True)
    run_dir = tmp_path / "run"

    def fails(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress, steps=5)
        raise RuntimeError("truncated last.ckpt")

    def finishes(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress, steps=10)
        return TrainResult(metrics={"val/acc": 0.75})

    assert run_wrapper(finishes)(cfg) == 0.75
    with pytest.raises(SystemExit):
        run_wrapper(fails)(cfg)
    # the failed attempt: no metrics.json of the earlier one, a failed job_result.json
    assert _status(run_dir)["state"] == "failed" and not (run_dir / METRICS_FILE).exists()
    assert json.loads((run_dir / JOB_RESULT_FILE).read_text())["status"] == "failed"
    assert run_wrapper(finishes)(cfg) == 0.75
    status = _status(run_dir)
    assert (status["state"], status["step"]) == ("finished", 10)
    assert [a["state"] for a in status["attempts"]] == ["finished", "failed", "finished"]
    assert not (run_dir / FAILED_FILE).exists() and (run_dir / METRICS_FILE).is_file()


def test_a_full_disk_is_one_line(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(*QUIET, job=True)

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        _trained(progress)
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(output_dir / "csv" / "metrics.csv"))
        except OSError as err:
            raise RuntimeError("a logger failed") from err

    with pytest.raises(SystemExit) as exit_info:
        run_wrapper(train)(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"Error: No space left on device writing {tmp_path / 'run' / 'csv' / 'metrics.csv'} (" in err
    assert "free); earlier checkpoints are intact" in err and "Traceback" not in err
    assert _status(tmp_path / "run")["state"] == "failed"


def test_a_start_removes_the_temporaries_of_killed_writers(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg(*QUIET, job=True)
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = [checkpoints / f".last.ckpt.{dead.pid}.tmp", checkpoints / f".epoch_002.ckpt.{dead.pid}.tmp",
             tmp_path / "run" / f".metrics.json.{dead.pid}.tmp"]
    live = checkpoints / f".last.ckpt.{os.getppid()}.tmp"  # a running writer's file stays
    for path in (*stale, live):
        path.write_bytes(b"partial")
    seen = {}

    def train(cfg: DictConfig, output_dir: Path, progress: FitProgress) -> TrainResult:
        seen["left"] = sorted(p.name for p in checkpoints.iterdir())
        _trained(progress)
        return TrainResult(metrics={"val/acc": 0.5})

    run_wrapper(train)(cfg)
    assert seen["left"] == [live.name]


def test_resume_command_repeats_the_runs_overrides_but_its_checkpoint() -> None:
    from runner.run_wrapper import resume_command

    cmd = resume_command(["experiment=shapes_detection", "ckpt_path=old.ckpt", "+ckpt_path=x", "tags=[a b]"],
                         Path("/runs/my run"))
    assert cmd == "python run.py experiment=shapes_detection 'tags=[a b]' ckpt_path=last 'hydra.run.dir=/runs/my run'"
