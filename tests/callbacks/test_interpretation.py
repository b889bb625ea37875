"""InterpretationCallback in real fits: schedule, samples, model safety, extension points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tests.support.callback_fits import RaiseAt, TinyData, TinyNet, count_hooks
from tests.support.paths import REPO
from PIL import Image

from callbacks import InterpretationCallback


def pngs(root: Path, key: str) -> list[str]:
    return sorted(p.name for p in (root / "images" / key).glob("*.png"))


def classifier(**kwargs: Any):
    from runner.models.classifier import ImageClassifier

    return ImageClassifier(backbone="resnet18", num_classes=10, image_size=32, **kwargs)


def digits(batch_size: int = 32):
    from runner.data import DigitsDataModule

    return DigitsDataModule(batch_size=batch_size, image_size=32, seed=0)


@pytest.mark.slow
def test_grid_logged_per_epochs_and_at_the_end_with_captions(trainer_factory, tmp_path: Path) -> None:
    cb = InterpretationCallback(log_every_n_epochs=2, num_samples=6, target_layer="backbone.layer3")
    trainer = trainer_factory([cb], max_epochs=4, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(classifier(), digits())
    # end of epochs 0 and 2 (steps 2 and 6), then the end of training (epoch 3, step 8)
    assert pngs(tmp_path, "interpretation/gradcam") == ["step_000002.png", "step_000006.png", "step_000008.png"]
    grid = np.asarray(Image.open(tmp_path / "images" / "interpretation" / "gradcam" / "step_000002.png"))
    assert grid.shape[1] >= 4 * 128 and grid.shape[0] >= 2 * 128  # 6 tiles of >= 128 px, 4 per row
    assert cb.images.shape == (6, 3, 32, 32) and cb.labels.tolist() == digits().sample_images(6)[1].tolist()
    assert cb.num_logged == 3 and cb.num_failed == 0
    state = cb.state_dict()  # beside the schedule: the explanation metrics' history (their own tests)
    assert {k: state[k] for k in ("last_logged_step", "num_logged")} == {"last_logged_step": 8, "num_logged": 3}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"log_every_n_epochs": 2}, [1, 3, 5]),  # end of epochs 0, 2, 4 (one step per epoch)
        ({"log_every_n_epochs": 1}, [1, 2, 3, 4, 5]),
        ({"log_every_n_epochs": 3}, [1, 4]),
        ({"log_every_n_steps": 2}, [2, 4]),  # global steps n, 2n, ...
        ({"log_every_n_steps": 2, "log_at_end": True}, [2, 4, 5]),
        ({"log_every_n_epochs": None, "log_at_end": True}, [5]),
    ],
)
def test_schedule_follows_the_shared_convention(trainer_factory, tmp_path, kwargs, expected) -> None:
    """epochs 0, n, 2n, ... (epoch % n == 0); steps n, 2n, ... (global_step % n == 0)."""
    kwargs = {"log_at_end": False, **kwargs}
    cb = InterpretationCallback(num_samples=1, **kwargs)
    trainer_factory([cb], logger="none", max_epochs=5, limit_train_batches=1, limit_val_batches=0).fit(
        TinyNet(), TinyData(n=16)
    )
    assert pngs(tmp_path, "interpretation/gradcam") == [f"step_{s:06d}.png" for s in expected]


class RandomnessHungry(InterpretationCallback):
    """An explainer that draws from every global RNG: the callback must restore them all."""

    def create_explainer(self, pl_module):
        import random

        base = super().create_explainer(pl_module)

        class Hungry:
            def explain(self, images, target_class=None):
                torch.rand(100), np.random.rand(100), random.random()
                return base.explain(images, target_class)

        return Hungry()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["resnet18-batchnorm-dropout", "rng-hungry-explainer"])
def test_training_is_bit_identical_with_and_without_it(trainer_factory, case: str) -> None:
    """Explained after every step (also mid-epoch): same weights and BN statistics to the bit."""

    def fit(with_callback: bool) -> dict[str, torch.Tensor]:
        pl.seed_everything(123, workers=True)
        if case == "resnet18-batchnorm-dropout":
            model, data = classifier(backbone_kwargs={"drop_rate": 0.3}), digits(batch_size=16)
            cbs = [InterpretationCallback(log_every_n_steps=1, num_samples=3)] if with_callback else []
        else:
            model, data = TinyNet(dropout=0.5), TinyData(n=64)
            cbs = [RandomnessHungry(log_every_n_steps=1, num_samples=3)] if with_callback else []
        trainer = trainer_factory(cbs, logger="none", max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                                  deterministic=True)
        trainer.fit(model, data)
        if with_callback:
            assert cbs[0].num_logged == 4 and cbs[0].num_failed == 0
        return {k: v.clone() for k, v in model.state_dict().items()}

    without, with_ = fit(False), fit(True)
    assert without.keys() == with_.keys()
    for key in without:
        assert torch.equal(without[key], with_[key]), key


def test_model_state_and_hooks_untouched_by_a_call(trainer_factory) -> None:
    model, data = TinyNet(dropout=0.5), TinyData(n=32)
    cb = InterpretationCallback(num_samples=4)
    trainer = trainer_factory([cb], limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, data)
    model.train()
    model.conv1.weight.grad = grad = torch.ones_like(model.conv1.weight)
    model.head.weight.grad = None
    model.head.weight.requires_grad_(False)
    hooks, rng = count_hooks(model), torch.get_rng_state()
    assert cb.log_interpretation(trainer, model) is not None
    assert model.training and all(m.training for m in model.modules())
    assert model.conv1.weight.grad is grad and model.head.weight.grad is None
    assert not model.head.weight.requires_grad and model.conv1.weight.requires_grad
    assert count_hooks(model) == hooks == 0
    assert torch.equal(torch.get_rng_state(), rng)


def test_hooks_gone_after_an_exception_during_training(trainer_factory) -> None:
    model = TinyNet()
    cb = InterpretationCallback(log_every_n_steps=1, num_samples=2)
    trainer = trainer_factory([cb, RaiseAt(at_batch=2)], limit_train_batches=4, limit_val_batches=0)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, TinyData(n=64))
    assert cb.num_logged == 2 and count_hooks(model) == 0


def write_pngs(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        rgb = np.zeros((20, 24, 3), np.uint8)
        rgb[:, : 2 * (i + 1)] = 255
        Image.fromarray(rgb).save(folder / f"img{i}.png")
        names.append(f"samples/img{i}.png")
    return names


def test_relative_paths_are_loaded_resized_normalised_and_thinned(trainer_factory, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = write_pngs(tmp_path / "samples", 5)
    cb = InterpretationCallback(sample_images=names, sample_labels=[0, 1, 2, 3, 4], num_samples=3)
    trainer = trainer_factory([cb], limit_train_batches=1, limit_val_batches=0)
    trainer.fit(TinyNet(), TinyData(n=16, image_size=16))
    assert cb.images.shape == (3, 3, 16, 16)
    assert cb.labels.tolist() == [0, 2, 4]  # evenly thinned, deterministic
    # normalised with the datamodule's mean/std (0.5, 0.25): white -> 2, black -> -2
    assert cb.images.max().item() == pytest.approx(2.0) and cb.images.min().item() == pytest.approx(-2.0)
    # default_root_dir is the working directory here: the PNGs go to the logger's version folder
    from callbacks.image_logging import images_root

    assert images_root(trainer) == tmp_path / "csv" / "version_0" / "images"
    assert pngs(images_root(trainer).parent, "interpretation/gradcam") == ["step_000001.png"]


def test_missing_or_broken_sample_paths_fail_at_setup_with_the_path(trainer_factory, tmp_path) -> None:
    model, data = TinyNet(), TinyData(n=16)
    cb = InterpretationCallback(sample_images=[str(tmp_path / "nope.png")])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        trainer_factory([cb], limit_train_batches=1).fit(model, data)
    (tmp_path / "notes.png").write_text("not an image")
    cb = InterpretationCallback(sample_images=[str(tmp_path / "notes.png")])
    trainer = trainer_factory([cb], limit_train_batches=1)
    with pytest.raises(ValueError, match="notes.png.*not a readable image"):
        trainer.fit(model, data)
    assert trainer.global_step == 0


def test_pil_images_and_tensor_lists(trainer_factory) -> None:
    pil = [Image.new("RGB", (40, 30), (255, 255, 255)), Image.new("L", (8, 8))]
    cb_pil = InterpretationCallback(sample_images=pil, prefix="pil")
    tensors = [torch.randn(3, 16, 16), torch.randn(3, 16, 16)]
    cb_tensor = InterpretationCallback(sample_images=tensors, sample_labels=torch.tensor([1, 2]), prefix="tensor")
    trainer = trainer_factory([cb_pil, cb_tensor], limit_train_batches=1, limit_val_batches=0)
    trainer.fit(TinyNet(), TinyData(n=16))
    assert cb_pil.images.shape == (2, 3, 16, 16) and cb_pil.labels is None
    assert torch.equal(cb_tensor.images, torch.stack(tensors))
    assert cb_pil.num_logged == cb_tensor.num_logged == 1


def test_instances_side_by_side_with_different_prefixes_and_methods(trainer_factory, tmp_path) -> None:
    cbs = [
        InterpretationCallback(method="gradcam", num_samples=2),
        InterpretationCallback(method="gradcam++", num_samples=2, prefix="interp2"),
        InterpretationCallback(method="integrated_gradients", num_samples=2, prefix="interp2"),
    ]
    trainer_factory(cbs, limit_train_batches=1, limit_val_batches=0).fit(TinyNet(), TinyData(n=16))
    assert pngs(tmp_path, "interpretation/gradcam") == ["step_000001.png"]
    assert pngs(tmp_path, "interp2/gradcam++") == ["step_000001.png"]
    assert pngs(tmp_path, "interp2/integrated_gradients") == ["step_000001.png"]


class FromValidation(InterpretationCallback):
    """Explains from a validation hook, where Lightning runs under inference mode."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert torch.is_inference_mode_enabled() or not torch.is_grad_enabled()
        self.path = self.log_interpretation(trainer, pl_module)


