"""A folder of class subfolders of images, checked up front."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from runner.data.datamodule import ImageDataModule, check_train_size
from runner.data.transforms import AUGMENT_PRESETS, TransformRecipe, resolve_data_config
from runner.paths import resolve_user_path

__all__ = ["ImageFolderDataModule", "scan_image_folder", "full_scan"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


_SHOWN = 5  # how many bad file names a warning lists


def _readable(path: Path) -> str | None:
    """None when ``path`` opens as an image, else why not."""
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return str(err) or type(err).__name__
    return None


def _names(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def scan_image_folder(root: str | Path, field: str) -> tuple[list[str], list[tuple[Path, str]]]:
    """List ``(file, class_name)`` under ``root/<class>/`` cheaply; raise naming ``field`` and the path on a problem.

    Cheap: the folders are listed, files are kept by extension (others are skipped, counted and
    named in a warning), and only the first image of each class is opened, so a folder that is not
    an image folder at all fails here, before training. Unreadable files found later are skipped
    while loading (:class:`_FolderDataset`); ``full_check`` opens every file up front.
    """
    root = resolve_user_path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{field}: folder {str(root)!r} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{field}: folder {str(root)!r} has no class subfolders (expected {root}/<class>/<image>)")
    samples: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    allowed = ", ".join(IMAGE_EXTENSIONS)
    for cls in classes:
        files = sorted(f for f in (root / cls).iterdir() if f.is_file() and not f.name.startswith("."))
        images = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
        skipped += [f for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images:
            what = "is empty" if not files else f"has no image files ({allowed})"
            raise ValueError(f"{field}: class folder {str(root / cls)!r} {what}")
        # the first image of each class must open; a bad one is skipped in favour of the next few
        for first in images[:3]:
            problem = _readable(first)
            if problem is None:
                break
            skipped.append(first)
            images.remove(first)
        else:
            raise ValueError(f"{field}: {str(first)!r} is not a readable image ({allowed}): {problem}")
        samples += [(f, cls) for f in images]
    if skipped:
        log.warning(f"{field}: skipping {len(skipped)} non-image or unreadable file(s): {_names(skipped)}")
    return classes, samples


def full_scan(samples: list[tuple[Path, str]]) -> list[Path]:
    """Open every file of ``samples``; return the unreadable ones."""
    return [path for path, _ in samples if _readable(path) is not None]


class _FolderDataset(Dataset):
    """``(image, label)`` pairs from files; an unreadable file is skipped (the next one is used) and counted."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Any) -> None:
        self.samples = samples
        self.transform = transform
        self.unreadable: list[Path] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        for offset in range(len(self.samples)):
            path, label = self.samples[(idx + offset) % len(self.samples)]
            try:
                with Image.open(path) as im:
                    return self.transform(im.convert("RGB")), label
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                if path not in self.unreadable:
                    self.unreadable.append(path)
                    if len(self.unreadable) <= _SHOWN:
                        log.warning(
                            f"skipping unreadable image {str(path)!r} ({err}); "
                            f"{len(self.unreadable)} so far (data.full_check=true finds them all up front)"
                        )
        raise RuntimeError("no readable image left in the dataset")


