"""Explanations for torchvision object detectors: one heatmap per detection.

A detector returns a variable set of boxes, so the scalar to explain is *one detection*: its class
score before the final softmax/sigmoid, read where the box came from, with that origin held fixed:

- two-stage (:class:`~torchvision.models.detection.generalized_rcnn.GeneralizedRCNN`:
  ``fasterrcnn_*``, ``maskrcnn_*``, ``keypointrcnn_*``): the box head's logit of the detected class
  for the proposal the box was regressed from. The proposals of the clean image are kept for every
  input an explainer feeds in (IG's scaled images, SmoothGrad's noisy copies), so the explanation
  is always about the same region proposal.
- one-stage (``retinanet_*``, ``fcos_*``, ``ssd*``/``ssdlite*``): the classification logit of the
  detected class at the anchor (FCOS: the location) the box came from; anchors depend only on the
  image size, so they are fixed too.

torchvision's postprocessing does not say which proposal or anchor a final box came from:
:func:`~interpret.tasks.detection_replay.detect_with_sources` replays it while carrying those
indices along (:mod:`interpret.tasks.detection_replay`); the two ways of explaining live in
:mod:`interpret.tasks.detection_methods`, the detector families and layers in
:mod:`interpret.detectors`.

Methods:

- ``gradcam`` and ``gradcam++`` at a backbone layer (automatic: the backbone's last stage before
  the FPN, ``backbone.body.layer4`` for ResNet FPN backbones, the last stage of ``backbone.body``
  in general, the first map SSD's head reads). One forward pass serves detection and every
  map; the gradients of the N detections' scores come from one vectorised backward
  (``torch.autograd.grad(..., is_grads_batched=True)``) when the detector's operations allow it,
  else from N backward passes through the retained graph, which stop at the layer. The maths is
  :class:`~interpret.methods.gradcam.GradCAM`'s and :class:`~interpret.methods.gradcam.GradCAMPlusPlus`'s.
- ``integrated_gradients`` and ``smoothgrad`` on the input pixels: the project's
  :class:`~interpret.methods.integrated_gradients.IntegratedGradients` and
  :class:`~interpret.methods.smoothgrad.SmoothGrad` applied to :class:`~interpret.targets.DetectionTarget`, a module that
  maps images to the N detections' scores with proposals/anchors fixed. The N detections are
  explained as one batch (N copies of the image, one target each), chunked by the method's
  ``internal_batch_size``.

Maps are ``(N, H, W)`` in [0, 1] at the input image's own size (the detector resizes and pads
internally; CAMs are cropped to the valid, unpadded part of the feature map first). The model is
left exactly as it was found (training flags, ``requires_grad``, ``.grad``, hooks, the global RNG).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from interpret.checks import positive_int, unit_interval
from interpret.images import is_pathlike, load_image, pil_to_tensor
from interpret.layers import model_device, model_dtype
from interpret.methods.base import normalize_maps
from interpret.model_state import frozen_eval, local_grad
from interpret.tasks.base import TILE_MIN, SampleRequest, SampleResult, Task, class_name, class_names_of
from interpret.tasks.detection_methods import explain_cam, explain_input
from interpret.detectors import (
    CAM_METHODS,
    DETECTION_METHODS,
    default_detection_layer,
    find_detector,
    is_detector,
    load_checkpoint,
    resolve_detection_layer,
)
from interpret.tasks.detection_replay import DetectorOutput, detect_with_sources
from interpret.targets import DetectionScore, DetectionTarget

__all__ = [
    "DETECTION_METHODS",
    "DetectionExplanation",
    "DetectionScore",
    "DetectionTarget",
    "DetectionTask",
    "DetectorOutput",
    "check_detection_options",
    "default_detection_layer",
    "detect_with_sources",
    "explain_detection",
    "find_detector",
    "is_detector",
]


# ------------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)  # tensors inside: compare fields, not results
class DetectionExplanation:
    """What :func:`explain_detection` returns.

    Attributes:
        boxes: float32 ``(N, 4)`` xyxy in the input image's pixels, highest score first.
        labels: int64 ``(N,)`` class indices, as the detector numbers them.
        scores: float32 ``(N,)`` the detector's scores.
        maps: float32 ``(N, H, W)`` in [0, 1] at the input's size, ``maps[i]`` explains detection ``i``.
        method: the method's registered name.
        combined: float32 ``(H, W)``: the per-pixel maximum of ``maps`` (zeros without detections).
        logits: ``(N,)`` the explained class logits (before softmax/sigmoid).
        sources: ``(N,)`` the proposal (two-stage) or anchor/location (one-stage) each detection came from.
        image: uint8 ``(H, W, 3)`` the picture the boxes refer to.
        target_layer: the CAM layer's name (None for input methods).
        class_names: names for the labels, when the model has them (``class_names[label]``).
        save_path: the figure written, if any.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    maps: torch.Tensor
    method: str
    combined: torch.Tensor
    logits: torch.Tensor
    sources: torch.Tensor
    image: np.ndarray = field(repr=False)
    target_layer: str | None = None
    class_names: tuple[str, ...] | None = None
    save_path: Path | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def label_name(self, index: int) -> str:
        """The caption name of detection ``index``: its class name, else ``class <label>``."""
        return class_name(self.class_names, int(self.labels[index]))


