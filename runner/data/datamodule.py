"""The base of every datamodule: normalisation, loaders, and the fixed sample images of the one
``sample_images(n) -> (images, targets)`` contract."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from interpret.checks import positive_int
from interpret.images import IMAGENET_MEAN, IMAGENET_STD
from interpret.layers import resolve_normalization
from runner.data.epoch_sampler import EpochSeededSampler, SeededItems
from runner.data.label_noise import IndexedDataset, check_label_noise, choose_flips

_log = logging.getLogger(__name__)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageDataModule", "SampleTargets", "check_train_size", "tensor_dataset"]

#: the targets of :meth:`ImageDataModule.sample_images`: int64 labels ``(n,)`` for classification, a list
#: of ``n`` dicts ``{"boxes": (K, 4) float xyxy, "labels": (K,) int64}`` for detection
SampleTargets: TypeAlias = "torch.Tensor | list[dict[str, torch.Tensor]]"


class ImageDataModule(pl.LightningDataModule):
    """Base class: subclasses fill ``self.train_set``, ``self.val_set``, ``self.test_set`` in ``setup``.

    ``mean``/``std`` default to None, meaning "what the model expects": the runner calls
    :meth:`set_normalization` with the backbone's timm data config before training. Until
    then ImageNet statistics (timm's default) are used.

    The training loader (:meth:`train_dataloader`) shuffles from ``(seed, epoch)`` so a resume from
    an end-of-epoch checkpoint is exact, drops a last batch of a single sample (all incomplete ones
    with ``drop_last=True``), and refuses a training set smaller than one batch (naming
    ``data.batch_size``).

    Training batches of a classification datamodule (the default stacking ``collate_fn``) are
    ``(images, labels, indices)``: each sample's index in ``train_set``, so a callback can follow
    every sample across epochs (``callbacks.CartographyCallback``); validation and test batches are
    ``(images, labels)``. Datamodules with their own batch format (detection) keep it.

    ``label_noise`` (``data.label_noise``, in [0, 1)) flips the labels of a seeded share of the
    training samples (drawn from ``data.seed``) to another class, in the training loader only
    (``train_set`` keeps the true labels; validation and test are untouched); which ones is
    :attr:`noisy_indices`. It tests whether mislabeled samples can be found (cartography's least
    confident samples).
    """

    #: how the loaders batch samples (None: torch's default stacking; detection datamodules set their own)
    collate_fn: Callable[[list[Any]], Any] | None = None

    def __init__(
        self,
        batch_size: int = 64,
        image_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 42,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Any = "basic",
        drop_last: bool = False,
        label_noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.augment = self._check_augment(augment)
        self.label_noise = check_label_noise(label_noise)
        if self.label_noise > 0 and self.collate_fn is not None:
            raise ValueError(f"data.label_noise is for classification data; {type(self).__name__} has its own "
                             f"targets, got data.label_noise={label_noise!r} (use 0)")
        positive_int(batch_size, "data.batch_size")
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"data.image_size must be an int >= 8, got {image_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be an int >= 0, got {num_workers!r}")
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed if seed is not None else 0
        self._seeded = seed is not None  # a seeded run also re-seeds the global generators each epoch
        if not isinstance(drop_last, bool):
            raise ValueError(f"data.drop_last must be true or false, got {drop_last!r}")
        self.drop_last = drop_last
        self.mean: tuple[float, ...] = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std: tuple[float, ...] = tuple(std) if std is not None else IMAGENET_STD
        self._explicit_normalization = mean is not None and std is not None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.class_names: list[str] = []

    # -------------------------------------------------------------- metadata
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the model's statistics, unless the config gave ``data.mean``/``data.std`` explicitly."""
        if self._explicit_normalization:
            _log.info(f"Normalising with data.mean={list(self.mean)}, data.std={list(self.std)} (given; not the model's)")
            return
        if self.train_set is not None:
            raise RuntimeError("set_normalization must be called before setup()")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        _log.info(f"Normalising with the model's mean={list(self.mean)}, std={list(self.std)} (its timm pretrained "
                  "config; data.mean/data.std override)")

    def use_model_normalization(self, model: nn.Module) -> None:
        """Normalise with the statistics ``model`` expects (its ``data_config``, else its timm model's).

        The one place the model's statistics reach the data; explicit ``data.mean``/``data.std`` win
        (see :meth:`set_normalization`), and a model without statistics leaves ImageNet's.
        """
        stats = resolve_normalization(model)
        if stats is not None:
            self.set_normalization(*stats)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1], ``(N, C, H, W)`` -> normalised with ``mean``/``std``."""
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, -1, 1, 1)
        return (images - mean) / std

    # ------------------------------------------------------------ transforms
    #: the ``data.augment`` presets this datamodule takes (in-memory generated data: its images as generated)
    augment_presets: tuple[str, ...] = ("none", "basic")

    def _check_augment(self, augment: Any) -> str:
        """``data.augment`` as a preset name, one of :attr:`augment_presets` (one-line error naming the key)."""
        from runner.data.transforms import check_augment

        try:
            return check_augment(augment, self.augment_presets)
        except ValueError as err:
            if augment in ("timm",):
                raise ValueError(
                    f"{err} ({type(self).__name__} holds generated images in memory; the timm preset needs "
                    "image files: data=imagefolder or data=hf)"
                ) from None
            raise

    def set_model_data_config(self, config: Mapping[str, Any] | None) -> None:
        """Remember the model's timm data config (interpolation, crop_pct, crop_mode) for the transforms."""
        self._model_data_config = dict(config) if config else None

    def model_data_config(self) -> dict[str, Any] | None:
        """The model's timm data config: the one given to :meth:`set_model_data_config`, else the attached
        Trainer's LightningModule's ``data_config``, else None (timm's defaults)."""
        given = getattr(self, "_model_data_config", None)
        if given:
            return dict(given)
        trainer = getattr(self, "trainer", None)
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        config = getattr(module, "data_config", None) if module is not None else None
        return dict(config) if isinstance(config, Mapping) else None

    # --------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        """An evaluation loader (in order, every sample, persistent workers)."""
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not been called")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        """The training loader: shuffled from ``(seed, epoch)``, an incomplete last batch of 1 dropped.

        The order, the workers' seeds and (in a seeded run) the global generators of each epoch depend
        only on ``(data.seed, epoch)`` (:class:`~runner.data.epoch_sampler.EpochSeededSampler`), and the
        epoch is in the checkpoint: a run resumed from an end-of-epoch checkpoint trains on the same
        batches, with the same augmentation draws, as the run that was never interrupted. With
        ``data.num_workers > 0`` in one process the workers are kept across epochs (as timm's loader
        keeps them): each sample is loaded under its own seed of ``(data.seed, epoch, index)``
        (:class:`~runner.data.epoch_sampler.SeededItems`), so a kept worker's generator state, which no
        checkpoint holds, never reaches an augmentation. Under DDP (Lightning's ``DistributedSampler``)
        the workers start anew each epoch from the epoch's seed.

        The last batch is dropped when it would hold a single sample (BatchNorm cannot train on it),
        or whenever it is incomplete with ``data.drop_last=true``.
        """
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not been called")
        dataset = self._training_view(self.train_set)
        size = len(dataset)  # type: ignore[arg-type]
        check_train_size(size, self.batch_size, self.drop_last)
        # kept workers need per-sample seeds; under DDP Lightning's DistributedSampler hands out plain indices
        persistent = self.num_workers > 0 and self._world_size() == 1
        sampler = EpochSeededSampler(dataset, self.seed, epoch=self._start_epoch(), reseed_globals=self._seeded,
                                     per_sample_seeds=persistent)
        return DataLoader(
            SeededItems(dataset) if persistent else dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=sampler.generator,
            drop_last=self.drop_last or self._per_process(size) % self.batch_size == 1,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=persistent,
            collate_fn=self.collate_fn,
        )

    def _training_view(self, dataset: Dataset) -> Dataset:
        """What the training loader draws from: ``(image, label, index)`` items with :attr:`noisy_indices`
        flipped (:class:`~runner.data.label_noise.IndexedDataset`); ``dataset`` itself for a
        datamodule with its own batch format (a ``collate_fn``: detection)."""
        if self.collate_fn is not None:
            return dataset
        return IndexedDataset(dataset, self._flips(len(dataset)), self.num_classes)  # type: ignore[arg-type]

    @property
    def noisy_indices(self) -> torch.Tensor:
        """The ``train_set`` indices whose labels the training loader flips (sorted int64; empty without
        ``data.label_noise``). Sets the datamodule up when it is not yet."""
        if self.label_noise == 0:
            return torch.zeros(0, dtype=torch.long)
        if self.train_set is None:
            self.setup("fit")
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() left no training set")
        return self._flips(len(self.train_set))[0].clone()  # type: ignore[arg-type]

    def _flips(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices, offsets)`` of the flipped labels of a training set of ``size`` samples (drawn once per size)."""
        cached = getattr(self, "_flips_cache", None)
        if cached is None or cached[0] != size:
            cached = (size, choose_flips(size, self.label_noise, self.num_classes, self.seed))
            self._flips_cache = cached
        return cached[1]

    def _per_process(self, size: int) -> int:
        """The training samples one process sees: all of them, or under DDP its share (Lightning's
        DistributedSampler pads every rank to ``ceil(size / world_size)``)."""
        return -(-size // self._world_size())

    def _world_size(self) -> int:
        """The attached Trainer's world size (1 without a Trainer)."""
        return int(getattr(getattr(self, "trainer", None), "world_size", 1) or 1)

    def _start_epoch(self) -> int:
        """The epoch the training loader starts in: the attached Trainer's (restored from a checkpoint
        on resume), else 0."""
        trainer = getattr(self, "trainer", None)
        loop = getattr(trainer, "fit_loop", None)
        return int(loop.epoch_progress.current.processed) if loop is not None else 0

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set if self.test_set is not None else self.val_set, shuffle=False)

    # --------------------------------------------------------- sample images
    def sample_images(self, n: int) -> tuple[torch.Tensor, SampleTargets]:
        """The first ``n`` validation images (all of them when there are fewer) and their targets.

        The same images every call, so explanations of them can be compared across epochs.

        Returns:
            ``images``: one ``(n, C, H, W)`` batch, as the model takes it (normalised for a classifier,
            in [0, 1] for a detector). ``targets``: what :meth:`_sample_targets` makes of the items'
            targets: int64 labels ``(n,)`` for classification, a list of ``n`` target dicts
            ``{"boxes", "labels"}`` for detection.
        """
        items = self._first_val_items(n)
        return torch.stack([item[0] for item in items]), self._sample_targets([item[1] for item in items])

    def _sample_targets(self, targets: list[Any]) -> SampleTargets:
        """The targets of the validation items -> the targets :meth:`sample_images` returns (here: labels)."""
        return torch.as_tensor([int(t) for t in targets], dtype=torch.long)

    def _first_val_items(self, n: int) -> list[Any]:
        """The first ``n`` items of the validation set (all of them when it has fewer), set up on first use."""
        positive_int(n, "n")
        if self.val_set is None:
            self.setup("fit")
        if self.val_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() left no validation set")
        return [self.val_set[i] for i in range(min(n, len(self.val_set)))]  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.mean = tuple(state_dict.get("mean", self.mean))
        self.std = tuple(state_dict.get("std", self.std))


def check_train_size(size: int, batch_size: int, drop_last: bool = False) -> None:
    """Raise (naming ``data.batch_size``) when a training set of ``size`` samples is smaller than one batch."""
    if size < batch_size:
        raise ValueError(
            f"data.batch_size={batch_size} is larger than the training set ({size} samples): "
            f"use data.batch_size<={size} or more training data"
            + (" (data.drop_last=true would leave no batch at all)" if drop_last else "")
        )


def tensor_dataset(images: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    """``(image, label)`` pairs held in memory (labels as int64)."""
    return TensorDataset(images.contiguous(), labels.long())
