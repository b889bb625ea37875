"""The detection LightningModule: a torchvision one-stage detector (FCOS or RetinaNet) on any timm backbone.

The timm backbone runs with ``features_only=True`` (its stages ``out_indices``), torchvision's
``FeaturePyramidNetwork`` merges them, and the detector's own transform normalises the images with
the backbone's statistics at the data's size (``min_size = max_size = image_size``: nothing is
upscaled to torchvision's default 800 px).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FeaturePyramidNetwork

from interpret.checks import positive_int, unit_interval
from runner.models.backbone import (
    CHECKPOINT_PREFIXES,
    backbone_from_state,
    check_backbone_name,
    checkpoint_task,
    create_backbone,
    load_prefixed_weights,
    plain,
    read_weights,
)
from runner.models.module import TaskModule

__all__ = ["ObjectDetector", "TimmFPNBackbone", "HEADS"]

log = logging.getLogger(__name__)

#: the detector families ``model.head`` can name
HEADS = ("fcos", "retinanet")


class TimmFPNBackbone(nn.Module):
    """A timm ``features_only`` model (``body``) followed by torchvision's FPN (``fpn``).

    ``forward(x)`` returns the FPN's ``OrderedDict`` of maps (one per stage of ``out_indices``,
    ``out_channels`` channels each), what torchvision's detectors take as a backbone.
    """

    def __init__(self, body: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(body.feature_info.channels()), out_channels)
        self.out_channels = out_channels

    @property
    def strides(self) -> list[int]:
        """The reduction (stride) of each returned level."""
        return [int(r) for r in self.body.feature_info.reduction()]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


class ObjectDetector(TaskModule):
    """Object detector: a torchvision FCOS or RetinaNet on a timm backbone, trained with Lightning.

    The torchvision model sits at ``self.detector`` (``detector.backbone.body`` the timm stages,
    ``detector.backbone.fpn`` the FPN, ``detector.head`` the detection head), so
    ``interpret.explain_detection(model, image)`` takes this module as is, and layers are
    ``named_modules()`` names such as ``detector.backbone.body.layer3``.

    ``forward(images)`` (a list of ``(C, H, W)`` images in [0, 1], or a ``(B, C, H, W)`` batch) returns
    torchvision's detections in eval mode (a list of ``{"boxes", "labels", "scores"}``), and the loss
    dict in train mode when ``targets`` are given. ``training_step`` returns ``{"loss", "features"}``
    (``features``: the last backbone stage's map, average pooled, ``(B, C)``, detached) so
    ``GramMatrixCallback`` reads it. Metrics: ``train/loss`` (and each loss term, e.g.
    ``train/loss_classifier``), ``val/map``, ``val/map_50``, ``val/map_50_best`` (the best over the
    whole run, kept in the checkpoint), ``test/map``, ``test/map_50`` (torchmetrics
    ``MeanAveragePrecision``, COCO protocol through pycocotools).

    Args:
        backbone: a timm model name (``resnet18``, ``efficientnet_b0``, ``convnext_nano``, ...).
        num_classes: number of object classes (from the datamodule; labels 0..num_classes-1).
        image_size: the data's image side; the detector's transform keeps images at that size.
        head: ``fcos`` or ``retinanet``.
        out_indices: the backbone stages fed to the FPN (timm ``out_indices``).
        fpn_channels: channels of every FPN level and of the head.
        head_convs: convolutions in each head branch (torchvision's default is 4).
        in_chans: input channels of the backbone.
        pretrained, weights_path: as for :class:`~runner.models.ImageClassifier`: a local timm
            state dict or a classifier checkpoint of this project load into the backbone; a detector
            checkpoint of this project loads the whole detector (a head of another number of
            classes stays fresh).
        backbone_kwargs: extra keywords of ``timm.create_model``.
        score_thresh, nms_thresh, detections_per_img: the detector's post-processing.
        optimizer, scheduler, scheduler_interval: as for the classifier (``_partial_`` configs).
        monitor: the metric that picks the best checkpoint and stops early (the callbacks read
            ``model.monitor`` from the config); ``val/map_50``.
    """

    task = "detection"
    best_metric = "val_map_50_best"
    validation_metrics = ("val_map",)

    #: The layer CAMs of this detector explain by default (the interpretation callback and ``explain.py``
    #: pass it to ``interpret.explain_detection`` unless given another): the head's classification
    #: tower, right before the class logits. The head runs once per FPN level and the first call, the
    #: finest level, is explained: there every object smaller than 8x that level's stride is detected
    #: (all of data=shapes_detection's). The backbone's last stage (``interpret``'s own choice,
    #: ``detector.backbone.body.<last>``) gives maps whose channel weights are shared by every object
    #: of the image, so they point at the objects less well (the README gives the measured figures).
    cam_layer: str = "detector.head.classification_head.conv"

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int | None = None,
        image_size: int = 64,
        head: str = "fcos",
        out_indices: Sequence[int] = (1, 2, 3),
        fpn_channels: int = 64,
        head_convs: int = 2,
        in_chans: int = 3,
        pretrained: bool = False,
        weights_path: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/map_50",
    ) -> None:
        if num_classes is None or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"model.num_classes must be an int >= 1 (taken from the datamodule), got {num_classes}")
        if head not in HEADS:
            raise ValueError(f"model.head can be {', '.join(HEADS)}, got {head!r}")
        super().__init__(optimizer, scheduler, scheduler_interval, scheduler_monitor=monitor)
        if not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"model.image_size must be an int >= 16, got {image_size!r}")
        out_indices = tuple(int(i) for i in plain(out_indices))
        if not out_indices:
            raise ValueError("model.out_indices must name at least one backbone stage, e.g. [1, 2, 3]")
        positive_int(fpn_channels, "model.fpn_channels")
        positive_int(head_convs, "model.head_convs")
        unit_interval(score_thresh, "model.score_thresh", what="in [0, 1]")
        backbone_kwargs = plain(backbone_kwargs or {})
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])

        kwargs = dict(backbone_kwargs)
        kwargs.setdefault("in_chans", in_chans)
        kwargs.update(features_only=True, out_indices=out_indices)
        body, whole = _create_body(backbone, pretrained, weights_path, **kwargs)
        self._data_config = timm.data.resolve_model_data_config(body)
        fpn_backbone = TimmFPNBackbone(body, fpn_channels)
        self.detector = _build_detector(
            head, fpn_backbone, num_classes, image_size, head_convs, self._data_config,
            score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img,
        )
        if whole is not None:
            _load_detector_weights(self.detector, *whole)

        self.monitor = monitor
        self.train_loss = MeanMetric()
        self.val_map = _mean_average_precision()
        self.test_map = _mean_average_precision()
        self.val_map_50_best = MaxMetric()

    # ----------------------------------------------------------------- model
    @property
    def data_config(self) -> dict[str, Any]:
        """The backbone's timm data config; the detector's transform normalises with its mean/std."""
        return dict(self._data_config)

    def forward(self, images: Any, targets: list[dict[str, Tensor]] | None = None) -> Any:
        if isinstance(images, Tensor):
            images = list(images.unbind(0)) if images.ndim == 4 else [images]
        return self.detector(list(images), targets)

    def _pooled_features(self) -> tuple[list[Tensor], Any]:
        """A forward hook on the last backbone stage keeping its map (for ``features``)."""
        kept: list[Tensor] = []

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            last = output[-1] if isinstance(output, (list, tuple)) else output
            if isinstance(last, Tensor):
                kept.append(last)

        return kept, self.detector.backbone.body.register_forward_hook(hook)

    # -------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        images, targets = batch
        kept, handle = self._pooled_features()
        try:
            losses = self.detector(list(images), list(targets))
        finally:
            handle.remove()
        loss = sum(losses.values())
        self.train_loss(loss.detach())
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True, batch_size=len(images))
        features = kept[0].detach().float().mean(dim=(2, 3)) if kept else torch.zeros(len(images), 1, device=self.device)
        return {"loss": loss, "features": features}

    def _evaluate(self, batch: Any, metric: Any) -> list[dict[str, Tensor]]:
        images, targets = batch
        detections = self.detector(list(images))
        metric.update(
            [{k: d[k].detach() for k in ("boxes", "scores", "labels")} for d in detections],
            [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets],
        )
        return detections

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.val_map)

    def on_validation_epoch_end(self) -> None:
        result = self.val_map.compute()  # synced across ranks by torchmetrics
        self.val_map.reset()
        map_50 = result["map_50"].float()
        self.log("val/map", result["map"].float(), sync_dist=True, prog_bar=True)
        self.log("val/map_50", map_50, sync_dist=True, prog_bar=True)
        self.val_map_50_best(map_50.to(self.device))
        self.log("val/map_50_best", self.val_map_50_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.test_map)

    def on_test_epoch_end(self) -> None:
        result = self.test_map.compute()
        self.test_map.reset()
        self.log("test/map", result["map"].float(), sync_dist=True)
        self.log("test/map_50", result["map_50"].float(), sync_dist=True)

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Tensor]]:
        images = batch[0] if isinstance(batch, (list, tuple)) and len(batch) == 2 else batch
        return self(images)


def _mean_average_precision() -> Any:
    from torchmetrics.detection import MeanAveragePrecision

    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")


def _build_detector(
    head: str,
    backbone: TimmFPNBackbone,
    num_classes: int,
    image_size: int,
    head_convs: int,
    data_config: dict[str, Any],
    **post: Any,
) -> nn.Module:
    strides = backbone.strides
    common = dict(
        min_size=image_size, max_size=image_size,
        image_mean=list(data_config["mean"]), image_std=list(data_config["std"]), **post,
    )
    if head == "fcos":
        # one location per pixel of each level, sized like its stride (torchvision's FCOS: 8..128 for strides 8..128)
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        fcos_head = FCOSHead(backbone.out_channels, 1, num_classes, num_convs=head_convs)
        return FCOS(backbone, num_classes, anchor_generator=anchors, head=fcos_head, **common)
    # RetinaNet: 3 scales x 3 aspect ratios per location, 4x the stride (torchvision: 32..512 for strides 8..128)
    sizes = tuple(tuple(int(4 * s * 2 ** (k / 3)) for k in range(3)) for s in strides)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
    retina_head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes)
    _trim_retinanet_head(retina_head, head_convs)
    return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=retina_head, **common)


def _trim_retinanet_head(head: nn.Module, convs: int) -> None:
    """Keep ``convs`` conv blocks in each RetinaNet branch (torchvision builds 4)."""
    for branch in (head.classification_head, head.regression_head):
        blocks = list(branch.conv.children())
        if convs < len(blocks):
            branch.conv = nn.Sequential(*blocks[:convs])


def _create_body(
    backbone: str, pretrained: bool, weights_path: str | None, **kwargs: Any
) -> tuple[nn.Module, tuple[Path, dict[str, Tensor]] | None]:
    """The timm ``features_only`` body, and the weights of a detector checkpoint to load into the whole detector.

    ``weights_path`` (see :mod:`runner.models.backbone`) holding a detector of this project loads
    into the whole detector once it is built (returned second); any other weights load into the body.
    """
    if not weights_path:
        return create_backbone(backbone, 0, pretrained, None, **kwargs), None
    check_backbone_name(backbone)
    path, state = read_weights(weights_path)
    if checkpoint_task(state) == "detection":
        return create_backbone(backbone, 0, **kwargs), (path, state)
    return backbone_from_state(backbone, 0, path, state, **kwargs), None


def _load_detector_weights(detector: nn.Module, path: Path, state: dict[str, Tensor]) -> None:
    """Every ``detector.*`` tensor of a detector checkpoint whose shape fits; a head of another size stays fresh."""
    loaded = load_prefixed_weights(
        detector, state, CHECKPOINT_PREFIXES["detection"], path, head=("head.",),
        hint="same model.backbone, model.out_indices and model.fpn_channels as the checkpoint?",
    )
    if loaded == 0:
        raise ValueError(f"model.weights_path: none of the tensors of {str(path)!r} fits this detector")
    log.info(f"Loaded {loaded} of {len(detector.state_dict())} tensors of the detector from {path}")
