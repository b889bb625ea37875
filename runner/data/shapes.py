"""Datamodule over the procedurally generated shapes (see :mod:`runner.data.shapes_generator`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torch.utils.data import Dataset

from runner.data.datamodule import ImageDataModule, tensor_dataset
from runner.data.generated_splits import GeneratedSplits
from interpret.checks import positive_int, unit_interval
from runner.data.shapes_generator import SHAPE_CLASSES, SHORTCUTS, add_shortcut_patch, check_scales, generate_shapes

__all__ = ["SAMPLE_SPLITS", "ShapesDataModule", "SymmetryAugmented"]

#: where the sample images can come from (``data.sample_split``)
SAMPLE_SPLITS: tuple[str, ...] = ("val", "train")


class SymmetryAugmented(Dataset):
    """Training items whose image is turned by one of the 8 symmetries of the square, drawn per item.

    A circle, square, triangle or cross rotated by a multiple of 90 degrees and/or mirrored is still a
    circle, square, triangle or cross: the label holds, and the model sees 8 versions of each generated
    image instead of memorising 2000 of them. The draw comes from torch's global generator, which the
    training loader seeds per epoch (``num_workers=0``) or per sample (kept workers): resumes stay exact.

    Args:
        dataset: items ``(image (C, H, W), label, ...)``; everything after the image is passed on as it is.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image, *rest = self.dataset[index]
        k = int(torch.randint(8, ()))
        image = torch.rot90(image, k % 4, (1, 2))
        return (image.flip(2) if k >= 4 else image, *rest)


class ShapesDataModule(GeneratedSplits[torch.Tensor], ImageDataModule):
    """Shapes of ``num_classes`` kinds on a cluttered background, with ground-truth masks.

    Train, val and test sets are generated from ``seed``, ``seed + 1`` and ``seed + 2``.
    ``val_masks``/``test_masks`` hold each image's object mask (bool ``(N, H, W)``), and
    :meth:`sample_masks` returns the masks matching :meth:`sample_images`.

    Args:
        num_train, num_val, num_test: split sizes.
        num_classes: how many shape kinds (2-4) out of circle, square, triangle, cross.
        min_scale, max_scale: each object's radius as a fraction of ``image_size`` (0.25-0.40 by default).
        shortcut: None, or ``"patch"``: a class-coded square at the top-left corner of a share
            ``shortcut_p`` of the *training* images only (validation and test stay clean; see
            :func:`~runner.data.shapes_generator.add_shortcut_patch`), to test whether a model and
            its explanations fall for a shortcut.
        shortcut_p: the share of training images with the shortcut, in [0, 1].
        augment: ``symmetry`` (the default of ``conf/data/shapes.yaml``): each training image turned by a
            random one of the 8 symmetries of the square (:class:`SymmetryAugmented`; the shapes' classes
            do not change under them); ``basic`` or ``none``: the images as generated. Validation, test
            and the sample images are never turned.
        sample_split: where :meth:`sample_images` / :meth:`sample_masks` take their first images:
            ``"val"`` (the default) or ``"train"`` (e.g. to see whether explanations sit on a
            shortcut that only the training images carry).
        **kwargs: see :class:`~runner.data.ImageDataModule`.
    """

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 400,
        num_test: int = 400,
        num_classes: int = 4,
        min_scale: float = 0.25,
        max_scale: float = 0.40,
        shortcut: str | None = None,
        shortcut_p: float = 0.9,
        sample_split: str = "val",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_splits(num_train, num_val, num_test)
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise ValueError(f"data.num_classes must be between 2 and {len(SHAPE_CLASSES)}, got {num_classes}")
        if shortcut is not None and shortcut not in SHORTCUTS:
            raise ValueError(f"data.shortcut can be null or {', '.join(SHORTCUTS)}, got {shortcut!r}")
        check_scales(min_scale, max_scale)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.shortcut = shortcut
        self.shortcut_p = unit_interval(shortcut_p, "data.shortcut_p")
        if sample_split not in SAMPLE_SPLITS:
            raise ValueError(f"data.sample_split can be {' or '.join(SAMPLE_SPLITS)}, got {sample_split!r}")
        self.sample_split = sample_split
        self._train_masks: torch.Tensor | None = None
        self.class_names = list(SHAPE_CLASSES[:num_classes])

    #: ``data.augment``: ``symmetry`` besides the presets of generated data
    augment_presets: tuple[str, ...] = ("none", "basic", "symmetry")

    def _training_view(self, dataset: Dataset) -> Dataset:
        """The training items (with sample indices and flipped labels), turned when ``augment`` is ``symmetry``."""
        view = super()._training_view(dataset)
        return SymmetryAugmented(view) if self.augment == "symmetry" else view

    def _make(self, n: int, seed: int) -> tuple[torch.utils.data.TensorDataset, torch.Tensor]:
        images, labels, masks = generate_shapes(n, self.image_size, seed, self.num_classes, self.min_scale, self.max_scale)
        if self.shortcut == "patch" and seed == self.seed:  # the training split (val, test: seed + 1, + 2)
            images, _ = add_shortcut_patch(images, labels, self.shortcut_p, seed)
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        if seed == self.seed:
            self._train_masks = torch.from_numpy(masks)
        return tensor_dataset(self.normalize(x), torch.from_numpy(labels)), torch.from_numpy(masks)

    def sample_images(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images of ``sample_split`` (validation by default) and their labels."""
        if self.sample_split == "val":
            return super().sample_images(n)
        positive_int(n, "n")
        if self.train_set is None:
            self.setup("fit")
        items = [self.train_set[i] for i in range(min(n, len(self.train_set)))]  # type: ignore[arg-type, index]
        return torch.stack([item[0] for item in items]), self._sample_targets([item[1] for item in items])

    def sample_masks(self, n: int) -> torch.Tensor:
        """The object masks (bool ``(n, H, W)``) of the images :meth:`sample_images` returns for the same ``n``."""
        if self.sample_split == "val":
            return super().sample_masks(n)
        if self._train_masks is None:
            self.setup("fit")
        assert self._train_masks is not None
        return self._train_masks[: min(n, len(self._train_masks))]

    def _sample_mask_batch(self, masks: torch.Tensor) -> torch.Tensor:
        """One object per image: its mask as it is."""
        return masks
