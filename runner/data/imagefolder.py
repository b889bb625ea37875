"""A folder of class subfolders of images, checked up front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from runner.data.base import ImageDataModule

__all__ = ["ImageFolderDataModule", "scan_image_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _resolve(path: str | Path) -> Path:
    """Resolve a config path against the directory the user launched from (Hydra may chdir)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import to_absolute_path

        if HydraConfig.initialized():
            return Path(to_absolute_path(str(p)))
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return p.resolve()


def scan_image_folder(root: str | Path, field: str) -> tuple[list[str], list[tuple[Path, str]]]:
    """List ``(file, class_name)`` under ``root/<class>/``; raise naming ``field`` and the path on any problem.

    Every file is opened and verified as an image, so a broken or non-image file fails here,
    before training, not halfway through an epoch.
    """
    root = _resolve(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{field}: folder {str(root)!r} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{field}: folder {str(root)!r} has no class subfolders (expected {root}/<class>/<image>)")
    samples: list[tuple[Path, str]] = []
    for cls in classes:
        files = sorted(f for f in (root / cls).iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ValueError(f"{field}: class folder {str(root / cls)!r} is empty")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError) as err:
                allowed = ", ".join(IMAGE_EXTENSIONS)
                raise ValueError(f"{field}: {str(f)!r} is not a readable image ({allowed}): {err}") from None
            samples.append((f, cls))
    return classes, samples


class _FolderDataset(Dataset):
    def __init__(self, samples: list[tuple[Path, int]], transform: Any) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[idx]
        with Image.open(path) as im:
            return self.transform(im.convert("RGB")), label


class ImageFolderDataModule(ImageDataModule):
    """Images from ``train_dir``/``val_dir`` (and optional ``test_dir``), each ``<dir>/<class>/<image>``.

    Images are resized to ``image_size`` x ``image_size``; training images are also flipped
    horizontally at random when ``augment`` is true. Folders are scanned and every file is
    verified when the datamodule is built, so errors name the bad path before training.
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str,
        test_dir: str | None = None,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.augment = augment
        self.class_names, self._train = scan_image_folder(train_dir, "data.train_dir")
        val_classes, self._val = scan_image_folder(val_dir, "data.val_dir")
        self._test = None
        splits = [("data.val_dir", val_dir, val_classes)]
        if test_dir is not None:
            test_classes, self._test = scan_image_folder(test_dir, "data.test_dir")
            splits.append(("data.test_dir", test_dir, test_classes))
        for field, path, classes in splits:
            if classes != self.class_names:
                only_train = sorted(set(self.class_names) - set(classes))
                only_other = sorted(set(classes) - set(self.class_names))
                raise ValueError(
                    f"{field}: class folders of {path!r} differ from data.train_dir {train_dir!r}: "
                    f"only in train: {only_train}, only in {field.split('.')[-1]}: {only_other}"
                )
        if len(self.class_names) < 2:
            raise ValueError(f"data.train_dir: {train_dir!r} needs at least 2 class folders, found {self.class_names}")

    def _transform(self, train: bool) -> Any:
        from torchvision import transforms as T

        steps: list[Any] = [T.Resize((self.image_size, self.image_size))]
        if train and self.augment:
            steps.append(T.RandomHorizontalFlip())
        steps += [T.ToTensor(), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)

    def _dataset(self, samples: list[tuple[Path, str]], train: bool) -> _FolderDataset:
        index = {c: i for i, c in enumerate(self.class_names)}
        return _FolderDataset([(p, index[c]) for p, c in samples], self._transform(train))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set = self._dataset(self._train, train=True)
        self.val_set = self._dataset(self._val, train=False)
        self.test_set = self._dataset(self._test, train=False) if self._test is not None else None
