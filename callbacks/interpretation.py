"""InterpretationCallback: log a captioned grid of explanation heatmaps of fixed sample images.

When to explain and what to log lives here; how to explain lives in :mod:`interpret`
(``interpret.get_explainer`` and ``interpret.overlay_heatmap``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from PIL import Image, ImageDraw
from torch import Tensor, nn
from typing_extensions import override

from callbacks.image_logging import load_font, log_image, to_uint8_hwc
from interpret import preserve_model_state

__all__ = ["InterpretationCallback", "load_image_files", "preserved_state", "render_grid"]

log = logging.getLogger(__name__)

_TILE_MIN = 128  # tiles are upscaled (nearest) to at least this many pixels so captions stay readable


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run a block, then put back exactly what it may change: every module's ``training`` flag,
    every parameter's ``requires_grad`` and ``.grad`` (the same tensor object) and the torch (CPU
    and CUDA), numpy and python RNG states; on success and on exception.

    The model is put in eval mode inside the block (no BatchNorm statistics updates, no dropout).
    """
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    np_rng = np.random.get_state()
    py_rng = random.getstate()
    try:
        with preserve_model_state(model, eval_mode=True, freeze_params=False):
            yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)


def load_image_files(
    paths: Sequence[str | os.PathLike[str]],
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    base_dir: str | os.PathLike[str] | None = None,
) -> Tensor:
    """Load image files as one normalised batch ``(N, C, H, W)`` at ``image_size``.

    Relative paths resolve against ``base_dir`` (default: the current directory). ``C`` is
    ``len(mean)`` (1: grayscale, else RGB).

    Raises:
        FileNotFoundError: a path that does not exist (named).
        ValueError: a file that is not a readable image (named).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    images = []
    for raw in paths:
        path = Path(os.path.expanduser(str(raw)))
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise FileNotFoundError(f"InterpretationCallback.sample_images: no such image file {str(path)!r}")
        try:
            with Image.open(path) as img:
                img.load()
                images.append(img.copy())
        except Exception as err:
            raise ValueError(
                f"InterpretationCallback.sample_images: {str(path)!r} is not a readable image ({err})"
            ) from err
    return pil_batch(images, image_size, mean, std)


def pil_batch(
    images: Sequence[Image.Image], image_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """PIL images -> resized (bilinear), normalised ``(N, C, H, W)`` float batch; ``C = len(mean)``."""
    mode = "L" if len(mean) == 1 else "RGB"
    out = []
    for img in images:
        img = img.convert(mode).resize((image_size[1], image_size[0]), Image.BILINEAR)
        array = np.asarray(img, dtype=np.float32) / 255.0
        array = array[:, :, None] if array.ndim == 2 else array
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    batch = torch.stack(out)
    m = torch.tensor(mean, dtype=batch.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=batch.dtype).view(1, -1, 1, 1)
    return (batch - m) / s


def render_grid(
    tiles: Sequence[np.ndarray],
    captions: Sequence[Sequence[str]],
    title: str = "",
    colors: Sequence[tuple[int, int, int]] | None = None,
    columns: int = 4,
) -> np.ndarray:
    """Lay out uint8 ``(H, W, 3)`` tiles in a grid, each with its caption lines below it.

    Args:
        tiles: images of one size; upscaled (nearest) to at least 128 px.
        captions: one list of text lines per tile.
        title: a line above the grid.
        colors: one RGB colour per tile for its caption (default black).
        columns: tiles per row.

    Returns:
        The grid as an ``(H, W, 3)`` uint8 array.
    """
    if not tiles:
        raise ValueError("render_grid needs at least one tile")
    h, w = tiles[0].shape[:2]
    scale = max(1, math.ceil(_TILE_MIN / max(1, min(h, w))))
    th, tw = h * scale, w * scale
    font = load_font(11)
    line_h = 14
    n_lines = max(len(c) for c in captions) if captions else 0
    pad = 6
    cell_w, cell_h = tw + pad, th + n_lines * line_h + pad
    cols = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    top = line_h + pad if title else pad
    canvas = Image.new("RGB", (cols * cell_w + pad, top + rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 3), title, fill=(0, 0, 0), font=font)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * cell_w, top + r * cell_h
        img = Image.fromarray(np.ascontiguousarray(tile[:, :, :3]))
        if scale > 1:
            img = img.resize((tw, th), Image.NEAREST)
        canvas.paste(img, (x0, y0))
        color = tuple(colors[i]) if colors is not None else (0, 0, 0)
        for j, line in enumerate(captions[i] if i < len(captions) else []):
            draw.text((x0, y0 + th + 1 + j * line_h), line, fill=color, font=font)
    return np.asarray(canvas)


def _original_cwd() -> Path:
    """Hydra's original working directory while a Hydra app runs, else the current directory."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            from hydra.utils import get_original_cwd

            return Path(get_original_cwd())
    except Exception:  # hydra missing or not running
        pass
    return Path.cwd()


