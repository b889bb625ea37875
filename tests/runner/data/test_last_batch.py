"""A last training batch of one sample never reaches BatchNorm; a training set smaller than one batch is
an error at setup naming ``data.batch_size`` (issue 21, item 4)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
from PIL import Image

from runner.data import ImageFolderDataModule
from runner.models import ImageClassifier


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for i, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            Image.new("RGB", (20, 20), (60 * i, 9 * j, 200)).save(root / name / f"{j}.png")
    return root


@pytest.fixture
def folders(tmp_path: Path) -> tuple[str, str]:
    """17 training images (17 = 4 * 4 + 1: a last batch of one at batch size 4), 4 validation images."""
    return str(_folder(tmp_path / "train", {"a": 9, "b": 8})), str(_folder(tmp_path / "val", {"a": 2, "b": 2}))


def test_a_batchnorm_model_trains_on_17_images_at_batch_size_4(folders: tuple[str, str]) -> None:
    data = ImageFolderDataModule(train_dir=folders[0], val_dir=folders[1], image_size=16, batch_size=4, num_workers=0)
    model = ImageClassifier(backbone="test_resnet", num_classes=2, image_size=16)
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)  # a batch of 1 would raise "Expected more than 1 value per channel"
    assert trainer.global_step == 4


@pytest.mark.parametrize("drop_last", [False, True])
def test_fewer_images_than_a_batch_fail_at_setup(folders: tuple[str, str], drop_last: bool) -> None:
    data = ImageFolderDataModule(train_dir=folders[0], val_dir=folders[1], image_size=16, batch_size=32,
                                 drop_last=drop_last, num_workers=0)
    with pytest.raises(ValueError, match=r"^data\.batch_size=32 is larger than the training set \(17 samples\)"):
        data.setup("fit")
    data.setup("validate")  # evaluating needs no training batch
    assert len(data.val_set) == 4
