"""Reading run and sweep directories for the reports (``runner/report/readers.py``) and grouping their curves."""

from __future__ import annotations

import json
from pathlib import Path

from runner.report.readers import epoch_of_step, failure_reason, image_series, read_result, read_scalars, read_sweep
from runner.report.run_page import curve_groups


def test_scalars_come_from_the_csv_logger(tmp_path: Path) -> None:
    path = tmp_path / "csv" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text("epoch,step,train/loss\n0,4,2.0\n")
    series, source = read_scalars(tmp_path)
    assert series == {"epoch": [(4.0, 0.0)], "train/loss": [(4.0, 2.0)]} and source == "csv/version_0/metrics.csv"


def test_an_image_at_the_end_of_an_epoch_belongs_to_that_epoch() -> None:
    series = {"epoch": [(4.0, 0.0), (9.0, 1.0)]}
    assert (epoch_of_step(series, 5), epoch_of_step(series, 10), epoch_of_step(series, 1)) == (0, 1, 0)
    assert epoch_of_step({}, 3) is None


def test_image_series_by_key_in_step_order(tmp_path: Path) -> None:
    for name in ("interpretation/gradcam/step_000010.png", "interpretation/gradcam/step_000005.png",
                 "gram_matrix/step_000002.png", "gram_matrix/not_a_step.png"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"")
    found = image_series(tmp_path)
    assert list(found) == ["gram_matrix", "interpretation/gradcam"]
    assert [step for step, _ in found["interpretation/gradcam"]] == [5, 10]


def test_a_failed_run_says_why(tmp_path: Path) -> None:
    (tmp_path / "FAILED").write_text("Traceback ...\n  line\nValueError: no_such_net\n\n")
    assert read_result(tmp_path) is None
    assert failure_reason(tmp_path, None) == "ValueError: no_such_net"
    (tmp_path / "job_result.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    assert failure_reason(tmp_path, read_result(tmp_path)) == "boom"


def test_sweep_jobs_with_their_status_and_values(tmp_path: Path) -> None:
    (tmp_path / "multirun.yaml").write_text("optimized_metric: val/acc\nhydra:\n  sweeper:\n    direction: minimize\n")
    for num, status in enumerate(("ok", "failed")):
        (tmp_path / str(num)).mkdir()
        (tmp_path / str(num) / "job_result.json").write_text(json.dumps(
            {"job_num": num, "overrides": [f"+lr={num}"], "status": status, "optimized_metric": 0.5 if num == 0 else None}))
    (tmp_path / "2").mkdir()  # a job that never wrote anything
    metric, direction, jobs = read_sweep(tmp_path)
    assert (metric, direction) == ("val/acc", "minimize")
    assert [(j.num, j.status, j.param("lr")) for j in jobs] == [
        (0, "ok", "0"), (1, "failed", "1"), ("2", "no result (crashed or running)", "")]
    assert jobs[0].value == 0.5 and jobs[1].value != jobs[1].value  # nan


def test_every_train_and_val_metric_gets_a_curve_grouped_by_name() -> None:
    pts = [(0.0, 1.0), (1.0, 2.0)]
    series = {k: pts for k in ("train/loss", "train/loss_step", "train/loss_epoch", "val/loss", "val/map_50",
                               "val/map_50_best", "train/acc", "test/acc", "grad_norm/total", "epoch")}
    groups = curve_groups(series)
    assert list(groups) == ["loss", "acc", "map_50"]
    assert list(groups["loss"]) == ["train/loss_step", "train/loss_epoch", "val/loss"]
    assert list(groups["map_50"]) == ["val/map_50", "val/map_50_best"]
