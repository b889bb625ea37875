"""The one path every callback uses to write an image (and scalars) to every attached logger.

:func:`log_image` writes one image to each logger the trainer has:

- :class:`~lightning.pytorch.loggers.TensorBoardLogger`: ``SummaryWriter.add_image`` (HWC, uint8);
- :class:`~lightning.pytorch.loggers.WandbLogger`: ``log_image`` (offline runs keep it under
  ``wandb/offline-run-*/files/media/images/``);
- :class:`~lightning.pytorch.loggers.MLFlowLogger`: the PNG as a run artifact under ``images/{key}/``;
- any other logger (CSV, custom) and no logger at all: nothing beyond the PNG below;

and **always** a PNG at ``{run dir}/images/{key}/step_{global_step:06d}.png``, so results can be
seen without any logger. The run dir (:func:`images_root`) is the trainer's ``default_root_dir`` when
one was given (``run.py`` gives each run its own), else the first logger's version directory
(``lightning_logs/version_N/``, where Lightning puts the checkpoints), so successive runs of a
plain Lightning project never overwrite each other's images. Only global rank zero writes anything; the function does no
collective communication, so calling it on every rank (or only on rank zero) never hangs a run.

:func:`log_scalars` sends scalars straight to every logger at an exact step (used by callbacks
that log on their own schedule, which ``LightningModule.log`` would only flush every
``Trainer(log_every_n_steps=...)`` steps).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image

__all__ = ["image_path", "images_root", "load_font", "log_image", "log_scalars", "to_uint8_hwc"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-=]")


def to_uint8_hwc(image: Any) -> np.ndarray:
    """Convert an image to an ``(H, W, 3)`` or ``(H, W, 4)`` uint8 array.

    Args:
        image: a PIL image, a matplotlib ``Figure``, or an array/tensor shaped ``(H, W)``,
            ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4; floats are taken to lie in [0, 1].

    Returns:
        A contiguous uint8 array with 3 (RGB) or 4 (RGBA) channels.

    Raises:
        TypeError: for an object that is none of the above.
        ValueError: for an array of another rank or channel count.
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGB")
        return np.ascontiguousarray(np.asarray(image))
    if _is_figure(image):
        return _render_figure(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu", torch.float32 if image.is_floating_point() else image.dtype).numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "image must be a PIL image, a matplotlib Figure, a numpy array or a torch tensor, "
            f"got {type(image).__name__}"
        )
    arr = image
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"image array must have shape (H, W), (H, W, C) or (C, H, W), got {tuple(image.shape)}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must have 1, 3 or 4 channels, got shape {tuple(image.shape)}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def images_root(trainer: pl.Trainer) -> Path:
    """The ``images/`` folder of this run.

    ``{default_root_dir}/images`` when the trainer was given a ``default_root_dir`` (one that is not
    the working directory, Lightning's default), has no logger or an unversioned one (``version=""``,
    as ``run.py``'s); else ``images/`` in the first
    logger's version directory, the folder Lightning's ``ModelCheckpoint`` saves into
    (``{save_dir}/{name}/version_N``; a TensorBoard or CSV logger's ``log_dir``).
    """
    root = Path(trainer.default_root_dir)
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is not None and os.path.abspath(root) == os.path.abspath(os.getcwd()):
        version = logger.version
        log_dir = getattr(logger, "log_dir", None)
        if version in (None, ""):  # an unversioned logger: the directory is the user's run directory
            pass
        elif isinstance(log_dir, str | os.PathLike):
            root = Path(log_dir)
        else:
            version = version if isinstance(version, str) else f"version_{version}"
            root = Path(logger.save_dir or root, str(logger.name or ""), version)
    return root / "images"


def image_path(trainer: pl.Trainer, key: str, step: int) -> Path:
    """Where :func:`log_image` writes the PNG for ``key`` at ``step``.

    ``{images_root(trainer)}/{key}/step_{step:06d}.png``; each ``/``-separated part of the key
    becomes a folder, characters outside ``[A-Za-z0-9_.+-=]`` become ``_``.
    """
    parts = [_UNSAFE.sub("_", p) for p in key.split("/") if p and p not in (".", "..")]
    if not parts:
        raise ValueError(f"image key must name at least one path part, got {key!r}")
    return Path(images_root(trainer), *parts, f"step_{step:06d}.png")


def log_image(
    trainer: pl.Trainer,
    key: str,
    image: Any,
    step: int | None = None,
    caption: str | None = None,
) -> Path | None:
    """Write one image to every logger attached to ``trainer`` and to a PNG under the run dir.

    Args:
        trainer: the running trainer (its ``loggers``, run directory (:func:`images_root`) and ``global_step``).
        key: the image's name, e.g. ``"interpretation/gradcam"``; also its folder under ``images/``.
        image: anything :func:`to_uint8_hwc` takes (PIL image, matplotlib Figure, array, tensor).
        step: the step to log at; ``trainer.global_step`` when None.
        caption: an optional caption (W&B shows it; the others ignore it).

    Returns:
        The PNG's path on global rank zero, None on the other ranks.
    """
    if not trainer.is_global_zero:
        return None
    step = int(trainer.global_step if step is None else step)
    array = to_uint8_hwc(image)
    path = image_path(trainer, key, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)  # fast; these are previews

    for logger in trainer.loggers:
        try:
            _log_to(logger, key, array, path, step, caption)
        except Exception as err:  # a broken logger must not lose the image elsewhere, nor stop training
            log.warning("Could not log image %r to %s: %s", key, type(logger).__name__, err)
    return path


def log_scalars(trainer: pl.Trainer, metrics: Mapping[str, float | torch.Tensor], step: int | None = None) -> None:
    """Send scalars to every attached logger at ``step`` (``trainer.global_step`` when None).

    Global rank zero only, no collectives. The values are also put into
    ``trainer.callback_metrics`` so that checkpointing/early stopping and tests can see them.
    """
    if not metrics:
        return
    values = {k: float(v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
    for k, v in values.items():
        trainer.callback_metrics[k] = torch.tensor(v)
    if not trainer.is_global_zero:
        return
    step = int(trainer.global_step if step is None else step)
    for logger in trainer.loggers:
        logger.log_metrics(values, step=step)


def load_font(size: int) -> Any:
    """PIL's built-in font at ``size`` pixels: :func:`interpret.render.load_font`, the one font helper."""
    from interpret.render import load_font as _load_font

    return _load_font(size)


# ----------------------------------------------------------------------------- helpers
def _log_to(logger: Any, key: str, array: np.ndarray, path: Path, step: int, caption: str | None) -> None:
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(key, array, global_step=step, dataformats="HWC")
    elif isinstance(logger, WandbLogger):
        kwargs = {"caption": [caption]} if caption else {}
        logger.log_image(key=key, images=[array], step=step, **kwargs)
    elif isinstance(logger, MLFlowLogger):
        rel = path.parent.relative_to(_images_root(path, key))
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=(Path("images") / rel).as_posix())


def _images_root(path: Path, key: str) -> Path:
    """The ``images/`` folder that ``path`` (written by :func:`image_path`) lies in."""
    depth = len([p for p in key.split("/") if p and p not in (".", "..")])
    return path.parents[depth]


def _is_figure(obj: Any) -> bool:
    return type(obj).__name__ in ("Figure", "SubFigure") and hasattr(obj, "canvas")


def _render_figure(fig: Any) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])