def test_works_from_a_validation_hook(trainer_factory, tmp_path) -> None:
    cb = FromValidation(num_samples=2, log_every_n_epochs=None, prefix="val")
    trainer = trainer_factory([cb], limit_train_batches=1, limit_val_batches=1)
    trainer.fit(TinyNet(), TinyData(n=16))
    assert cb.path is not None and cb.path.exists()
    assert cb.num_failed == 0


class HardestExamples(InterpretationCallback):
    """The documented extension points: other samples every call, and another explainer."""

    calls = 0

    def select_samples(self, trainer, pl_module):
        images, labels = trainer.datamodule.sample_images(16)
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(pl_module(images), labels, reduction="none")
        hardest = loss.topk(self.num_samples).indices
        self.chosen = labels[hardest]
        return images[hardest], labels[hardest]

    def create_explainer(self, pl_module):
        parent = self

        class Constant:
            def explain(self, images, target_class=None):
                parent.calls += 1
                return torch.full((images.shape[0], *images.shape[-2:]), 0.5)

        return Constant()


def test_subclass_swaps_samples_and_explainer(trainer_factory, tmp_path) -> None:
    cb = HardestExamples(num_samples=3, log_every_n_steps=1)
    trainer_factory([cb], limit_train_batches=2, limit_val_batches=0).fit(TinyNet(), TinyData(n=32))
    assert cb.calls == 2 and cb.num_logged == 2 and len(cb.chosen) == 3
    assert pngs(tmp_path, "interpretation/gradcam") == ["step_000001.png", "step_000002.png"]


