"""The report's one status of a run directory (runner.report.readers.read_status): status.json, else the older files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from runner.artifacts import RunStatus
from runner.report.readers import read_result, read_status


def test_status_json_wins_over_a_stale_failed_marker(tmp_path: Path) -> None:
    (tmp_path / "FAILED").write_text("Traceback ...\nRuntimeError: truncated last.ckpt\n")
    RunStatus.begin(tmp_path)
    RunStatus.end(tmp_path, "finished", 20)
    state = read_status(tmp_path, read_result(tmp_path))
    assert (state.state, state.step, len(state.attempts)) == ("finished", 20, 1)


def test_a_running_attempt_whose_process_is_gone_was_killed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    RunStatus.begin(tmp_path)
    data = json.loads((tmp_path / "status.json").read_text())
    data["attempts"][-1].update(pid=gone.pid, host=socket.gethostname())
    (tmp_path / "status.json").write_text(json.dumps(data))
    state = read_status(tmp_path)
    assert state.state == "interrupted" and f"({gone.pid}) ended without a record" in state.reason
    RunStatus.begin(tmp_path)  # this process: still running
    assert read_status(tmp_path).state == "running"


def test_older_directories_are_read_from_their_files(tmp_path: Path) -> None:
    assert read_status(tmp_path).state == "unknown"
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok", "metrics": {"val/acc": 0.5}}))
    assert read_status(tmp_path, read_result(tmp_path)).state == "finished"
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "FAILED").write_text("Traceback ...\nValueError: no_such_net\n")
    state = read_status(failed, read_result(failed))
    assert (state.state, state.reason) == ("failed", "ValueError: no_such_net")
    (failed / "job_result.json").write_text(json.dumps({"status": "failed", "error": "ValueError: x"}))
    assert read_status(failed, read_result(failed)).reason == "ValueError: x"
