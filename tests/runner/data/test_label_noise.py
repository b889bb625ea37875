"""``data.label_noise`` and the sample indices of training batches (issue 20, part 3)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from runner.data import DigitsDataModule, ShapesDataModule, ShapesDetectionDataModule


def _loader_labels(data: ShapesDataModule | DigitsDataModule) -> torch.Tensor:
    """The label of every training sample as the training loader gives it (each index seen exactly once)."""
    labels = torch.full((len(data.train_set),), -1)
    seen = torch.zeros(len(data.train_set), dtype=torch.long)
    for _, y, index in data.train_dataloader():
        labels[index] = y
        seen[index] += 1
    assert seen.tolist() == [1] * len(seen)
    return labels


def test_a_seeded_tenth_of_the_training_labels_is_flipped_to_another_class() -> None:
    data = ShapesDataModule(num_train=200, num_val=20, num_test=10, image_size=16, batch_size=16, label_noise=0.1,
                            seed=3)
    data.setup("fit")
    true = data.train_set.tensors[1]
    noisy = data.noisy_indices
    assert noisy.dtype == torch.long and len(noisy) == 20 and noisy.tolist() == sorted(set(noisy.tolist()))
    trained = _loader_labels(data)
    assert (trained != true).nonzero().flatten().tolist() == noisy.tolist()  # exactly those, each to another class
    assert int(trained.max()) < data.num_classes
    # the same next epoch and in another datamodule of the same seed; another seed flips others
    assert torch.equal(_loader_labels(data), trained)
    again = ShapesDataModule(num_train=200, num_val=20, num_test=10, image_size=16, label_noise=0.1, seed=3)
    assert torch.equal(again.noisy_indices, noisy)  # set up on demand
    other = ShapesDataModule(num_train=200, num_val=20, num_test=10, image_size=16, label_noise=0.1, seed=4)
    assert not torch.equal(other.noisy_indices, noisy)
    # validation and test keep their labels, and so does train_set itself
    clean = ShapesDataModule(num_train=200, num_val=20, num_test=10, image_size=16, seed=3)
    clean.setup("fit")
    assert torch.equal(clean.train_set.tensors[1], true) and clean.noisy_indices.numel() == 0
    assert torch.equal(torch.cat([y for _, y in data.val_dataloader()]), clean.val_set.tensors[1])
    assert torch.equal(_loader_labels(clean), true)


def test_digits_take_label_noise_too() -> None:
    data = DigitsDataModule(image_size=8, batch_size=64, label_noise=0.25, seed=0)
    data.setup("fit")
    trained = _loader_labels(data)
    flipped = (trained != data.train_set.tensors[1]).nonzero().flatten()
    assert flipped.tolist() == data.noisy_indices.tolist() and len(flipped) == round(0.25 * len(trained))


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, "0.1", True, None])
def test_label_noise_outside_0_1_fails_naming_the_key(value: object) -> None:
    with pytest.raises(ValueError, match=r"^data\.label_noise must be a number in \[0, 1\)") as err:
        ShapesDataModule(num_train=20, num_val=4, num_test=4, label_noise=value)
    assert "\n" not in str(err.value)


def test_detection_data_refuses_label_noise_and_keeps_its_batches() -> None:
    with pytest.raises(ValueError, match=r"^data\.label_noise is for classification data"):
        ShapesDetectionDataModule(num_train=8, num_val=2, num_test=2, label_noise=0.1)
    data = ShapesDetectionDataModule(num_train=8, num_val=2, num_test=2, batch_size=4)
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    assert len(images) == 4 and isinstance(targets[0], dict)


@pytest.mark.parametrize("name", ["shapes", "digits", "imagefolder", "hf"])
def test_the_data_configs_take_label_noise(compose_cfg, name: str) -> None:
    cfg = compose_cfg(f"data={name}", "data.label_noise=0.2", job=True)
    assert cfg.data.label_noise == 0.2
    if name in ("shapes", "digits"):  # the others need a folder or a dataset
        assert instantiate(cfg.data).label_noise == 0.2
        with pytest.raises(Exception, match=r"data\.label_noise must be a number in \[0, 1\)"):
            instantiate(compose_cfg(f"data={name}", "data.label_noise=1", job=True).data)
