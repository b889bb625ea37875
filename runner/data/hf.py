"""Hugging Face ``datasets`` as classification data: a hub dataset id, a folder of parquet/arrow shards,
or a ``save_to_disk`` folder.

The dataset is loaded once (``datasets.load_dataset`` / ``load_from_disk``): Arrow files memory-mapped
from the datasets cache (or the ``save_to_disk`` folder), so no split is ever copied into memory, and
the processes of a DDP run share the same pages. Rows are read and their images decoded on access,
in the DataLoader workers (the ``Image`` feature decodes lazily); under DDP Lightning's distributed
sampler gives each rank its own share of the row indices, so each rank reads only its shard.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from runner.data.datamodule import ImageDataModule
from runner.data.transforms import AUGMENT_PRESETS, TransformRecipe, resolve_data_config
from runner.paths import resolve_user_path

__all__ = ["HFDataModule", "HFImageDataset", "load_splits", "usable_cores"]

log = logging.getLogger(__name__)

#: the ``datasets`` builder of a single local shard file, by suffix
_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow"}

#: validation split names looked for when ``data.val_split`` is null
VAL_SPLIT_NAMES = ("validation", "valid", "val")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def load_splits(path: str, name: str | None = None, revision: str | None = None, cache_dir: str | None = None) -> Any:
    """The splits (a ``datasets.DatasetDict``) of a hub id, a local folder of shards (or one parquet/arrow
    file: a ``train`` split), or a ``save_to_disk`` folder.

    Raises:
        FileNotFoundError: a local-looking ``path`` that does not exist.
        ValueError: one line naming ``data.path``/``data.name`` when ``datasets`` cannot load it.
    """
    import datasets

    local = resolve_user_path(path)
    if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(local))  # a save_to_disk folder: memory-mapped as it is
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    if local.is_file() and local.suffix in _FILE_BUILDERS:  # one shard
        source, kwargs = _FILE_BUILDERS[local.suffix], {"data_files": {"train": str(local)}}
    elif not local.is_dir() and (str(path).startswith((os.sep, ".", "~")) or local.exists()):
        raise FileNotFoundError(f"data.path: no folder {str(local)!r} (a hub dataset id, or a local folder of "
                                "parquet/arrow shards or of save_to_disk)")
    else:
        source, kwargs = (str(local) if local.is_dir() else str(path)), {"name": name, "revision": revision}
    try:
        loaded = datasets.load_dataset(source, cache_dir=cache_dir, **kwargs)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all get the same one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        where = "" if local.exists() else " (no local folder of that name either)"
        raise ValueError(
            f"data.path: datasets cannot load {str(path)!r}{where}" + (f" (data.name={name!r})" if name else "")
            + f": {type(err).__name__}: {first}"
        ) from err
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


@dataclass(frozen=True)
class _Labels:
    """The class names, and how a label value becomes a class index (None: it already is one)."""

    names: list[str]
    index: dict[Any, int] | None = None


class HFImageDataset(Dataset):
    """``(image, label)`` pairs of a ``datasets.Dataset``, each row decoded when it is read (in the worker)."""

    def __init__(self, rows: Any, image_column: str, label_column: str, labels: _Labels, transform: Any) -> None:
        self.rows = rows.select_columns([image_column, label_column])
        self.image_column, self.label_column = image_column, label_column
        self.index = labels.index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        row = self.rows[int(idx)]
        label = row[self.label_column]
        image = row[self.image_column].convert("RGB")
        return self.transform(image), self.index[label] if self.index is not None else int(label)


class HFDataModule(ImageDataModule):
    """Images and labels of a Hugging Face dataset (``data=hf``), split by its own splits.

    Args:
        path: a hub dataset id (``uoft-cs/cifar10``, ``timm/oxford-iiit-pet``), a local folder of
            parquet/arrow shards (the hub layout ``<dir>/data/train-00000-of-00001.parquet`` works), or a
            ``save_to_disk`` folder.
        name: the dataset's config (``load_dataset(path, name)``), or None.
        train_split: the training split.
        val_split: the validation split; None: the first of ``validation``, ``valid``, ``val`` that exists,
            else ``val_fraction`` of the training split, carved per class with ``seed`` (the log says so).
        test_split: the test split; None: ``test`` when it exists and is labelled, else the validation
            split (a warning says so).
        image_column, label_column: None: the first ``Image`` and ``ClassLabel`` columns. A named label
            column may also hold ints (classes ``0..max``) or strings (classes sorted by name).
        val_fraction: the share of the training split carved out as validation when there is none.
        revision, cache_dir: ``load_dataset``'s (a hub revision; where the datasets cache lives).
        augment, scale, ratio, hflip, auto_augment, color_jitter, re_prob, interpolation, crop_pct: the
            transforms, as for ``data=imagefolder`` (:mod:`runner.data.transforms`).
        num_workers: None: the cores this process may use (:func:`usable_cores`).
        pin_memory: None: on when the Trainer trains on a GPU.
        **kwargs: :class:`~runner.data.datamodule.ImageDataModule`'s (batch_size, image_size, seed, mean, std,
            label_noise, ...).
    """

    augment_presets = AUGMENT_PRESETS

    def __init__(
        self,
        path: str,
        name: str | None = None,
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        val_fraction: float = 0.1,
        revision: str | None = None,
        cache_dir: str | None = None,
        augment: Any = "timm",
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        auto_augment: str | None = None,
        color_jitter: float | None = 0.4,
        re_prob: float = 0.0,
        interpolation: str | None = None,
        crop_pct: float | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.recipe = TransformRecipe(
            augment=augment, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip, auto_augment=auto_augment,
            color_jitter=color_jitter, re_prob=re_prob, interpolation=interpolation, crop_pct=crop_pct,
        )
        super().__init__(
            augment=self.recipe.augment, num_workers=usable_cores() if num_workers is None else num_workers,
            pin_memory=bool(pin_memory), **kwargs,
        )
        if not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
        self._auto_pin_memory = pin_memory is None
        self.path = str(path)
        splits = load_splits(path, name, revision, cache_dir)
        train = _split(splits, train_split, "data.train_split", self.path)
        self.image_column = _image_column(train, image_column, train_split, self.path)
        self.label_column = _label_column(train, label_column, train_split, self.path)
        self._labels = _labels(train, self.label_column)
        self.class_names = self._labels.names
        if len(self.class_names) < 2:
            raise ValueError(f"data.label_column: {self.label_column!r} of {self.path} holds {len(self.class_names)} "
                             "class(es); a classifier needs at least 2")

        val_name = val_split or next((s for s in VAL_SPLIT_NAMES if s in splits), None)
        if val_name is not None:
            self._val = _split(splits, val_name, "data.val_split", self.path)
            self._train = train
        else:
            self._train, self._val = _carve(train, self.label_column, self._labels, val_fraction, self.seed)
            _info_rank_zero(
                f"data.val_split: {self.path} has no validation split (splits: {', '.join(splits)}): using "
                f"{val_fraction:.0%} of {train_split!r} as validation, per class with seed {self.seed} "
                f"({len(self._train)} train / {len(self._val)} validation rows)"
            )
        self._test = None
        if test_split is not None:
            self._test = _split(splits, test_split, "data.test_split", self.path)
        elif "test" in splits and "test" != train_split and _labelled(splits["test"], self.label_column):
            self._test = splits["test"]
        else:
            _warn_rank_zero(
                f"data.test_split: {self.path} has no labelled test split: the TEST SET IS THE VALIDATION SET; "
                "test/* metrics are validation metrics."
            )
        for key, rows in (("data.val_split", self._val), ("data.test_split", self._test)):
            if rows is not None:
                _same_columns(rows, self.image_column, self.label_column, key, self.path)
        log.info(
            f"data=hf: {self.path}: {len(self._train)} train / {len(self._val)} validation"
            + (f" / {len(self._test)} test" if self._test is not None else "")
            + f" rows, image column {self.image_column!r}, label column {self.label_column!r}, "
            f"{len(self.class_names)} classes"
        )

    def _transform(self, train: bool) -> Any:
        """The split's transform: the ``data.augment`` preset on the model's data config (as ``data=imagefolder``)."""
        config = resolve_data_config(
            self.model_data_config(), self.image_size, self.mean, self.std,
            interpolation=self.recipe.interpolation, crop_pct=self.recipe.crop_pct,
        )
        return self.recipe.build(train, config)

    def _dataset(self, rows: Any, train: bool) -> HFImageDataset:
        return HFImageDataset(rows, self.image_column, self.label_column, self._labels, self._transform(train))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self._auto_pin_memory:
            self.pin_memory = _trains_on_gpu(getattr(self, "trainer", None))
        self.train_set = self._dataset(self._train, train=True)
        self.val_set = self._dataset(self._val, train=False)
        self.test_set = self._dataset(self._test, train=False) if self._test is not None else None


# ------------------------------------------------------------------ helpers
def _split(splits: Any, name: str, key: str, path: str) -> Any:
    if name not in splits:
        raise ValueError(f"{key}: {path} has no split {name!r}; its splits: {', '.join(splits)}")
    return splits[name]


def _describe(rows: Any) -> str:
    """``name (type), ...`` of the columns, for error messages."""
    return ", ".join(f"{column} ({_type_name(feature)})" for column, feature in rows.features.items())


def _type_name(feature: Any) -> str:
    dtype = getattr(feature, "dtype", None)
    return type(feature).__name__ + (f" {dtype}" if type(feature).__name__ == "Value" and dtype else "")


def _image_column(rows: Any, named: str | None, split: str, path: str) -> str:
    import datasets

    images = [c for c, f in rows.features.items() if isinstance(f, datasets.Image)]
    if named is None:
        if not images:
            raise ValueError(f"data.image_column: split {split!r} of {path} has no Image column; its columns: "
                             f"{_describe(rows)}")
        return images[0]
    if named not in rows.features or named not in images:
        what = "no column" if named not in rows.features else "no Image column"
        raise ValueError(f"data.image_column: split {split!r} of {path} has {what} {named!r}; its columns: "
                         f"{_describe(rows)}")
    return named


def _label_column(rows: Any, named: str | None, split: str, path: str) -> str:
    import datasets

    if named is None:
        labels = [c for c, f in rows.features.items() if isinstance(f, datasets.ClassLabel)]
        if not labels:
            raise ValueError(f"data.label_column: split {split!r} of {path} has no ClassLabel column (data.label_column "
                             f"can name an int or string one); its columns: {_describe(rows)}")
        return labels[0]
    feature = rows.features.get(named)
    ok = isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and (feature.dtype.startswith(("int", "uint")) or feature.dtype == "string")
    )
    if not ok:
        what = "no column" if feature is None else "no ClassLabel, int or string column"
        raise ValueError(f"data.label_column: split {split!r} of {path} has {what} {named!r}; its columns: "
                         f"{_describe(rows)}")
    return named


def _labels(rows: Any, column: str) -> _Labels:
    """Class names from the ``ClassLabel`` (else ``0..max`` of int labels, else the sorted strings)."""
    import datasets

    feature = rows.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return _Labels([str(n) for n in feature.names])
    values = rows.unique(column)
    if feature.dtype == "string":
        names = sorted(str(v) for v in values)
        return _Labels(names, {n: i for i, n in enumerate(names)})
    return _Labels([str(i) for i in range(int(max(values)) + 1)])


def _label_array(rows: Any, column: str, labels: _Labels) -> np.ndarray:
    values = rows[column]  # one column, read from Arrow (the images are not touched)
    if labels.index is not None:
        return np.asarray([labels.index.get(v, -1) for v in values])
    return np.asarray(values, dtype=np.int64)


def _carve(rows: Any, column: str, labels: _Labels, fraction: float, seed: int) -> tuple[Any, Any]:
    """``fraction`` of each class's rows (at least one of a class with two or more) as validation, the rest train."""
    classes = _label_array(rows, column, labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(classes):
        idx = np.flatnonzero(classes == cls)
        rng.shuffle(idx)
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return rows.select(np.sort(np.concatenate(train))), rows.select(np.sort(np.concatenate(val)))


def _labelled(rows: Any, column: str) -> bool:
    """False for a split whose labels are all missing (``-1``, as hub test splits of competitions have)."""
    if column not in rows.features:
        return False
    try:
        return set(rows.unique(column)) != {-1}
    except Exception:  # noqa: BLE001 - a column unique() cannot read: let the column check say so
        return True


def _same_columns(rows: Any, image_column: str, label_column: str, key: str, path: str) -> None:
    missing = [c for c in (image_column, label_column) if c not in rows.features]
    if missing:
        raise ValueError(f"{key}: this split of {path} lacks column(s) {', '.join(missing)}; its columns: "
                         f"{_describe(rows)}")


def _trains_on_gpu(trainer: Any) -> bool:
    try:
        return trainer is not None and trainer.strategy.root_device.type == "cuda"
    except Exception:  # noqa: BLE001 - no strategy yet
        return False


def _info_rank_zero(message: str) -> None:
    from runner.launch.ddp import global_rank

    if global_rank() == 0:
        log.info(message)


def _warn_rank_zero(message: str) -> None:
    from runner.launch.ddp import global_rank

    if global_rank() == 0:
        log.warning(message)
