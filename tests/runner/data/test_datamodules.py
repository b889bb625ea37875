"""Datamodules: digits (real scans), shapes (generated, with masks) and image folders."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data import (
    SHAPE_CLASSES,
    DigitsDataModule,
    ImageFolderDataModule,
    ShapesDataModule,
    generate_shapes,
)
from runner.data.splits import stratified_split

N_DIGITS = 1797


def _all(ds: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = ds.tensors  # type: ignore[attr-defined]
    return x, y


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(image_size=16, batch_size=32, seed=0)
    dm.setup("fit")
    return dm


# ------------------------------------------------------------------ digits
def test_digits_split_sizes_add_up(digits: DigitsDataModule) -> None:
    sizes = [len(digits.train_set), len(digits.val_set), len(digits.test_set)]
    assert sum(sizes) == N_DIGITS
    # 15% / 15% per class, rounded per class
    assert 0.13 * N_DIGITS < sizes[1] < 0.17 * N_DIGITS
    assert 0.13 * N_DIGITS < sizes[2] < 0.17 * N_DIGITS
    assert digits.num_classes == 10
    assert digits.class_names == [str(d) for d in range(10)]


def test_digits_split_is_stratified(digits: DigitsDataModule) -> None:
    from sklearn.datasets import load_digits

    totals = Counter(load_digits().target.tolist())
    for ds in (digits.val_set, digits.test_set):
        counts = Counter(_all(ds)[1].tolist())
        assert set(counts) == set(range(10))
        for cls, total in totals.items():
            assert abs(counts[cls] - 0.15 * total) <= 1, (cls, counts[cls], total)


def test_stratified_split_indices_partition_everything() -> None:
    labels = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    train, val, test = stratified_split(labels, 0.2, 0.1, seed=3)
    joined = np.concatenate([train, val, test])
    assert sorted(joined.tolist()) == list(range(len(labels)))
    assert set(np.unique(labels[val])) == set(range(5))
    again = stratified_split(labels, 0.2, 0.1, seed=3)
    for a, b in zip((train, val, test), again):
        np.testing.assert_array_equal(a, b)


def test_digits_deterministic_per_seed(digits: DigitsDataModule) -> None:
    same = DigitsDataModule(image_size=16, seed=0)
    same.setup("fit")
    for a, b in ((digits.train_set, same.train_set), (digits.val_set, same.val_set), (digits.test_set, same.test_set)):
        xa, ya = _all(a)
        xb, yb = _all(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = DigitsDataModule(image_size=16, seed=1)
    other.setup("fit")
    xo, yo = _all(other.val_set)
    xv, yv = _all(digits.val_set)
    assert xo.shape == xv.shape
    assert not torch.equal(xo, xv)
    assert not torch.equal(yo, yv)


@pytest.mark.parametrize("size", [16, 24, 32])
def test_digits_image_shape(size: int) -> None:
    dm = DigitsDataModule(image_size=size, batch_size=8)
    dm.setup("fit")
    x, y, index = next(iter(dm.train_dataloader()))  # training batches carry each sample's index
    assert index.shape == (8,) and index.dtype == torch.long
    assert x.shape == (8, 3, size, size)
    assert x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.long
    # grey scans replicated to 3 identical channels (before per-channel normalisation)
    raw = x * torch.tensor(dm.std).view(1, 3, 1, 1) + torch.tensor(dm.mean).view(1, 3, 1, 1)
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 0], raw[:, 2], atol=1e-5)


def test_digits_normalisation_uses_given_mean_std() -> None:
    plain = DigitsDataModule(image_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    plain.setup("fit")
    raw, _ = _all(plain.val_set)
    assert raw.min() >= 0.0 and raw.max() <= 1.0 and raw.max() > 0.9
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.5, 2.0)
    norm = DigitsDataModule(image_size=16, mean=mean, std=std)
    norm.setup("fit")
    x, _ = _all(norm.val_set)
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    # explicit statistics win over the model's
    norm.set_normalization((0.1, 0.1, 0.1), (9.0, 9.0, 9.0))
    assert norm.mean == mean and norm.std == std


def test_set_normalization_before_setup() -> None:
    mean, std = (0.2, 0.3, 0.4), (0.5, 0.6, 0.7)
    dm = DigitsDataModule(image_size=16)
    dm.set_normalization(mean, std)
    dm.setup("fit")
    assert dm.mean == mean and dm.std == std
    explicit = DigitsDataModule(image_size=16, mean=mean, std=std)
    explicit.setup("fit")
    assert torch.allclose(_all(dm.train_set)[0], _all(explicit.train_set)[0])
    with pytest.raises(RuntimeError, match="before setup"):
        dm.set_normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_digits_sample_images(digits: DigitsDataModule) -> None:
    images, labels = digits.sample_images(6)
    xv, yv = _all(digits.val_set)
    assert images.shape == (6, 3, 16, 16)
    assert labels.dtype == torch.long
    assert torch.equal(images, xv[:6]) and torch.equal(labels, yv[:6])
    images2, labels2 = digits.sample_images(6)
    assert torch.equal(images, images2) and torch.equal(labels, labels2)
    # more than there are: all of them
    assert digits.sample_images(10_000)[0].shape[0] == len(digits.val_set)


def test_sample_images_sets_up_by_itself() -> None:
    dm = DigitsDataModule(image_size=16, seed=0)
    images, labels = dm.sample_images(3)
    assert images.shape == (3, 3, 16, 16)
    assert torch.equal(labels, _all(dm.val_set)[1][:3])


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, "8"])
def test_bad_batch_size_names_field(batch_size) -> None:
    with pytest.raises(ValueError, match=r"data\.batch_size"):
        DigitsDataModule(batch_size=batch_size)


def test_bad_image_size_names_field() -> None:
    with pytest.raises(ValueError, match=r"data\.image_size"):
        DigitsDataModule(image_size=4)


@pytest.mark.parametrize(
    ("val", "test", "field"),
    [(0.0, 0.15, "val_fraction"), (1.0, 0.15, "val_fraction"), (-0.1, 0.15, "val_fraction"),
     (0.15, 0.0, "test_fraction"), (0.15, 1.5, "test_fraction"), (0.6, 0.5, "val_fraction")],
)
def test_bad_fractions_name_field(val: float, test: float, field: str) -> None:
    with pytest.raises(ValueError, match=rf"data\.{field}"):
        DigitsDataModule(val_fraction=val, test_fraction=test)


# ------------------------------------------------------------------ shapes
def test_generate_shapes_deterministic_per_seed() -> None:
    a = generate_shapes(24, 32, seed=5)
    b = generate_shapes(24, 32, seed=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = generate_shapes(24, 32, seed=6)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[2], c[2])


def test_generate_shapes_types_and_balance() -> None:
    images, labels, masks = generate_shapes(40, 32, seed=0)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert masks.shape == (40, 32, 32) and masks.dtype == bool
    assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    _, labels3, _ = generate_shapes(31, 32, seed=0, num_classes=3)
    counts = np.bincount(labels3, minlength=3)
    assert len(counts) == 3 and counts.max() - counts.min() <= 1
    assert labels3.max() == 2
    # shuffled, not in class order
    assert not np.array_equal(labels, np.sort(labels))


def test_shapes_masks_nonempty_inside_and_object_stands_out() -> None:
    size = 32
    images, labels, masks = generate_shapes(60, size, seed=2)
    for img, mask in zip(images, masks):
        area = mask.sum()
        assert area >= 0.02 * size * size, area
        assert area <= 0.5 * size * size, area
        # the object sits inside the image: (almost) none of it on the outermost pixels
        border = mask[0].sum() + mask[-1].sum() + mask[1:-1, 0].sum() + mask[1:-1, -1].sum()
        assert border <= 0.05 * area
        ys, xs = np.nonzero(mask)
        assert 2 <= ys.mean() <= size - 3 and 2 <= xs.mean() <= size - 3
        obj = img[mask].astype(np.float64) / 255.0
        background = img[~mask].astype(np.float64) / 255.0
        # one flat colour on the object, clearly different from the background
        assert np.abs(obj - obj[0]).max() < 1e-9
        assert np.abs(obj[0] - background.mean(axis=0)).max() > 0.1


def test_generate_shapes_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        generate_shapes(0)
    with pytest.raises(ValueError, match="image_size"):
        generate_shapes(4, image_size=8)
    with pytest.raises(ValueError, match="num_classes"):
        generate_shapes(4, num_classes=5)


@pytest.fixture(scope="module")
def shapes() -> ShapesDataModule:
    dm = ShapesDataModule(num_train=40, num_val=12, num_test=8, num_classes=3, image_size=24, batch_size=8, seed=7)
    dm.setup("fit")
    return dm


def test_shapes_datamodule_basics(shapes: ShapesDataModule) -> None:
    assert shapes.num_classes == 3
    assert shapes.class_names == list(SHAPE_CLASSES[:3])
    assert (len(shapes.train_set), len(shapes.val_set), len(shapes.test_set)) == (40, 12, 8)
    x, y, _ = next(iter(shapes.train_dataloader()))
    assert x.shape == (8, 3, 24, 24) and y.max() < 3
    assert shapes.val_masks.shape == (12, 24, 24) and shapes.test_masks.shape == (8, 24, 24)


def test_shapes_sample_masks_match_sample_images(shapes: ShapesDataModule) -> None:
    images, labels = shapes.sample_images(5)
    masks = shapes.sample_masks(5)
    assert masks.shape == (5, 24, 24) and masks.dtype == torch.bool
    # the validation split is generate_shapes(seed + 1): images, labels and masks line up
    raw, raw_labels, raw_masks = generate_shapes(12, 24, seed=8, num_classes=3)
    assert torch.equal(labels, torch.from_numpy(raw_labels[:5]))
    assert torch.equal(masks, torch.from_numpy(raw_masks[:5]))
    expected = torch.from_numpy(raw[:5].astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    assert torch.allclose(images, shapes.normalize(expected), atol=1e-5)
    # and on every call the same
    assert torch.equal(shapes.sample_masks(5), masks)
    assert torch.equal(shapes.sample_images(5)[0], images)


def test_shapes_deterministic_per_seed(shapes: ShapesDataModule) -> None:
    again = ShapesDataModule(num_train=40, num_val=12, num_test=8, num_classes=3, image_size=24, seed=7)
    again.setup("fit")
    assert torch.equal(_all(again.train_set)[0], _all(shapes.train_set)[0])
    other = ShapesDataModule(num_train=40, num_val=12, num_test=8, num_classes=3, image_size=24, seed=70)
    other.setup("fit")
    assert not torch.equal(_all(other.train_set)[0], _all(shapes.train_set)[0])


@pytest.mark.parametrize(("kwargs", "field"), [({"num_train": 0}, "data.num_train"), ({"num_val": -1}, "data.num_val"),
                                               ({"num_classes": 1}, "data.num_classes"), ({"max_scale": 0.5}, "data.min_scale"),
                                               ({"min_scale": 0.3, "max_scale": 0.2}, "data.max_scale")])
def test_shapes_bad_arguments_name_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ShapesDataModule(**kwargs)


# ------------------------------------------------------------- imagefolder
COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220), "fox": (30, 200, 30)}


def make_folder(root: Path, classes: dict[str, int], size: int = 20) -> Path:
    """Write ``classes[name]`` real PNGs into ``root/<name>/``."""
    for i, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            colour = tuple((c + 7 * j) % 256 for c in COLOURS.get(name, (40 * i, 80, 120)))
            Image.new("RGB", (size + j, size), colour).save(root / name / f"img_{j}.png")
    return root


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    train = make_folder(tmp_path / "train", {"cat": 5, "dog": 4, "fox": 3})
    val = make_folder(tmp_path / "val", {"cat": 2, "dog": 2, "fox": 2})
    return train, val


def test_imagefolder_works(folders: tuple[Path, Path]) -> None:
    train, val = folders
    dm = ImageFolderDataModule(train_dir=str(train), val_dir=str(val), image_size=16, batch_size=4)
    assert dm.num_classes == 3
    assert dm.class_names == ["cat", "dog", "fox"]
    dm.setup("fit")
    assert len(dm.train_set) == 12 and len(dm.val_set) == 6
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) <= 2
    images, labels = dm.sample_images(6)
    assert images.shape == (6, 3, 16, 16)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    # no test_dir: testing uses the validation images
    assert len(dm.test_dataloader().dataset) == 6
    # the red cat images are red after normalisation is undone
    raw = images * torch.tensor(dm.std).view(1, 3, 1, 1) + torch.tensor(dm.mean).view(1, 3, 1, 1)
    assert raw[0, 0].mean() > raw[0, 2].mean() + 0.3


def test_imagefolder_with_test_dir(folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = folders
    test = make_folder(tmp_path / "test", {"cat": 1, "dog": 1, "fox": 1})
    dm = ImageFolderDataModule(train_dir=str(train), val_dir=str(val), test_dir=str(test), image_size=16, batch_size=2)
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 3


def test_imagefolder_missing_folder(folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = folders
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        ImageFolderDataModule(train_dir=str(train), val_dir=str(missing))
    assert str(missing) in str(err.value) and "data.val_dir" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        ImageFolderDataModule(train_dir=str(missing), val_dir=str(train))
    assert str(missing) in str(err.value) and "data.train_dir" in str(err.value)


def test_imagefolder_no_class_subfolders(folders: tuple[Path, Path], tmp_path: Path) -> None:
    _, val = folders
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    with pytest.raises(ValueError) as err:
        ImageFolderDataModule(train_dir=str(flat), val_dir=str(val))
    assert str(flat) in str(err.value) and "class" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError) as err:
        ImageFolderDataModule(train_dir=str(empty), val_dir=str(val))
    assert str(empty) in str(err.value)


def test_imagefolder_empty_class_folder(folders: tuple[Path, Path]) -> None:
    train, val = folders
    (val / "zebra").mkdir()
    (train / "zebra").mkdir()
    make_folder(train, {"zebra": 1})
    with pytest.raises(ValueError) as err:
        ImageFolderDataModule(train_dir=str(train), val_dir=str(val))
    assert str(val / "zebra") in str(err.value) and "empty" in str(err.value)


@pytest.mark.parametrize(("name", "content"), [("notes.txt", b"not an image\n"), ("broken.png", b"\x89PNG garbage" * 5)])
def test_imagefolder_stray_file_is_skipped_with_a_warning(
    folders: tuple[Path, Path], name: str, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-image extension, or an unreadable first image of a class, is skipped and named."""
    train, val = folders
    bad = train / "dog" / name
    bad.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="runner.data.imagefolder"):
        dm = ImageFolderDataModule(train_dir=str(train), val_dir=str(val), batch_size=4)
    assert "data.train_dir: skipping 1 non-image or unreadable file(s)" in caplog.text and str(bad) in caplog.text
    dm.setup("fit")
    assert len(dm.train_set) == 12 and bad not in [p for p, _ in dm.train_set.samples]