def _is_pathlike(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


# --------------------------------------------------------------------------- callback
class InterpretationCallback(Callback):
    """Log explanation heatmaps of a fixed set of images during training, as one captioned grid.

    Each call explains every sample image for its predicted class with ``method`` (any name of
    ``interpret``'s registry: ``gradcam``, ``gradcam++``, ``integrated_gradients``,
    ``smoothgrad``, ``attention_rollout``, ...), overlays the heatmap on the un-normalised image
    and logs one grid under ``{prefix}/{method}`` through
    :func:`callbacks.image_logging.log_image` (every attached logger plus a PNG under
    ``{default_root_dir}/images/``). Each tile is captioned with the true label, the predicted
    label and its confidence (green when right, red when wrong). Several instances with different
    ``prefix`` (or ``method``) run side by side.

    When: every ``log_every_n_steps`` optimizer steps if given (it overrides epochs), else at the
    end of every ``log_every_n_epochs``-th training epoch, and always once at the end of training
    (unless that step was just logged).

    It runs on global rank zero only and does no collective communication, so other ranks never
    wait for it. It never changes training: the model is explained in eval mode with frozen
    parameters, and module modes, ``requires_grad``, ``.grad``, hooks and the torch/numpy/python
    RNG states are restored afterwards (a seeded run gives bit-identical weights with or without
    this callback). Gradients are enabled locally, so :meth:`log_interpretation` also works from a
    validation hook (under ``torch.inference_mode``). An error while explaining is logged with its
    traceback and training goes on.

    Args:
        sample_images: None (the first ``num_samples`` validation images of
            ``trainer.datamodule.sample_images(n)`` with their labels), a ``(B, C, H, W)`` tensor or
            a list of ``(C, H, W)`` tensors (model inputs, already normalised), a list of PIL images,
            or a list of image file paths (relative ones resolve against Hydra's original working
            directory, else the current one). PIL images and files are resized to the datamodule's
            ``image_size`` and normalised with its ``mean``/``std`` (fallback: the model's timm
            ``data_config``). More than ``num_samples`` images are thinned to ``num_samples``
            evenly spaced ones (deterministic). Missing files or non-images fail at ``setup``.
        sample_labels: the true labels of ``sample_images`` (a tensor or list of ints), or None
            (captions then show ``true: ?``).
        method: the explanation method's registry name.
        target_layer: a ``named_modules()`` name such as ``"backbone.layer4"``, or None for the
            method's automatic choice.
        log_every_n_epochs: log after every n-th training epoch (None: only at the end, or per steps).
        log_every_n_steps: log every n optimizer steps instead of per epochs (None: per epochs).
        num_samples: how many images to explain (>= 1).
        colormap: a matplotlib colormap name for the heatmaps.
        alpha: heatmap opacity in the overlay, in [0, 1].
        prefix: the first part of the logged key ``{prefix}/{method}``.

    Swapping the sample images between calls (e.g. harder examples as training goes on):
    override :meth:`select_samples` (called before every explanation), or call
    :meth:`set_samples` from any hook::

        class HardestExamples(InterpretationCallback):
            def select_samples(self, trainer, pl_module):
                images, labels = trainer.datamodule.sample_images(256)
                with torch.no_grad():  # runs in eval mode; the model is restored afterwards
                    logits = pl_module(images.to(pl_module.device))
                    loss = torch.nn.functional.cross_entropy(logits, labels.to(pl_module.device),
                                                             reduction="none")
                hardest = loss.topk(self.num_samples).indices.cpu()
                return images[hardest], labels[hardest]

    Replacing the explainer: override :meth:`create_explainer`; anything with
    ``explain(images, target_class) -> (B, H, W)`` heatmaps in [0, 1] works::

        class SmoothGradCAM(InterpretationCallback):
            def create_explainer(self, pl_module):
                import interpret
                base = interpret.get_explainer("gradcam", pl_module, target_layer=self.target_layer)
                return interpret.SmoothGrad(base, noise_level=0.1, num_samples=16)
    """

    def __init__(
        self,
        sample_images: Any = None,
        sample_labels: Any = None,
        method: str = "gradcam",
        target_layer: str | None = None,
        log_every_n_epochs: int | None = 5,
        log_every_n_steps: int | None = None,
        num_samples: int = 8,
        colormap: str = "viridis",
        alpha: float = 0.4,
        prefix: str = "interpretation",
    ) -> None:
        super().__init__()
        if not isinstance(method, str) or not method:
            raise ValueError(f"`method` must be an explanation method name such as 'gradcam', got {method!r}")
        for name, value in (("log_every_n_epochs", log_every_n_epochs), ("log_every_n_steps", log_every_n_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"`{name}` must be None or an int >= 1, got {value!r}")
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be a number in [0, 1], got {alpha!r}")
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise ValueError(f"`prefix` must be a non-empty string, got {prefix!r}")
        _check_colormap(colormap)
        if target_layer is not None and not isinstance(target_layer, str):
            raise ValueError(f"`target_layer` must be None or a named_modules() name, got {target_layer!r}")
        self.sample_images = _plain(sample_images)
        self.sample_labels = _plain(sample_labels)
        self.method = method
        self.target_layer = target_layer
        self.log_every_n_epochs = log_every_n_epochs
        self.log_every_n_steps = log_every_n_steps
        self.num_samples = num_samples
        self.colormap = colormap
        self.alpha = float(alpha)
        self.prefix = prefix.strip("/")

        self.explainer: Any = None
        self.images: Tensor | None = None
        self.labels: Tensor | None = None
        self.class_names: list[str] | None = None
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self.image_size: tuple[int, int] | None = None
        self.num_logged = 0
        self.num_failed = 0
        #: ``(predicted classes, confidences)`` of the last call
        self.last_predictions: tuple[Tensor, Tensor] | None = None
        self._last_logged_step = -1
        self._epoch_shown: int | None = None

    @property
    def key(self) -> str:
        """The logged image's key, ``{prefix}/{method}``."""
        return f"{self.prefix}/{self.method}"

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(prefix=self.prefix, method=self.method)

    # ------------------------------------------------------------------ override points
    def create_explainer(self, pl_module: pl.LightningModule) -> Any:
        """Build the explainer (called once at ``setup``); override to use another one."""
        import interpret

        kwargs = {} if self.target_layer is None else {"target_layer": self.target_layer}
        return interpret.get_explainer(self.method, pl_module, **kwargs)

    def select_samples(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Tensor, Tensor | None]:
        """The ``(images, labels)`` to explain now; default: the fixed set resolved at ``setup``.

        Called before every explanation with the model in eval mode and gradients enabled; the
        model's modes, gradients and every RNG state are restored afterwards, so an override may
        run the model (e.g. to pick the hardest examples) without changing training.
        """
        if self.images is None:
            raise RuntimeError("InterpretationCallback: no sample images; setup() has not run")
        return self.images, self.labels

    def set_samples(self, images: Any, labels: Any = None) -> None:
        """Replace the sample images (any form ``sample_images`` accepts except None) from now on."""
        self.images, self.labels = self._coerce(images, labels)

    # ------------------------------------------------------------------ lightning hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        self.mean, self.std = _normalization(datamodule, pl_module)
        self.image_size = _image_size(datamodule, pl_module)
        names = getattr(datamodule, "class_names", None)
        self.class_names = [str(n) for n in names] if names else None
        if self.images is None:
            if self.sample_images is None:
                if datamodule is None or not hasattr(datamodule, "sample_images"):
                    raise ValueError(
                        "InterpretationCallback.sample_images=None takes images from the datamodule's "
                        "sample_images(n), but the trainer has no such datamodule; pass sample_images"
                    )
                images, labels = datamodule.sample_images(self.num_samples)
                given = labels if self.sample_labels is None else self.sample_labels
                self.images, self.labels = self._coerce(images, given)
            else:
                self.images, self.labels = self._coerce(self.sample_images, self.sample_labels)
        if self.explainer is None:
            self.explainer = self.create_explainer(pl_module)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.log_every_n_steps
        if n is not None and trainer.global_step > 0 and trainer.global_step % n == 0:
            self._maybe_log(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self.log_every_n_epochs
        if self.log_every_n_steps is None and n is not None and (trainer.current_epoch + 1) % n == 0:
            self._maybe_log(trainer, pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has counted the last epoch as done by now: show the one that was trained
        self._epoch_shown = max(trainer.current_epoch - 1, 0)
        try:
            self._maybe_log(trainer, pl_module)
        finally:
            self._epoch_shown = None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_logged_step": self._last_logged_step, "num_logged": self.num_logged}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))
        self.num_logged = int(state_dict.get("num_logged", 0))

    # ------------------------------------------------------------------ the work
    def _maybe_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == self._last_logged_step:
            return
        self._last_logged_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        try:
            self.log_interpretation(trainer, pl_module)
        except Exception:  # a picture must never end a training run (nor hang the other ranks)
            self.num_failed += 1
            log.exception("InterpretationCallback(%s) failed at step %d", self.key, trainer.global_step)

    def log_interpretation(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        """Explain the current samples and log the grid now (rank zero only; returns the PNG path).

        Safe to call from any hook, also validation hooks: gradients are enabled locally and the
        model, its gradients and every RNG are left exactly as they were.
        """
        if not trainer.is_global_zero:
            return None
        if self.explainer is None:
            self.explainer = self.create_explainer(pl_module)
        with preserved_state(pl_module), torch.inference_mode(False), torch.enable_grad():
            images, labels = self.select_samples(trainer, pl_module)
            images = images[: self.num_samples] if images.shape[0] > self.num_samples else images
            x = images.detach().to(device=pl_module.device, dtype=_param_dtype(pl_module), copy=True)
            # The explainer runs the model on these very images to find the predicted class:
            # keep those logits instead of paying for another forward pass.
            seen: list[Tensor] = []

            def keep_logits(module: nn.Module, args: Any, output: Any) -> None:
                if not seen and args and isinstance(args[0], Tensor) and isinstance(output, Tensor):
                    if args[0].shape == x.shape and torch.equal(args[0].detach(), x):
                        seen.append(output.detach())

            handle = pl_module.register_forward_hook(keep_logits)
            try:
                heatmaps = self.explainer.explain(x, target_class=None)  # None: the predicted class
            finally:
                handle.remove()
            if seen:
                logits = seen[0]
            else:
                with torch.no_grad():
                    logits = pl_module(x)
            confidence, predicted = logits.float().softmax(dim=-1).max(dim=-1)
            heatmaps = heatmaps.detach().float().cpu()
            del x, logits, seen
        self.last_predictions = (predicted.cpu(), confidence.cpu())
        grid, caption = self._render(images.cpu(), heatmaps, labels, predicted.cpu(), confidence.cpu(), trainer)
        path = log_image(trainer, self.key, grid, step=trainer.global_step, caption=caption)
        self.num_logged += 1
        return path

    def _render(
        self,
        images: Tensor,
        heatmaps: Tensor,
        labels: Tensor | None,
        predicted: Tensor,
        confidence: Tensor,
        trainer: pl.Trainer,
    ) -> tuple[np.ndarray, str]:
        import interpret

        tiles, captions, colors, summary = [], [], [], []
        for i in range(images.shape[0]):
            overlay = interpret.overlay_heatmap(
                images[i], heatmaps[i], alpha=self.alpha, colormap=self.colormap, mean=self.mean, std=self.std
            )
            tiles.append(to_uint8_hwc(overlay))
            pred = int(predicted[i])
            true = int(labels[i]) if labels is not None else None
            true_name = self._name(true) if true is not None else "?"
            lines = [f"true: {true_name}", f"pred: {self._name(pred)} ({float(confidence[i]):.2f})"]
            captions.append(lines)
            colors.append((0, 0, 0) if true is None else (0, 128, 0) if true == pred else (200, 0, 0))
            summary.append(f"{i}: {lines[0]}, {lines[1]}")
        epoch = self._epoch_shown if self._epoch_shown is not None else trainer.current_epoch
        title = f"{self.method} | epoch {epoch} | step {trainer.global_step}"
        return render_grid(tiles, captions, title=title, colors=colors), "; ".join(summary)

    def _name(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    def _coerce(self, images: Any, labels: Any) -> tuple[Tensor, Tensor | None]:
        """Any accepted ``sample_images`` form -> ``(N <= num_samples, C, H, W)`` CPU batch + labels."""
        images = _plain(images)
        if isinstance(images, Tensor):
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.ndim != 4 or not images.is_floating_point():
                raise ValueError(
                    f"InterpretationCallback.sample_images: a tensor must be float (B, C, H, W), "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            batch = images.detach().cpu().clone()
        elif _is_pathlike(images):
            batch = load_image_files([images], self._size(), self._mean(), self._std(), base_dir=_original_cwd())
        elif isinstance(images, Sequence) and len(images) > 0:
            if all(_is_pathlike(x) for x in images):
                batch = load_image_files(images, self._size(), self._mean(), self._std(), base_dir=_original_cwd())
            elif all(isinstance(x, Image.Image) for x in images):
                batch = pil_batch(images, self._size(), self._mean(), self._std())
            elif all(isinstance(x, Tensor) and x.ndim == 3 and x.is_floating_point() for x in images):
                size = tuple(images[0].shape[-2:])
                batch = torch.stack(
                    [
                        x.detach().cpu()
                        if tuple(x.shape[-2:]) == size
                        else F.interpolate(x.detach().cpu()[None].float(), size=size, mode="bilinear")[0]
                        for x in images
                    ]
                )
            else:
                kinds = sorted({type(x).__name__ for x in images})
                raise ValueError(
                    "InterpretationCallback.sample_images: a list must hold only file paths, only PIL images "
                    f"or only float (C, H, W) tensors, got {', '.join(kinds)}"
                )
        else:
            raise ValueError(
                "InterpretationCallback.sample_images can be None, a (B, C, H, W) tensor, a list of tensors, "
                f"of PIL images or of file paths, got {type(images).__name__}"
            )
        label_tensor = None
        if labels is not None:
            label_tensor = torch.as_tensor(labels.detach().cpu() if isinstance(labels, Tensor) else list(labels)).long()
            label_tensor = label_tensor.reshape(-1)
            if label_tensor.shape[0] != batch.shape[0]:
                raise ValueError(
                    f"InterpretationCallback.sample_labels has {label_tensor.shape[0]} labels for "
                    f"{batch.shape[0]} sample images"
                )
        if batch.shape[0] > self.num_samples:
            keep = torch.linspace(0, batch.shape[0] - 1, self.num_samples).round().long()
            batch = batch[keep]
            label_tensor = label_tensor[keep] if label_tensor is not None else None
        return batch.contiguous(), label_tensor

    def _size(self) -> tuple[int, int]:
        if self.image_size is None:
            raise RuntimeError("image size unknown before setup()")
        return self.image_size

    def _mean(self) -> tuple[float, ...]:
        return self.mean if self.mean is not None else (0.485, 0.456, 0.406)

    def _std(self) -> tuple[float, ...]:
        return self.std if self.std is not None else (0.229, 0.224, 0.225)


def _normalization(datamodule: Any, pl_module: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is None or std is None:
        config = _data_config(pl_module)
        mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None:
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _image_size(datamodule: Any, pl_module: nn.Module) -> tuple[int, int]:
    size = getattr(datamodule, "image_size", None)
    if size is None:
        input_size = _data_config(pl_module).get("input_size")
        size = tuple(input_size[-2:]) if input_size else 224
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _data_config(pl_module: nn.Module) -> dict[str, Any]:
    try:
        config = getattr(pl_module, "data_config", None)
        return dict(config) if config else {}
    except Exception:
        return {}


def _param_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _plain(value: Any) -> Any:
    """OmegaConf containers (from a yaml) -> plain python lists."""
    if value is None or isinstance(value, (Tensor, str, Image.Image)):
        return value
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (ListConfig, DictConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def _check_colormap(name: Any) -> None:
    import matplotlib

    if not isinstance(name, str) or name not in matplotlib.colormaps:
        close = []
        if isinstance(name, str):
            import difflib

            close = difflib.get_close_matches(name, list(matplotlib.colormaps), n=5)
        hint = f" Closest: {', '.join(close)}." if close else " E.g. viridis, jet, inferno, magma, turbo."
        raise ValueError(f"`colormap` must be a matplotlib colormap name, got {name!r}.{hint}")
