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

torchvision's postprocessing (score threshold, top-k, NMS) does not say which proposal or anchor a
final box came from. :func:`detect_with_sources` runs the detector's own modules step by step and
repeats its postprocessing with the same operations while carrying those indices along; every call
also runs the detector's own ``postprocess_detections`` on the same outputs and checks that both
agree exactly (so an unexpected torchvision change fails loudly instead of explaining the wrong box).

Methods:

- ``gradcam`` and ``gradcam++`` at a backbone layer (automatic: the backbone's last stage before
  the FPN, ``backbone.body.layer4`` for ResNet FPN backbones, the last stage of ``backbone.body``
  in general, the first map SSD's head reads). One forward pass serves detection and every
  map; the gradients of the N detections' scores come from one vectorised backward
  (``torch.autograd.grad(..., is_grads_batched=True)``) when the detector's operations allow it,
  else from N backward passes through the retained graph, which stop at the layer. The maths is
  :class:`~interpret.gradcam.GradCAM`'s and :class:`~interpret.gradcam.GradCAMPlusPlus`'s.
- ``integrated_gradients`` and ``smoothgrad`` on the input pixels: the project's
  :class:`~interpret.integrated_gradients.IntegratedGradients` and
  :class:`~interpret.smoothgrad.SmoothGrad` applied to :class:`DetectionScore`, a module that
  maps images to the N detections' scores with proposals/anchors fixed. The N detections are
  explained as one batch (N copies of the image, one target each), chunked by the method's
  ``internal_batch_size``.

Maps are ``(N, H, W)`` in [0, 1] at the input image's own size (the detector resizes and pads
internally; CAMs are cropped to the valid, unpadded part of the feature map first). The model is
left exactly as it was found (training flags, ``requires_grad``, ``.grad``, hooks, the global RNG).
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from interpret.base import frozen_eval, local_grad, normalize_maps, resize_maps
from interpret.gradcam import GradCAM, GradCAMPlusPlus
from interpret.hooks import ActivationCapture, HookManager
from interpret.images import is_pathlike, load_image, pil_to_tensor, resolve_path
from interpret.layers import model_device, model_dtype, resolve_layer

__all__ = [
    "DETECTION_METHODS",
    "DetectionExplanation",
    "DetectionScore",
    "DetectorOutput",
    "default_detection_layer",
    "detect_with_sources",
    "explain_detection",
    "find_detector",
    "is_detector",
    "save_detection_figure",
]

#: the methods :func:`explain_detection` accepts (aliases of the registry are accepted too)
DETECTION_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "integrated_gradients", "smoothgrad")
_CAM_METHODS = ("gradcam", "gradcam++")

#: defaults for the input methods on detectors (big images: fewer scaled copies per pass)
_INPUT_METHOD_DEFAULTS: dict[str, Any] = {"internal_batch_size": 8}


# ----------------------------------------------------------------------------- families
def _detector_classes() -> dict[str, type]:
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    return {"two_stage": GeneralizedRCNN, "retinanet": RetinaNet, "fcos": FCOS, "ssd": SSD}


def _family(detector: nn.Module) -> str | None:
    for name, cls in _detector_classes().items():
        if isinstance(detector, cls):
            return name
    return None


def is_detector(model: Any) -> bool:
    """Whether ``model`` is a torchvision detector explain_detection handles."""
    return isinstance(model, nn.Module) and _family(model) is not None


_MODEL_HELP = (
    "model must be a torchvision detector (GeneralizedRCNN: fasterrcnn_*/maskrcnn_*; RetinaNet: retinanet_*; "
    "FCOS: fcos_*; SSD: ssd300_*/ssdlite*), an nn.Module holding one at .detector (runner.models.ObjectDetector), "
    "or the path of such a module's .ckpt checkpoint"
)


