"""``data=hf``: Hugging Face datasets written by the test (parquet shards in hub layout, a ``save_to_disk`` folder)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from runner.data import HFDataModule
from tests.support.hf_cache import write_hub_dataset
from tests.support.slurm import run_py

CLASSES = ("circle", "square", "star")


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset in the hub's layout: ``data/train-*.parquet`` (30 rows) and ``data/test-*.parquet`` (9 rows)."""
    return write_hub_dataset(tmp_path_factory.mktemp("hub_dataset"), {"train": 30, "test": 9}, CLASSES)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("datasets_cache"))


def _module(path: Path | str, cache_dir: str | None = None, **kwargs) -> HFDataModule:
    kwargs = {"image_size": 16, "batch_size": 4, "num_workers": 0, "augment": "basic", "seed": 0, **kwargs}
    return HFDataModule(path=str(path), cache_dir=cache_dir, **kwargs)


def test_columns_classes_and_a_carved_validation_split(hub_dir: Path, cache_dir: str, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="runner.data.hf"):
        dm = _module(hub_dir, cache_dir)
    assert (dm.image_column, dm.label_column) == ("image", "label")
    assert dm.class_names == list(CLASSES) and dm.num_classes == 3
    assert "has no validation split" in caplog.text and "per class with seed 0" in caplog.text
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (27, 3, 9)
    assert sorted(dm.val_set[i][1] for i in range(3)) == [0, 1, 2]  # one of each class: stratified
    # Arrow files memory-mapped from the datasets cache: rows are read, and images decoded, on access
    assert dm.train_set.rows.cache_files and all(Path(f["filename"]).is_file() for f in dm.train_set.rows.cache_files)
    images, labels = dm.sample_images(3)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.long
    again = _module(hub_dir, cache_dir)
    again.setup("fit")
    assert torch.equal(again.sample_images(3)[1], labels)  # same seed, same carve


def test_loader_defaults_use_the_cores_this_process_may_use(hub_dir: Path, cache_dir: str) -> None:
    dm = _module(hub_dir, cache_dir, num_workers=None, pin_memory=None)
    assert dm.num_workers == len(os.sched_getaffinity(0))
    dm.setup("fit")
    assert dm.pin_memory is False  # no Trainer on a GPU
    assert dm.val_dataloader().persistent_workers


def test_a_save_to_disk_folder_with_its_own_validation_split(hub_dir: Path, cache_dir: str, tmp_path: Path) -> None:
    import datasets

    splits = datasets.load_dataset(str(hub_dir), cache_dir=cache_dir)
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": splits["train"], "validation": splits["test"]}).save_to_disk(str(folder))
    dm = _module(folder)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (30, 9)
    assert dm.test_set is None  # no test split: the validation split tests (a warning says so)
    assert dm.sample_images(2)[0].shape == (2, 3, 16, 16)


def test_named_string_and_int_label_columns(tmp_path: Path) -> None:
    import datasets
    import numpy as np
    from PIL import Image

    images = [Image.fromarray(np.full((12, 12, 3), 10 * i, np.uint8)) for i in range(12)]
    features = datasets.Features({"picture": datasets.Image(), "kind": datasets.Value("string"),
                                  "n": datasets.Value("int64")})
    rows = {"picture": images, "kind": ["dog" if i % 2 else "cat" for i in range(12)], "n": [i % 3 for i in range(12)]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "one"))  # a bare Dataset: train
    with pytest.raises(ValueError, match="has no ClassLabel column .* its columns: picture \\(Image\\), "
                                         "kind \\(Value string\\), n \\(Value int64\\)"):
        _module(tmp_path / "one")
    by_name = _module(tmp_path / "one", label_column="kind")
    by_name.setup("fit")
    assert by_name.class_names == ["cat", "dog"] and by_name.image_column == "picture"
    labels = [by_name.train_set[i][1] for i in range(len(by_name.train_set))]
    assert sorted(set(labels)) == [0, 1] and len(by_name.val_set) == 2  # 10% of 6 per class: one each
    by_int = _module(tmp_path / "one", label_column="n")
    assert by_int.class_names == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_column": "img"}, "data.image_column: split 'train' of .* has no column 'img'; its columns: "
                                  "image \\(Image\\), label \\(ClassLabel\\)"),
        ({"label_column": "image"}, "data.label_column: .* no ClassLabel, int or string column 'image'; its columns"),
        ({"val_split": "validation"}, "data.val_split: .* has no split 'validation'; its splits: train, test"),
        ({"train_split": "training"}, "data.train_split: .* has no split 'training'; its splits: train, test"),
        ({"test_split": "eval"}, "data.test_split: .* has no split 'eval'; its splits: train, test"),
    ],
)
def test_a_wrong_column_or_split_names_what_exists(hub_dir: Path, cache_dir: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        _module(hub_dir, cache_dir, **kwargs)
    assert "\n" not in str(err.value)


def test_a_missing_local_folder_names_data_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.path: no folder"):
        _module(tmp_path / "nowhere")


@pytest.mark.slow
def test_run_py_trains_on_a_hub_layout_dataset(hub_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "out" / "run"
    proc = run_py(
        "data=hf", f"data.path={hub_dir}", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=32",
        "data.batch_size=8", "trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1", "print_config=false", "report=false", "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={run_dir}", out_dir=tmp_path / "out", timeout=300, env={"HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "has no validation split" in proc.stdout and "3 classes" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert "test/acc" in metrics and metrics["train/loss"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
