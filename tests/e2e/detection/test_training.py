"""experiment=shapes_detection trained for real (once, see conftest): the quality bar, the callbacks and
loggers on a detector, explain.py on the run, resume, fine-tune with the NaN guard, DDP."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from tests.support.detection import DetectionRun, run_script
from PIL import Image

pytestmark = pytest.mark.slow

LIMITS = ("++trainer.limit_train_batches=3", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2")


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))


def test_shapes_detection_reaches_map50_of_0_8(detection_run: DetectionRun) -> None:
    result = detection_run.metrics
    metrics = result["metrics"]
    print(f"experiment=shapes_detection: val/map_50_best {metrics['val/map_50_best']:.3f}, val/map {metrics['val/map']:.3f}, "
          f"test/map_50 {metrics['test/map_50']:.3f} in {result['seconds']:.0f} s")
    assert metrics["val/map_50_best"] >= 0.8, metrics
    assert 0.0 < metrics["val/map"] <= metrics["val/map_50"] <= metrics["val/map_50_best"] <= 1.0
    assert metrics["test/map_50"] >= 0.7 and "test/map" in metrics
    assert result["optimized_metric"] == pytest.approx(metrics["val/map_50_best"])  # experiment: val/map_50_best
    best = Path(result["best_model_path"])
    assert best.name.startswith("epoch_")  # ModelCheckpoint followed model.monitor=val/map_50
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    assert checkpoint["val_map_50_best"] == pytest.approx(metrics["val/map_50_best"])
    monitored = [cb for key, cb in checkpoint["callbacks"].items() if key.startswith("ModelCheckpoint")]
    assert any(cb.get("monitor") == "val/map_50" for cb in monitored)
    early = [cb for key, cb in checkpoint["callbacks"].items() if key.startswith("EarlyStopping")]
    assert early and early[0]["best_score"] > 0.5  # EarlyStopping follows val/map_50 too


def test_callbacks_and_every_logger_on_the_detector(detection_run: DetectionRun) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = detection_run.run_dir
    grids = sorted((run_dir / "images" / "interpretation" / "gradcam").glob("step_*.png"))
    assert len(grids) >= 2, grids  # epoch 0, 4, ... and the end of training
    width, height = Image.open(grids[-1]).size
    assert width > 3 * 128 and height > 8 * 128  # 8 sample rows x (image + 3 detections) of >= 128 px tiles
    rows = _csv_rows(run_dir)
    columns = set(rows[0])
    layers = sorted({c.split("/")[1] for c in columns if c.startswith("features/")})
    assert layers and all(name.startswith("detector.backbone.body.") for name in layers), layers  # "auto" on the backbone
    for key in (f"features/{layers[-1]}/mean", "gram_matrix/centered_effective_rank", "grad_norm/total", "val/map_50"):
        assert any(r.get(key) for r in rows), key
    assert sorted((run_dir / "images" / "gram_matrix").glob("step_*.png"))
    events = EventAccumulator(str(next((run_dir / "tensorboard").rglob("events.out.tfevents.*")).parent),
                              size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "interpretation/gradcam" in events.Tags()["images"] and "val/map_50" in events.Tags()["scalars"]
    media = list(run_dir.rglob("offline-run-*/files/media/images/interpretation/gradcam_*.png"))
    assert media, "no wandb images"
    mlflow = [p for p in run_dir.parent.rglob("*.png") if "artifacts/images/interpretation/gradcam/" in p.as_posix()]
    assert mlflow, "no mlflow images"
    report = (run_dir / "report.html").read_text()
    assert "detection mAP" in report and "val/map_50" in report  # the metric curves
    assert report.count("data:image/png;base64") >= len(grids)  # the explanation grids over training


def test_explain_py_on_the_detection_run(detection_run: DetectionRun, tmp_path: Path) -> None:
    """Per-detection maps, manifest, report with boxes; pointing game on boxes >= 0.8 for GradCAM, beside random."""
    out = tmp_path / "explain"
    res = run_script("explain.py", f"ckpt_path={detection_run.run_dir}", "methods=[gradcam,gradcam++]", "metrics=true",
                     "num_samples=4", f"hydra.run.dir={out}", out_dir=tmp_path / "outputs")
    assert res.returncode == 0, res.output[-4000:]
    assert "Explanation quality" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "detection" and manifest["methods"] == ["gradcam", "gradcam++"]
    images = manifest["images"]
    assert len(images) == 4 and sum(len(i["detections"]) for i in images) >= 4
    for index, image in enumerate(images):
        assert len(image["overlays"]) == 2 * len(image["detections"])  # one map per detection and method
        assert all((out / p).is_file() for p in image["overlays"])
        assert (out / "detections" / f"{index:02d}_{image['name']}.png").is_file()
        for det in image["detections"]:
            assert det["score"] >= 0.5 and det["class"] in manifest["class_names"]
    with __import__("numpy").load(out / "maps.npz") as maps:
        first = maps["map_gradcam_00"]
        assert first.shape == (len(images[0]["detections"]), 64, 64) and first.min() >= 0.0 and first.max() <= 1.0
        assert maps["boxes_00"].shape == (len(images[0]["detections"]), 4)
    table = {(r["method"], r["metric"]): r for r in csv.DictReader((out / "metrics.csv").open())}
    print({k: (round(float(r["mean"]), 3), r["n"]) for k, r in table.items()})
    assert {m for m, _ in table} == {"gradcam", "gradcam++", "random"}
    assert {k for _, k in table} == {"box_pointing_game", "box_pointing_game_tp"}
    every = {m: table[(m, "box_pointing_game")] for m in ("gradcam", "gradcam++", "random")}
    assert int(every["gradcam"]["n"]) >= 200  # every detection over shapes' 200 validation images
    assert int(table[("gradcam", "box_pointing_game_tp")]["n"]) <= int(every["gradcam"]["n"])
    assert float(every["gradcam"]["mean"]) >= 0.8  # the bar (measured 0.89; the random map 0.19)
    assert float(every["gradcam"]["ci_low"]) > float(every["random"]["ci_high"])
    assert float(every["gradcam++"]["ci_low"]) > float(every["random"]["ci_high"])
    report = (out / "report.html").read_text()
    assert "box_pointing_game" in report and report.count("data:image/png;base64") >= 1 + len(images)


def test_resume_continues_the_detection_run(detection_run: DetectionRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "resumed"
    shutil.copytree(detection_run.run_dir, run_dir, ignore=shutil.ignore_patterns("wandb", "tensorboard"))
    epochs = 1 + max(int(r["epoch"]) for r in _csv_rows(run_dir) if r.get("val/map_50"))  # trained (early stopping may end it)
    before = detection_run.metrics["metrics"]["val/map_50_best"]
    res = run_script("run.py", "experiment=shapes_detection", "ckpt_path=last", f"trainer.max_epochs={epochs + 1}",
                     "print_config=false", f"hydra.run.dir={run_dir}", *LIMITS, out_dir=tmp_path / "outputs")
    assert res.returncode == 0, res.output[-4000:]
    assert "Restoring states from the checkpoint" in res.output
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert metrics["val/map_50_best"] >= before  # the best of the whole run, kept in the checkpoint
    logged_epochs = {int(r["epoch"]) for r in _csv_rows(run_dir) if r.get("val/map_50")}
    assert logged_epochs == set(range(epochs + 1)), logged_epochs  # the earlier epochs kept, one appended


def test_fine_tune_from_the_detector_and_the_nan_guard(detection_run: DetectionRun, tmp_path: Path) -> None:
    """Weights of the trained detector load (head and all); lr=1e12 then makes the loss NaN: stopped, exit 1."""
    run_dir = tmp_path / "nan"
    best = detection_run.metrics["best_model_path"]
    res = run_script("run.py", "experiment=shapes_detection", "model.pretrained=true", f"model.weights_path={best}",
                     "model.optimizer.lr=1e12", "callbacks=all", "trainer.max_epochs=2", "print_config=false",
                     f"hydra.run.dir={run_dir}", *LIMITS, out_dir=tmp_path / "outputs")
    assert "Loaded" in res.output and "tensors of the detector" in res.output, res.output[-4000:]
    assert res.returncode == 1, res.output[-4000:]
    assert "TerminateOnNaN" in res.output and not (run_dir / "metrics.json").exists()
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path


def test_detection_under_ddp_with_every_callback(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    res = run_script("run.py", "experiment=shapes_detection", "trainer=ddp_cpu", "callbacks=all", "trainer.max_epochs=1",
                     "data.num_train=64", "data.num_val=32", "data.num_test=32", "callbacks.interpretation.num_samples=2",
                     "callbacks.gram_matrix.log_every_n_steps=1", "print_config=false", f"hydra.run.dir={run_dir}",
                     out_dir=tmp_path / "outputs")
    assert res.returncode == 0, res.output[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert {"val/map", "val/map_50", "val/map_50_best", "test/map", "test/map_50"} <= set(metrics)
    assert all(math.isfinite(metrics[k]) for k in ("val/map_50", "test/map_50"))
    rows = _csv_rows(run_dir)
    assert any(k.startswith("features/detector.backbone.body.") and v for r in rows for k, v in r.items())
    assert any(r.get("gram_matrix/centered_effective_rank") for r in rows)
    assert list((run_dir / "images" / "interpretation" / "gradcam").glob("step_*.png"))
