"""The classification LightningModule: any timm backbone by name, trained as an image classifier."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from runner.models.backbone import accepts_img_size, create_backbone, plain
from runner.models.mixup import build_mixup
from runner.models.module import TaskModule

__all__ = ["ImageClassifier"]


class ImageClassifier(TaskModule):
    """Image classifier around a timm backbone.

    ``forward(x)`` returns logits. :meth:`forward_features` returns named features:

    - ``features``: the pooled pre-logits vector, ``backbone.forward_head(fmap, pre_logits=True)``
      (for a ResNet the global-average-pooled output of ``layer4``; for a ViT the class token or
      pooled tokens after the final norm).
    - ``feature_map``: the backbone's last feature map, ``backbone.forward_features(x)``
      (``(B, C, h, w)`` for CNNs, ``(B, tokens, C)`` for ViTs).
    - ``logits``: the classifier's output.

    Batches are ``(images, labels)`` or, from this project's training loaders, ``(images, labels,
    indices)`` (each sample's index in the training set; only callbacks read it, e.g.
    ``callbacks.CartographyCallback``). ``training_step``/``validation_step`` return ``{"loss",
    "logits", "features", "targets"}`` (all but ``loss`` detached; ``targets`` the hard labels, also
    under mixup), so callbacks read them in ``on_*_batch_end(outputs=...)``.

    Layers are addressable by ``named_modules()`` names: the timm model sits under
    ``backbone``, so ResNet stages are ``backbone.layer1`` ... ``backbone.layer4``.

    ``mixup`` (``model.mixup``) turns on timm's Mixup/CutMix with a soft-target loss in training;
    ``train/acc`` then compares the predictions on the mixed images with the hard labels (the
    label each mixed image weighs ``lam``). ``channels_last`` puts the weights and inputs in
    channels-last memory format; ``layer_decay`` see :class:`~runner.models.module.TaskModule`.

    Metrics: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_best`` (the best
    over the whole run, kept in the checkpoint as ``val_acc_best``), ``test/loss``, ``test/acc``.
    The optimizer, the scheduler and the best-value restore are :class:`~runner.models.module.TaskModule`'s.
    """

    task = "classification"
    best_metric = "val_acc_best"
    validation_metrics = ("val_loss", "val_acc")

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int | None = None,
        image_size: int | None = None,
        in_chans: int = 3,
        pretrained: bool = False,
        weights_path: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        compile: bool = False,
        mixup: Mapping[str, Any] | None = None,
        layer_decay: float | None = None,
        channels_last: bool = False,
    ) -> None:
        if num_classes is None or num_classes < 2:
            raise ValueError(f"model.num_classes must be an int >= 2 (taken from the datamodule), got {num_classes}")
        super().__init__(optimizer, scheduler, scheduler_interval, scheduler_monitor="val/loss", layer_decay=layer_decay)
        self.mixup = build_mixup(mixup, num_classes, label_smoothing)
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        backbone_kwargs = plain(backbone_kwargs or {})
        mixup = plain(dict(mixup)) if mixup else None
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        kwargs = dict(backbone_kwargs)
        kwargs.setdefault("in_chans", in_chans)
        if image_size is not None and accepts_img_size(backbone):
            kwargs.setdefault("img_size", image_size)
        self.backbone = create_backbone(backbone, num_classes, pretrained, weights_path, **kwargs)
        self.label_smoothing = label_smoothing
        self.compile_backbone = compile
        self.channels_last = bool(channels_last)
        self.soft_target_loss = SoftTargetCrossEntropy()

        self.train_acc = MulticlassAccuracy(num_classes=num_classes)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes)
        self.test_acc = MulticlassAccuracy(num_classes=num_classes)
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()

    # ----------------------------------------------------------------- model
    @property
    def data_config(self) -> dict[str, Any]:
        """The backbone's timm data config (input size, interpolation, mean, std)."""
        return timm.data.resolve_model_data_config(self.backbone)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``feature_map``, ``features`` (pooled pre-logits) and ``logits`` for a batch."""
        fmap = self.backbone.forward_features(x)
        feats = self.backbone.forward_head(fmap, pre_logits=True)
        head = self.backbone.get_classifier()
        logits = head(feats) if isinstance(head, nn.Module) else self.backbone.forward_head(fmap)
        return {"feature_map": fmap, "features": feats, "logits": logits}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    # -------------------------------------------------------------- training
    def _shared_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Loss and outputs of a batch ``(images, labels)`` or ``(images, labels, indices)``."""
        x, y = self._memory_format(batch[0]), batch[1]
        out = self.forward_features(x)
        loss = F.cross_entropy(out["logits"], y, label_smoothing=self.label_smoothing)
        return {
            "loss": loss,
            "logits": out["logits"].detach(),
            "features": out["features"].detach(),
            "targets": y,
        }

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in channels-last memory format when ``model.channels_last`` is on (image batches only)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _mixed_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Mixup/CutMix (timm's ``Mixup``) and the soft-target loss; ``targets`` stay the hard labels.

        ``Mixup`` mixes each image with the batch's reversed order; its label (the one ``targets``
        holds) weighs ``lam``. A batch of odd size (the epoch's last) is not mixed, only smoothed.
        """
        x, y = self._memory_format(batch[0]), batch[1]
        if x.shape[0] % 2 == 0:
            x, soft = self.mixup(x, y)
        else:
            soft = mixup_target(y, self.mixup.num_classes, smoothing=self.mixup.label_smoothing)
        out = self.forward_features(x)
        loss = self.soft_target_loss(out["logits"], soft)
        return {"loss": loss, "logits": out["logits"].detach(), "features": out["features"].detach(), "targets": y}

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._mixed_step(batch) if self.mixup is not None else self._shared_step(batch)
        # forward (value of this step + accumulate) only where a step-level value is logged;
        # update() for epoch-level metrics (a forward also computes and merges a batch-level value)
        self.train_loss(out["loss"].detach())
        self.train_acc.update(out["logits"], out["targets"])
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch)
        self.val_loss.update(out["loss"])
        self.val_acc.update(out["logits"], out["targets"])
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)
        return out

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch)
        self.test_loss.update(out["loss"])
        self.test_acc.update(out["logits"], out["targets"])
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)
        return out

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(dim=-1)

    # ------------------------------------------------------------- compile
    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.compile_backbone and stage == "fit":
            self.backbone = torch.compile(self.backbone)
