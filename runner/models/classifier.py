"""The LightningModule: any timm backbone by name, trained as an image classifier."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import math
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

from runner.paths import resolve_user_path

__all__ = ["ImageClassifier", "create_backbone"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _timm_model_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def create_backbone(
    name: str, num_classes: int, pretrained: bool = False, weights_path: str | None = None, **kwargs: Any
) -> nn.Module:
    """Create a timm model by name, never downloading weights.

    With ``weights_path`` the weights come from a local file:

    - a timm/torchvision-style state dict (``.pth``/``.bin``/``.safetensors``, e.g. ImageNet weights)
      goes through timm's own pretrained path (``pretrained_cfg_overlay=dict(file=...)``), which drops
      a classifier head of another size, resamples ViT position embeddings and adapts ``in_chans``;
    - a checkpoint of this project (``.ckpt``, keys ``backbone.*`` inside ``state_dict``) is loaded with
      the prefix stripped; a head of another size is left freshly initialised.

    How many tensors were loaded is logged; a file of which nothing matches the model is an error.

    Args:
        name: a timm model name, e.g. ``resnet18`` or ``vit_tiny_patch16_224``.
        num_classes: size of the classification head.
        pretrained: must stay False unless ``weights_path`` is given (no network at run time).
        weights_path: optional local weights file (see above).
        **kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for ViTs, ``drop_rate``, ``in_chans``).

    Raises:
        ValueError: unknown model name (with the closest timm names), ``pretrained`` without a file, or a
            weights file that does not fit the model.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, _timm_model_names(), n=5, cutoff=0.6)
        hint = f" Closest timm names: {', '.join(close)}." if close else " See timm.list_models()."
        raise ValueError(f"model.backbone: unknown timm model {name!r}.{hint}")
    if pretrained and not weights_path:
        raise ValueError(
            "model.pretrained=true needs model.weights_path (a local file): weights are never downloaded."
        )
    if not weights_path:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    path = resolve_user_path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights_path: no such file {str(path)!r}")
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"model.weights_path: {str(path)!r} is not a readable state dict or checkpoint: {err}") from err
    prefix = "backbone."
    if any(k.startswith(prefix) for k in state):
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        loaded = _load_project_weights(model, state, prefix, path)
    else:
        overlay: dict[str, Any] = {"file": str(path)}
        head = _file_head_size(name, state)
        if head is not None:  # timm keeps the file's head when it has the size asked for
            overlay["num_classes"] = head
        try:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes, **kwargs
            )
        except RuntimeError as err:
            raise ValueError(f"model.weights_path: {str(path)!r} does not fit timm model {name!r}: {err}") from err
        loaded = _count_loaded(model, state)
    total = len(model.state_dict())
    if loaded == 0:
        raise ValueError(
            f"model.weights_path: none of the {len(state)} tensors in {str(path)!r} matches timm model {name!r} "
            f"(model keys look like {', '.join(list(model.state_dict())[:3])})"
        )
    log.info(f"Loaded {loaded} of {total} tensors of {name} from {path}")
    return model


def _file_head_size(name: str, state: Mapping[str, Any]) -> int | None:
    """Rows of the classifier weight in a timm state dict (its number of classes), if it has one."""
    try:
        classifier = timm.models.get_pretrained_cfg_value(name, "classifier")
    except Exception:  # noqa: BLE001 - a model without a pretrained config
        return None
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    for head in names:
        weight = state.get(f"{head}.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def _load_project_weights(model: nn.Module, state: Mapping[str, torch.Tensor], prefix: str, path: Path) -> int:
    """Load the ``backbone.*`` tensors of this project's checkpoint; a head of another size is skipped."""
    own = model.state_dict()
    head = _classifier_prefixes(model)
    weights: dict[str, torch.Tensor] = {}
    skipped = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):].removeprefix("_orig_mod.")  # torch.compile'd backbones
        if name not in own:
            continue
        if own[name].shape != value.shape:
            if name.startswith(head):
                skipped.append(name)
                continue
            raise ValueError(
                f"model.weights_path: {name} has shape {tuple(value.shape)} in {str(path)!r} but "
                f"{tuple(own[name].shape)} in the model (same model.backbone and model.in_chans as the checkpoint?)"
            )
        weights[name] = value
    if skipped:
        log.info(f"Not loading the classifier head from {path} (another number of classes): {', '.join(skipped)}")
    model.load_state_dict(weights, strict=False)
    return len(weights)


