"""The one image-logging path: every logger gets the image, and a PNG is always written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.image_logging import image_path, log_image, log_scalars, to_uint8_hwc
from interpret import make_grid
from tests.support.callback_fits import mlflow_images, read_tensorboard_images, read_tensorboard_scalars, wandb_images


@pytest.mark.slow
def test_every_logger_gets_the_image_and_the_png_is_always_written(trainer_factory, tmp_path: Path) -> None:
    trainer = trainer_factory([], logger=["csv", "tensorboard", "wandb", "mlflow"])
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15, 0] = 255
    path = log_image(trainer, "interpretation/gradcam++", image, step=7, caption="a caption")
    log_scalars(trainer, {"gram_matrix/mean_offdiag": 0.5}, step=7)
    for logger in trainer.loggers:
        logger.finalize("success")
    import wandb

    wandb.finish()

    assert path == tmp_path / "images" / "interpretation" / "gradcam++" / "step_000007.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)

    tb = read_tensorboard_images(tmp_path / "tb", "interpretation/gradcam++")
    assert len(tb) == 1 and tb[0].shape[:2] == (20, 30)
    assert read_tensorboard_scalars(tmp_path / "tb", "gram_matrix/mean_offdiag") == [(7, 0.5)]

    wb = wandb_images(tmp_path, "interpretation/gradcam++")
    assert len(wb) == 1
    np.testing.assert_array_equal(np.asarray(Image.open(wb[0]).convert("RGB")), image)

    ml = mlflow_images(tmp_path / "mlartifacts", "interpretation/gradcam++")
    assert [p.name for p in ml] == ["step_000007.png"]

    csv = list((tmp_path / "csv").rglob("metrics.csv"))
    assert csv and "gram_matrix/mean_offdiag" in csv[0].read_text()
    assert float(trainer.callback_metrics["gram_matrix/mean_offdiag"]) == 0.5


def test_without_logger_only_the_png(trainer_factory, tmp_path: Path) -> None:
    trainer = trainer_factory([], logger="none")
    path = log_image(trainer, "gram_matrix", np.ones((4, 4, 3), np.float32))
    assert path == tmp_path / "images" / "gram_matrix" / "step_000000.png"
    assert np.asarray(Image.open(path)).min() == 255


def test_images_of_successive_plain_runs_never_overwrite_each_other(tmp_path: Path, monkeypatch) -> None:
    """Issue 22: without default_root_dir every run wrote ./images/; now each goes to its logger's
    version directory (beside Lightning's checkpoints); a given default_root_dir is kept (run.py)."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from callbacks.image_logging import images_root

    monkeypatch.chdir(tmp_path)
    paths = []
    for _ in range(2):
        trainer = pl.Trainer(accelerator="cpu", logger=TensorBoardLogger("."), enable_progress_bar=False)
        paths.append(log_image(trainer, "gram_matrix", np.zeros((4, 4, 3), np.uint8)))
    assert [p.relative_to(tmp_path.resolve()) if p.is_absolute() else p for p in paths] == [
        Path("lightning_logs/version_0/images/gram_matrix/step_000000.png"),
        Path("lightning_logs/version_1/images/gram_matrix/step_000000.png"),
    ]
    assert all(p.is_file() for p in paths)
    unversioned = pl.Trainer(accelerator="cpu", logger=CSVLogger(str(tmp_path / "run"), name="csv", version=""),
                             default_root_dir=str(tmp_path / "run"), enable_progress_bar=False)
    assert images_root(unversioned) == tmp_path / "run" / "images"  # run.py's layout
    assert images_root(pl.Trainer(accelerator="cpu", logger=False)) == Path(tmp_path.resolve(), "images")


def test_image_path_keeps_keys_inside_the_images_folder(trainer_factory, tmp_path: Path) -> None:
    trainer = trainer_factory([], logger="none")
    assert image_path(trainer, "../a b/c", 12) == tmp_path / "images" / "a_b" / "c" / "step_000012.png"
    with pytest.raises(ValueError, match="key"):
        image_path(trainer, "/", 0)


def test_to_uint8_hwc_accepts_every_image_form() -> None:
    chw = torch.rand(3, 10, 12)
    out = to_uint8_hwc(chw)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert to_uint8_hwc(np.zeros((10, 12), np.float32)).shape == (10, 12, 3)
    assert to_uint8_hwc(Image.new("L", (12, 10))).shape == (10, 12, 3)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50)
    assert to_uint8_hwc(fig).shape == (50, 100, 3)
    with pytest.raises(TypeError, match="PIL image"):
        to_uint8_hwc("not an image")
    with pytest.raises(ValueError, match="channels"):
        to_uint8_hwc(np.zeros((5, 5, 7)))


def test_make_grid_upscales_and_captions() -> None:
    tiles = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(8)]
    grid = make_grid(tiles, [["true: 1", "pred: 1 (0.90)"]] * 8, title="gradcam", ncols=4, min_tile=128)
    assert grid.shape[1] >= 4 * 128 and grid.shape[0] >= 2 * 128
    # the tiles are there: the 8th tile's colour appears
    assert (grid == 140).all(axis=-1).any()