def find_detector(model: nn.Module) -> tuple[str, nn.Module]:
    """The torchvision detector inside ``model``: ``("", model)`` or ``("detector", model.detector)``.

    Raises:
        TypeError: ``model`` is neither a torchvision detector nor holds one at ``.detector``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_MODEL_HELP}; got {type(model).__name__}")
    if _family(model) is not None:
        return "", model
    inner = getattr(model, "detector", None)
    if isinstance(inner, nn.Module) and _family(inner) is not None:
        for name, module in model.named_modules():
            if module is inner:
                return name, inner
    raise TypeError(f"{_MODEL_HELP}; got {type(model).__name__}, which is not a detector and has no .detector")


def _load_checkpoint(path: Any) -> nn.Module:
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise FileNotFoundError(f"model: no such checkpoint file {str(resolved)!r}")
    if resolved.suffix != ".ckpt":
        raise ValueError(
            f"model: a path must be a .ckpt checkpoint of runner.models.ObjectDetector, got {str(resolved)!r}; "
            "for a torchvision state dict build the detector and call load_state_dict yourself"
        )
    try:
        from runner.models.detector import ObjectDetector  # lazy: interpret/ never imports Lightning at import
    except ImportError as err:
        raise ValueError(
            f"model: loading {str(resolved)!r} needs runner.models.detector.ObjectDetector, which cannot be "
            f"imported here ({err}); load the module yourself and pass it"
        ) from err
    return ObjectDetector.load_from_checkpoint(str(resolved), map_location="cpu")


# ------------------------------------------------------------------------------ layers
def default_detection_layer(detector: nn.Module) -> str:
    """The ``named_modules()`` name (inside ``detector``) of the layer detection CAMs explain.

    - a backbone with a ``body`` (torchvision's ``BackboneWithFPN``: ResNet, MobileNet, ...; the
      project's ``TimmFPNBackbone``): the last stage before the FPN, i.e. the last of a timm
      ``features_only`` body's ``feature_info`` stages, else the body's last child
      (``backbone.body.layer4``);
    - SSD: the first feature map its head reads, the only one every detection depends on:
      ``backbone.features.0`` of SSDlite's MobileNet extractor (the C4 stage), ``backbone.features``
      (conv4_3) of SSD300's VGG;
    - otherwise the backbone's last ``nn.Conv2d`` outside an ``fpn``/``extra`` module.

    Raises:
        ValueError: no such layer (pass ``target_layer``).
    """
    backbone = getattr(detector, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(detector).__name__} has no backbone module; pass target_layer")
    body = getattr(backbone, "body", None)
    if isinstance(body, nn.Module):
        modules = dict(body.named_modules())
        info = getattr(body, "feature_info", None)  # a timm features_only model
        if info is not None and hasattr(info, "module_name"):
            last = str(info.module_name()[-1])
            for name in (last, last.replace(".", "_")):  # FeatureListNet flattens "stages.3" to "stages_3"
                if name in modules:
                    return f"backbone.body.{name}"
        children = [name for name, _ in body.named_children()]
        if children:
            return f"backbone.body.{children[-1]}"
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 0:
        # SSD's head reads the output of its first feature block and of every block after it:
        # only that first map is upstream of every detection (a later one misses the boxes of
        # the finer levels: their gradient there is exactly zero)
        if type(backbone).__name__.startswith("SSDLite"):  # iterates its features: hook the first
            return "backbone.features.0"
        return "backbone.features"
    last = None
    for name, module in backbone.named_modules():
        parts = name.split(".")
        if isinstance(module, nn.Conv2d) and not ({"fpn", "extra"} & set(parts)):
            last = name
    if last is None:
        raise ValueError(f"cannot choose a target layer in the backbone of {type(detector).__name__}; pass target_layer")
    return f"backbone.{last}"


def _resolve_detection_layer(
    model: nn.Module, prefix: str, detector: nn.Module, target_layer: str | nn.Module | None
) -> tuple[str, nn.Module]:
    if target_layer is None:
        name = default_detection_layer(detector)
        return resolve_layer(model, f"{prefix}.{name}" if prefix else name)
    try:
        return resolve_layer(model, target_layer)
    except ValueError:
        if prefix and isinstance(target_layer, str):  # a name relative to the detector
            try:
                name, module = resolve_layer(detector, target_layer)
                return f"{prefix}.{name}", module
            except ValueError:
                pass
        raise


# ------------------------------------------------------------------ detection with indices
@dataclass
class DetectorOutput:
    """One decomposed forward pass of a detector, with the origin of every final detection.

    Attributes:
        boxes: ``(M, 4)`` xyxy in the input image's pixels (as ``model(image)`` returns them).
        scores: ``(M,)`` the detector's scores (softmax, sigmoid or FCOS' geometric mean).
        labels: ``(M,)`` class indices.
        sources: ``(M,)`` the proposal (two-stage) or anchor/location (one-stage) each came from.
        logits_of: ``logits_of(index)`` gives the explained class logits of the detections
            ``index`` (a long tensor), attached to the autograd graph when the forward ran with
            gradients.
        proposals: two-stage only: ``(P, 4)`` proposals in the detector's resized coordinates.
        image_size: the input's ``(H, W)``; ``resized``: the size the detector saw (before padding);
        padded: the padded tensor's ``(H, W)`` (what the feature maps cover).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    sources: torch.Tensor
    logits_of: Callable[[torch.Tensor], torch.Tensor]
    proposals: torch.Tensor | None
    image_size: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]