# ------------------------------------------------------------------------------- inputs
def _pixels(image: Any, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """A float ``(3, H, W)`` image in [0, 1] on the CPU, a fresh tensor."""
    if is_pathlike(image):
        image = load_image(image)
    if isinstance(image, Image.Image):
        if mean is not None or std is not None:
            raise ValueError("mean/std describe a normalised tensor image; a file or PIL image is read as pixels")
        return pil_to_tensor(image, 3)
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"image must be a file path, a PIL.Image.Image or a (C, H, W) tensor in [0, 1], got {type(image).__name__}"
        )
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"explain_detection takes one image, got a batch of {image.shape[0]}; call it per image")
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"image must be a (C, H, W) tensor or a (1, C, H, W) batch, got shape {tuple(image.shape)}")
    with torch.inference_mode(False):
        if image.dtype == torch.uint8:
            pixels = image.detach().to("cpu", torch.float32) / 255.0
        elif image.is_floating_point():
            pixels = image.detach().to("cpu", torch.float32, copy=True)
        else:
            raise ValueError(f"image tensor must be float in [0, 1] (or uint8), got {image.dtype}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is not None and std is not None:
            m = torch.tensor([float(v) for v in mean]).view(-1, 1, 1)
            s = torch.tensor([float(v) for v in std]).view(-1, 1, 1)
            if m.shape[0] not in (1, pixels.shape[0]) or s.shape[0] not in (1, pixels.shape[0]):
                raise ValueError(f"mean/std need one value per channel ({pixels.shape[0]}), got {len(mean)}/{len(std)}")
            pixels = pixels * s + m
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1).clone()
        if pixels.shape[0] != 3:
            raise ValueError(f"image must have 1 or 3 channels, got {pixels.shape[0]} (shape {tuple(image.shape)})")
    return pixels


def check_detection_options(detection_threshold: Any, max_detections: Any) -> tuple[float, int]:
    """``(detection_threshold, max_detections)`` checked: a score from 0 to 1, an int >= 1.

    Raises:
        ValueError: naming the argument, what is allowed and what was given.
    """
    threshold = unit_interval(detection_threshold, "detection_threshold", what="a number from 0 to 1 (a detection score)")
    return threshold, int(positive_int(max_detections, "max_detections"))


def _check_method(method: Any) -> str:
    from interpret.methods.registry import canonical_method

    allowed = ", ".join(DETECTION_METHODS)
    if not isinstance(method, str):
        raise ValueError(f"method must be one of {allowed}; got {type(method).__name__}")
    try:
        name = canonical_method(method)
    except ValueError:
        name = None
    if name not in DETECTION_METHODS:
        raise ValueError(f"method for detections can be {allowed}; got {method!r}")
    return name


