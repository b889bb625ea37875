"""A COCO-format annotations file + image folder, for object detection, checked up front."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from runner.data.detection_datamodule import DetectionDataModule
from runner.data.imagefolder import _names, _readable
from runner.paths import resolve_user_path

__all__ = ["CocoFolderDataModule", "read_coco"]

log = logging.getLogger(__name__)

_SHOWN = 5


def read_coco(
    annotations: str | Path, image_dir: str | Path, split: str
) -> tuple[list[tuple[int, str]], list[tuple[Path, list[list[float]], list[int]]]]:
    """Read a COCO detection file; return its categories ``(id, name)`` and ``(file, boxes xyxy, category ids)``.

    ``split`` is the config prefix of the split (``data.train``): errors name its keys
    ``<split>_annotations`` / ``<split>_images`` (``data.train_annotations``, ``data.train_images``).

    Checks, each error naming the key and the path: the annotations file and the image folder
    exist, the file is COCO JSON (``images``, ``annotations``, ``categories``), every listed image
    file exists (and the first one opens). Bad boxes (not 4 numbers, width or height <= 0, outside
    the image, unknown image or category id) are skipped, counted and named in a warning.
    """
    ann_key, images_key = f"{split}_annotations", f"{split}_images"
    path = resolve_user_path(annotations)
    folder = resolve_user_path(image_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{ann_key}: no such annotations file {str(path)!r}")
    if not folder.is_dir():
        raise FileNotFoundError(f"{images_key}: image folder {str(folder)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{ann_key}: {str(path)!r} is not readable JSON: {err}") from err
    missing_keys = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing_keys:
        raise ValueError(
            f"{ann_key}: {str(path)!r} is not a COCO detection file (no {', '.join(missing_keys)}; "
            "expected {\"images\": [...], \"annotations\": [...], \"categories\": [...]})"
        )
    categories = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in data["categories"])
    if not categories:
        raise ValueError(f"{ann_key}: {str(path)!r} has no categories")
    category_ids = {cid for cid, _ in categories}
    images: dict[int, dict[str, Any]] = {}
    missing: list[Path] = []
    for entry in data["images"]:
        file = folder / str(entry.get("file_name", ""))
        if not file.is_file():
            missing.append(file)
            continue
        images[int(entry["id"])] = {"file": file, "width": entry.get("width"), "height": entry.get("height"),
                                    "boxes": [], "labels": []}
    if missing:
        raise FileNotFoundError(
            f"{images_key}: {len(missing)} image file(s) listed in {str(path)!r} are missing from {str(folder)!r}: {_names(missing)}"
        )
    if not images:
        raise ValueError(f"{ann_key}: {str(path)!r} lists no images")
    first = next(iter(images.values()))["file"]
    problem = _readable(first)
    if problem is not None:
        raise ValueError(f"{images_key}: {str(first)!r} is not a readable image: {problem}")
    bad: list[str] = []
    for ann in data["annotations"]:
        why = _bad_annotation(ann, images, category_ids)
        if why:
            bad.append(f"annotation {ann.get('id', '?')} ({why})")
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        image = images[int(ann["image_id"])]
        image["boxes"].append([x, y, x + w, y + h])
        image["labels"].append(int(ann["category_id"]))
    if bad:
        shown = "; ".join(bad[:_SHOWN]) + (f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")
        log.warning(f"{ann_key}: skipping {len(bad)} bad box(es) of {str(path)!r}: {shown}")
    samples = [(im["file"], im["boxes"], im["labels"]) for _, im in sorted(images.items())]
    return categories, samples


def _bad_annotation(ann: Any, images: dict[int, dict[str, Any]], category_ids: set[int]) -> str | None:
    """Why an annotation cannot be used, or None."""
    if not isinstance(ann, dict):
        return "not an object"
    box = ann.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return f"bbox {box!r} is not [x, y, width, height]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return f"bbox {box!r} holds non-numbers"
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        return f"bbox {box!r} has width or height <= 0"
    image = images.get(int(ann.get("image_id", -1))) if isinstance(ann.get("image_id"), int) else None
    if image is None:
        return f"unknown image_id {ann.get('image_id')!r}"
    if ann.get("category_id") not in category_ids:
        return f"unknown category_id {ann.get('category_id')!r}"
    width, height = image["width"], image["height"]
    if x < 0 or y < 0 or (width and x + w > width + 0.5) or (height and y + h > height + 0.5):
        return f"bbox {box!r} is outside the {width}x{height} image"
    return None


class _CocoDataset(Dataset):
    """``(image resized to size x size in [0, 1], {"boxes", "labels"})``, boxes scaled with the image."""

    def __init__(self, samples: list[tuple[Path, list[list[float]], list[int]]], index: dict[int, int], size: int,
                 flip: bool = False) -> None:
        self.samples, self.index, self.size, self.flip = samples, index, size, flip
        self.unreadable: list[Path] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from torchvision.transforms.functional import hflip, pil_to_tensor

        for offset in range(len(self.samples)):
            path, boxes, labels = self.samples[(idx + offset) % len(self.samples)]
            try:
                with Image.open(path) as im:
                    rgb = im.convert("RGB")
                    width, height = rgb.size
                    rgb = rgb.resize((self.size, self.size), Image.BILINEAR)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                if path not in self.unreadable:
                    self.unreadable.append(path)
                    log.warning(f"skipping unreadable image {str(path)!r} ({err}); {len(self.unreadable)} so far")
                continue
            image = pil_to_tensor(rgb).float() / 255.0
            scale = torch.tensor([self.size / width, self.size / height] * 2)
            box = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) * scale
            label = torch.tensor([self.index[c] for c in labels], dtype=torch.long)
            if self.flip and torch.rand(()) < 0.5:
                image = hflip(image)
                box = torch.stack([self.size - box[:, 2], box[:, 1], self.size - box[:, 0], box[:, 3]], dim=1)
            return image, {"boxes": box, "labels": label}
        raise RuntimeError("no readable image left in the dataset")


class CocoFolderDataModule(DetectionDataModule):
    """Object detection on your own images: a COCO-format annotations file per split + an image folder.

    ``train_annotations``/``train_images``, ``val_annotations``/``val_images`` and optional
    ``test_annotations``/``test_images``. Images are resized to ``image_size`` x ``image_size`` (boxes
    scaled with them). Class names are the categories' names in order of id, labels their index;
    every split must have the same categories. Missing files or folders (the annotations file, the
    image folder, any image it lists) fail before training, naming the path; bad boxes are skipped,
    counted and named in a warning. Without a test split the test set is the validation set.
    """

    def __init__(
        self,
        train_annotations: str,
        train_images: str,
        val_annotations: str,
        val_images: str,
        test_annotations: str | None = None,
        test_images: str | None = None,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.augment = bool(augment)
        categories, self._train = read_coco(train_annotations, train_images, "data.train")
        val_categories, self._val = read_coco(val_annotations, val_images, "data.val")
        self._test = None
        splits = [("data.val_annotations", val_annotations, val_categories)]
        if (test_annotations is None) != (test_images is None):
            raise ValueError("data.test_annotations and data.test_images go together: give both or neither")
        if test_annotations is not None:
            test_categories, self._test = read_coco(test_annotations, test_images, "data.test")  # type: ignore[arg-type]
            splits.append(("data.test_annotations", test_annotations, test_categories))
        else:
            log.warning("data.test_annotations is not set: the TEST SET IS THE VALIDATION SET")
        for field, path, cats in splits:
            if cats != categories:
                raise ValueError(
                    f"{field}: the categories of {path!r} differ from data.train_annotations "
                    f"{train_annotations!r}: {cats} vs {categories}"
                )
        self.category_ids = [cid for cid, _ in categories]
        self.class_names = [name for _, name in categories]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        index = {cid: i for i, cid in enumerate(self.category_ids)}
        self.train_set = _CocoDataset(self._train, index, self.image_size, flip=self.augment)
        self.val_set = _CocoDataset(self._val, index, self.image_size)
        self.test_set = _CocoDataset(self._test, index, self.image_size) if self._test is not None else None