def _mismatch(family: str) -> RuntimeError:
    import torchvision

    return RuntimeError(
        f"explain_detection: the detections re-derived with their {family} sources differ from the detector's own "
        f"postprocess_detections (torchvision {torchvision.__version__}); this torchvision version is not supported"
    )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


def _two_stage(detector: nn.Module, images: Any, features: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    from torchvision.ops import boxes as box_ops

    heads = detector.roi_heads
    image_shape = images.image_sizes[0]
    with torch.no_grad():  # every proposal through the box head: detection only, no graph
        proposals, _ = detector.rpn(images, features)
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, images.image_sizes))
        logits, regression = heads.box_predictor(box_features)
        num_classes = logits.shape[-1]
        boxes = box_ops.clip_boxes_to_image(heads.box_coder.decode(regression, proposals), image_shape)
        scores = F.softmax(logits, -1)
        labels = torch.arange(num_classes, device=logits.device).view(1, -1).expand_as(scores)
        origin = torch.arange(scores.shape[0], device=logits.device).view(-1, 1).expand_as(scores)
        boxes, scores, labels, origin = boxes[:, 1:], scores[:, 1:], labels[:, 1:], origin[:, 1:]
        boxes, scores = boxes.reshape(-1, 4), scores.reshape(-1)
        labels, origin = labels.reshape(-1), origin.reshape(-1)
        inds = torch.where(scores > heads.score_thresh)[0]
        boxes, scores, labels, origin = boxes[inds], scores[inds], labels[inds], origin[inds]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels, origin = boxes[keep], scores[keep], labels[keep], origin[keep]
        keep = box_ops.batched_nms(boxes, scores, labels, heads.nms_thresh)[: heads.detections_per_img]
        boxes, scores, labels, origin = boxes[keep], scores[keep], labels[keep], origin[keep]
        own_boxes, own_scores, own_labels = heads.postprocess_detections(logits, regression, proposals, images.image_sizes)
        if not (_same(boxes, own_boxes[0]) and _same(scores, own_scores[0]) and _same(labels, own_labels[0])):
            raise _mismatch("two-stage")
    fixed = proposals[0].detach()

    def explained(index: torch.Tensor) -> torch.Tensor:
        # only the chosen detections' proposals go through the box head again, with the graph:
        # a backward then costs the rows explained, not every proposal
        pooled = heads.box_roi_pool(features, [fixed[origin[index]]], images.image_sizes)
        class_logits, _ = heads.box_predictor(heads.box_head(pooled))
        return class_logits[torch.arange(index.numel(), device=class_logits.device), labels[index]]

    return boxes, scores, labels, origin, explained, fixed


def _split(head_outputs: dict[str, torch.Tensor], anchors: list[torch.Tensor], counts: list[int]) -> tuple[Any, Any]:
    split = {k: list(v.detach().split(counts, dim=1)) for k, v in head_outputs.items()}
    return split, [list(a.split(counts)) for a in anchors]