class ImageFolderDataModule(ImageDataModule):
    """Images from ``train_dir``/``val_dir`` (and optional ``test_dir``), each ``<dir>/<class>/<image>``.

    Transforms follow the ``augment`` preset (``none``, ``basic``: resize + flip, ``timm``: timm's
    RandomResizedCrop/RandAugment/random-erasing recipe, evaluation by ``crop_pct`` + centre crop; see
    :mod:`runner.data.transforms`), on the model's timm data config with ``data.*`` on top. Start-up is cheap: folders are listed, files
    are filtered by extension and the first image of each class is opened, so errors name the bad
    path before training. Unreadable images met during training are skipped, counted and named in
    a warning. ``full_check=True`` opens every file once before training, in ``prepare_data`` (so
    on one process per node under DDP), and leaves the unreadable ones out on every rank.

    Without ``test_dir`` the test set is the validation set (a warning says so).
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str,
        test_dir: str | None = None,
        augment: Any = "timm",
        full_check: bool = False,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        auto_augment: str | None = None,
        color_jitter: float | None = 0.4,
        re_prob: float = 0.0,
        interpolation: str | None = None,
        crop_pct: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.recipe = TransformRecipe(
            augment=augment, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip, auto_augment=auto_augment,
            color_jitter=color_jitter, re_prob=re_prob, interpolation=interpolation, crop_pct=crop_pct,
        )
        super().__init__(augment=self.recipe.augment, **kwargs)
        if not isinstance(full_check, bool):
            raise ValueError(f"data.full_check must be true or false, got {full_check!r}")
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.full_check = full_check
        self.class_names, self._train = scan_image_folder(train_dir, "data.train_dir")
        val_classes, self._val = scan_image_folder(val_dir, "data.val_dir")
        self._test = None
        splits = [("data.val_dir", val_dir, val_classes)]
        if test_dir is not None:
            test_classes, self._test = scan_image_folder(test_dir, "data.test_dir")
            splits.append(("data.test_dir", test_dir, test_classes))
        else:
            _warn_rank_zero(
                f"data.test_dir is not set: the TEST SET IS THE VALIDATION SET ({val_dir}); test/* metrics "
                "are validation metrics. Set data.test_dir=<folder> for an independent test."
            )
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

    augment_presets = AUGMENT_PRESETS

    def _all_samples(self) -> list[tuple[Path, str]]:
        return self._train + self._val + (self._test or [])

    def _scan_file(self) -> Path:
        """Where ``prepare_data`` leaves the list of unreadable files for every rank of this node."""
        key = "\n".join(str(p) for p, _ in self._all_samples())
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"vision-runner-imagefolder-{digest}.json"

    def prepare_data(self) -> None:
        """With ``full_check``: open every image once (one process per node) and record the unreadable ones."""
        if not self.full_check:
            return
        bad = full_scan(self._all_samples())
        if bad:
            log.warning(f"data.full_check: {len(bad)} unreadable image(s) left out: {_names(bad)}")
        else:
            log.info(f"data.full_check: all {len(self._all_samples())} images are readable")
        self._scan_file().write_text(json.dumps([str(p) for p in bad]))

    def _drop_unreadable(self) -> None:
        if not self.full_check:
            return
        path = self._scan_file()
        if not path.is_file():  # setup() without prepare_data() (e.g. used outside a Trainer)
            self.prepare_data()
        bad = set(json.loads(path.read_text()))
        if bad:
            self._train = [s for s in self._train if str(s[0]) not in bad]
            self._val = [s for s in self._val if str(s[0]) not in bad]
            if self._test is not None:
                self._test = [s for s in self._test if str(s[0]) not in bad]

    def _transform(self, train: bool) -> Any:
        """The split's transform: the ``data.augment`` preset (:mod:`runner.data.transforms`) on the model's data config."""
        config = resolve_data_config(
            self.model_data_config(), self.image_size, self.mean, self.std,
            interpolation=self.recipe.interpolation, crop_pct=self.recipe.crop_pct,
        )
        return self.recipe.build(train, config)

    def _dataset(self, samples: list[tuple[Path, str]], train: bool) -> _FolderDataset:
        index = {c: i for i, c in enumerate(self.class_names)}
        return _FolderDataset([(p, index[c]) for p, c in samples], self._transform(train))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self._drop_unreadable()
        if stage in (None, "fit"):  # before anything trains: a set smaller than one batch names data.batch_size
            check_train_size(len(self._train), self.batch_size, self.drop_last)
        self.train_set = self._dataset(self._train, train=True)
        self.val_set = self._dataset(self._val, train=False)
        self.test_set = self._dataset(self._test, train=False) if self._test is not None else None


def _warn_rank_zero(message: str) -> None:
    from runner.launch.ddp import global_rank

    if global_rank() == 0:
        log.warning(message)
