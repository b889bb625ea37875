"""InterpretationCallback: log a captioned grid of explanation heatmaps of fixed sample images.

When to explain, which images, and logging live here; how to explain, how to read and
normalise images and how to draw the grid live in :mod:`interpret` (``get_explainer``,
``load_images``/``pils_to_batch``, ``overlay_heatmap``, ``make_grid``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor, nn
from typing_extensions import override

import interpret
from callbacks.image_logging import log_image
from interpret.base import frozen_eval
from interpret.images import IMAGENET_MEAN, IMAGENET_STD, is_pathlike, load_images, pils_to_batch
from interpret.layers import input_size_of, model_dtype, resolve_normalization
from interpret.visualize import draw_boxes, upscale

__all__ = ["DETECTION_METHODS", "InterpretationCallback", "is_detection_model", "preserve_rng_and_modes"]

log = logging.getLogger(__name__)

_TILE_MIN = 128  # tiles are upscaled (nearest) to at least this many pixels so captions stay readable
_WHAT = "InterpretationCallback.sample_images"
#: keywords with their own argument; method_kwargs may not set them
_OWN_ARGUMENTS = ("target_layer",)


@contextlib.contextmanager
def preserve_rng_and_modes(model: nn.Module) -> Iterator[None]:
    """Run a block in the middle of training, then put back everything it may change.

    Restored on success and on exception: every module's ``training`` flag, every parameter's
    ``requires_grad`` and ``.grad`` (the same tensor object), and the torch (CPU and CUDA), numpy
    and python RNG states. The model is in eval mode inside the block; parameters are not frozen
    here (the explainer freezes them itself with :func:`interpret.frozen_eval`).
    """
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    np_rng = np.random.get_state()
    py_rng = random.getstate()
    try:
        with frozen_eval(model, eval_mode=True, freeze_params=False):
            yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)


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

    When (the schedule every periodic callback of this project follows): with
    ``log_every_n_steps=n``, after the optimizer step at global steps n, 2n, 3n, ...
    (``global_step % n == 0``); otherwise, with ``log_every_n_epochs=n``, at the end of training
    epochs 0, n, 2n, ... (``epoch % n == 0``). In addition, with ``log_at_end`` (default), once
    at the end of training unless that step was just logged.

    The explainer is built at ``setup`` with the datamodule's ``mean``/``std`` (so baselines
    and overlays live in the data's own space) and ``image_size`` (files and PIL images are
    resized to it; the automatic GradCAM layer is the last stage whose map is at least 4x4 at
    that size). ``target_layer`` is passed only to methods that take a layer (gradcam,
    gradcam++, smoothgrad over one of them); ``method_kwargs`` go to the method's constructor
    and are checked at ``setup`` (unknown keywords and bad values fail before training).

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
            or a list of image file paths (relative ones resolve against the current working
            directory, which this project's Hydra runs leave at the launch directory). PIL images
            and files are resized to the datamodule's ``image_size`` and normalised with its
            ``mean``/``std`` (fallback: the model's timm ``data_config``). More than
            ``num_samples`` images are thinned to ``num_samples`` evenly spaced ones
            (deterministic). Missing files or non-images fail at ``setup``, naming the file.
        sample_labels: the true labels of ``sample_images`` (a tensor or list of ints), or None
            (captions then show ``true: ?``).
        method: the explanation method's registry name (checked here, with close real names on a miss).
        target_layer: a ``named_modules()`` name such as ``"backbone.layer3"`` for the methods
            that take a layer, or None (default) for the automatic choice.
        method_kwargs: keywords of the method's constructor, e.g. ``{"steps": 16,
            "internal_batch_size": 32, "baseline": "blur"}`` for integrated_gradients or
            ``{"num_samples": 8, "noise_level": 0.1}`` for smoothgrad.
        log_every_n_epochs: log at the end of epochs 0, n, 2n, ... (None: not per epoch).
        log_every_n_steps: log at global steps n, 2n, ... instead of per epochs (None: per epochs).
        num_samples: how many images to explain (>= 1).
        colormap: a matplotlib colormap name for the heatmaps.
        alpha: heatmap opacity in the overlay, in [0, 1].
        prefix: the first part of the logged key ``{prefix}/{method}``.
        log_at_end: also log once at the end of training.

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
        method_kwargs: Mapping[str, Any] | None = None,
        log_every_n_epochs: int | None = 5,
        log_every_n_steps: int | None = None,
        num_samples: int = 8,
        colormap: str = "viridis",
        alpha: float = 0.4,
        prefix: str = "interpretation",
        log_at_end: bool = True,
        detection_threshold: float = 0.5,
        max_detections: int = 3,
    ) -> None:
        super().__init__()
        if not isinstance(method, str) or not method:
            raise ValueError(f"`method` must be an explanation method name such as 'gradcam', got {method!r}")
        interpret.canonical_method(method)  # unknown: ValueError naming the available methods
        for name, value in (("log_every_n_epochs", log_every_n_epochs), ("log_every_n_steps", log_every_n_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"`{name}` must be None or an int >= 1, got {value!r}")
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be a number in [0, 1], got {alpha!r}")
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise ValueError(f"`prefix` must be a non-empty string, got {prefix!r}")
        interpret.check_colormap(colormap, what="`colormap`")
        if isinstance(detection_threshold, bool) or not isinstance(detection_threshold, (int, float)) or not 0.0 <= detection_threshold <= 1.0:
            raise ValueError(f"`detection_threshold` must be a number in [0, 1], got {detection_threshold!r}")
        if not isinstance(max_detections, int) or isinstance(max_detections, bool) or max_detections < 1:
            raise ValueError(f"`max_detections` must be an int >= 1, got {max_detections!r}")
        if target_layer is not None and not isinstance(target_layer, str):
            raise ValueError(f"`target_layer` must be None or a named_modules() name, got {target_layer!r}")
        self.method_kwargs = _check_method_kwargs(method, _plain(method_kwargs))
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
        self.log_at_end = bool(log_at_end)
        self.detection_threshold = float(detection_threshold)
        self.max_detections = max_detections

        self.explainer: Any = None
        #: whether the model is a detector (``pl_module.detector``, a torchvision detector), set at ``setup``
        self.detection = False
        #: the ``explain_detection`` results of the last call on a detector, one per sample image
        self.last_detections: list[Any] | None = None
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
        """Build the explainer (called once at ``setup``); override to use another one.

        ``target_layer`` goes only to methods that take a layer; the data's ``mean``/``std`` and
        ``image_size`` to every method that takes them; ``method_kwargs`` to the method.

        Raises:
            ValueError: a keyword the method does not take or a bad value, naming ``method_kwargs``.
        """
        kwargs = dict(self.method_kwargs)
        accepted = interpret.method_keywords(self.method, kwargs.get("base"))
        if self.target_layer is not None:
            if accepted is None or "target_layer" in accepted:
                kwargs["target_layer"] = self.target_layer
            else:
                rank_zero_warn(
                    f"InterpretationCallback: target_layer={self.target_layer!r} is ignored, method "
                    f"{self.method!r} takes no layer (only gradcam, gradcam++ and smoothgrad over them do)"
                )
        for name, value in (("mean", self.mean), ("std", self.std), ("input_size", self.image_size)):
            if value is not None and name not in kwargs and accepted is not None and name in accepted:
                kwargs[name] = value
        try:
            return interpret.get_explainer(self.method, pl_module, **kwargs)
        except (TypeError, ValueError) as err:
            given = f"method_kwargs={dict(self.method_kwargs)!r}" if self.method_kwargs else "no method_kwargs"
            raise type(err)(
                f"InterpretationCallback(method={self.method!r}, {given}, target_layer={self.target_layer!r}) "
                f"(config: callbacks.interpretation.method / .method_kwargs / .target_layer): {err}"
            ) from err

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
        self.detection = is_detection_model(pl_module)
        if self.detection and interpret.canonical_method(self.method) not in DETECTION_METHODS:
            raise ValueError(
                f"InterpretationCallback(method={self.method!r}) on a detector: detections are explained with "
                f"{', '.join(DETECTION_METHODS)} (callbacks.interpretation.method)"
            )
        if self.images is None and self.detection and self.sample_images is None:
            if datamodule is None or not hasattr(datamodule, "sample_images"):
                raise ValueError(
                    "InterpretationCallback.sample_images=None takes images from the datamodule's "
                    "sample_images(n), but the trainer has no such datamodule; pass sample_images"
                )
            images, _targets = datamodule.sample_images(self.num_samples)  # (images in [0, 1], target dicts)
            self.images, self.labels = self._coerce(images, None)
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
        if self.explainer is None and not self.detection:
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
        if self.log_every_n_steps is None and n is not None and trainer.current_epoch % n == 0:
            self._epoch_shown = trainer.current_epoch
            try:
                self._maybe_log(trainer, pl_module)
            finally:
                self._epoch_shown = None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.log_at_end:
            return
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
        if self.detection:
            return self._log_detections(trainer, pl_module)
        if self.explainer is None:
            self.explainer = self.create_explainer(pl_module)
        with preserve_rng_and_modes(pl_module), torch.inference_mode(False), torch.enable_grad():
            images, labels = self.select_samples(trainer, pl_module)
            images = images[: self.num_samples] if images.shape[0] > self.num_samples else images
            x = images.detach().to(device=pl_module.device, dtype=model_dtype(pl_module), copy=True)
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
        tiles, captions, colors, summary = [], [], [], []
        for i in range(images.shape[0]):
            tiles.append(
                interpret.overlay_heatmap(
                    images[i], heatmaps[i], alpha=self.alpha, colormap=self.colormap, mean=self.mean, std=self.std
                )
            )
            pred = int(predicted[i])
            true = int(labels[i]) if labels is not None else None
            true_name = self._name(true) if true is not None else "?"
            lines = [f"true: {true_name}", f"pred: {self._name(pred)} ({float(confidence[i]):.2f})"]
            captions.append(lines)
            colors.append((0, 0, 0) if true is None else (0, 128, 0) if true == pred else (200, 0, 0))
            summary.append(f"{i}: {lines[0]}, {lines[1]}")
        epoch = self._epoch_shown if self._epoch_shown is not None else trainer.current_epoch
        title = f"{self.method} | epoch {epoch} | step {trainer.global_step}"
        grid = interpret.make_grid(
            tiles, captions, ncols=4, padding=6, font_size=11, title=title, colors=colors, min_tile=_TILE_MIN
        )
        return grid, "; ".join(summary)

    def _log_detections(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        """A detector: explain each sample image's top detections (``interpret.explain_detection``), log one grid.

        A row per image: the image with every detection's box, then each of its top
        ``max_detections`` detections (score >= ``detection_threshold``) with its heatmap and box.
        """
        from interpret import explain_detection

        results = []
        with preserve_rng_and_modes(pl_module), torch.inference_mode(False), torch.enable_grad():
            images, _ = self.select_samples(trainer, pl_module)
            images = images[: self.num_samples]
            for image in images:
                x = image.detach().to(device=pl_module.device, dtype=model_dtype(pl_module), copy=True)
                with warnings.catch_warnings():  # "no detection above the threshold": shown in the grid instead
                    warnings.simplefilter("ignore", UserWarning)
                    results.append(
                        explain_detection(
                            pl_module, x, method=self.method, detection_threshold=self.detection_threshold,
                            max_detections=self.max_detections, target_layer=self._detection_layer(pl_module),
                            mean=self.mean, std=self.std, **self.method_kwargs,
                        )
                    )
        self.last_detections = results
        grid, caption = self._render_detections(images.cpu(), results, trainer)
        path = log_image(trainer, self.key, grid, step=trainer.global_step, caption=caption)
        self.num_logged += 1
        return path

    def _detection_layer(self, pl_module: nn.Module) -> str | None:
        """``target_layer``, else the detector's own ``cam_layer`` for the CAMs (None: interpret's automatic layer)."""
        if self.target_layer is not None or interpret.canonical_method(self.method) not in ("gradcam", "gradcam++"):
            return self.target_layer
        return getattr(pl_module, "cam_layer", None)

    def _render_detections(self, images: Tensor, results: list[Any], trainer: pl.Trainer) -> tuple[np.ndarray, str]:
        tiles, captions, summary = [], [], []
        for i, (image, result) in enumerate(zip(images, results, strict=True)):
            photo = upscale(interpret.image_to_uint8(image, self.mean, self.std), _TILE_MIN)
            scale = photo.shape[0] / image.shape[-2]
            boxes = [tuple(float(v) * scale for v in box) for box in result.boxes]
            names = [self._name(int(label)) for label in result.labels]
            scores = [float(s) for s in result.scores]
            tiles.append(draw_boxes(photo, boxes, [f"{n} {s:.2f}" for n, s in zip(names, scores)]))
            captions.append([f"image {i}", f"{len(boxes)} detection(s) >= {self.detection_threshold:g}"])
            summary.append(f"{i}: " + (", ".join(f"{n} {s:.2f}" for n, s in zip(names, scores)) or "no detection"))
            for k in range(self.max_detections):
                if k < len(boxes):
                    heat = torch.as_tensor(np.asarray(result.maps[k]), dtype=torch.float32)
                    overlay = interpret.overlay_heatmap(photo, heat, alpha=self.alpha, colormap=self.colormap)
                    tiles.append(draw_boxes(overlay, [boxes[k]], [f"{names[k]} {scores[k]:.2f}"]))
                    captions.append([f"{names[k]} {scores[k]:.2f}", f"{self.method}"])
                else:
                    tiles.append(np.full_like(photo, 255))
                    captions.append(["", ""])
        epoch = self._epoch_shown if self._epoch_shown is not None else trainer.current_epoch
        title = f"{self.method} | detections | epoch {epoch} | step {trainer.global_step}"
        grid = interpret.make_grid(
            tiles, captions, ncols=1 + self.max_detections, padding=6, font_size=11, title=title, min_tile=_TILE_MIN
        )
        return grid, "; ".join(summary)

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
        elif is_pathlike(images):
            batch = pils_to_batch(load_images([images], what=_WHAT), self._size(), self._mean(), self._std())
        elif isinstance(images, Sequence) and len(images) > 0:
            if all(is_pathlike(x) for x in images):
                batch = pils_to_batch(load_images(images, what=_WHAT), self._size(), self._mean(), self._std())
            elif all(isinstance(x, Image.Image) for x in images):
                batch = pils_to_batch(images, self._size(), self._mean(), self._std())
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
        return self.mean if self.mean is not None else IMAGENET_MEAN

    def _std(self) -> tuple[float, ...]:
        return self.std if self.std is not None else IMAGENET_STD



#: the methods ``interpret.explain_detection`` takes
DETECTION_METHODS = ("gradcam", "gradcam++", "integrated_gradients", "smoothgrad")


def is_detection_model(module: nn.Module) -> bool:
    """Whether ``module`` holds a torchvision detector at ``.detector`` (this project's ``ObjectDetector``)."""
    detector = getattr(module, "detector", None)
    return isinstance(detector, nn.Module) and hasattr(detector, "transform") and hasattr(detector, "backbone")


def _normalization(datamodule: Any, pl_module: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The data's own statistics (``datamodule.mean``/``std``), else the model's timm config, else ImageNet."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is None or std is None:
        mean, std = resolve_normalization(pl_module) or (IMAGENET_MEAN, IMAGENET_STD)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _image_size(datamodule: Any, pl_module: nn.Module) -> tuple[int, int]:
    """``datamodule.image_size``, else the model's timm input size, else 224."""
    size = getattr(datamodule, "image_size", None)
    if size is None:
        size = input_size_of(pl_module) or 224
    if isinstance(size, int):
        return (size, size)
    return (int(size[-2]), int(size[-1]))


def _plain(value: Any) -> Any:
    """OmegaConf containers (from a yaml) -> plain python containers."""
    if value is None or isinstance(value, (Tensor, str, Image.Image)):
        return value
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (ListConfig, DictConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def _check_method_kwargs(method: str, method_kwargs: Any) -> dict[str, Any]:
    """``method_kwargs`` as a dict whose keywords ``method`` takes (values are checked at setup)."""
    if method_kwargs is None:
        return {}
    if not isinstance(method_kwargs, Mapping) or not all(isinstance(k, str) for k in method_kwargs):
        raise ValueError(
            f"`method_kwargs` must be a mapping of keyword names to values (e.g. {{steps: 16}}), "
            f"got {method_kwargs!r}"
        )
    kwargs = dict(method_kwargs)
    own = sorted(k for k in kwargs if k in _OWN_ARGUMENTS)
    if own:
        raise ValueError(f"`method_kwargs` may not set {', '.join(own)}; use the callback's own `{own[0]}` argument")
    accepted = interpret.method_keywords(method, kwargs.get("base"))
    if accepted is not None:
        unknown = sorted(k for k in kwargs if k not in accepted)
        if unknown:
            allowed = [k for k in accepted if k not in _OWN_ARGUMENTS]
            raise ValueError(
                f"`method_kwargs` has {', '.join(repr(k) for k in unknown)}, which method "
                f"{interpret.canonical_method(method)!r} does not take; allowed: {', '.join(allowed)}"
            )
    return kwargs