def test_imagefolder_class_without_images_fails(folders: tuple[Path, Path]) -> None:
    train, val = folders
    (train / "emu").mkdir()
    (val / "emu").mkdir()
    make_folder(val, {"emu": 1})
    (train / "emu" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"data.train_dir: class folder .*emu.* has no image files"):
        ImageFolderDataModule(train_dir=str(train), val_dir=str(val))


def test_imagefolder_start_opens_one_file_per_class(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.data import imagefolder

    opened: list[Path] = []
    real = imagefolder._readable
    monkeypatch.setattr(imagefolder, "_readable", lambda p: opened.append(p) or real(p))
    train, val = folders
    ImageFolderDataModule(train_dir=str(train), val_dir=str(val))
    assert len(opened) == 6  # 3 classes x (train, val), not the 18 files


def test_imagefolder_unreadable_image_is_skipped_while_loading(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    train, val = folders
    bad = train / "cat" / "img_3.png"
    bad.write_bytes(b"\x89PNG truncated")  # not the first cat image: only found when loaded
    dm = ImageFolderDataModule(train_dir=str(train), val_dir=str(val), image_size=16, batch_size=4, augment=False)
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="runner.data.imagefolder"):
        batches = list(dm.train_dataloader())
    assert sum(len(y) for _, y, _ in batches) == 12  # every index still yields an image
    assert dm.train_set.unreadable == [bad]
    assert "skipping unreadable image" in caplog.text and str(bad) in caplog.text


def test_imagefolder_full_check_leaves_unreadable_out(folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    train, val = folders
    bad = [train / "cat" / "img_3.png", val / "fox" / "img_1.png"]
    for path in bad:
        path.write_bytes(b"\x89PNG truncated")
    dm = ImageFolderDataModule(train_dir=str(train), val_dir=str(val), full_check=True, batch_size=4)
    with caplog.at_level(logging.WARNING, logger="runner.data.imagefolder"):
        dm.prepare_data()
    assert "data.full_check: 2 unreadable image(s) left out" in caplog.text
    assert all(str(p) in caplog.text for p in bad)
    dm.setup("fit")  # what every rank does: reads prepare_data's list
    assert len(dm.train_set) == 11 and len(dm.val_set) == 5
    with pytest.raises(ValueError, match="data.full_check must be true or false"):
        ImageFolderDataModule(train_dir=str(train), val_dir=str(val), full_check="yes")


def test_imagefolder_without_test_dir_says_test_is_validation(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    train, val = folders
    with caplog.at_level(logging.WARNING, logger="runner.data.imagefolder"):
        ImageFolderDataModule(train_dir=str(train), val_dir=str(val))
    assert "data.test_dir is not set: the TEST SET IS THE VALIDATION SET" in caplog.text


def test_imagefolder_class_sets_differ(folders: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = folders
    val = make_folder(tmp_path / "val2", {"cat": 1, "dog": 1, "wolf": 1})
    with pytest.raises(ValueError) as err:
        ImageFolderDataModule(train_dir=str(train), val_dir=str(val))
    msg = str(err.value)
    assert str(val) in msg and "data.val_dir" in msg
    assert "fox" in msg and "wolf" in msg
    test = make_folder(tmp_path / "test2", {"cat": 1, "dog": 1})
    with pytest.raises(ValueError, match=r"data\.test_dir") as err:
        ImageFolderDataModule(train_dir=str(train), val_dir=str(train), test_dir=str(test))
    assert str(test) in str(err.value)
