"""What every task knows: its name, its methods, its default CAM layer, how to explain and draw
a set of sample images, and the one class-name lookup every caption uses."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

__all__ = ["SampleRequest", "SampleResult", "Task", "class_name", "class_names_of"]

#: tiles are upscaled (nearest) to at least this many pixels (a 32 px input becomes 160 px)
TILE_MIN = 160


def class_name(names: Sequence[str] | None, index: int) -> str:
    """The caption name of class ``index``: ``names[index]`` when known, else the index itself (``"3"``)."""
    if names is not None and 0 <= index < len(names):
        return str(names[index])
    return str(index)


def class_names_of(model: Any) -> tuple[str, ...] | None:
    """The class names a model declares: ``model.class_names``, else ``class_names`` in a
    ``model.hparams`` mapping (read as a plain mapping); None when absent or not all strings."""
    names = getattr(model, "class_names", None)
    if names is None:
        hparams = getattr(model, "hparams", None)
        names = hparams.get("class_names") if isinstance(hparams, Mapping) else None
    if isinstance(names, Sequence) and not isinstance(names, str) and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


@dataclass
class SampleRequest:
    """How to explain and draw a set of sample images (what a callback or a script asks for).

    Attributes:
        method: the method's registry name.
        explainer: the built explainer (classification; detection explains through its own path).
        target_layer: a ``named_modules()`` name, or None for the task's default.
        method_kwargs: the method's own keywords.
        mean: the statistics the images are normalised with (None: pixels in [0, 1]).
        std: see ``mean``.
        alpha: heatmap opacity in the overlay.
        colormap: a matplotlib colormap name.
        detection_threshold: detection: explain the detections scoring at least this.
        max_detections: detection: explain at most this many per image.
    """

    method: str
    explainer: Any = None
    target_layer: str | None = None
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    alpha: float = 0.4
    colormap: str = "viridis"
    detection_threshold: float = 0.5
    max_detections: int = 3


@dataclass
class SampleResult:
    """What :meth:`Task.explain_samples` returns.

    Attributes:
        heatmaps: classification: ``(B, H, W)`` in [0, 1] on the CPU.
        predicted: classification: ``(B,)`` the predicted (explained) classes.
        confidence: classification: ``(B,)`` their softmax probabilities.
        detections: detection: one ``DetectionExplanation`` per image.
        signed: classification with a signed method (Integrated Gradients): ``(B, H, W)`` the
            attributions summed over channels (the sign kept), drawn with a diverging colormap.
    """

    heatmaps: torch.Tensor | None = None
    predicted: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    detections: list[Any] | None = None
    signed: torch.Tensor | None = None


class Task(abc.ABC):
    """The one place tasks differ; :func:`interpret.tasks.task_for` picks one per model."""

    #: the task's name (what a model's ``task`` attribute says)
    name: ClassVar[str]
    #: what error messages call a model of this task ("a detector")
    model_noun: ClassVar[str] = "model"
    #: the methods the task explains with (None: every registered method)
    methods: ClassVar[tuple[str, ...] | None] = None

    def supports(self, method: str) -> bool:
        """Whether ``method`` (a registry name or alias) explains this task."""
        from interpret.methods.registry import canonical_method  # the registry imports every method

        return self.methods is None or canonical_method(method) in self.methods

    def check_method(self, method: str, config_key: str = "method", who: str | None = None) -> str:
        """``method``'s canonical name; a ValueError naming ``config_key`` when the task cannot use it.

        ``who`` names the caller in the message (default ``method {method!r}``).
        """
        from interpret.methods.registry import canonical_method

        name = canonical_method(method)
        if self.methods is not None and name not in self.methods:
            raise ValueError(
                f"{who or f'method {method!r}'} on a {self.model_noun}: {self.name} is explained with "
                f"{', '.join(self.methods)} ({config_key})"
            )
        return name

    @abc.abstractmethod
    def cam_layer(self, model: nn.Module, method: str) -> str | None:
        """The CAM layer used when none is given (None: the method's automatic choice)."""

    @abc.abstractmethod
    def explain_samples(self, model: nn.Module, images: torch.Tensor, request: SampleRequest) -> SampleResult:
        """Explain a ``(B, C, H, W)`` batch of model inputs; the caller guards the model's state."""

    @abc.abstractmethod
    def render_samples(
        self,
        images: torch.Tensor,
        result: SampleResult,
        request: SampleRequest,
        *,
        labels: torch.Tensor | None,
        class_names: Sequence[str] | None,
        title: str,
        masks: torch.Tensor | None = None,
        truth_boxes: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, str]:
        """One captioned grid of the explained samples and a one-line text summary of it.

        ``masks`` (classification: bool ``(B, H, W)`` object masks) and ``truth_boxes``
        (detection: one ``(n, 4)`` xyxy array of ground-truth boxes per image) are outlined when given.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