def _one_stage_levels(
    detector: nn.Module, family: str, split: dict[str, list[torch.Tensor]], anchors: list[torch.Tensor], image_shape: Any
) -> tuple[torch.Tensor, ...]:
    """RetinaNet's / FCOS' postprocess_detections for image 0, keeping each candidate's anchor index."""
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import boxes as box_ops

    all_boxes, all_scores, all_labels, all_origin = [], [], [], []
    offset = 0
    for level, anchors_per_level in enumerate(anchors):
        logits_per_level = split["cls_logits"][level][0]
        regression_per_level = split["bbox_regression"][level][0]
        num_classes = logits_per_level.shape[-1]
        if family == "fcos":
            ctrness = split["bbox_ctrness"][level][0]
            scores_per_level = torch.sqrt(torch.sigmoid(logits_per_level) * torch.sigmoid(ctrness)).flatten()
        else:
            scores_per_level = torch.sigmoid(logits_per_level).flatten()
        keep_idxs = scores_per_level > detector.score_thresh
        scores_per_level = scores_per_level[keep_idxs]
        topk_idxs = torch.where(keep_idxs)[0]
        num_topk = det_utils._topk_min(topk_idxs, detector.topk_candidates, 0)
        scores_per_level, idxs = scores_per_level.topk(num_topk)
        topk_idxs = topk_idxs[idxs]
        anchor_idxs = torch.div(topk_idxs, num_classes, rounding_mode="floor")
        labels_per_level = topk_idxs % num_classes
        if family == "fcos":
            boxes_per_level = detector.box_coder.decode(regression_per_level[anchor_idxs], anchors_per_level[anchor_idxs])
        else:
            boxes_per_level = detector.box_coder.decode_single(
                regression_per_level[anchor_idxs], anchors_per_level[anchor_idxs]
            )
        boxes_per_level = box_ops.clip_boxes_to_image(boxes_per_level, image_shape)
        all_boxes.append(boxes_per_level)
        all_scores.append(scores_per_level)
        all_labels.append(labels_per_level)
        all_origin.append(anchor_idxs + offset)
        offset += anchors_per_level.shape[0]
    boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
    labels, origin = torch.cat(all_labels), torch.cat(all_origin)
    keep = box_ops.batched_nms(boxes, scores, labels, detector.nms_thresh)[: detector.detections_per_img]
    return boxes[keep], scores[keep], labels[keep], origin[keep]