def test_layer_free_methods_ignore_target_layer_and_take_method_kwargs(trainer_factory, tmp_path) -> None:
    """Issue 9 item 3: target_layer used to be passed to every method (integrated_gradients crashed
    at setup). Now it reaches only methods that take a layer; method_kwargs reach the method."""
    cbs = [
        InterpretationCallback(method="integrated_gradients", target_layer="conv2", num_samples=2,
                               method_kwargs={"steps": 3, "internal_batch_size": 4, "baseline": "black"}),
        InterpretationCallback(method="smoothgrad", target_layer="conv2", prefix="sg", num_samples=2,
                               method_kwargs={"base": "gradcam", "num_samples": 2, "noise_level": 0.1}),
    ]
    with pytest.warns(UserWarning, match="target_layer='conv2' is ignored.*integrated_gradients"):
        trainer_factory(cbs, limit_train_batches=1, limit_val_batches=0).fit(TinyNet(), TinyData(n=16))
    ig, sg = cbs[0].explainer, cbs[1].explainer
    assert (ig.steps, ig.internal_batch_size) == (3, 4) and cbs[0].num_logged == 1 and cbs[0].num_failed == 0
    assert sg.num_samples == 2 and sg.base_explainer.target_layer_name == "conv2" and cbs[1].num_failed == 0
    # the datamodule's statistics reach the explainer: "black" is black in the data's space
    assert ig.normalization == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.testing.assert_close(ig.make_baseline(torch.zeros(1, 3, 4, 4)), torch.full((1, 3, 4, 4), -2.0))
    assert pngs(tmp_path, "interpretation/integrated_gradients") == ["step_000001.png"]


