"""InterpretationCallback: log a captioned grid of explanation heatmaps of fixed sample images.

When to explain, which images, and logging live here; what differs between a classifier and a
detector (methods, default layer, explaining the samples, drawing the tiles) lives in the model's
:class:`interpret.Task` (``interpret.task_for(pl_module)``); how to explain, read and normalise
images and draw grids lives in :mod:`interpret`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor
from typing_extensions import override

import interpret
from callbacks.explanation_scoring import ExplanationScoring
from callbacks.image_logging import log_image
from callbacks.interpretation_inputs import check_method_kwargs, check_normalization, first_images, plain
from callbacks.schedule import EveryN
from interpret.checks import positive_int, unit_interval
from interpret.images import is_pathlike, load_images, pils_to_batch
from interpret.layers import data_image_size, expected_in_channels, input_size_of, normalization_of
from interpret.metrics.training import DEFAULT_TRAINING_METRICS
from interpret.model_state import preserve_rng_and_modes
from interpret.tasks import SampleRequest, Task, task_for

__all__ = ["InterpretationCallback", "preserve_rng_and_modes"]

log = logging.getLogger(__name__)

_WHAT = "InterpretationCallback.sample_images"
_NO_SAMPLES = (
    "InterpretationCallback.sample_images=None takes the datamodule's sample_images(n), else the first "
    "images of the validation loader, but {what}; pass sample_images (a tensor, PIL images or file paths)"
)


class InterpretationCallback(ExplanationScoring, Callback):
    """Log explanation heatmaps of a fixed set of images during training, as one captioned grid.

    Classifiers: each image is explained for its predicted class with ``method`` and captioned
    true vs predicted label. Detectors: a row per image, its boxes, then each of its top
    ``max_detections`` detections (score >= ``detection_threshold``) with its own heatmap. The grid
    is logged under ``{prefix}/{method}`` through :func:`callbacks.image_logging.log_image`, on
    global rank zero only, every ``log_every_n_steps`` steps or ``log_every_n_epochs`` epochs
    (:class:`callbacks.schedule.EveryN`) and once at the end with ``log_at_end``. The model, its
    gradients and every RNG are left as they were; an error while explaining is logged and
    training goes on. The README's "Interpretation callback" section documents every argument
    and the override points :meth:`select_samples`, :meth:`set_samples` and :meth:`create_explainer`.

    In any Lightning project: without ``sample_images`` the samples are the datamodule's
    ``sample_images(n)``, else the first ``num_samples`` images of the validation loader (the one
    given to ``fit``, the datamodule's or the model's); the images' ``mean``/``std`` are the
    arguments, else the datamodule's or the model's attributes, else the model's timm pretrained
    config, else none (the images shown as they are, with one warning naming ``mean=``/``std=``).
    The samples' channel count is checked against the model's first convolution at ``setup``.

    Each time the samples are explained, the maps are also scored
    (:func:`interpret.metrics.training.training_scores`, the names in ``metrics``; ``[]`` turns
    scoring off) and logged as scalars ``{prefix}/{method}/<metric>`` to every logger;
    ``energy_in_mask`` and ``pointing_game`` need the datamodule's ``sample_masks`` (else skipped,
    said once). A detector's maps are scored per detection against the ground-truth box it overlaps
    most (the datamodule's sample targets; no deletion/insertion). The shortcut alarm: when ``energy_in_mask`` is below ``energy_threshold`` or
    ``location_agreement`` above ``agreement_threshold`` once ``accuracy_key`` (training accuracy)
    has risen to ``min_accuracy``, a warning (once, naming the epoch and the evidence) and
    ``{prefix}/{method}/shortcut_alarm`` = 1 (else 0); :attr:`alarm_epoch` keeps the first epoch.
    """

    def __init__(
        self,
        sample_images: Any = None,
        sample_labels: Any = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
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
        metrics: Sequence[str] | None = DEFAULT_TRAINING_METRICS,
        energy_threshold: float = 0.05,
        agreement_threshold: float = 0.35,
        min_accuracy: float = 0.8,
        accuracy_key: str = "train/acc",
    ) -> None:
        super().__init__()
        if not isinstance(method, str) or not method:
            raise ValueError(f"`method` must be an explanation method name such as 'gradcam', got {method!r}")
        interpret.canonical_method(method)  # unknown: ValueError naming the available methods
        self.schedule = EveryN(log_every_n_steps, log_every_n_epochs)
        positive_int(num_samples, "`num_samples`")
        unit_interval(alpha, "`alpha`")
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise ValueError(f"`prefix` must be a non-empty string, got {prefix!r}")
        interpret.check_colormap(colormap, what="`colormap`")
        unit_interval(detection_threshold, "`detection_threshold`")
        positive_int(max_detections, "`max_detections`")
        if target_layer is not None and not isinstance(target_layer, str):
            raise ValueError(f"`target_layer` must be None or a named_modules() name, got {target_layer!r}")
        self.method_kwargs = check_method_kwargs(method, plain(method_kwargs))
        self.given_normalization = check_normalization(plain(mean), plain(std))
        self._init_scoring(metrics, energy_threshold, agreement_threshold, min_accuracy, accuracy_key)
        self.sample_images = plain(sample_images)
        self.sample_labels = plain(sample_labels)
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
        #: what the model is (``interpret.task_for(pl_module)``), decided at ``setup``
        self.task: Task | None = None
        #: the ``explain_detection`` results of the last call on a detector, one per sample image
        self.last_detections: list[Any] | None = None
        self.images: Tensor | None = None
        self.labels: Tensor | None = None
        #: the ground-truth boxes of a detector's sample images (from the datamodule), drawn dashed in the grid
        self.truth_boxes: list[Tensor] | None = None
        self.class_names: list[str] | None = None
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self.image_size: tuple[int, int] | None = None
        self.num_logged = 0
        self.num_failed = 0
        #: ``(predicted classes, confidences)`` of the last call
        self.last_predictions: tuple[Tensor, Tensor] | None = None
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
        self.masks, self._previous_maps, self.truth_boxes = None, None, None  # the old images' masks and boxes

    # ------------------------------------------------------------------ lightning hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        declared = self.given_normalization or normalization_of(datamodule, pl_module)
        self.mean, self.std = declared if declared is not None else (None, None)
        declared_size = getattr(datamodule, "image_size", None) or input_size_of(pl_module)
        self._model_channels = 1 if expected_in_channels(pl_module) == 1 else 3  # files and PIL images: L or RGB
        self.image_size = data_image_size(datamodule, pl_module)
        names = getattr(datamodule, "class_names", None)
        self.class_names = [str(n) for n in names] if names else None
        self.task = task_for(pl_module)
        self.task.check_method(self.method, "callbacks.interpretation.method",
                               who=f"InterpretationCallback(method={self.method!r})")
        if self.images is None:
            if self.sample_images is None:
                images, labels = self._default_samples(trainer, datamodule)
                if self.task.name == "classification":
                    given = labels if self.sample_labels is None else self.sample_labels
                else:  # detection targets are dicts of boxes: the grid shows the predictions and these, dashed
                    given = None
                self.images, self.labels = self._coerce(images, given)
                boxes = [t["boxes"] for t in labels] if isinstance(labels, Sequence) and all(
                    isinstance(t, Mapping) and "boxes" in t for t in labels) else None
                self.truth_boxes = boxes if boxes is not None and len(boxes) == self.images.shape[0] else None
            else:
                self.images, self.labels = self._coerce(self.sample_images, self.sample_labels)
        if declared_size is None:  # the size the samples are, e.g. for the automatic CAM layer
            self.image_size = (int(self.images.shape[-2]), int(self.images.shape[-1]))
        self._check_images(pl_module)
        if self.explainer is None and self.task.name == "classification":
            self.explainer = self.create_explainer(pl_module)
        self._setup_scoring(trainer, datamodule)

    def _default_samples(self, trainer: pl.Trainer, datamodule: Any) -> tuple[Any, Any]:
        """``datamodule.sample_images(n)``, else the first ``num_samples`` images of the validation loader."""
        if datamodule is not None and hasattr(datamodule, "sample_images"):
            return datamodule.sample_images(self.num_samples)
        source = getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "val_loop", None)
        source = getattr(source, "_data_source", None)  # the loader given to fit, the datamodule's or the model's
        if source is None or source.instance is None or not source.is_defined():
            what = (f"the datamodule {type(datamodule).__name__} has no sample_images(n) and no val_dataloader()"
                    if datamodule is not None else "the trainer has neither a datamodule nor a validation loader")
            raise ValueError(_NO_SAMPLES.format(what=what))
        loader = source.dataloader()
        if isinstance(loader, Sequence) and not isinstance(loader, Mapping) and loader and not isinstance(loader, Tensor):
            loader = loader[0]  # several validation loaders: the first
        images, labels = first_images(loader, self.num_samples)
        if images is None:
            raise ValueError(_NO_SAMPLES.format(what="its validation loader gives no (B, C, H, W) float image batch"))
        return images, labels

    def _check_images(self, pl_module: pl.LightningModule) -> None:
        """The samples' channels against the model's first convolution; warn once without mean/std."""
        assert self.images is not None
        channels = int(self.images.shape[1])
        expected = expected_in_channels(pl_module)
        if expected is not None and channels != expected:
            source = "sample_images" if self.sample_images is not None else "the datamodule's/validation images"
            raise ValueError(
                f"InterpretationCallback: {source} have {channels} channel(s) but the model's first convolution "
                f"takes {expected}; pass sample_images with {expected} channel(s)"
            )
        if self.mean is None or self.std is None:
            self.mean, self.std = (0.0,) * channels, (1.0,) * channels
            if getattr(self, "_said_normalization", False):
                return
            self._said_normalization = True
            rank_zero_warn(
                "InterpretationCallback: neither the datamodule nor the model declares mean/std, so the images are "
                "shown as they are (mean 0, std 1); if they are normalised, pass InterpretationCallback(mean=..., "
                "std=...) (or give the datamodule `mean` and `std` attributes)"
            )
        elif len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise ValueError(
                f"InterpretationCallback: mean {self.mean} / std {self.std} do not fit images with {channels} "
                "channel(s); pass mean= and std= with one value per channel"
            )

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule.step_due(trainer.global_step):
            self._maybe_log(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.schedule.epoch_due(trainer.current_epoch):
            self._log_as_epoch(trainer, pl_module, trainer.current_epoch)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_at_end:
            # Lightning has counted the last epoch as done by now: show the one that was trained
            self._log_as_epoch(trainer, pl_module, max(trainer.current_epoch - 1, 0))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_logged_step": self.schedule.last_step, "num_logged": self.num_logged, **self._scoring_state()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.schedule.last_step = int(state_dict.get("last_logged_step", -1))
        self.num_logged = int(state_dict.get("num_logged", 0))
        self._load_scoring_state(state_dict)

    # ------------------------------------------------------------------ the work
    def _log_as_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        self._epoch_shown = epoch
        try:
            self._maybe_log(trainer, pl_module)
        finally:
            self._epoch_shown = None

    def _maybe_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.schedule.mark_step(trainer.global_step):  # already logged at this step
            return
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
        task = self.task if self.task is not None else task_for(pl_module)
        if self.explainer is None and task.name == "classification":
            self.explainer = self.create_explainer(pl_module)
        request = SampleRequest(
            method=self.method, explainer=self.explainer, target_layer=self.target_layer,
            method_kwargs=dict(self.method_kwargs), mean=self.mean, std=self.std, alpha=self.alpha,
            colormap=self.colormap, detection_threshold=self.detection_threshold, max_detections=self.max_detections,
        )
        with preserve_rng_and_modes(pl_module), torch.inference_mode(False), torch.enable_grad():
            images, labels = self.select_samples(trainer, pl_module)
            chosen = images
            images = images[: self.num_samples] if images.shape[0] > self.num_samples else images
            result = task.explain_samples(pl_module, images, request)
            scores = self._score(trainer, pl_module, images, result, same_samples=chosen is self.images)
        if result.detections is not None:
            self.last_detections = result.detections
        if result.predicted is not None and result.confidence is not None:
            self.last_predictions = (result.predicted, result.confidence)
        epoch = self._epoch_shown if self._epoch_shown is not None else trainer.current_epoch
        same = chosen is self.images
        n = images.shape[0]
        masks = self.masks[:n] if same and self.masks is not None and self.masks.shape[0] >= n else None
        truth_boxes = self.truth_boxes[:n] if same and self.truth_boxes is not None else None
        grid, caption = task.render_samples(
            images.cpu(), result, request, labels=labels, class_names=self.class_names,
            title=f"epoch {epoch} | step {trainer.global_step}", masks=masks, truth_boxes=truth_boxes,
        )
        path = log_image(trainer, self.key, grid, step=trainer.global_step, caption=caption)
        self.num_logged += 1
        self._log_scores(trainer, scores, epoch)
        return path

    def _coerce(self, images: Any, labels: Any) -> tuple[Tensor, Tensor | None]:
        """Any accepted ``sample_images`` form -> ``(N <= num_samples, C, H, W)`` CPU batch + labels."""
        images = plain(images)
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

    def _mean(self) -> tuple[float, ...]:  # no statistics: images as they are, as many channels as the model takes
        return self.mean if self.mean is not None else (0.0,) * getattr(self, "_model_channels", 3)

    def _std(self) -> tuple[float, ...]:
        return self.std if self.std is not None else (1.0,) * getattr(self, "_model_channels", 3)
