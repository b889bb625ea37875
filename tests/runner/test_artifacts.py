"""The run directory's records (runner.artifacts): what is written is what is read back, key for key."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.artifacts import (
    CHECKPOINTS_DIR,
    FAILED_FILE,
    JOB_RESULT_FILE,
    METRICS_FILE,
    JobResult,
    RunMetrics,
    RunStatus,
    csv_metrics_files,
    failure_text,
    last_checkpoint,
    pid_alive,
    read_json,
    slurm_log,
    stale_temporaries,
    write_failed,
    write_json,
)

# a finished run's job_result.json as runner.run_wrapper writes it, plus the keys the SLURM launcher adds
FULL = {
    "job_num": 3,
    "overrides": ["seed=3", "model.optimizer.lr=0.01"],
    "output_dir": "/tmp/sweep/3",
    "started_at": 1700000000.5,
    "slurm_job_id": "12_3",
    "status": "ok",
    "optimized_metric": 0.875,
    "metrics": {"val/acc": 0.875, "test/acc": 0.8125},
    "best_model_path": "/tmp/sweep/3/checkpoints/epoch_001.ckpt",
    "seconds": 12.25,
    "finished_at": 1700000012.75,
    "slurm_state": "COMPLETED",
    "log": "/tmp/sweep/3/slurm.out",
    "slurm_stdout": "/tmp/sweep/3/slurm.out",
}


def test_job_result_round_trip_keeps_every_key_and_value(tmp_path: Path) -> None:
    JobResult.from_dict(FULL).write(tmp_path)
    on_disk = json.loads((tmp_path / JOB_RESULT_FILE).read_text())
    assert on_disk == FULL
    back = JobResult.read(tmp_path)
    assert back is not None and back.to_dict() == FULL
    assert back.status == "ok" and back.metrics == FULL["metrics"] and back.extra["slurm_state"] == "COMPLETED"


def test_a_read_record_writes_back_the_keys_it_had(tmp_path: Path) -> None:
    few = {"job_num": 0, "status": "failed", "optimized_metric": None, "error": None}
    JobResult.from_dict(few).write(tmp_path)
    assert json.loads((tmp_path / JOB_RESULT_FILE).read_text()) == few
    back = JobResult.read(tmp_path)
    assert back is not None and back.to_dict() == few


def test_a_built_record_writes_the_always_keys(tmp_path: Path) -> None:
    record = JobResult(overrides=["seed=1"], output_dir=str(tmp_path), started_at=1.0)
    data = record.to_dict()
    assert data == {"job_num": None, "overrides": ["seed=1"], "output_dir": str(tmp_path), "started_at": 1.0,
                    "status": None, "optimized_metric": None}


def test_run_metrics_holds_the_same_keys_as_the_job_result(tmp_path: Path) -> None:
    job = JobResult.from_dict(FULL)
    RunMetrics.from_dict(job.to_dict()).write(tmp_path)
    job.write(tmp_path)
    assert json.loads((tmp_path / METRICS_FILE).read_text()) == json.loads((tmp_path / JOB_RESULT_FILE).read_text())


def test_nan_optimized_metric_is_written_as_nan(tmp_path: Path) -> None:
    JobResult(job_num=2, status="failed", optimized_metric=math.nan, error="ValueError: x").write(tmp_path)
    text = (tmp_path / JOB_RESULT_FILE).read_text()
    assert '"optimized_metric": NaN' in text
    back = JobResult.read(tmp_path)
    assert back is not None and math.isnan(back.optimized_metric)
    assert back.error == "ValueError: x"


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": 1})
    JobResult(job_num=1).write(tmp_path)
    JobResult(job_num=2).write(tmp_path)  # over an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", JOB_RESULT_FILE]
    assert read_json(tmp_path / JOB_RESULT_FILE)["job_num"] == 2


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path: Path) -> None:
    try:
        write_json(tmp_path / "b.json", {"x": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    except TypeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_missing_or_broken_records_read_as_none(tmp_path: Path) -> None:
    assert JobResult.read(tmp_path) is None
    (tmp_path / JOB_RESULT_FILE).write_text("{not json")
    assert JobResult.read(tmp_path) is None
    (tmp_path / JOB_RESULT_FILE).write_text("[1, 2]")
    assert JobResult.read(tmp_path) is None


def test_read_all_orders_by_job_number_and_skips_broken_files(tmp_path: Path) -> None:
    for num in (10, 2, 0):
        (tmp_path / str(num)).mkdir()
        JobResult(job_num=num, status="ok").write(tmp_path / str(num))
    (tmp_path / "single").mkdir()
    JobResult(status="ok").write(tmp_path / "single")  # a single run: no job number, listed last
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / JOB_RESULT_FILE).write_text("{")
    assert [r.job_num for r in JobResult.read_all(tmp_path)] == [0, 2, 10, None]


def test_failed_marker(tmp_path: Path) -> None:
    assert failure_text(tmp_path) is None
    write_failed(tmp_path, "stopped by a callback: TerminateOnNaN: loss is nan\n")
    assert (tmp_path / FAILED_FILE).is_file()
    assert failure_text(tmp_path) == "stopped by a callback: TerminateOnNaN: loss is nan\n"


def test_checkpoint_and_csv_paths(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    for version in ("version_1", "version_0"):
        (tmp_path / "csv" / version).mkdir(parents=True)
        (tmp_path / "csv" / version / "metrics.csv").write_text("epoch\n")
    assert csv_metrics_files(tmp_path) == [tmp_path / "csv" / v / "metrics.csv" for v in ("version_0", "version_1")]


def test_slurm_log_names(tmp_path: Path) -> None:
    assert slurm_log(tmp_path, "out") == tmp_path / "slurm.out"
    assert slurm_log(tmp_path, "err") == tmp_path / "slurm.err"
    assert slurm_log(tmp_path, "out", task=1) == tmp_path / "slurm.1.out"
    with pytest.raises(ValueError, match="stream can be out or err, got 'log'"):
        slurm_log(tmp_path, "log")


def test_run_status_records_each_attempt_and_the_latest_state(tmp_path: Path) -> None:
    assert RunStatus.read(tmp_path) is None
    RunStatus.begin(tmp_path)
    assert RunStatus.read(tmp_path).state == "running"
    RunStatus.end(tmp_path, "interrupted", 12, "interrupted by SIGTERM")
    RunStatus.begin(tmp_path, resumed_from="last")
    status = RunStatus.end(tmp_path, "finished", 20, resumed_from="/run/checkpoints/last.ckpt")
    back = RunStatus.read(tmp_path)
    assert back.to_dict() == status.to_dict()
    assert (back.state, back.step, back.reason) == ("finished", 20, None)
    first, second = back.attempts
    assert (first["state"], first["step"], first["reason"]) == ("interrupted", 12, "interrupted by SIGTERM")
    assert (second["state"], second["step"], second["resumed_from"]) == ("finished", 20, "/run/checkpoints/last.ckpt")
    assert second["pid"] == os.getpid() and second["ended_at"] >= second["started_at"]
    assert not list(tmp_path.glob(".*.tmp"))  # written through a renamed temporary file
    with pytest.raises(ValueError, match="state can be interrupted, failed, finished, got 'running'"):
        RunStatus.end(tmp_path, "running", 1)


def test_stale_temporaries_are_those_of_writers_no_longer_running(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    (tmp_path / CHECKPOINTS_DIR).mkdir()
    dead = [tmp_path / CHECKPOINTS_DIR / f".last.ckpt.{gone.pid}.tmp", tmp_path / f".FAILED.{gone.pid}.tmp"]
    alive = [tmp_path / CHECKPOINTS_DIR / f".epoch_001.ckpt.{os.getpid()}.tmp", tmp_path / CHECKPOINTS_DIR / "last.ckpt",
             tmp_path / ".notes.tmp"]
    for path in (*dead, *alive):
        path.write_bytes(b"x")
    assert stale_temporaries(tmp_path) == sorted(dead)
    assert pid_alive(os.getpid()) and not pid_alive(gone.pid)


def test_write_failed_leaves_no_temporary(tmp_path: Path) -> None:
    write_failed(tmp_path, "why\n")
    assert failure_text(tmp_path) == "why\n" and [p.name for p in tmp_path.iterdir()] == [FAILED_FILE]
