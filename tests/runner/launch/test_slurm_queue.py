"""squeue parsing and the job states the SLURM launcher acts on, without a SLURM cluster."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from runner.launch import slurm_queue
from runner.launch.slurm_queue import JobState, parse_squeue, query_states

SQUEUE = """\
12_0|RUNNING|None|2026-01-02T10:00:00
12_1|PENDING|Resources|N/A
13|PENDING|PartitionConfig|N/A
14|CANCELLED by 0|None|2026-01-02T09:00:00
  15|COMPLETED|None|2026-01-02T08:00:00
garbage line
16|RUNNING|None
"""


def test_parse_squeue_reads_every_well_formed_line() -> None:
    jobs = parse_squeue(SQUEUE)
    assert set(jobs) == {"12_0", "12_1", "13", "14", "15"}
    assert jobs["12_0"] == JobState("12_0", "RUNNING", "None", "2026-01-02T10:00:00")
    assert jobs["12_1"].reason == "Resources" and jobs["12_1"].start == "N/A"
    assert jobs["14"].state == "CANCELLED"  # "CANCELLED by <uid>" keeps its first word
    assert jobs["15"].state == "COMPLETED"


def test_parse_squeue_of_nothing() -> None:
    assert parse_squeue("") == {}
    assert parse_squeue("\n\n") == {}


def test_active_and_never_starts() -> None:
    jobs = parse_squeue(SQUEUE)
    assert jobs["12_0"].active and jobs["12_1"].active and jobs["13"].active
    assert not jobs["14"].active and not jobs["15"].active
    assert jobs["13"].never_starts
    assert not jobs["12_1"].never_starts  # waiting for resources: it will start
    assert not JobState("1", "RUNNING", "PartitionConfig").never_starts  # only a pending job never starts


class _Squeue:
    """Stands in for ``subprocess.run``: records the command and answers like squeue."""

    def __init__(self, stdout: str = "", stderr: str = "", returncode: int = 0) -> None:
        self.result = subprocess.CompletedProcess([], returncode, stdout, stderr)
        self.cmd: list[str] = []

    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        self.cmd = cmd
        return self.result


def test_query_states_asks_for_the_master_jobs_and_keeps_the_asked_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Squeue(SQUEUE)
    monkeypatch.setattr(slurm_queue.subprocess, "run", fake)
    states = query_states(["12_0", "12_1", "13", "99"])
    assert set(states) == {"12_0", "12_1", "13"}  # 99 is not listed, 14 and 15 were not asked for
    assert fake.cmd[0] == "squeue" and fake.cmd[-2:] == ["--jobs", "12,13,99"]
    assert "--states=all" in fake.cmd and "--array" in fake.cmd


def test_query_states_of_purged_jobs_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Squeue(stderr="slurm_load_jobs error: Invalid job id specified", returncode=1)
    monkeypatch.setattr(slurm_queue.subprocess, "run", fake)
    assert query_states(["12"]) == {}


def test_query_states_failure_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm_queue.subprocess, "run", _Squeue(stderr="Unable to contact slurm controller", returncode=1))
    with pytest.raises(RuntimeError, match="squeue failed: Unable to contact slurm controller"):
        query_states(["12"])

    def missing(cmd: list[str], **kwargs: Any) -> None:
        raise FileNotFoundError("squeue")

    monkeypatch.setattr(slurm_queue.subprocess, "run", missing)
    with pytest.raises(RuntimeError, match="squeue failed"):
        query_states(["12"])
