"""``python explain.py``, run for real: a tiny training run on data=shapes, then explain.py subprocesses on it."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.paths import REPO

TIMEOUT_S = 600
RUN_NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
# few steps everywhere: the point is the pipeline, not the quality of the maps
FAST = (
    "method_kwargs.integrated_gradients.steps=4",
    "metric_kwargs.n_steps=4",
    "metric_kwargs.n_samples=2",
    "metric_kwargs.n_bootstrap=50",
)


def _run(script: str, args: list[str], out_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["RUNNER_OUTPUT_DIR"] = str(out_dir)
    return subprocess.run(
        [sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _explain(args: list[str], out_dir: Path) -> subprocess.CompletedProcess:
    return _run("explain.py", args, out_dir)


def _only_run(out_dir: Path) -> Path:
    runs = [p for p in (out_dir / "explain").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real (tiny) training run on data=shapes: its run directory.

    Its normalisation is not the model's (ImageNet) default, so explain.py must take it from the run.
    """
    out = tmp_path_factory.mktemp("train_outputs")
    proc = _run(
        "run.py",
        [
            "data=shapes", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]", "data.num_train=64", "data.num_val=16", "data.num_test=16", "data.batch_size=16",
            "trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
            "++trainer.limit_test_batches=1", "logger=none", "callbacks.rich_progress_bar=null", "print_config=false",
        ],
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = list((out / "train" / "runs").iterdir())
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir


def _best_ckpt(run_dir: Path) -> Path:
    (best,) = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    return best


