"""Epoch-level metrics are accumulated with update(): same values, no batch-level compute per step."""

from __future__ import annotations

import functools

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics.functional.classification import multiclass_accuracy

from runner.data import DigitsDataModule
from runner.models import ImageClassifier


class _Keep(Callback):
    def __init__(self) -> None:
        self.train: list[dict] = []
        self.val: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.train.append({k: v.detach().clone() for k, v in outputs.items()})

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if not trainer.sanity_checking:
            self.val.append({k: v.detach().clone() for k, v in outputs.items()})


def test_epoch_metrics_equal_the_batches_and_are_not_computed_per_batch() -> None:
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(image_size=16, batch_size=32, seed=0)
    model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=16,
                            optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    computes = {"train_acc": 0, "val_acc": 0, "val_loss": 0}
    for name in computes:
        metric = getattr(model, name)
        original = metric.compute

        def counted(*args, _name=name, _original=original, **kwargs):  # noqa: ANN001, ANN202
            computes[_name] += 1
            return _original(*args, **kwargs)

        metric.compute = counted
    keep = _Keep()
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=6, limit_val_batches=4, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[keep],
    )
    trainer.fit(model, datamodule=dm)
    # a forward() would compute a batch-level value on each of the 6 training / 4 validation batches
    assert all(n <= 3 for n in computes.values()), computes

    def accuracy(outs: list[dict]) -> float:  # the metric's definition (macro average), on all batches at once
        logits = torch.cat([o["logits"] for o in outs])
        targets = torch.cat([o["targets"] for o in outs])
        return float(multiclass_accuracy(logits, targets, num_classes=10))

    assert abs(float(trainer.callback_metrics["train/acc"]) - accuracy(keep.train)) < 1e-6
    val_loss = sum(float(o["loss"]) * len(o["targets"]) for o in keep.val) / sum(len(o["targets"]) for o in keep.val)
    assert abs(float(trainer.callback_metrics["val/acc"]) - accuracy(keep.val)) < 1e-6
    assert abs(float(trainer.callback_metrics["val/loss"]) - val_loss) < 1e-4