def explain_detection(
    model: nn.Module | str | Any,
    image: Any,
    method: str = "gradcam",
    detection_threshold: float = 0.5,
    max_detections: int = 10,
    target_layer: str | nn.Module | None = None,
    save_path: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **method_kwargs: Any,
) -> DetectionExplanation:
    """Detect objects in one image and explain each detection with its own heatmap.

    Args:
        model: a torchvision detector (``fasterrcnn_*``, ``maskrcnn_*``, ``retinanet_*``, ``fcos_*``,
            ``ssd300_*``, ``ssdlite*``), a module holding one at ``.detector`` (the project's
            ``ObjectDetector``), or the path of a checkpoint an ``interpret.checkpoint_loaders`` entry point loads. Left as found.
        image: a file path, a PIL image, or a ``(C, H, W)`` / ``(1, C, H, W)`` tensor of pixels in
            [0, 1] (uint8 is divided by 255), any size: the detector resizes and normalises itself.
        method: ``"gradcam"``, ``"gradcam++"``, ``"integrated_gradients"`` or ``"smoothgrad"``.
        detection_threshold: explain the detections whose score is at least this (0 to 1); the
            detector's own ``box_score_thresh``/``score_thresh`` and ``detections_per_img`` apply first.
        max_detections: explain at most this many (the highest scores).
        target_layer: for gradcam/gradcam++: a ``named_modules()`` name of ``model`` (or of the
            detector inside it) or the module; default the backbone's last stage before the FPN.
        save_path: write a PNG there: a combined view, then one panel per detection.
        mean: when ``image`` is a tensor normalised with these per-channel statistics, they are
            undone first (the detector wants pixels).
        std: see ``mean``.
        **method_kwargs: the method's own keywords: ``eps`` (gradcam++); ``steps``, ``baseline``,
            ``internal_batch_size`` (default 8 here), ``method`` (quadrature) for IG; ``num_samples``,
            ``noise_level``, ``base``, ``seed``, ``internal_batch_size`` for SmoothGrad.

    Returns:
        a :class:`DetectionExplanation` (``len(result)`` detections; empty, with a warning, when no
        detection reaches the threshold).

    Raises:
        TypeError: ``model`` is not a detector (nor holds one), ``image`` is not an image.
        ValueError: a threshold outside 0..1, an unknown method, a bad ``max_detections``,
            ``target_layer`` for an input method or an unknown layer (closest names listed).
        FileNotFoundError: a path (model or image) to no file.
    """
    threshold, max_detections = check_detection_options(detection_threshold, max_detections)
    name = _check_method(method)
    if is_pathlike(model):
        model = load_checkpoint(model)
    prefix, detector = find_detector(model)
    if target_layer is not None and name not in CAM_METHODS:
        raise ValueError(f"target_layer applies to gradcam and gradcam++, not to method {name!r}")
    layer_name, layer = (None, None)
    if name in CAM_METHODS:
        layer_name, layer = resolve_detection_layer(model, prefix, detector, target_layer)
    pixels = _pixels(image, mean, std)
    with frozen_eval(model), local_grad():
        pixels = pixels.to(device=model_device(detector), dtype=model_dtype(detector))
        if name in CAM_METHODS:
            output, keep, maps, logits = explain_cam(
                detector, layer_name or "", layer, pixels, threshold, max_detections, name, dict(method_kwargs)
            )
        else:
            output, keep, maps, logits = explain_input(detector, pixels, threshold, max_detections, name, dict(method_kwargs))
    maps = normalize_maps(maps.detach().float()).cpu() if maps.shape[0] else maps.float().cpu()
    if keep.numel() == 0:
        best = float(output.scores.max()) if output.scores.numel() else None
        warnings.warn(
            f"explain_detection: no detection with a score >= {threshold} "
            + (f"(the best score is {best:.3f}); " if best is not None else "(the detector found nothing); ")
            + "lower detection_threshold (or the detector's own score threshold) to explain weaker ones",
            stacklevel=2,
        )
    combined = maps.amax(dim=0) if maps.shape[0] else torch.zeros(output.image_size)
    result = DetectionExplanation(
        boxes=output.boxes[keep].detach().float().cpu(),
        labels=output.labels[keep].detach().cpu(),
        scores=output.scores[keep].detach().float().cpu(),
        maps=maps,
        method=name,
        combined=combined,
        logits=logits.float().cpu(),
        sources=output.sources[keep].detach().cpu(),
        image=(pixels.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8),
        target_layer=layer_name,
        class_names=class_names_of(model),
    )
    if save_path is not None:
        from interpret.render import save_detection_figure  # matplotlib: only when a figure is asked for

        path = save_detection_figure(result, save_path)
        result = dataclasses.replace(result, save_path=path)
    return result


