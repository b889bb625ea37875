"""Exact resume: a run resumed from an end-of-epoch checkpoint ends with bitwise the weights of the run
that was never interrupted (issue 21, item 2), and the training loader's batch rules (item 4)."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

from runner.data import DigitsDataModule
from runner.data.epoch_sampler import EpochSeededSampler
from runner.models import ImageClassifier

EPOCHS = 2


class _Noisy(Dataset):
    """A random augmentation: noise drawn from the generator of the process that loads the item."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.base[idx]
        return image + 0.5 * torch.randn_like(image), label


class _NoisyDigits(DigitsDataModule):
    def setup(self, stage: str | None = None) -> None:
        fresh = self.train_set is None
        super().setup(stage)
        if fresh:
            self.train_set = _Noisy(self.train_set)


def _fit(root: Path, max_epochs: int, num_workers: int, ckpt_path: str | None = None) -> dict[str, torch.Tensor]:
    """One "process": seeded as run.py seeds, a fresh model and datamodule, fit to ``max_epochs``."""
    pl.seed_everything(0, workers=True, verbose=False)
    data = _NoisyDigits(image_size=16, batch_size=16, seed=0, num_workers=num_workers)
    # dropout draws from the main process's generator
    model = ImageClassifier(backbone="test_resnet", num_classes=10, image_size=16, backbone_kwargs={"drop_rate": 0.3},
                            optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    last = ModelCheckpoint(dirpath=root, filename="last", monitor=None, every_n_epochs=1, enable_version_counter=False)
    trainer = pl.Trainer(
        max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", deterministic=True,
        logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[last],
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def test_end_of_epoch_resume_gives_bitwise_the_same_weights(tmp_path: Path) -> None:
    """Noise drawn in a kept (persistent) worker (each sample's own seed), dropout in the main process (the
    global generators), the order: each would differ after the resume without the per-epoch and per-sample
    seeding (the num_workers=0 path runs in tests/e2e/test_kill_resume.py)."""
    num_workers = 1
    whole = _fit(tmp_path / "whole", EPOCHS, num_workers)
    _fit(tmp_path / "cut", 1, num_workers)  # the run "killed" after epoch 0's checkpoint
    resumed = _fit(tmp_path / "cut", EPOCHS, num_workers, ckpt_path=str(tmp_path / "cut" / "last.ckpt"))
    assert torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1
    diff = _max_abs_diff(whole, resumed)
    assert diff == 0.0, f"resumed weights differ from the uninterrupted run's by up to {diff}"


def test_each_epoch_has_its_own_order_from_seed_and_epoch() -> None:
    data = list(range(50))
    first = EpochSeededSampler(data, seed=3)
    orders = []
    for epoch in range(3):
        first.set_epoch(epoch)
        orders.append(list(first))
    assert orders[0] != orders[1] != orders[2] and sorted(orders[1]) == data
    # a sampler made in a new process for epoch 2 (a resume) draws epoch 2's order
    assert list(EpochSeededSampler(data, seed=3, epoch=2)) == orders[2]
    assert list(EpochSeededSampler(data, seed=4, epoch=2)) != orders[2]


def test_per_sample_seeds_depend_on_seed_epoch_and_index_only() -> None:
    """Keys for kept workers: the same for epoch 2 of a long-lived sampler (whose generator the loader also
    drew its base seed from) and of a sampler made for epoch 2 in a new process; items loaded under them
    draw the same numbers whichever process loads them."""
    from runner.data.epoch_sampler import SeededItems

    data = list(range(20))
    lived = EpochSeededSampler(data, seed=3, per_sample_seeds=True)
    for epoch in range(3):
        lived.set_epoch(epoch)
        torch.empty((), dtype=torch.int64).random_(generator=lived.generator)  # a DataLoader's base-seed draw
        keys = list(lived)
    fresh = EpochSeededSampler(data, seed=3, epoch=2, per_sample_seeds=True)
    assert list(fresh) == keys and sorted(k[0] for k in keys) == data
    assert len({seed for _, seed in keys}) == len(keys)

    class Draw(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 20

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(())

    items = SeededItems(Draw())
    first = [items[k] for k in keys]
    torch.manual_seed(1234)  # another process state
    assert [items[k] for k in reversed(keys)] == first[::-1]


@pytest.mark.parametrize(("size", "batch_size", "drop_last", "batches"),
                         [(33, 16, False, 2), (34, 16, False, 3), (34, 16, True, 2), (32, 16, True, 2)])
def test_last_batch_of_one_is_dropped(size: int, batch_size: int, drop_last: bool, batches: int) -> None:
    data = DigitsDataModule(image_size=8, batch_size=batch_size, drop_last=drop_last)
    data.setup("fit")
    data.train_set = torch.utils.data.Subset(data.train_set, range(size))
    sizes = [len(labels) for _, labels, _ in data.train_dataloader()]
    assert len(sizes) == batches and min(sizes) > 1
    assert sum(sizes) == size - (size % batch_size if drop_last or size % batch_size == 1 else 0)


def test_training_set_smaller_than_a_batch_is_an_error_naming_the_key() -> None:
    data = DigitsDataModule(image_size=8, batch_size=64)
    data.setup("fit")
    data.train_set = torch.utils.data.Subset(data.train_set, range(17))
    with pytest.raises(ValueError, match=r"data\.batch_size=64 is larger than the training set \(17 samples\)"):
        data.train_dataloader()
    with pytest.raises(ValueError, match=r"data\.drop_last must be true or false"):
        DigitsDataModule(drop_last="yes")


def test_seeded_items_seed_the_cpu_generator_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """An item's seed goes to torch's CPU generator (and numpy's, python's), not through torch.manual_seed,
    which also seeds every accelerator's generator: ~0.46 ms an item in a loader worker (0.82x timm's loop)."""
    import random

    import numpy as np

    from runner.data.epoch_sampler import SeededItems

    class Draw(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> tuple[float, float, float]:
            return torch.rand(()).item(), float(np.random.rand()), random.random()

    monkeypatch.setattr(torch, "manual_seed", lambda seed: pytest.fail("torch.manual_seed called per item"))
    got = SeededItems(Draw())[(2, 99)]
    expected = torch.rand((), generator=torch.Generator().manual_seed(99)).item()
    assert got == (expected, float(np.random.RandomState(99).rand()), random.Random(99).random())
