"""The sweep's job records and the table MultirunSummary prints and saves after a multirun."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runner.artifacts import JOB_RESULT_FILE, JobResult
from runner.launch.multirun import MultirunSummary

Compose = Callable[..., DictConfig]

def test_job_results_round_trip(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    results = {
        10: {"job_num": 10, "overrides": ["seed=10"], "status": "ok", "optimized_metric": 0.5},
        2: {"job_num": 2, "overrides": ["seed=2"], "status": "failed", "optimized_metric": math.nan},
        0: {"job_num": 0, "overrides": ["seed=0"], "status": "ok", "optimized_metric": 0.9, "metrics": {"a": 1.0}},
    }
    for num, result in results.items():
        (sweep / str(num)).mkdir(parents=True)
        JobResult.from_dict(result).write(sweep / str(num))
    assert not list(sweep.rglob("*.tmp"))
    assert json.loads((sweep / "0" / JOB_RESULT_FILE).read_text())["metrics"] == {"a": 1.0}
    (sweep / "broken").mkdir()
    (sweep / "broken" / JOB_RESULT_FILE).write_text("{not json")
    back = [r.to_dict() for r in JobResult.read_all(sweep)]
    assert [r["job_num"] for r in back] == [0, 2, 10]
    assert back[0] == results[0] and back[2] == results[10]
    assert math.isnan(back[1]["optimized_metric"])
    assert JobResult.read_all(tmp_path / "empty") == []


def test_multirun_summary_writes_csv(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "multirun"
    cfg = compose_cfg(f"hydra.sweep.dir={sweep}")
    for num, value, status in ((1, 0.25, "ok"), (0, 0.875, "ok"), (2, math.nan, "failed")):
        (sweep / str(num)).mkdir(parents=True)
        JobResult.from_dict({"job_num": num, "overrides": [f"data.batch_size={32 * (num + 1)}", "seed=1"],
                             "status": status, "optimized_metric": value,
                             "output_dir": str(sweep / str(num))}).write(sweep / str(num))
    MultirunSummary().on_multirun_end(config=cfg)
    with open(sweep / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["overrides"] == "data.batch_size=32 seed=1"
    assert rows[0][cfg.optimized_metric] == "0.8750"
    assert rows[2]["status"] == "failed" and rows[2][cfg.optimized_metric] == "nan"
    assert rows[1]["output_dir"] == str(sweep / "1")
    out = capsys.readouterr().out
    assert "data.batch_size=64" in out and "0.8750" in out


def test_multirun_summary_without_results_writes_nothing(compose_cfg: Compose, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun_empty"
    sweep.mkdir()
    MultirunSummary().on_multirun_end(config=compose_cfg(f"hydra.sweep.dir={sweep}"))
    assert not (sweep / "summary.csv").exists()


def test_multirun_summary_is_the_hydra_callback(compose_cfg: Compose) -> None:
    cfg = compose_cfg()
    targets = [node._target_ for node in cfg.hydra.callbacks.values()]
    assert "runner.launch.multirun.MultirunSummary" in targets
    assert isinstance(hydra.utils.instantiate(cfg.hydra.callbacks.multirun_summary), MultirunSummary)