def _count_loaded(model: nn.Module, state: Mapping[str, torch.Tensor]) -> int:
    """Tensors of ``model`` that came from ``state``: equal values, or adapted/resampled (not the head)."""
    head = _classifier_prefixes(model)
    count = 0
    for name, tensor in model.state_dict().items():
        source = state.get(name)
        if not isinstance(source, torch.Tensor):
            continue
        if source.shape == tensor.shape:
            count += int(torch.equal(source.to(tensor.dtype), tensor))
        elif not name.startswith(head):
            count += 1  # resampled position embeddings, adapted input convolution
    return count


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
        self._restored_acc_best: float | None = None
        self._schedule_horizon: dict[str, int] = {}

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
        # Lightning runs a sanity check on validation first: reset so val/acc_best is honest,
        # then bring back the best value of the run this one resumes (kept in the checkpoint).
        self.val_loss.reset()
        self.val_acc.reset()
        self.val_acc_best.reset()
        if self._restored_acc_best is not None:
            self.val_acc_best.update(torch.tensor(self._restored_acc_best, device=self.device))
        # A resumed scheduler carries the horizon of the earlier run (e.g. T_max): use this run's.
        self._apply_schedule_horizon()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the local state, no collective: every rank updates it with the same (synced) val/acc
        best = float(self.val_acc_best.max_value)
        if math.isfinite(best):
            checkpoint["val_acc_best"] = best

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        value = checkpoint.get("val_acc_best")
        self._restored_acc_best = float(value) if value is not None else None

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._shared_step(batch)
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
        self._schedule_horizon = self._horizon_arguments()
        scheduler = self.scheduler_factory(optimizer=optimizer, **self._schedule_horizon)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval, "monitor": "val/loss"},
        }

    def _horizon_arguments(self) -> dict[str, int]:
        """Fill the scheduler's length (``T_max``, ``total_steps``, ``total_iters``) when the config left it null.

        It is this run's real length: ``trainer.estimated_stepping_batches`` optimizer steps for
        ``scheduler_interval=step``, ``trainer.max_epochs`` epochs for ``epoch``.
        """
        factory = self.scheduler_factory
        given = dict(getattr(factory, "keywords", {}) or {})
        try:
            params = inspect.signature(getattr(factory, "func", factory)).parameters
        except (TypeError, ValueError):
            return {}
        names = [n for n in _HORIZON_ARGS if n in params and given.get(n, params[n].default) is None]
        if not names:
            return {n: given[n] for n in _HORIZON_ARGS if n in params and isinstance(given.get(n), int)}
        if self.scheduler_interval == "step":
            length = self.trainer.estimated_stepping_batches
            where = "trainer.max_epochs or trainer.max_steps"
        else:
            length = self.trainer.max_epochs
            where = "trainer.max_epochs"
        if length is None or not math.isfinite(length) or length < 1:
            raise ValueError(
                f"model.scheduler.{names[0]}=null takes the run's length from {where}, which is unbounded "
                f"({length}); set model.scheduler.{names[0]} or {where}"
            )
        return {n: int(length) for n in names}

    def _apply_schedule_horizon(self) -> None:
        """After a resume, give the restored schedulers this run's horizon and put the LR on that schedule."""
        if not self._schedule_horizon or self.trainer is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            changed = False
            for name, value in self._schedule_horizon.items():
                if getattr(scheduler, name, value) != value:
                    setattr(scheduler, name, value)
                    changed = True
            if changed and hasattr(scheduler, "_get_closed_form_lr"):
                lrs = scheduler._get_closed_form_lr()
                for group, lr in zip(scheduler.optimizer.param_groups, lrs):
                    group["lr"] = lr
                scheduler._last_lr = list(lrs)


# Scheduler arguments that give its length; null in the config = this run's length.
_HORIZON_ARGS = ("T_max", "total_steps", "total_iters")


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
