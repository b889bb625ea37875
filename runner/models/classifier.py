"""The LightningModule: any timm backbone by name, trained as an image classifier."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["ImageClassifier", "create_backbone"]


@functools.lru_cache(maxsize=1)
def _timm_model_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def create_backbone(
    name: str, num_classes: int, pretrained: bool = False, weights_path: str | None = None, **kwargs: Any
) -> nn.Module:
    """Create a timm model by name, never downloading weights.

    Args:
        name: a timm model name, e.g. ``resnet18`` or ``vit_tiny_patch16_224``.
        num_classes: size of the classification head.
        pretrained: must stay False unless ``weights_path`` is given (no network at run time).
        weights_path: optional local checkpoint (a state dict, ``.pth``/``.bin``/``.safetensors``).
        **kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for ViTs, ``drop_rate``).

    Raises:
        ValueError: unknown model name (with the closest timm names), or ``pretrained`` without a file.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, _timm_model_names(), n=5, cutoff=0.6)
        hint = f" Closest timm names: {', '.join(close)}." if close else " See timm.list_models()."
        raise ValueError(f"model.backbone: unknown timm model {name!r}.{hint}")
    if pretrained and not weights_path:
        raise ValueError(
            "model.pretrained=true needs model.weights_path (a local file): weights are never downloaded."
        )
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    if weights_path:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"model.weights_path: no such file {str(path)!r}")
        timm.models.load_checkpoint(model, str(path), strict=False)
    return model


class ImageClassifier(pl.LightningModule):
    """Image classifier around a timm backbone.

    ``forward(x)`` returns logits. :meth:`forward_features` returns named features:

    - ``features``: the pooled pre-logits vector, ``backbone.forward_head(fmap, pre_logits=True)``
      (for a ResNet the global-average-pooled output of ``layer4``; for a ViT the class token or
      pooled tokens after the final norm).
    - ``feature_map``: the backbone's last feature map, ``backbone.forward_features(x)``
      (``(B, C, h, w)`` for CNNs, ``(B, tokens, C)`` for ViTs).
    - ``logits``: the classifier's output.

    ``training_step``/``validation_step`` return ``{"loss", "logits", "features", "targets"}``
    (all but ``loss`` detached), so callbacks read them in ``on_*_batch_end(outputs=...)``.

    Layers are addressable by ``named_modules()`` names: the timm model sits under
    ``backbone``, so ResNet stages are ``backbone.layer1`` ... ``backbone.layer4``.
    """

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
    ) -> None:
        super().__init__()
        if num_classes is None or num_classes < 2:
            raise ValueError(f"model.num_classes must be an int >= 2 (taken from the datamodule), got {num_classes}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"model.scheduler_interval can be epoch or step, got {scheduler_interval!r}")
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        backbone_kwargs = _plain(backbone_kwargs or {})
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        kwargs = dict(backbone_kwargs)
        kwargs.setdefault("in_chans", in_chans)
        if image_size is not None and _accepts_img_size(backbone):
            kwargs.setdefault("img_size", image_size)
        self.backbone = create_backbone(backbone, num_classes, pretrained, weights_path, **kwargs)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = label_smoothing
        self.compile_backbone = compile

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
        x, y = batch[0], batch[1]
        out = self.forward_features(x)
        loss = F.cross_entropy(out["logits"], y, label_smoothing=self.label_smoothing)
        return {
            "loss": loss,
            "logits": out["logits"].detach(),
            "features": out["features"].detach(),
            "targets": y,
        }

    def on_train_start(self) -> None:
        # Lightning runs a sanity check on validation first: reset so val/acc_best is honest.
        self.val_loss.reset()
        self.val_acc.reset()
        self.val_acc_best.reset()

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch)
        self.train_loss(out["loss"].detach())
        self.train_acc(out["logits"], out["targets"])
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch)
        self.val_loss(out["loss"])
        self.val_acc(out["logits"], out["targets"])
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)
        return out

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch)
        self.test_loss(out["loss"])
        self.test_acc(out["logits"], out["targets"])
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)
        return out

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(dim=-1)

    # ------------------------------------------------------------- optimizer
    def setup(self, stage: str) -> None:
        if self.compile_backbone and stage == "fit":
            self.backbone = torch.compile(self.backbone)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        else:
            optimizer = self.optimizer_factory(params=self.trainer.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval, "monitor": "val/loss"},
        }


def _plain(value: Any) -> Any:
    """Config containers (e.g. omegaconf's DictConfig) -> plain dicts/lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def _accepts_img_size(name: str) -> bool:
    """Whether a timm architecture takes ``img_size`` (ViT-like models with a fixed patch grid)."""
    entry = timm.models.get_arch_name(name)
    return entry.startswith(("vit", "deit", "beit", "eva", "swin", "cait", "xcit", "levit", "pit", "mvit", "flexivit"))