# ------------------------------------------------------------------ real subprocesses
@pytest.mark.slow
def test_run_dir_samples_with_masks_metrics_and_features(trained_run: Path, tmp_path: Path) -> None:
    proc = _explain(
        [f"ckpt_path={trained_run}", "num_samples=4", "batch_size=3", "metrics=true", "features=[backbone.layer2]",
         *FAST],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = _only_run(tmp_path)
    best = _best_ckpt(trained_run)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["path"] == str(best)  # the best checkpoint of the run, not last.ckpt
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert manifest["checkpoint"]["config"].endswith(".hydra/config.yaml")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert manifest["git_commit"] == (commit.stdout.strip() if commit.returncode == 0 else None)
    for package in ("torch", "timm", "lightning", "vision-runner"):
        assert manifest["versions"][package], package
    assert manifest["seed"] == 42 and manifest["device"] == "cpu"
    assert manifest["normalization"] == RUN_NORMALIZATION  # the run's data.mean/std, not ImageNet's
    assert set(manifest["runtime_s"]) == {"gradcam", "gradcam++", "integrated_gradients"}
    assert all(v > 0 for v in manifest["runtime_s"].values())
    assert manifest["masks"] is True and manifest["class_names"] == ["circle", "square", "triangle", "cross"]
    assert [i["source"] for i in manifest["images"]] == ["sample"] * 4
    assert all(i["label"] in range(4) for i in manifest["images"])

    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert len(overlays) == 4 * 3 and "00_sample_00_gradcampp.png" in overlays
    assert Image.open(out / "grid.png").size[0] > 4 * 128  # 4 columns of upscaled tiles
    maps = np.load(out / "maps.npz")
    for key in ("map_gradcam", "map_gradcampp", "map_integrated_gradients"):
        assert maps[key].shape == (4, 32, 32) and 0.0 <= maps[key].min() and maps[key].max() <= 1.0
    assert maps["masks"].shape == (4, 32, 32) and list(maps["methods"]) == manifest["methods"]

    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["method", "metric", "direction", "mean", "ci_low", "ci_high", "n", "excluded", "baseline"]
    assert {r["method"] for r in rows} == {"gradcam", "gradcam++", "integrated_gradients", "random", "centre_gaussian"}
    assert {r["metric"] for r in rows} == {"deletion", "insertion", "max_sensitivity", "pointing_game",
                                           "energy_in_mask", "iou"}  # masks: localisation scored too
    assert "Explanation quality" in proc.stdout and "deletion ↓" in proc.stdout  # the rich table

    features = sorted((out / "features").iterdir())
    assert len(features) == 4 and all(Image.open(p).size[0] > 0 for p in features)
    assert manifest["features"] == [str(p.relative_to(out)) for p in features]


@pytest.mark.slow
def test_ckpt_file_with_images_of_other_sizes_and_modes(trained_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.fromarray(rng.integers(0, 255, (70, 50), dtype=np.uint8), "L").save(pictures / "grey.png")
    Image.fromarray(rng.integers(0, 255, (40, 90, 3), dtype=np.uint8)).save(pictures / "wide.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA").save(pictures / "alpha.png")
    last = trained_run / "checkpoints" / "last.ckpt"
    files = [pictures / "grey.png", pictures / "wide.jpg", pictures / "alpha.png"]
    proc = _explain(
        [f"ckpt_path={last}", f"images=[{','.join(map(str, files))}]", "methods=[gradcam,saliency]", *FAST],
        tmp_path / "out",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = _only_run(tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["path"] == str(last)
    assert [i["source"] for i in manifest["images"]] == [str(f) for f in files]
    assert all(i["label"] is None for i in manifest["images"]) and manifest["masks"] is False
    # overlays on the pictures as they are; maps at the size the model saw
    assert Image.open(out / "overlays" / "00_grey_gradcam.png").size == (50, 70)
    assert Image.open(out / "overlays" / "01_wide_saliency.png").size == (90, 40)
    assert Image.open(out / "overlays" / "02_alpha_gradcam.png").size == (20, 20)
    maps = np.load(out / "maps.npz")
    assert maps["map_gradcam"].shape == (3, 32, 32) and maps["map_saliency"].shape == (3, 32, 32)
    assert "masks" not in maps.files
    assert not (out / "metrics.csv").exists() and manifest["metrics"] is None
    assert (out / "grid.png").is_file()


@pytest.mark.slow
def test_checkpoint_outside_its_run_directory(trained_run: Path, tmp_path: Path) -> None:
    """No saved config next to it: the model is rebuilt from the checkpoint's own hyperparameters."""
    alone = tmp_path / "alone" / "model.ckpt"
    alone.parent.mkdir()
    shutil.copy2(_best_ckpt(trained_run), alone)
    picture = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture)
    proc = _explain([f"ckpt_path={alone}", f"images=[{picture}]", "methods=[gradcam]"], tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = _only_run(tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["config"] is None and manifest["input_size"] == [32, 32]
    assert manifest["normalization"] == RUN_NORMALIZATION  # the datamodule state saved in the checkpoint
    assert np.load(out / "maps.npz")["map_gradcam"].shape == (1, 32, 32)
    # without images there is nothing to explain: said in one line
    proc = _explain([f"ckpt_path={alone}", "methods=[gradcam]"], tmp_path / "out2")
    assert proc.returncode == 1 and "images is empty" in proc.stderr
    assert not (tmp_path / "out2" / "explain").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_checkpoint", "ckpt_path: no such checkpoint file or run directory"),
        ("unreadable_image", "images: '{bad}' is not a readable image"),
        ("missing_image", "images: no such image file"),
        ("unknown_method", "methods: unknown method 'gradcm'; available: gradcam, gradcam++"),
    ],
)
def test_bad_input_exits_1_with_one_line_and_no_directory(trained_run: Path, tmp_path: Path, case: str, message: str) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    args = {
        "missing_checkpoint": [f"ckpt_path={tmp_path / 'nope'}"],
        "unreadable_image": [f"ckpt_path={trained_run}", f"images=[{bad}]"],
        "missing_image": [f"ckpt_path={trained_run}", f"images=[{tmp_path / 'missing.png'}]"],
        "unknown_method": [f"ckpt_path={trained_run}", "methods=[gradcam,gradcm]"],
    }[case]
    out = tmp_path / "out"
    proc = _explain(args, out)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout + proc.stderr  # nothing but the error line, on stderr
    assert proc.stderr.strip() == lines[0]
    assert lines[0].startswith("Error: ") and message.format(bad=bad) in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (out / "explain").exists() or not any((out / "explain").iterdir())


def test_help_is_quick_and_about_explain(tmp_path: Path) -> None:
    proc = _explain(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "python explain.py ckpt_path=<run dir or .ckpt>" in proc.stdout and "methods:" in proc.stdout
    assert "hparams_search" not in proc.stdout  # run.py's groups are not explain.py's keys
    assert not (tmp_path / "explain").exists()
