"""The ``data.augment`` presets (runner/data/transforms.py) and the datamodules that use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from runner.data import DigitsDataModule, ImageFolderDataModule, ShapesDataModule
from runner.data.transforms import TransformRecipe, build_transforms, check_augment, resolve_data_config

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _image(seed: int = 0, size: tuple[int, int] = (40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _config(**model: object) -> dict:
    return resolve_data_config(model or None, 32, MEAN, STD)


def test_basic_is_the_old_resize_and_flip() -> None:
    """``basic`` = the transform this project had: Resize((s, s)) bilinear, flip, ToTensor, Normalize."""
    old_eval = T.Compose([T.Resize((32, 32)), T.ToTensor(), T.Normalize(MEAN, STD)])
    image = _image()
    for augment in ("basic", "none"):
        got = build_transforms(augment, _config(interpolation="bicubic"), train=False)(image)
        assert torch.allclose(got, old_eval(image), atol=1e-6)
    old_train = T.Compose([T.Resize((32, 32)), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    new_train = build_transforms("basic", _config(), train=True)
    torch.manual_seed(3)
    expected = [old_train(image) for _ in range(6)]
    torch.manual_seed(3)
    assert all(torch.allclose(new_train(image), e, atol=1e-6) for e in expected)  # same flips, same pixels


def test_timm_preset_is_timms_recipe() -> None:
    config = _config(interpolation="bicubic", crop_pct=0.9, crop_mode="center")
    train = build_transforms("timm", config, train=True, scale=(0.5, 1.0), auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.5)
    names = [type(t).__name__ for t in train.transforms]
    assert names[:3] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment"]
    assert names[-1] == "RandomErasing" and train.transforms[0].scale == (0.5, 1.0)
    assert train(_image()).shape == (3, 32, 32)
    evaluate = build_transforms("timm", config, train=False)
    assert [type(t).__name__ for t in evaluate.transforms][:2] == ["Resize", "CenterCrop"]
    assert evaluate.transforms[0].size == 35  # 32 / crop_pct 0.9 (the weights' own crop_pct)
    assert evaluate(_image()).shape == (3, 32, 32)


def test_bad_values_fail_in_one_line_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"^data.augment can be none, basic, timm, got 'randaug'$"):
        check_augment("randaug")
    with pytest.raises(ValueError, match="data.scale"):
        TransformRecipe(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="data.re_prob"):
        TransformRecipe(re_prob=2)
    with pytest.raises(ValueError, match="data.auto_augment"):
        TransformRecipe(auto_augment="nonsense-m9")
    with pytest.raises(ValueError, match="data.augment can be none, basic, symmetry, got 'timm'.*data=imagefolder"):
        ShapesDataModule(augment="timm")
    with pytest.raises(ValueError, match="data.augment can be none, basic, got 'symmetry'"):
        DigitsDataModule(augment="symmetry")  # the symmetries keep the class of a shape, not of a digit


def test_generated_data_stays_as_it_was() -> None:
    """``basic`` (the default) leaves digits and shapes exactly as generated before the presets."""
    for cls in (DigitsDataModule, ShapesDataModule):
        kwargs = {"num_train": 8, "num_val": 4, "num_test": 4} if cls is ShapesDataModule else {}
        old, new = cls(image_size=16, **kwargs), cls(image_size=16, augment="basic", **kwargs)
        old.setup("fit"), new.setup("fit")
        assert torch.equal(old.train_set.tensors[0], new.train_set.tensors[0])


def test_imagefolder_uses_the_preset_and_the_model_config(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                _image(i).save(tmp_path / split / cls / f"{i}.jpg")
    dm = ImageFolderDataModule(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "val"), image_size=16, batch_size=4, re_prob=0.5)
    dm.set_model_data_config({"interpolation": "bicubic", "crop_pct": 0.8, "crop_mode": "center"})
    dm.setup("fit")
    assert type(dm.train_set.transform.transforms[0]).__name__ == "RandomResizedCropAndInterpolation"
    assert dm.val_set.transform.transforms[0].size == 20  # 16 / 0.8
    x, *_ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16)


def test_randaugment_posterize_never_asks_pillow_for_zero_bits() -> None:
    """timm's PosterizeIncreasing at magnitude 10 wants 0 bits, which Pillow >= 13 refuses mid-training."""
    train = build_transforms("timm", _config(), train=True, auto_augment="rand-m10-n1-inc1")
    ops = [op for op in train.transforms[2].ops if op.name == "PosterizeIncreasing"]
    assert ops
    train.transforms[2].ops = ops  # only posterize, at magnitude 10, always applied
    ops[0].prob = 1.0
    assert train(_image()).shape == (3, 32, 32)
