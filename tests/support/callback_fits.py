"""Small models, datamodules and callbacks shared by the callback tests.

Importable as ``tests.support.callback_fits`` in child processes too: DDP spawn keeps
``sys.path``, and the run.py subprocess tests put the repository root on ``PYTHONPATH``
(:func:`pythonpath_env`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class TinyNet(pl.LightningModule):
    """A per-sample CNN (no BatchNorm, so DDP and single-process forwards agree sample by sample).

    ``training_step`` returns ``{"loss", "logits", "features", "targets"}`` like the project's
    ``ImageClassifier``. ``feature_mode="rank_onehot"`` replaces the features by a one-hot of the
    global rank (to see which ranks a gathered batch covers); ``nan_at_step`` makes the loss NaN
    from that global step on, on ``nan_rank`` only (None: every rank).
    """

    def __init__(
        self,
        num_classes: int = 10,
        lr: float = 0.05,
        feature_mode: str = "pooled",
        nan_at_step: int | None = None,
        nan_rank: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.act2 = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, num_classes)
        self.lr = lr
        self.feature_mode = feature_mode
        self.nan_at_step = nan_at_step
        self.nan_rank = nan_rank

    @property
    def data_config(self) -> dict[str, Any]:
        return {"mean": MEAN, "std": STD, "input_size": (3, 16, 16)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        feats = self.features(x)
        logits = self.head(self.drop(feats))
        loss = F.cross_entropy(logits, y)
        if self.nan_at_step is not None and self.global_step >= self.nan_at_step:
            if self.nan_rank is None or self.global_rank == self.nan_rank:
                loss = loss * float("nan")
        if self.feature_mode == "rank_onehot":
            feats = F.one_hot(torch.full((x.shape[0],), self.global_rank), 4).float()
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return {"loss": loss, "logits": logits.detach(), "features": feats.detach(), "targets": y}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TinyData(pl.LightningDataModule):
    """Seeded random images with learnable labels; has the project's datamodule interface."""

    def __init__(self, n: int = 256, image_size: int = 16, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 10, (n,), generator=g)
        base = torch.randn(10, 3, image_size, image_size, generator=g)
        self.images = base[self.labels] + 0.5 * torch.randn(n, 3, image_size, image_size, generator=g)
        self.image_size = image_size
        self.batch_size = batch_size
        self.mean, self.std = MEAN, STD
        self.class_names = [f"class{i}" for i in range(10)]
        self.num_classes = 10

    def train_dataloader(self) -> DataLoader:
        """In order; under DDP rank r takes samples r, r + world, ... itself (for tests that compare
        with one process: use ``Trainer(use_distributed_sampler=False)``; Lightning's own
        distributed sampler would shuffle)."""
        dataset = TensorDataset(self.images, self.labels)
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from torch.utils.data import DistributedSampler

            sampler = DistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.images[:64], self.labels[:64]), batch_size=self.batch_size)

    def sample_images(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[:n].clone(), self.labels[:n].clone()


class PoisonWeights(Callback):
    """Fill every parameter with NaN at the start of training batch ``at_batch`` (a NaN loss follows)."""

    def __init__(self, at_batch: int = 2) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.at_batch:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("nan"))


class RaiseAt(Callback):
    """Raise a RuntimeError at the start of training batch ``at_batch``."""

    def __init__(self, at_batch: int = 1) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.at_batch:
            raise RuntimeError("boom: injected by the test")


class DumpState(Callback):
    """Write, per rank, what the tests cannot read back from a ddp_spawn parent: steps, hooks, flags."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        info = {
            "rank": trainer.global_rank,
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "should_stop": bool(trainer.should_stop),
            "run_failed": any(bool(getattr(cb, "run_failed", False)) for cb in trainer.callbacks),
            "hooks": count_hooks(pl_module),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
            "num_logged": {type(cb).__name__: cb.num_logged for cb in trainer.callbacks if hasattr(cb, "num_logged")},
        }
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(info))


def csv_rows(root: Path) -> list[dict[str, str]]:
    """The rows of the first ``metrics.csv`` under ``root`` (Lightning's CSVLogger)."""
    return list(csv.DictReader(next(root.rglob("metrics.csv")).open()))


def count_hooks(model: nn.Module) -> int:
    """All forward/backward (pre-)hooks registered on the model's modules."""
    total = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            total += len(getattr(m, attr, {}) or {})
    return total


def pythonpath_env() -> dict[str, str]:
    """Environment for a run.py subprocess that can import this module and runs offline."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])  # the repository root: tests.support imports
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="1")
    return env


# ----------------------------------------------------------------- reading loggers' storage back
def read_tensorboard_images(root: Path, key: str) -> list[np.ndarray]:
    """Decode every image logged under ``key`` in the TensorBoard event files below ``root``."""
    import io

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for events in root.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"images": 0})
        acc.Reload()
        if key in acc.Tags()["images"]:
            out += [np.asarray(Image.open(io.BytesIO(e.encoded_image_string))) for e in acc.Images(key)]
    return out


def read_tensorboard_scalars(root: Path, key: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for events in root.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        if key in acc.Tags()["scalars"]:
            out += [(e.step, e.value) for e in acc.Scalars(key)]
    return out


def wandb_images(root: Path, key: str) -> list[Path]:
    """PNG files of an offline wandb run for ``key`` (wandb turns '/' into folders)."""
    media = list(root.rglob("offline-run-*/files/media/images"))
    found: list[Path] = []
    for folder in media:
        found += [p for p in folder.rglob("*.png") if p.relative_to(folder).as_posix().startswith(key + "_")]
    return found


def mlflow_images(root: Path, key: str) -> list[Path]:
    """PNGs in the mlflow artifact store below ``root`` under ``images/{key}/``."""
    return [p for p in root.rglob("*.png") if f"artifacts/images/{key}/" in p.as_posix()]


class UnevenRankData(TinyData):
    """Under DDP, rank r draws its own ``batches`` batches of ``batch_sizes[r]`` images (uneven
    batch sizes per rank, the same number of batches); images are ``offset + scale * noise``.

    :meth:`rank_images` gives the parent process the very images a rank trains on.
    """

    def __init__(
        self, batch_sizes: tuple[int, ...] = (8, 5), batches: int = 3, offset: float = 100.0, scale: float = 0.01
    ) -> None:
        super().__init__(n=16, image_size=8, batch_size=batch_sizes[0])
        self.batch_sizes = tuple(batch_sizes)
        self.batches = batches
        self.offset = offset
        self.scale = scale

    def rank_images(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + rank)
        n = self.batch_sizes[rank] * self.batches
        x = self.offset + self.scale * torch.randn(n, 3, self.image_size, self.image_size, generator=g)
        return x, torch.randint(0, 10, (n,), generator=g)

    def train_dataloader(self) -> DataLoader:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        x, y = self.rank_images(rank)
        return DataLoader(TensorDataset(x, y), batch_size=self.batch_sizes[rank], shuffle=False)


class ProbedNet(TinyNet):
    """TinyNet with an identity layer ``probe`` on its input (to monitor the raw images)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probe = nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return super().features(self.probe(x))


class NoFeaturesOnRank(TinyNet):
    """``training_step`` omits ``"features"`` on global rank ``rank`` only (a rank that cannot
    contribute to a gather must still not leave the others waiting)."""

    def __init__(self, rank: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.missing_rank = rank

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().training_step(batch, batch_idx)
        if self.global_rank == self.missing_rank:
            del out["features"]
        return out