# ------------------------------------------------------------------------------- the task
class DetectionTask(Task):
    """A torchvision detector, or a module holding one at ``.detector``: one heatmap per detection."""

    name: ClassVar[str] = "detection"
    model_noun: ClassVar[str] = "detector"
    methods: ClassVar[tuple[str, ...] | None] = DETECTION_METHODS

    def cam_layer(self, model: nn.Module, method: str) -> str | None:
        """For gradcam/gradcam++: the model's own ``cam_layer`` attribute when it has one, else the
        automatic backbone layer (:func:`default_detection_layer`); None for the input methods."""
        from interpret.methods.registry import canonical_method  # the registry imports every method

        if canonical_method(method) not in CAM_METHODS:
            return None
        own = getattr(model, "cam_layer", None)
        if own is not None:
            return str(own)
        prefix, detector = find_detector(model)
        name = default_detection_layer(detector)
        return f"{prefix}.{name}" if prefix else name

    def explain_samples(self, model: nn.Module, images: torch.Tensor, request: SampleRequest) -> SampleResult:
        """:func:`explain_detection` on each image (normalised with ``request.mean``/``std``); the
        "no detection above the threshold" warning is left out (the grid shows it)."""
        layer = request.target_layer if request.target_layer is not None else self.cam_layer(model, request.method)
        results = []
        for image in images:
            x = image.detach().to(device=model_device(model), dtype=model_dtype(model), copy=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                results.append(
                    explain_detection(
                        model, x, method=request.method, detection_threshold=request.detection_threshold,
                        max_detections=request.max_detections, target_layer=layer,
                        mean=request.mean, std=request.std, **request.method_kwargs,
                    )
                )
        return SampleResult(detections=results)

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
        """A row per image: the image with every detection's box (solid, in its class's colour,
        the label on a patch of that colour) and the ground-truth boxes (``truth_boxes``, dashed
        white), then each of its top ``max_detections`` detections with its own heatmap and box
        (blank tiles pad a short row). The title names the colours of the classes seen."""
        from interpret.render import class_colour, draw_boxes, image_to_uint8, make_grid, upscale
        from interpret.tiles import OUTLINE_COLOUR, heat_overlay, legend_strip

        tiles, captions, summary = [], [], []
        seen: dict[int, str] = {}
        for i, (image, found) in enumerate(zip(images, result.detections or [], strict=True)):
            photo = upscale(image_to_uint8(image, request.mean, request.std), TILE_MIN)
            scale = photo.shape[0] / image.shape[-2]
            boxes = [tuple(float(v) * scale for v in box) for box in found.boxes]
            classes = [int(label) for label in found.labels]
            names = [class_name(class_names, c) for c in classes]
            seen.update(zip(classes, names))
            colours = [class_colour(c) for c in classes]
            scores = [float(s) for s in found.scores]
            given = np.zeros((0, 4)) if truth_boxes is None else np.asarray(truth_boxes[i], dtype=np.float32).reshape(-1, 4)
            truth = [tuple(float(v) * scale for v in box) for box in given]
            boxed = draw_boxes(photo, truth, dashed=True, colours=[OUTLINE_COLOUR]) if truth else photo
            tiles.append(draw_boxes(boxed, boxes, [f"{n} {s:.2f}" for n, s in zip(names, scores)], colours=colours))
            captions.append([f"image {i}: {len(boxes)} detection(s) >= {request.detection_threshold:g}"
                             + (f", {len(truth)} true (dashed)" if truth_boxes is not None else "")])
            summary.append(f"{i}: " + (", ".join(f"{n} {s:.2f}" for n, s in zip(names, scores)) or "no detection"))
            for k in range(request.max_detections):
                if k < len(boxes):
                    heat = heat_overlay(photo, np.asarray(found.maps[k], dtype=np.float32), request.colormap, request.alpha)
                    tiles.append(draw_boxes(heat, [boxes[k]], [f"{names[k]} {scores[k]:.2f}"], colours=[colours[k]]))
                    captions.append([f"detection {k}: {names[k]} {scores[k]:.2f} ({request.method})"])
                else:
                    tiles.append(np.full_like(photo, 255))
                    captions.append([""])
        note = (f"{request.method}: heatmap scaled per detection (0 = least, 1 = most relevant); "
                "solid boxes: detections in their class's colour (legend below)"
                + ("; dashed white: ground truth" if truth_boxes is not None else ""))
        grid = make_grid(
            tiles, captions, ncols=1 + request.max_detections, padding=8, font_size=12,
            title=f"{request.method} | detections | {title}\n{note}", min_tile=TILE_MIN,
        )
        entries = [(name, class_colour(c)) for c, name in sorted(seen.items())]
        if truth_boxes is not None:
            entries.append(("ground truth", OUTLINE_COLOUR))
        if entries:
            grid = np.concatenate([grid, legend_strip(entries, grid.shape[1], dashed=("ground truth",))], axis=0)
        return grid, "; ".join(summary)
