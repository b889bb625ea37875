"""A small CNN LightningModule that learns the 32 px shapes within a few epochs (the cartography tests).

A plain Lightning module (not the project's ImageClassifier): ``training_step`` returns ``{"loss",
"logits", "targets"}`` and takes batches ``(images, labels, indices)``, as the cartography callback's
contract asks of any Lightning project. Importable in DDP spawn children (``tests.support``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class ShapesCNN(pl.LightningModule):
    """Three conv blocks (the last dilated), global pooling, a linear head; AdamW with a one-cycle schedule.

    Args:
        num_classes: the number of classes.
        width: the channels of the first block (then 2x and 3x).
        lr: the peak learning rate (``one_cycle``) or the constant one.
        one_cycle: OneCycleLR over the run (else a constant rate, simple to resume).
    """

    def __init__(self, num_classes: int = 4, width: int = 16, lr: float = 0.01, one_cycle: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _block(3, width), nn.MaxPool2d(2), _block(width, 2 * width), _block(2 * width, 3 * width, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3 * width, num_classes),
        )
        self.lr, self.one_cycle = lr, one_cycle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits.detach(), "targets": y}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val/acc", (self(x).argmax(dim=1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), self.lr, weight_decay=1e-4)
        if not self.one_cycle:
            return optimizer
        steps = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.lr, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
