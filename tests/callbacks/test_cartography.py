"""CartographyCallback on real fits: label noise found, a resume continues the record, DDP counts each sample once."""

from __future__ import annotations

import csv
import functools
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks import CartographyCallback
from callbacks.cartography import CARTOGRAPHY_COLUMNS, CARTOGRAPHY_FILE
from interpret.cartography import precision_at_k
from runner.artifacts import CARTOGRAPHY_FILE as RUN_DIR_NAME
from runner.data import ShapesDataModule
from runner.models import ImageClassifier
from tests.support.callback_fits import TinyData, TinyNet
from tests.support.shapes_cnn import ShapesCNN


def read_csv(root: Path) -> list[dict[str, str]]:
    path = root / CARTOGRAPHY_FILE
    assert path.is_file(), f"no {CARTOGRAPHY_FILE} in {root}"
    with path.open() as handle:
        return list(csv.DictReader(handle))


def loader_labels(data: ShapesDataModule) -> dict[int, int]:
    """Each training sample's label as the training loader gives it (flipped where noisy)."""
    return {int(i): int(y) for _, labels, indices in data.train_dataloader() for y, i in zip(labels, indices)}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is faster on a busy 2-core machine
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_the_flipped_labels_are_the_least_confident(trainer_factory, tmp_path: Path, one_thread) -> None:
    """Shapes with 10% of the training labels flipped: a small CNN trained 8 epochs (about 40 s on 2 idle cores)."""
    pl.seed_everything(0, verbose=False)
    data = ShapesDataModule(num_train=2000, num_val=8, num_test=8, image_size=32, batch_size=50, label_noise=0.1,
                            seed=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    trainer = trainer_factory([CartographyCallback()], logger="none", max_epochs=8, limit_val_batches=0)
    trainer.fit(ShapesCNN(), datamodule=data)

    rows = read_csv(tmp_path)
    assert tuple(rows[0]) == CARTOGRAPHY_COLUMNS + ("noisy",)
    assert [int(r["index"]) for r in rows] == list(range(2000))
    assert {int(r["epochs"]) for r in rows} == {8}
    noisy = set(data.noisy_indices.tolist())
    assert len(noisy) == 200 and {int(r["index"]) for r in rows if r["noisy"] == "1"} == noisy
    assert [int(r["label"]) for r in rows] == [loader_labels(data)[i] for i in range(2000)]  # the labels it trained on
    for r in rows:
        assert 0 <= float(r["confidence"]) <= 1 and 0 <= float(r["variability"]) <= 0.5
        assert float(r["correctness"]) * 8 == pytest.approx(round(float(r["correctness"]) * 8), abs=1e-4)
    confidence = torch.tensor([float(r["confidence"]) for r in rows])
    score = precision_at_k(confidence, noisy)
    print(f"cartography: precision at k={len(noisy)} after 8 epochs: {score:.3f}")
    assert score >= 0.6, f"precision at k {score:.3f} (chance: 0.1)"
    # the flipped samples are also predicted right less often
    correct = torch.tensor([float(r["correctness"]) for r in rows])
    flipped = torch.tensor([int(r["noisy"]) for r in rows], dtype=torch.bool)
    assert correct[flipped].mean() < correct[~flipped].mean() - 0.2


def _classifier_run(root: Path, max_epochs: int, ckpt_path: str | None = None) -> CartographyCallback:
    """ImageClassifier with mixup on noisy shapes, a last.ckpt every epoch; the callback of the run."""
    pl.seed_everything(0, verbose=False)
    data = ShapesDataModule(num_train=96, num_val=8, num_test=8, image_size=16, batch_size=16, label_noise=0.1, seed=0)
    model = ImageClassifier(backbone="test_resnet", num_classes=4, image_size=16,
                            mixup={"mixup_alpha": 0.8, "cutmix_alpha": 1.0},
                            optimizer=functools.partial(torch.optim.SGD, lr=0.05))
    cartography = CartographyCallback()
    last = ModelCheckpoint(dirpath=root / "checkpoints", filename="last", monitor=None, every_n_epochs=1,
                           enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=max_epochs, limit_val_batches=1, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cartography, last],
                         default_root_dir=str(root), deterministic=True, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return cartography


@pytest.mark.slow
def test_a_resumed_run_continues_the_record(tmp_path: Path, one_thread) -> None:
    """2 epochs, then a resume from last.ckpt (written after validation) for a third: the csv of 3 epochs at once."""
    whole = _classifier_run(tmp_path / "whole", 3)
    _classifier_run(tmp_path / "resumed", 2)
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    resumed = _classifier_run(tmp_path / "resumed", 3, ckpt_path=str(last))
    rows, expected = read_csv(tmp_path / "resumed"), read_csv(tmp_path / "whole")
    assert [int(r["index"]) for r in rows] == list(range(96)) and {r["epochs"] for r in rows} == {"3"}
    data = ShapesDataModule(num_train=96, num_val=8, num_test=8, image_size=16, batch_size=16, label_noise=0.1, seed=0)
    data.setup("fit")
    # mixup: the record holds the hard labels the samples trained with (flipped where noisy), not mixed targets
    assert [int(r["label"]) for r in rows] == [loader_labels(data)[i] for i in range(96)]
    assert rows == expected
    assert torch.allclose(resumed.sums, whole.sums, atol=1e-9)


@pytest.mark.slow
def test_ddp_counts_every_sample_once(trainer_factory, tmp_path: Path) -> None:
    """2 CPU processes; 61 samples: Lightning's sampler pads rank 1 with a sample rank 0 also sees."""
    data = ShapesDataModule(num_train=61, num_val=8, num_test=8, image_size=16, batch_size=8, label_noise=0.1, seed=0)
    trainer = trainer_factory([CartographyCallback()], logger="none", strategy="ddp_spawn", devices=2, max_epochs=2,
                              limit_val_batches=0)
    trainer.fit(ShapesCNN(one_cycle=False), datamodule=data)
    rows = read_csv(tmp_path)
    assert [int(r["index"]) for r in rows] == list(range(61))
    assert {r["epochs"] for r in rows} == {"2"}
    assert {int(r["index"]) for r in rows if r["noisy"] == "1"} == set(data.noisy_indices.tolist())


def test_without_indices_it_warns_once_and_writes_nothing(trainer_factory, tmp_path: Path) -> None:
    callback = CartographyCallback()
    trainer = trainer_factory([callback], logger="none", limit_train_batches=3, limit_val_batches=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyNet(), TinyData(n=48))  # batches (images, labels): no indices
    said = [str(w.message) for w in caught if "CartographyCallback" in str(w.message)]
    assert len(said) == 1 and "carries no sample indices" in said[0]
    assert not (tmp_path / CARTOGRAPHY_FILE).exists()
    callback.load_state_dict({})  # a checkpoint of an older version: an empty record
    assert callback.sums.shape[0] == 0


@pytest.mark.parametrize("key", ["logits_key", "targets_key", "index_key"])
def test_bad_keys_fail_naming_them(key: str) -> None:
    with pytest.raises(ValueError, match=rf"^callbacks\.cartography\.{key} must be a non-empty string, got ''$"):
        CartographyCallback(**{key: ""})


def test_the_run_directory_name_has_one_owner() -> None:
    assert RUN_DIR_NAME is CARTOGRAPHY_FILE == "cartography.csv"


def test_the_hardest_samples_are_drawn_with_their_heatmaps(trainer_factory, tmp_path: Path, one_thread,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A tiny fit logs one image of the 4 least confident samples (2 x 2 panels); drawing leaves every RNG as it was,
    and a train_set it cannot draw is said once, never raised."""
    import logging

    from PIL import Image

    from callbacks.cartography import HARDEST_KEY

    pl.seed_everything(0, verbose=False)
    data = ShapesDataModule(num_train=48, num_val=8, num_test=8, image_size=16, batch_size=16, label_noise=0.25,
                            seed=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    callback = CartographyCallback(num_hardest=4)
    trainer = trainer_factory([callback], logger="csv", max_epochs=2, limit_val_batches=0)
    model = ShapesCNN(width=8, one_cycle=False)
    trainer.fit(model, datamodule=data)

    (png,) = sorted((tmp_path / "images" / HARDEST_KEY).glob("step_*.png"))
    assert png.name == f"step_{trainer.global_step:06d}.png"
    width, height = Image.open(png).size
    assert width >= 2 * 3 * 96 and height >= 2 * 96, (width, height)  # 2 columns of picture | heatmap | overlay
    rng = torch.get_rng_state()
    assert callback.log_hardest(trainer, model) == png  # drawn again at the same step: the same file
    assert torch.equal(torch.get_rng_state(), rng)

    data.train_set = [(torch.zeros(3, 8 + i, 8), 0) for i in range(48)]  # images of different sizes: cannot stack
    callback._said_hardest = False
    with caplog.at_level(logging.ERROR, logger="callbacks.cartography"):
        assert callback.log_hardest(trainer, model) is None
        assert callback.log_hardest(trainer, model) is None
    assert len([r for r in caplog.records if "hardest samples failed" in r.getMessage()]) == 1


def test_num_hardest_must_be_a_count() -> None:
    with pytest.raises(ValueError, match=r"^callbacks\.cartography\.num_hardest must be an int >= 0 \(0: no image\), got -1$"):
        CartographyCallback(num_hardest=-1)
