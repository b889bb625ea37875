"""What every explainer shares: input coercion, target classes, normalisation of maps.

An :class:`Explainer` runs in the middle of training: it must leave the model exactly as it found
it, which it does through :mod:`interpret.model_state` (:func:`~interpret.model_state.frozen_eval`
and :func:`~interpret.model_state.local_grad`).
"""

from __future__ import annotations

import abc
import contextlib
import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from interpret.checks import positive_int
from interpret.images import is_pathlike, load_image, pil_to_tensor
from interpret.layers import (
    expected_in_channels,
    input_size_of,
    find_vision_transformer,
    model_device,
    model_dtype,
    resolve_normalization,
)
from interpret.model_state import frozen_eval, local_grad

__all__ = [
    "Explainer",
    "ImageInput",
    "TargetClass",
    "InvalidImageError",
    "check_input_size",
    "check_normalization",
    "check_target_range",
    "normalize_maps",
    "parse_target_class",
    "pil_to_tensor",
    "resize_maps",
]

ImageInput = Image.Image | torch.Tensor | str | os.PathLike
TargetClass = int | Sequence[int] | torch.Tensor | np.ndarray | None


class InvalidImageError(TypeError, ValueError):
    """An object that is not an image was given; both a TypeError and a ValueError."""


# ------------------------------------------------------------------------------- inputs
def _fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The (H, W) a ViT with a fixed, strict patch grid accepts, or None when any size goes."""
    found = find_vision_transformer(model)
    if found is None:
        return None
    vit = found[1]
    patch_embed = vit.patch_embed
    if getattr(vit, "dynamic_img_size", False) or not getattr(patch_embed, "strict_img_size", False):
        return None
    size = getattr(patch_embed, "img_size", None)
    return (int(size[0]), int(size[1])) if size is not None else None


# ------------------------------------------------------------------------------ targets
def parse_target_class(target_class: TargetClass, batch_size: int, device: torch.device) -> torch.Tensor | None:
    """Turn ``target_class`` into a ``(B,)`` long tensor, or None for "the predicted class".

    Raises:
        ValueError: a negative class, a wrong number of classes for the batch, a non-integer.
    """
    if target_class is None:
        return None
    if isinstance(target_class, bool):
        raise ValueError(f"target_class must be None, an int or one int per image, got {target_class!r}")
    if isinstance(target_class, numbers.Integral):
        values = [int(target_class)] * batch_size
    elif isinstance(target_class, torch.Tensor | np.ndarray):
        array = target_class.detach().cpu().numpy() if isinstance(target_class, torch.Tensor) else target_class
        if array.ndim == 0:
            return parse_target_class(array.item(), batch_size, device)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"target_class must be None, an int or a 1-D integer tensor with one class per image, "
                f"got a {array.dtype} array of shape {tuple(array.shape)}"
            )
        values = [int(v) for v in array]
    elif isinstance(target_class, Sequence) and not isinstance(target_class, str | bytes):
        values = []
        for value in target_class:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"target_class entries must be ints, got {value!r} in {list(target_class)!r}")
            values.append(int(value))
    else:
        raise ValueError(
            f"target_class must be None, an int or one int per image, got {type(target_class).__name__}"
        )
    if len(values) != batch_size:
        raise ValueError(f"target_class has {len(values)} entries for a batch of {batch_size} images; give one per image")
    negative = [v for v in values if v < 0]
    if negative:
        raise ValueError(f"target_class must be >= 0, got {negative[0]}")
    return torch.tensor(values, dtype=torch.long, device=device)


def check_target_range(targets: torch.Tensor, num_classes: int) -> None:
    """Raise a ValueError when a target class is not in ``[0, num_classes)``."""
    if targets.numel() == 0:
        return
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if bad.numel():
        raise ValueError(
            f"target_class {int(bad[0])} is out of range for a model with {num_classes} classes "
            f"(allowed 0 to {num_classes - 1})"
        )


def _check_logits(logits: Any, batch_size: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch_size:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the model must return logits of shape (B, num_classes) = ({batch_size}, C), got {shape}"
        )
    return logits


# ----------------------------------------------------------------------------- heatmaps
def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of ``(B, H, W)`` to [0, 1]; a constant map becomes zeros (never NaN)."""
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1)
    span = high - low
    constant = span <= 1e-7 * torch.maximum(high.abs(), low.abs())
    out = (maps - low) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, torch.zeros_like(out), out).clamp_(0.0, 1.0)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize ``(B, h, w)`` maps to ``size`` (``align_corners=False``)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)


