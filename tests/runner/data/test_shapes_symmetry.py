"""data.augment=symmetry of the shapes: each training image turned by one of the 8 symmetries of the square."""

from __future__ import annotations

import pytest
import torch

from runner.data import ShapesDataModule


def test_shapes_symmetry_augmentation_turns_training_images_only() -> None:
    """augment=symmetry: every training batch image is one of the 8 symmetries of its generated image,
    the labels and indices unchanged, the draws repeated from the seed; validation images untouched."""
    dm = ShapesDataModule(num_train=32, num_val=8, num_test=8, num_classes=4, image_size=16, batch_size=8,
                          seed=3, augment="symmetry")
    dm.setup("fit")
    assert dm.train_set is not None and dm.val_set is not None

    def batches() -> list:
        torch.manual_seed(0)
        return list(dm.train_dataloader())

    seen = set()
    for images, labels, indices in batches():
        for image, label, index in zip(images, labels, indices):
            original, true_label = dm.train_set[int(index)]
            turns = [torch.rot90(original, k, (1, 2)) for k in range(4)]
            matches = [i for i, t in enumerate(turns + [t.flip(2) for t in turns]) if torch.equal(t, image)]
            assert matches and int(label) == int(true_label)
            seen.add(matches[0])
    assert len(seen) >= 4  # the draws vary
    again = batches()
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches(), again))
    val_images, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(val_images, torch.stack([dm.val_set[i][0] for i in range(len(val_images))]))
    with pytest.raises(ValueError, match="data.augment can be none, basic, symmetry"):
        ShapesDataModule(augment="timm")