def test_method_kwargs_errors_name_the_field_and_come_early(trainer_factory) -> None:
    with pytest.raises(ValueError, match="`method_kwargs` has 'stepz'.*'integrated_gradients'.*allowed: baseline, steps"):
        InterpretationCallback(method="integrated_gradients", method_kwargs={"stepz": 3})
    with pytest.raises(ValueError, match="`method_kwargs` may not set target_layer"):
        InterpretationCallback(method="gradcam", method_kwargs={"target_layer": "conv2"})
    with pytest.raises(ValueError, match="`method_kwargs` must be a mapping"):
        InterpretationCallback(method_kwargs=[3])
    cb = InterpretationCallback(method="integrated_gradients", method_kwargs={"steps": 0})
    trainer = trainer_factory([cb], limit_train_batches=1)
    with pytest.raises(ValueError, match=r"callbacks.interpretation.method / .method_kwargs.*steps must be an int >= 1"):
        trainer.fit(TinyNet(), TinyData(n=16))
    assert trainer.global_step == 0


def test_unknown_method_suggests_real_names_only() -> None:
    with pytest.raises(ValueError) as error:
        InterpretationCallback(method="foo")
    assert "Did you mean" not in str(error.value) and "available: gradcam, gradcam++" in str(error.value)


def test_unknown_method_or_layer_fail_at_setup(trainer_factory) -> None:
    with pytest.raises(ValueError, match="unknown method 'gradcan'.*gradcam"):
        trainer_factory([InterpretationCallback(method="gradcan")]).fit(TinyNet(), TinyData(n=16))
    with pytest.raises(ValueError, match="conv3"):
        trainer_factory([InterpretationCallback(target_layer="conv3")]).fit(TinyNet(), TinyData(n=16))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"colormap": "viridiss"}, "colormap.*Closest: viridis"),
        ({"alpha": 1.5}, "alpha"),
        ({"num_samples": 0}, "num_samples"),
        ({"log_every_n_steps": 0}, "log_every_n_steps"),
        ({"prefix": "/"}, "prefix"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InterpretationCallback(**kwargs)


def test_needs_a_datamodule_or_images(trainer_factory) -> None:
    data = TinyData(n=16)
    with pytest.raises(ValueError, match="sample_images=None.*neither a datamodule nor a validation loader"):
        trainer_factory([InterpretationCallback()], limit_train_batches=1).fit(TinyNet(), data.train_dataloader())


def test_resume_continues_the_logging_schedule(trainer_factory, tmp_path) -> None:
    """state_dict/load_state_dict through a real checkpoint: counters and last logged steps come back."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from callbacks import FeatureMonitorCallback, GramMatrixCallback

    def callbacks():
        return [
            InterpretationCallback(log_every_n_steps=3, num_samples=2),
            GramMatrixCallback(log_every_n_steps=3),
            FeatureMonitorCallback("act1", num_batches=1),
            ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True),
        ]

    first = callbacks()
    trainer_factory(first, max_epochs=1, limit_train_batches=4, limit_val_batches=0, enable_checkpointing=True).fit(
        TinyNet(), TinyData(n=64)
    )
    assert first[0].num_logged == 2  # step 3 and the end (step 4)
    resumed = callbacks()
    trainer = trainer_factory(resumed, max_epochs=2, limit_train_batches=4, limit_val_batches=0, enable_checkpointing=True)
    trainer.fit(TinyNet(), TinyData(n=64), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # the checkpoint was written at the end of epoch 0, after step 3's grid but before the
    # end-of-training one: 1 restored + step 6 + the end (step 8)
    assert resumed[0].num_logged == 3
    assert resumed[0].state_dict()["last_logged_step"] == 8
    assert resumed[1].state_dict()["last_logged_step"] == 6
    assert resumed[2].state_dict()["last_logged_epoch"] == 1
    assert pngs(tmp_path, "interpretation/gradcam") == [
        "step_000003.png", "step_000004.png", "step_000006.png", "step_000008.png"
    ]


def test_one_forward_pass_for_gradcam_and_right_predictions(trainer_factory) -> None:
    """The explainer's own forward gives the captions' predictions: no second forward pass."""
    model, data = TinyNet(), TinyData(n=32)
    # metrics=[]: the explanation metrics' deletion/insertion curves run the model on perturbed images
    cb = InterpretationCallback(num_samples=5, log_every_n_epochs=None, metrics=[])
    trainer = trainer_factory([cb], limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, data)
    calls = []
    handle = model.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        cb.log_interpretation(trainer, model)
    finally:
        handle.remove()
    assert len(calls) == 1
    model.eval()
    with torch.no_grad():
        probs = model(cb.images).softmax(-1)
    predicted, confidence = cb.last_predictions
    assert torch.equal(predicted, probs.argmax(-1))
    torch.testing.assert_close(confidence, probs.max(-1).values)


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf = REPO / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize(
    ("overrides", "layer"),
    [
        ((), "backbone.layer2"),  # resnet18 at 32 px: layer2 is 4x4, layer3 2x2, layer4 1x1
        (("model.backbone=convnext_nano",), "backbone.stages.1"),
        (("experiment=digits_vit",), "backbone.blocks.11.norm1"),
        (("callbacks.interpretation.method=integrated_gradients",
          "+callbacks.interpretation.method_kwargs.steps=2"), None),
        (("experiment=digits_vit", "callbacks.interpretation.method=attention_rollout"), None),
    ],
)
def test_interp_config_fits_any_backbone_and_method(trainer_factory, tmp_path, overrides, layer) -> None:
    """Issue 9 items 3-4: `callbacks=interp` composed from conf/ for real (target_layer: null) and
    fitted for one tiny epoch with the real datamodule; it crashed on non-ResNets and with IG."""
    from hydra.utils import instantiate

    cfg = compose("callbacks=interp", *overrides)
    assert cfg.callbacks.interpretation.target_layer is None
    data = instantiate(cfg.data)
    model = instantiate(cfg.model, num_classes=data.num_classes)
    cb = instantiate(cfg.callbacks.interpretation, num_samples=2)
    trainer = trainer_factory([cb], max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, data)
    assert cb.num_logged == 1 and cb.num_failed == 0
    if layer is not None:
        assert cb.explainer.target_layer_name == layer
    if "integrated_gradients" in " ".join(overrides):
        assert cb.explainer.steps == 2
    method = cfg.callbacks.interpretation.method
    assert pngs(tmp_path, f"interpretation/{method}") == ["step_000001.png"]