def _one_stage(detector: nn.Module, family: str, images: Any, features: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import boxes as box_ops

    feature_list = list(features.values())
    head_outputs = detector.head(feature_list)
    anchors = detector.anchor_generator(images, feature_list)
    image_shape = images.image_sizes[0]
    with torch.no_grad():
        if family == "ssd":
            regression = head_outputs["bbox_regression"].detach()[0]
            scores_all = F.softmax(head_outputs["cls_logits"].detach(), dim=-1)[0]
            decoded = box_ops.clip_boxes_to_image(detector.box_coder.decode_single(regression, anchors[0]), image_shape)
            parts: list[list[torch.Tensor]] = [[], [], [], []]
            for label in range(1, scores_all.shape[-1]):
                score = scores_all[:, label]
                keep_idxs = score > detector.score_thresh
                where = torch.where(keep_idxs)[0]
                score, box = score[keep_idxs], decoded[keep_idxs]
                num_topk = det_utils._topk_min(score, detector.topk_candidates, 0)
                score, idxs = score.topk(num_topk)
                parts[0].append(box[idxs])
                parts[1].append(score)
                parts[2].append(torch.full_like(score, fill_value=label, dtype=torch.int64))
                parts[3].append(where[idxs])
            boxes, scores, labels, origin = (torch.cat(p) for p in parts)
            keep = box_ops.batched_nms(boxes, scores, labels, detector.nms_thresh)[: detector.detections_per_img]
            boxes, scores, labels, origin = boxes[keep], scores[keep], labels[keep], origin[keep]
            detached = {k: v.detach() for k, v in head_outputs.items()}
            own = detector.postprocess_detections(detached, anchors, images.image_sizes)[0]
        else:
            counts = [x.size(2) * x.size(3) for x in feature_list]
            if family == "retinanet":
                per_location = head_outputs["cls_logits"].size(1) // sum(counts)
                counts = [c * per_location for c in counts]
            split, split_anchors = _split(head_outputs, anchors, counts)
            boxes, scores, labels, origin = _one_stage_levels(detector, family, split, split_anchors[0], image_shape)
            own = detector.postprocess_detections(split, split_anchors, images.image_sizes)[0]
        if not (_same(boxes, own["boxes"]) and _same(scores, own["scores"]) and _same(labels, own["labels"])):
            raise _mismatch(family)
    cls_logits = head_outputs["cls_logits"]

    def explained(index: torch.Tensor) -> torch.Tensor:
        return cls_logits[0, origin[index], labels[index]]

    return boxes, scores, labels, origin, explained, None


def detect_with_sources(detector: nn.Module, image: torch.Tensor) -> DetectorOutput:
    """Run ``detector`` on one image step by step and keep where each final detection came from.

    Equal to ``detector([image])[0]`` (boxes, scores, labels) in eval mode; the caller sets the
    mode and the grad mode (with gradients on, ``logits_of`` is attached to the graph).

    Args:
        detector: a torchvision GeneralizedRCNN, RetinaNet, FCOS or SSD.
        image: ``(C, H, W)`` pixels in [0, 1] (the detector normalises and resizes itself).
    """
    family = _family(detector)
    if family is None:
        raise TypeError(f"{_MODEL_HELP}; got {type(detector).__name__}")
    original = (int(image.shape[-2]), int(image.shape[-1]))
    images, _ = detector.transform([image])
    features = detector.backbone(images.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    if family == "two_stage":
        boxes, scores, labels, origin, explained, proposals = _two_stage(detector, images, features)
    else:
        boxes, scores, labels, origin, explained, proposals = _one_stage(detector, family, images, features)
    with torch.no_grad():
        rescaled = detector.transform.postprocess([{"boxes": boxes}], images.image_sizes, [original])[0]["boxes"]
    resized = (int(images.image_sizes[0][0]), int(images.image_sizes[0][1]))
    padded = (int(images.tensors.shape[-2]), int(images.tensors.shape[-1]))
    return DetectorOutput(rescaled, scores, labels, origin, explained, proposals, original, resized, padded)


class DetectionScore(nn.Module):
    """A detector seen as a classifier over its detections: ``forward(x)[b, j]`` is detection ``j``'s
    class logit on image ``b``, with the proposal/anchor of the detection fixed.

    Every explainer of :mod:`interpret` then explains detection ``j`` with ``target_class=j``.

    Args:
        detector: a torchvision detector (eval mode is the caller's business).
        labels: ``(N,)`` the detections' classes.
        sources: ``(N,)`` their anchor/location indices (one-stage) or proposal indices (two-stage).
        proposals: two-stage: the ``(P, 4)`` proposals of the clean image, in the detector's
            resized coordinates (:attr:`DetectorOutput.proposals`); the detections' own are pooled
            for every input.
    """

    def __init__(
        self,
        detector: nn.Module,
        labels: torch.Tensor,
        sources: torch.Tensor,
        proposals: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        family = _family(detector)
        if family is None:
            raise TypeError(f"{_MODEL_HELP}; got {type(detector).__name__}")
        if family == "two_stage" and proposals is None:
            raise ValueError("a two-stage detector needs the proposals the detections came from")
        self.family = family
        self.detector = detector
        self.register_buffer("labels", labels.detach().long().clone(), persistent=False)
        self.register_buffer("sources", sources.detach().long().clone(), persistent=False)
        boxes = proposals.detach()[self.sources] if proposals is not None else None
        self.register_buffer("boxes", boxes, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detector = self.detector
        images, _ = detector.transform(list(x))
        features = detector.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        count, batch = self.labels.shape[0], x.shape[0]
        if self.family == "two_stage":
            heads = detector.roi_heads
            pooled = heads.box_roi_pool(features, [self.boxes] * batch, images.image_sizes)
            class_logits, _ = heads.box_predictor(heads.box_head(pooled))
            return class_logits.view(batch, count, -1)[:, torch.arange(count, device=x.device), self.labels]
        cls_logits = detector.head.classification_head(list(features.values()))
        return cls_logits[:, self.sources, self.labels]


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
        label = int(self.labels[index])
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return str(self.class_names[label])
        return f"class {label}"


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


def _check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"detection_threshold must be a number from 0 to 1 (a detection score), got {value!r}")
    return float(value)


def _check_method(method: Any) -> str:
    from interpret.registry import canonical_method

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


def _class_names(model: nn.Module) -> tuple[str, ...] | None:
    names = getattr(model, "class_names", None)
    if names is None:
        hparams = getattr(model, "hparams", None)
        names = hparams.get("class_names") if hasattr(hparams, "get") else None
    if isinstance(names, Sequence) and not isinstance(names, str) and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


# ----------------------------------------------------------------------------- the CAMs
def _batched_grad(scores: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """``(N, *leaf.shape[1:])``: the gradient of each score w.r.t. ``leaf`` (batch of 1)."""
    count = scores.shape[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vmap's "no batching rule, falling back to a loop" notes
            (grads,) = torch.autograd.grad(
                scores,
                leaf,
                grad_outputs=torch.eye(count, dtype=scores.dtype, device=scores.device),
                is_grads_batched=True,
                retain_graph=True,
                allow_unused=True,
            )
        if grads is not None:
            return grads[:, 0]
        return torch.zeros((count, *leaf.shape[1:]), dtype=leaf.dtype, device=leaf.device)
    except RuntimeError:  # an operation without a vmap rule for its backward: one backward each
        rows = []
        for index in range(count):
            (grad,) = torch.autograd.grad(scores[index], leaf, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(leaf[0]) if grad is None else grad[0])
        return torch.stack(rows)


def _cam_to_image(cams: torch.Tensor, output: DetectorOutput) -> torch.Tensor:
    """Feature-grid maps ``(N, h, w)`` over the padded input -> ``(N, H, W)`` at the input's size."""
    padded = resize_maps(cams, output.padded)
    valid = padded[:, : output.resized[0], : output.resized[1]]
    return resize_maps(valid, output.image_size)


def _explain_cam(
    detector: nn.Module,
    layer_name: str,
    layer: nn.Module,
    pixels: torch.Tensor,
    threshold: float,
    max_detections: int,
    method: str,
    kwargs: dict[str, Any],
) -> tuple[DetectorOutput, torch.Tensor, torch.Tensor, torch.Tensor]:
    eps = kwargs.pop("eps", 0.0)
    if kwargs:
        raise ValueError(f"method {method!r} takes the keyword eps (gradcam++) for detections; got {', '.join(sorted(kwargs))}")
    if method == "gradcam" and eps:
        raise ValueError("eps applies to gradcam++ only")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or eps < 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    capture = ActivationCapture()
    with HookManager() as hooks:
        hooks.register_forward_hook(layer, capture)
        output = detect_with_sources(detector, pixels)
    if capture.activation is None:
        raise RuntimeError(
            f"target_layer {layer_name!r} was not called during the detector's forward pass; choose a backbone "
            "stage (see model.named_modules())"
        )
    keep = _selected(output, threshold, max_detections)
    activation = capture.activation
    if activation.ndim != 4:
        raise ValueError(
            f"target_layer {layer_name!r} outputs shape {tuple(activation.shape)}; CAMs need a (1, C, h, w) feature map"
        )
    count = int(keep.numel())
    if count == 0:
        return output, keep, torch.zeros((0, *output.image_size)), torch.zeros(0)
    scores = output.logits_of(keep)
    if not scores.requires_grad:
        raise RuntimeError(f"the detection scores do not depend on target_layer {layer_name!r}; choose a backbone stage")
    grads = _batched_grad(scores, activation).float()
    acts = activation.detach().float().expand(count, -1, -1, -1)
    if method == "gradcam":
        cams = GradCAM.cam(acts, grads)
    else:
        weights = GradCAMPlusPlus.channel_weights(acts, grads, float(eps))
        cams = GradCAMPlusPlus.weighted_maps(weights, acts)
    return output, keep, _cam_to_image(cams, output), scores.detach()


def _selected(output: DetectorOutput, threshold: float, max_detections: int) -> torch.Tensor:
    return torch.where(output.scores.detach() >= threshold)[0][:max_detections]


def _explain_input(
    detector: nn.Module,
    pixels: torch.Tensor,
    threshold: float,
    max_detections: int,
    method: str,
    kwargs: dict[str, Any],
) -> tuple[DetectorOutput, torch.Tensor, torch.Tensor, torch.Tensor]:
    from interpret.registry import get_explainer

    with torch.no_grad():
        output = detect_with_sources(detector, pixels)
    keep = _selected(output, threshold, max_detections)
    count = int(keep.numel())
    if count == 0:
        return output, keep, torch.zeros((0, *output.image_size)), torch.zeros(0)
    with torch.no_grad():
        logits = output.logits_of(keep)
    score = DetectionScore(detector, output.labels[keep], output.sources[keep], output.proposals)
    options = {**_INPUT_METHOD_DEFAULTS, **kwargs}
    # the detector takes pixels in [0, 1]: pixel-space baselines need no normalisation
    identity = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": output.image_size}
    explainer = get_explainer(method, score, **identity, **options)
    batch = pixels.unsqueeze(0).expand(count, -1, -1, -1)
    maps = explainer.explain(batch, target_class=list(range(count)))
    return output, keep, maps, logits


# ------------------------------------------------------------------------------- figure
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324")


def save_detection_figure(
    result: DetectionExplanation,
    save_path: str | Path,
    *,
    colormap: str = "viridis",
    alpha: float = 0.45,
) -> Path:
    """One PNG: the combined view (every box on the combined map), then one panel per detection
    (its heatmap over the image, its box drawn, captioned with label and score).

    Returns:
        the path written (folders are created).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from interpret.visualize import overlay_heatmap

    path = Path(save_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(result)
    panels = [("all detections" if count else "no detection above the threshold", result.combined, list(range(count)))]
    for index in range(count):
        caption = f"{index}: {result.label_name(index)} {float(result.scores[index]):.2f}"
        panels.append((caption, result.maps[index], [index]))
    ncols = min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    height, width = result.image.shape[:2]
    side = 3.0
    aspect = height / max(width, 1)
    figure = Figure(figsize=(side * ncols, side * aspect * nrows + 0.4 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for axis in axes[len(panels) :]:
        axis.set_axis_off()
    for axis, (title, heatmap, boxes) in zip(axes, panels, strict=False):
        axis.imshow(overlay_heatmap(result.image, heatmap, alpha=alpha if count else 0.0, colormap=colormap))
        for index in boxes:
            x1, y1, x2, y2 = (float(v) for v in result.boxes[index])
            colour = _COLOURS[index % len(_COLOURS)]
            axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
            axis.text(
                x1, y1, f"{result.label_name(index)} {float(result.scores[index]):.2f}", color="white", fontsize=7,
                va="bottom", bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
        axis.set_title(title, fontsize=9)
        axis.set_axis_off()
    figure.suptitle(f"{result.method}: {count} detection{'s' if count != 1 else ''}", fontsize=10)
    figure.savefig(path, dpi=100)
    return path


# ------------------------------------------------------------------------------ the call
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
            ``ObjectDetector``), or the path of such a module's ``.ckpt`` checkpoint. Left as found.
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
    threshold = _check_threshold(detection_threshold)
    if isinstance(max_detections, bool) or not isinstance(max_detections, numbers.Integral) or max_detections < 1:
        raise ValueError(f"max_detections must be an int >= 1, got {max_detections!r}")
    max_detections = int(max_detections)
    name = _check_method(method)
    if is_pathlike(model):
        model = _load_checkpoint(model)
    prefix, detector = find_detector(model)
    if target_layer is not None and name not in _CAM_METHODS:
        raise ValueError(f"target_layer applies to gradcam and gradcam++, not to method {name!r}")
    layer_name, layer = (None, None)
    if name in _CAM_METHODS:
        layer_name, layer = _resolve_detection_layer(model, prefix, detector, target_layer)
    pixels = _pixels(image, mean, std)
    with frozen_eval(model), local_grad():
        pixels = pixels.to(device=model_device(detector), dtype=model_dtype(detector))
        if name in _CAM_METHODS:
            output, keep, maps, logits = _explain_cam(
                detector, layer_name or "", layer, pixels, threshold, max_detections, name, dict(method_kwargs)
            )
        else:
            output, keep, maps, logits = _explain_input(detector, pixels, threshold, max_detections, name, dict(method_kwargs))
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
        class_names=_class_names(model),
    )
    if save_path is not None:
        path = save_detection_figure(result, save_path)
        result = dataclasses.replace(result, save_path=path)
    return result