# ----------------------------------------------------------------------------- explainer
def check_normalization(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Validate a ``mean``/``std`` pair (both or neither; numbers; std > 0) and return it as tuples."""
    if mean is None and std is None:
        return None
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    try:
        m = tuple(float(v) for v in mean)  # type: ignore[union-attr]
        s = tuple(float(v) for v in std)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"mean and std must be sequences of numbers, got {mean!r} and {std!r}") from None
    if not m or len(m) != len(s):
        raise ValueError(f"mean and std need one value per channel each, got {len(m)} and {len(s)}")
    if any(v <= 0 for v in s):
        raise ValueError(f"std values must be > 0, got {s}")
    return m, s


def check_input_size(input_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``None``, an int or ``(H, W)`` (or timm's ``(C, H, W)``) -> ``(H, W)`` or None."""
    if input_size is None:
        return None
    if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool):
        size = (int(input_size), int(input_size))
    elif isinstance(input_size, Sequence) and len(input_size) in (2, 3):
        size = (int(input_size[-2]), int(input_size[-1]))
    else:
        raise ValueError(f"input_size must be None, an int or (H, W), got {input_size!r}")
    if min(size) < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return size


class Explainer(abc.ABC):
    """Base class of every explanation method.

    Subclasses implement :meth:`_attribute`; this class turns any accepted image into a batch on
    the model's device, protects the model's state, enables gradients locally and normalises the
    result.

    Images given as files or PIL images are resized to the model's input size and normalised;
    tensors are taken as model inputs as they are.

    Args:
        model: any ``nn.Module`` whose ``forward(x)`` returns logits ``(B, num_classes)``.
        mean: per-channel mean the model's inputs are normalised with (the data's own statistics,
            e.g. a datamodule's ``mean``); default: the model's timm data config, else none.
        std: per-channel std, given together with ``mean``.
        input_size: ``(H, W)`` (or an int) files and PIL images are resized to; default: the
            model's timm data config ``input_size``, else the image's own size.
    """

    #: registry name of the method (set by subclasses)
    method_name: str = "explainer"

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        given = check_normalization(mean, std)
        self.normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = (
            given if given is not None else resolve_normalization(model)
        )
        size = check_input_size(input_size)
        self.input_size: tuple[int, int] | None = size if size is not None else input_size_of(model)

    # ------------------------------------------------------------------ public API
    def explain(
        self, image: ImageInput, target_class: TargetClass = None, *, original_size: bool = False
    ) -> torch.Tensor:
        """Explain one image or a batch.

        Args:
            image: a file path, a PIL image, a float ``(C, H, W)`` tensor or a ``(B, C, H, W)``
                batch. Tensors are model inputs (already normalised, any size the model takes);
                files and PIL images are resized to :attr:`input_size` and normalised with
                :attr:`normalization`.
            target_class: None for the predicted class, an int for every image, or one int per image.
            original_size: for a file or PIL image, return the map at the image's own size
                (for overlays on the original photo) instead of the model's input size.

        Returns:
            A float32 heatmap in [0, 1], ``(H, W)`` for one image, ``(B, H, W)`` for a batch, at
            the size the model saw (or the original size, see ``original_size``), on the input's
            device (CPU for files and PIL images).

        Raises:
            ValueError: wrong rank, wrong number of channels, an integer tensor, or a bad ``target_class``.
            FileNotFoundError: a path that does not exist (named).
            InvalidImageError: an object that is not an image.
        """
        prepared = self._prepare(image)
        batch, single, out_device = prepared[0], prepared[1], prepared[2]
        out_size = prepared[4] if original_size else prepared[3]
        maps = self._explain_prepared(batch, target_class, out_size)
        maps = maps.to(out_device)
        return maps[0] if single else maps

    def attribute(self, image: ImageInput, target_class: TargetClass = None) -> torch.Tensor:
        """The method's raw, un-normalised attribution for a batch ``(B, C, H, W)`` or ``(B, h, w)``.

        Same inputs as :meth:`explain`; always batched, at the size the model saw.
        """
        batch, _, out_device, _, _ = self._prepare(image)
        with self._explaining():
            targets = parse_target_class(target_class, batch.shape[0], batch.device)
            raw, _ = self._attribute(batch, targets)
        return raw.detach().to(out_device)

    def explain_batch(
        self,
        images: torch.Tensor | Sequence[ImageInput],
        batch_size: int = 32,
        target_class: TargetClass = None,
        *,
        original_size: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Explain a long list of images in batches of ``batch_size``.

        Args:
            images: a ``(N, C, H, W)`` tensor, or a sequence of file paths, PIL images or
                ``(C, H, W)`` tensors (sizes may differ; images of one size inside a chunk are
                batched together).
            batch_size: how many images go through the model at once.
            target_class: None, an int, or one int per image.
            original_size: maps of files/PIL images at their own size (see :meth:`explain`).

        Returns:
            ``(N, H, W)`` for a tensor input, a list of ``(H, W)`` heatmaps for a sequence.
        """
        positive_int(batch_size, "batch_size")
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                raise ValueError(
                    f"explain_batch takes a (N, C, H, W) tensor or a list of images, got shape {tuple(images.shape)}"
                )
            count = images.shape[0]
            targets = parse_target_class(target_class, count, torch.device("cpu"))
            parts = []
            for start in range(0, count, batch_size):
                chunk_targets = None if targets is None else targets[start : start + batch_size]
                parts.append(self.explain(images[start : start + batch_size], chunk_targets))
            if not parts:
                return images.new_zeros((0, *images.shape[-2:]), dtype=torch.float32)
            return torch.cat(parts)
        if isinstance(images, Image.Image) or is_pathlike(images) or not isinstance(images, Sequence):
            raise InvalidImageError(
                f"explain_batch takes a (N, C, H, W) tensor or a list of images, got {type(images).__name__}"
            )
        count = len(images)
        targets = parse_target_class(target_class, count, torch.device("cpu"))
        results: list[torch.Tensor | None] = [None] * count
        for start in range(0, count, batch_size):
            prepared = [(i, *self._prepare(images[i])) for i in range(start, min(start + batch_size, count))]
            groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
            for item in prepared:
                out_size = item[5] if original_size else item[4]
                key = (tuple(item[1].shape[1:]), out_size, str(item[3]))
                groups.setdefault(key, []).append(item)
            for (_, out_size, _), group in groups.items():
                index = [item[0] for item in group]
                batch = torch.cat([item[1] for item in group])
                group_targets = None if targets is None else targets[index]
                maps = self._explain_prepared(batch, group_targets, out_size).to(group[0][3])
                for j, i in enumerate(index):
                    results[i] = maps[j]
        return [r for r in results if r is not None]

    # ------------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the raw attribution of a prepared batch.

        Called with the model in eval mode, parameters frozen, gradients enabled.

        Args:
            x: ``(B, C, H, W)`` on the model's device, a normal (non-inference) tensor.
            targets: ``(B,)`` long tensor of classes (not yet range-checked), or None for predicted.

        Returns:
            ``(raw, targets)``: ``raw`` is ``(B, C, H, W)`` (pixel attributions) or ``(B, h, w)``
            (maps) and ``targets`` the classes used.
        """

    def _to_map(self, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Reduce a raw attribution to un-normalised ``(B, H, W)`` maps at ``size``.

        Pixel attributions ``(B, C, H, W)`` become the sum of absolute values over channels.
        """
        maps = raw.abs().sum(dim=1) if raw.ndim == 4 else raw
        return resize_maps(maps.float(), size)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch without building a graph."""
        with torch.no_grad():
            return _check_logits(self.model(x), x.shape[0])

    def _resolve_targets(self, logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Predicted classes when ``targets`` is None, else ``targets`` checked against the logits."""
        _check_logits(logits, logits.shape[0])
        if targets is None:
            return logits.detach().argmax(dim=1)
        check_target_range(targets, logits.shape[1])
        return targets.to(logits.device)

    @contextlib.contextmanager
    def _explaining(self) -> Iterator[None]:
        """Model in eval mode with frozen parameters, gradients on; everything restored after."""
        with frozen_eval(self.model), local_grad():
            yield

    # ------------------------------------------------------------------- internals
    def _explain_prepared(
        self, batch: torch.Tensor, target_class: TargetClass, out_size: tuple[int, int]
    ) -> torch.Tensor:
        with self._explaining():
            targets = parse_target_class(target_class, batch.shape[0], batch.device)
            raw, _ = self._attribute(batch, targets)
            maps = self._to_map(raw.detach(), tuple(batch.shape[-2:]))
        maps = resize_maps(maps, out_size)
        return normalize_maps(maps).detach()

    def _prepare(
        self, image: Any
    ) -> tuple[torch.Tensor, bool, torch.device, tuple[int, int], tuple[int, int]]:
        """Coerce ``image`` into ``(batch on the model's device, was_single, output device,
        size the model sees, the image's original size)``."""
        device = model_device(self.model)
        dtype = model_dtype(self.model)
        channels = expected_in_channels(self.model)
        if is_pathlike(image):
            image = load_image(image)
        if isinstance(image, Image.Image):
            mean, std = self.normalization if self.normalization is not None else (None, None)
            if channels not in (None, 1, 3):
                raise ValueError(f"the model expects {channels} input channels; a PIL image gives 1 or 3")
            original = (int(image.height), int(image.width))
            size = _fixed_input_size(self.model) or self.input_size or original
            tensor = pil_to_tensor(image, channels if channels is not None else 3, mean, std, size=size)
            with torch.inference_mode(False):
                batch = tensor.unsqueeze(0).to(device=device, dtype=dtype)
            return batch, True, torch.device("cpu"), (int(size[0]), int(size[1])), original
        if isinstance(image, torch.Tensor):
            if image.ndim not in (3, 4):
                raise ValueError(
                    f"image must be a (C, H, W) tensor or a (B, C, H, W) batch, got shape {tuple(image.shape)} "
                    f"({image.ndim} dims)"
                )
            if not image.is_floating_point():
                raise ValueError(
                    f"image tensor has dtype {image.dtype}; pass a float tensor normalised as the model "
                    "expects (or a PIL image or a file, which are normalised for you)"
                )
            single = image.ndim == 3
            batch_view = image.unsqueeze(0) if single else image
            if batch_view.shape[0] == 0:
                raise ValueError("image batch is empty (B = 0)")
            if channels is not None and batch_view.shape[1] != channels:
                raise ValueError(
                    f"image has {batch_view.shape[1]} channels (shape {tuple(image.shape)}), "
                    f"the model expects {channels}"
                )
            with torch.inference_mode(False):
                # a fresh, normal tensor: never an inference tensor, never aliasing the caller's
                batch = batch_view.detach().to(device=device, dtype=dtype, copy=True)
            size = (int(image.shape[-2]), int(image.shape[-1]))
            return batch, single, image.device, size, size
        raise InvalidImageError(
            f"image must be a file path, a PIL.Image.Image, a (C, H, W) tensor or a (B, C, H, W) tensor, "
            f"got {type(image).__name__}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"
