"""High-level calls: explain one prediction, compare methods side by side, explain a batch to files."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from interpret.methods.base import Explainer, ImageInput, TargetClass, parse_target_class
from interpret.model_state import frozen_eval
from interpret.images import is_pathlike, load_image
from interpret.layers import find_vision_transformer
from interpret.methods.registry import _lookup, get_explainer, method_keywords
from interpret.render import image_to_uint8, overlay_heatmap

__all__ = ["compare_methods", "explain_prediction", "visualize_batch"]


def _build(
    model: nn.Module,
    method: str | Explainer,
    target_layer: str | nn.Module | None,
    kwargs: dict[str, Any] | None,
    inputs: dict[str, Any] | None = None,
) -> Explainer:
    if isinstance(method, Explainer):
        return method
    kwargs = dict(kwargs or {})
    given = {k: v for k, v in (inputs or {}).items() if v is not None}
    if given:
        accepted = method_keywords(method, kwargs.get("base"))
        kwargs.update({k: v for k, v in given.items() if accepted is None or k in accepted})
    if target_layer is not None:
        _, factory = _lookup(method)
        parameters = inspect.signature(factory).parameters
        takes_layer = "target_layer" in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())
        if not takes_layer:
            raise ValueError(f"target_layer applies to gradcam and gradcam++, not to method {method!r}")
        kwargs["target_layer"] = target_layer
    return get_explainer(method, model, **kwargs)


def _method_label(method: str | Explainer) -> str:
    return method.method_name if isinstance(method, Explainer) else str(method)


def _predict(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with frozen_eval(model, freeze_params=False), torch.no_grad():
        logits = model(batch)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"the model must return logits (B, num_classes), got {type(logits).__name__}")
    return logits.float().softmax(dim=1)


def _photo(explainer: Explainer, image: Any) -> np.ndarray:
    """The picture to draw on: a file or PIL image as it is, a tensor with its normalisation undone."""
    if is_pathlike(image):
        image = load_image(image)
    if isinstance(image, Image.Image):
        return image_to_uint8(image)
    mean, std = explainer.normalization if explainer.normalization is not None else (None, None)
    return image_to_uint8(image, mean, std)


def explain_prediction(
    model: nn.Module,
    image: ImageInput,
    method: str | Explainer = "gradcam",
    target_class: int | None = None,
    target_layer: str | nn.Module | None = None,
    colormap: str = "viridis",
    alpha: float = 0.4,
    save_path: str | Path | None = None,
    return_heatmap: bool = True,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
    original_size: bool = False,
    **method_kwargs: Any,
) -> dict[str, Any]:
    """Predict one image and explain the prediction.

    A file or PIL image is resized to the model's input size (``input_size``, else the timm data
    config) and normalised with ``mean``/``std`` (else the timm data config) before it is
    explained; the overlay is drawn on the original picture.

    Args:
        model: a model returning logits ``(B, num_classes)``.
        image: an image file path, a PIL image, a ``(C, H, W)`` tensor or a ``(1, C, H, W)``
            batch (model input, already normalised).
        method: a registered method name (see :func:`interpret.get_explainer`) or an explainer.
        target_class: the class to explain; None for the predicted one.
        target_layer: layer for gradcam/gradcam++ (None: automatic).
        colormap: matplotlib colormap of the overlay.
        alpha: heatmap opacity of the overlay.
        save_path: if given, the overlay is written there as an image file (folders are created).
        return_heatmap: include the heatmap in the result.
        mean: per-channel normalisation mean of the model's inputs (e.g. the datamodule's).
        std: per-channel normalisation std.
        input_size: ``(H, W)`` or an int, the size files and PIL images are resized to.
        original_size: return the heatmap at the picture's own size instead of the model's input size.
        **method_kwargs: passed to the method's constructor (e.g. ``steps=32``).

    Returns:
        ``{"predicted_class": int, "probability": float (of the predicted class),
        "target_class": int, "method": str, "heatmap": float32 (H, W) array in [0, 1],
        "overlay": uint8 (H, W, 3) array}`` (plus ``"save_path"`` when saved).

    Raises:
        FileNotFoundError: ``image`` is a path to no file; ValueError: not a readable image.
    """
    if is_pathlike(image):
        image = load_image(image)
    explainer = _build(
        model, method, target_layer, method_kwargs, {"mean": mean, "std": std, "input_size": input_size}
    )
    batch = explainer._prepare(image)[0]
    if batch.shape[0] != 1:
        raise ValueError(
            f"explain_prediction takes one image, got a batch of {batch.shape[0]}; use visualize_batch for batches"
        )
    probabilities = _predict(model, batch)[0]
    predicted = int(probabilities.argmax())
    target = predicted if target_class is None else target_class
    heatmap = explainer.explain(image, target_class=target, original_size=original_size)
    heatmap = heatmap.reshape(heatmap.shape[-2:]).detach().float().cpu().numpy()
    overlay = overlay_heatmap(_photo(explainer, image), heatmap, alpha=alpha, colormap=colormap)
    result: dict[str, Any] = {
        "predicted_class": predicted,
        "probability": float(probabilities[predicted]),
        "target_class": int(target),
        "method": _method_label(method),
        "overlay": overlay,
    }
    if return_heatmap:
        result["heatmap"] = heatmap
    if save_path is not None:
        path = Path(save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay).save(path)
        result["save_path"] = path
    return result


def _default_methods(model: nn.Module) -> list[str]:
    methods = ["gradcam", "gradcam++", "integrated_gradients", "smoothgrad"]
    if find_vision_transformer(model) is not None:
        methods.append("attention_rollout")
    return methods


def compare_methods(
    model: nn.Module,
    image: ImageInput,
    methods: Sequence[str | Explainer] | None = None,
    save_path: str | Path | None = None,
    target_class: int | None = None,
    target_layer: str | nn.Module | None = None,
    colormap: str = "viridis",
    alpha: float = 0.4,
    show_input: bool = True,
    method_kwargs: dict[str, dict[str, Any]] | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
) -> Any:
    """One matplotlib figure with a column per method (after the input image when ``show_input``).

    Args:
        model: a model returning logits.
        image: one image (PIL, ``(C, H, W)`` or ``(1, C, H, W)``).
        methods: method names or explainers; default gradcam, gradcam++, integrated_gradients,
            smoothgrad, and attention_rollout for a ViT.
        save_path: where to save the figure (folders are created), or None.
        target_class: the class explained by every method; None for the predicted one.
        target_layer: layer for gradcam/gradcam++ (ignored by the other methods).
        colormap: matplotlib colormap.
        alpha: heatmap opacity.
        show_input: add a first column with the input and the prediction.
        method_kwargs: per-method constructor keywords, e.g. ``{"integrated_gradients": {"steps": 16}}``.
        mean: per-channel normalisation mean (see :func:`explain_prediction`).
        std: per-channel normalisation std.
        input_size: the size files and PIL images are resized to.

    Returns:
        A ``matplotlib.figure.Figure`` (created without pyplot: no global state, no GUI backend).
    """
    from matplotlib.figure import Figure

    if is_pathlike(image):
        image = load_image(image)
    methods = list(methods) if methods is not None else _default_methods(model)
    if not methods:
        raise ValueError("methods must name at least one method")
    method_kwargs = method_kwargs or {}
    columns: list[tuple[str, np.ndarray]] = []
    prediction: dict[str, Any] | None = None
    for method in methods:
        label = _method_label(method)
        kwargs = dict(method_kwargs.get(label, {}))
        layer = None
        if target_layer is not None and label in ("gradcam", "gradcam++"):
            layer = target_layer
        result = explain_prediction(
            model,
            image,
            method=method,
            target_class=target_class,
            target_layer=layer,
            colormap=colormap,
            alpha=alpha,
            return_heatmap=False,
            mean=mean,
            std=std,
            input_size=input_size,
            **kwargs,
        )
        prediction = prediction or result
        columns.append((label, result["overlay"]))
    if prediction is None:  # unreachable: methods is not empty
        raise RuntimeError("no method produced a result")
    if show_input:
        caption = f"input: class {prediction['predicted_class']} ({prediction['probability']:.2f})"
        photo_explainer = _build(model, "saliency", None, None, {"mean": mean, "std": std, "input_size": input_size})
        columns.insert(0, (caption, _photo(photo_explainer, image)))
    figure = Figure(figsize=(2.6 * len(columns), 2.9), layout="constrained")
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for axis, (title, picture) in zip(axes, columns, strict=True):
        axis.imshow(picture)
        axis.set_title(title, fontsize=9)
        axis.set_axis_off()
    figure.suptitle(f"explaining class {prediction['target_class']}", fontsize=10)
    if save_path is not None:
        path = Path(save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    return figure


def visualize_batch(
    model: nn.Module,
    images: torch.Tensor | Sequence[ImageInput],
    method: str | Explainer = "gradcam",
    output_dir: str | Path = "explanations",
    target_class: TargetClass = None,
    target_layer: str | nn.Module | None = None,
    colormap: str = "viridis",
    alpha: float = 0.4,
    batch_size: int = 32,
    prefix: str = "explanation",
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
    **method_kwargs: Any,
) -> list[Path]:
    """Explain many images in batches and write one overlay file per image.

    Files are ``{output_dir}/{prefix}_{index:04d}_class{target}.png``.

    Args:
        model: a model returning logits.
        images: a ``(N, C, H, W)`` tensor or a sequence of file paths, PIL images or ``(C, H, W)`` tensors.
        method: a method name or an explainer.
        output_dir: folder for the files (created).
        target_class: None (predicted), an int, or one per image.
        target_layer: layer for gradcam/gradcam++.
        colormap: matplotlib colormap.
        alpha: heatmap opacity.
        batch_size: images per batch.
        prefix: file name prefix.
        mean: per-channel normalisation mean (see :func:`explain_prediction`).
        std: per-channel normalisation std.
        input_size: the size files and PIL images are resized to.
        **method_kwargs: passed to the method's constructor.

    Returns:
        The written paths, in input order.
    """
    explainer = _build(
        model, method, target_layer, method_kwargs, {"mean": mean, "std": std, "input_size": input_size}
    )
    if is_pathlike(images):
        images = [images]
    items = [load_image(i) if is_pathlike(i) else i for i in images] if not isinstance(images, torch.Tensor) else None
    if isinstance(images, torch.Tensor) and images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor or a list of images, got shape {tuple(images.shape)}")
    count = images.shape[0] if isinstance(images, torch.Tensor) else len(items or [])
    if count == 0:
        return []
    # predicted classes, batched, when no class is given
    if target_class is None:
        predicted: list[int] = []
        for start in range(0, count, batch_size):
            chunk = images[start : start + batch_size] if isinstance(images, torch.Tensor) else None
            if chunk is None:
                for item in (items or [])[start : start + batch_size]:
                    batch = explainer._prepare(item)[0]
                    predicted.append(int(_predict(model, batch).argmax(dim=1)[0]))
            else:
                batch = explainer._prepare(chunk)[0]
                predicted.extend(int(c) for c in _predict(model, batch).argmax(dim=1))
        targets: TargetClass = predicted
    else:
        targets = target_class
    heatmaps = explainer.explain_batch(images if items is None else items, batch_size=batch_size, target_class=targets)
    resolved = parse_target_class(targets, count, torch.device("cpu"))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = images[index] if items is None else items[index]
        overlay = overlay_heatmap(_photo(explainer, image), heatmaps[index], alpha=alpha, colormap=colormap)
        cls = int(resolved[index]) if resolved is not None else -1
        path = out / f"{prefix}_{index:04d}_class{cls}.png"
        Image.fromarray(overlay).save(path)
        paths.append(path)
    return paths
