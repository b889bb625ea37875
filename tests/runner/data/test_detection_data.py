"""Detection data: shapes with boxes from their masks (deterministic by seed), and a COCO folder checked up front."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data import CocoFolderDataModule, ShapesDetectionDataModule, detection_collate, generate_shapes_detection
from runner.data.shapes_generator import boxes_from_masks


def test_boxes_are_the_tight_boxes_of_the_object_masks() -> None:
    images, boxes, labels, masks = generate_shapes_detection(40, image_size=64, seed=3, max_objects=3)
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.uint8
    counts = [len(b) for b in boxes]
    assert min(counts) >= 1 and max(counts) == 3 and len(set(counts)) >= 2  # several objects, varying
    for b, lab, m in zip(boxes, labels, masks, strict=True):
        assert b.shape == (len(lab), 4) and m.shape == (len(lab), 64, 64)
        assert len(set(lab.tolist())) == len(lab)  # distinct classes in one image (the default)
        for box, mask in zip(b, m, strict=True):
            x0, y0, x1, y1 = box.astype(int)
            assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the box holds the whole mask ...
            assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()  # ... and is tight on every side
            assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()
        assert not (m.sum(axis=0) > 1).any()  # objects never overlap
    square = np.zeros((1, 10, 10), dtype=bool)
    square[0, 2:5, 3:9] = True
    assert boxes_from_masks(square).tolist() == [[3.0, 2.0, 9.0, 5.0]]
    with pytest.raises(ValueError, match="empty"):
        boxes_from_masks(np.zeros((1, 4, 4), dtype=bool))


def test_generation_is_deterministic_by_seed() -> None:
    a = generate_shapes_detection(8, image_size=48, seed=11)
    b = generate_shapes_detection(8, image_size=48, seed=11)
    c = generate_shapes_detection(8, image_size=48, seed=12)
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=True))
    assert not np.array_equal(a[0], c[0])


def test_datamodule_batches_sample_images_and_checks() -> None:
    dm = ShapesDetectionDataModule(num_train=20, num_val=10, num_test=10, batch_size=4, image_size=64, seed=5)
    assert dm.num_classes == 4 and dm.mean == (0.0, 0.0, 0.0) and dm.std == (1.0, 1.0, 1.0)
    dm.set_normalization((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))  # the detector normalises inside: ignored
    assert dm.mean == (0.0, 0.0, 0.0)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert isinstance(images, list) and len(images) == 4 and images[0].shape == (3, 64, 64)
    assert float(min(i.min() for i in images)) >= 0.0 and float(max(i.max() for i in images)) <= 1.0
    assert set(targets[0]) == {"boxes", "labels"} and targets[0]["boxes"].dtype == torch.float32
    assert targets[0]["labels"].dtype == torch.int64 and targets[0]["boxes"].shape[1] == 4
    samples, sample_targets = dm.sample_images(3)
    assert samples.shape == (3, 3, 64, 64) and len(sample_targets) == 3
    assert torch.equal(samples[0], dm.val_set[0][0])  # the first validation images, every call
    masks = dm.sample_masks(3)
    assert masks.shape == (3, 64, 64) and masks.dtype == torch.bool
    for mask, target in zip(masks, sample_targets, strict=True):
        for x0, y0, x1, y1 in target["boxes"].int().tolist():
            assert mask[y0:y1, x0:x1].any()
    again = ShapesDetectionDataModule(num_train=20, num_val=10, num_test=10, image_size=64, seed=5)
    assert torch.equal(again.sample_images(3)[0], samples)
    with pytest.raises(ValueError, match="data.max_objects"):
        ShapesDetectionDataModule(num_classes=2, max_objects=3)
    with pytest.raises(ValueError, match="data.min_objects"):
        ShapesDetectionDataModule(min_objects=3, max_objects=2)
    images, targets = detection_collate([(torch.zeros(3, 8, 8), {"b": 1}), (torch.ones(3, 6, 6), {"b": 2})])
    assert [i.shape[-1] for i in images] == [8, 6] and [t["b"] for t in targets] == [1, 2]


def _coco(root: Path, name: str, n_images: int = 3, extra: list | None = None, categories: list | None = None) -> tuple[Path, Path]:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n_images):
        Image.new("RGB", (80, 40), (10 * i, 100, 200)).save(folder / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "width": 80, "height": 40})
        annotations.append({"id": 100 + i, "image_id": i + 1, "category_id": 7 if i % 2 else 3, "bbox": [8, 4, 40, 20]})
    annotations += extra or []
    cats = categories or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path, folder


def test_coco_folder_reads_boxes_scaled_to_the_image_size(tmp_path: Path) -> None:
    train_json, train_dir = _coco(tmp_path, "train")
    val_json, val_dir = _coco(tmp_path, "val", n_images=2)
    dm = CocoFolderDataModule(str(train_json), str(train_dir), str(val_json), str(val_dir), image_size=32,
                              batch_size=2, augment=False, num_workers=0)
    assert dm.class_names == ["cat", "dog"]  # in order of category id
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images[0].shape == (3, 32, 32)
    first = dm.train_set[0][1]
    # [8, 4, 40, 20] xywh on 80x40 -> xyxy [8, 4, 48, 24] -> scaled by (32/80, 32/40)
    assert torch.allclose(first["boxes"], torch.tensor([[3.2, 3.2, 19.2, 19.2]]))
    assert first["labels"].tolist() == [0]  # category 3 = "cat" = index 0
    assert len(dm.sample_images(2)[1]) == 2


def test_coco_folder_fails_early_naming_the_missing_path(tmp_path: Path) -> None:
    train_json, train_dir = _coco(tmp_path, "train")
    val_json, val_dir = _coco(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoFolderDataModule(str(tmp_path / "nope.json"), str(train_dir), str(val_json), str(val_dir))
    with pytest.raises(FileNotFoundError, match="no_images"):
        CocoFolderDataModule(str(train_json), str(tmp_path / "no_images"), str(val_json), str(val_dir))
    (val_dir / "img1.png").unlink()
    with pytest.raises(FileNotFoundError, match="img1.png"):
        CocoFolderDataModule(str(train_json), str(train_dir), str(val_json), str(val_dir))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        CocoFolderDataModule(str(tmp_path / "broken.json"), str(train_dir), str(train_json), str(train_dir))
    other_json, other_dir = _coco(tmp_path, "other", categories=[{"id": 3, "name": "cat"}, {"id": 7, "name": "cow"}])
    with pytest.raises(ValueError, match="categories"):
        CocoFolderDataModule(str(train_json), str(train_dir), str(other_json), str(other_dir))


def test_coco_folder_skips_counts_and_names_bad_boxes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        {"id": 901, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10]},  # no width
        {"id": 902, "image_id": 1, "category_id": 3, "bbox": [70, 5, 30, 10]},  # outside the 80 px image
        {"id": 903, "image_id": 99, "category_id": 3, "bbox": [5, 5, 10, 10]},  # unknown image
        {"id": 904, "image_id": 1, "category_id": 5, "bbox": [5, 5, 10, 10]},  # unknown category
        {"id": 905, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10]},  # not 4 numbers
        {"id": 906, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10]},  # a good one
    ]
    train_json, train_dir = _coco(tmp_path, "train", extra=bad)
    val_json, val_dir = _coco(tmp_path, "val")
    with caplog.at_level(logging.WARNING):
        dm = CocoFolderDataModule(str(train_json), str(train_dir), str(val_json), str(val_dir), image_size=40,
                                  num_workers=0)
    text = caplog.text
    assert "skipping 5 bad box(es)" in text and "train.json" in text
    assert all(f"annotation {i}" in text for i in (901, 902, 903, 904, 905)) and "annotation 906" not in text
    dm.setup("fit")
    assert len(dm.train_set[0][1]["boxes"]) == 2  # its own box and the good extra one
