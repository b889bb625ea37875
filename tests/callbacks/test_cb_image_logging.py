"""The one image-logging path: every logger gets the image, and a PNG is always written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from callbacks.image_logging import image_path, log_image, log_scalars


def read_tensorboard_images(root: Path, key: str) -> list[np.ndarray]:
    """Decode every image logged under ``key`` in the TensorBoard event files below ``root``."""
    import io

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for events in root.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"images": 0})
        acc.Reload()
        if key in acc.Tags()["images"]:
            out += [np.asarray(Image.open(io.BytesIO(e.encoded_image_string))) for e in acc.Images(key)]
    return out


def read_tensorboard_scalars(root: Path, key: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for events in root.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        if key in acc.Tags()["scalars"]:
            out += [(e.step, e.value) for e in acc.Scalars(key)]
    return out


def wandb_images(root: Path, key: str) -> list[Path]:
    """PNG files of an offline wandb run for ``key`` (wandb turns '/' into folders)."""
    media = list(root.rglob("offline-run-*/files/media/images"))
    found: list[Path] = []
    for folder in media:
        found += [p for p in folder.rglob("*.png") if p.relative_to(folder).as_posix().startswith(key + "_")]
    return found


def mlflow_images(root: Path, key: str) -> list[Path]:
    """PNGs in the mlflow artifact store below ``root`` under ``images/{key}/``."""
    return [p for p in root.rglob("*.png") if f"artifacts/images/{key}/" in p.as_posix()]


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


def test_image_path_keeps_keys_inside_the_images_folder(trainer_factory, tmp_path: Path) -> None:
    trainer = trainer_factory([], logger="none")
    assert image_path(trainer, "../a b/c", 12) == tmp_path / "images" / "a_b" / "c" / "step_000012.png"
    with pytest.raises(ValueError, match="key"):
        image_path(trainer, "/", 0)
