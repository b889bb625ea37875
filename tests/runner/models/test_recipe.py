"""timm's training recipe in the classifier: Mixup/CutMix with soft targets, warmup + cosine per step,
layer-wise LR decay, and all of it with bf16, channels_last and torch.compile (real CPU fits, 32 px)."""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from timm.loss import SoftTargetCrossEntropy

from callbacks import EMAWeights
from runner.data import ShapesDataModule
from runner.models import ImageClassifier
from runner.models.lr_schedule import WarmupCosineLR
from runner.models.mixup import build_mixup


def _data() -> ShapesDataModule:
    return ShapesDataModule(image_size=32, num_train=32, num_val=16, num_test=16, batch_size=16)


def _model(backbone: str = "test_resnet", **kwargs: Any) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(
        backbone=backbone, num_classes=4, image_size=32,
        optimizer=functools.partial(torch.optim.AdamW, lr=0.01, weight_decay=0.05), **kwargs,
    )


def _warmup_cosine(**kwargs: Any) -> functools.partial:
    return functools.partial(WarmupCosineLR, T_max=None, **kwargs)


class _RecordLR(Callback):
    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def _fit(model: ImageClassifier, tmp_path: Path, *callbacks: Callback, **trainer: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, callbacks=list(callbacks),
    )
    run = pl.Trainer(**{**options, **trainer})
    run.fit(model, datamodule=_data())
    return run


def test_mixup_bad_keys_fail_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^model.mixup.mixup_alpha must be a number >= 0 \(0: off\), got -1$"):
        _model(mixup={"mixup_alpha": -1})
    with pytest.raises(ValueError, match=r"^model.mixup.mode can be batch, pair, elem"):
        _model(mixup={"mixup_alpha": 0.2, "mode": "rows"})
    assert _model(mixup={"mixup_alpha": 0.0}).mixup is None  # both alphas 0: off


def test_mixup_trains_on_soft_targets_and_scores_the_hard_labels(tmp_path: Path) -> None:
    config = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "label_smoothing": 0.1}
    model = _model(mixup=config)
    dm = _data()
    dm.setup("fit")
    x, y, _ = next(iter(dm.train_dataloader()))
    np.random.seed(5), random.seed(5)
    out = model._mixed_step((x.clone(), y))
    np.random.seed(5), random.seed(5)
    mixed, soft = build_mixup(config, 4)(x.clone(), y)  # timm's Mixup, the same draws
    assert soft.shape == (16, 4) and torch.allclose(soft.sum(1), torch.ones(16))
    expected = SoftTargetCrossEntropy()(model(mixed), soft)
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    assert torch.equal(out["targets"], y)  # accuracy is scored against the hard labels
    run = _fit(model, tmp_path, max_steps=2)
    assert 0 <= float(run.callback_metrics["train/acc"]) <= 1


def test_warmup_cosine_per_step_with_layer_decay(tmp_path: Path) -> None:
    record = _RecordLR()
    model = _model("test_vit", layer_decay=0.5, scheduler=_warmup_cosine(warmup_epochs=1.0), scheduler_interval="step")
    _fit(model, tmp_path, record, max_epochs=3)  # 2 steps an epoch: warmup 2 steps, T_max 6
    scheduler = model.lr_schedulers()
    assert (scheduler.T_max, scheduler.warmup_length) == (6, 2)
    lrs = np.array(record.lrs)  # (steps, groups)
    base = np.array(lrs[-1]) / lrs[-1][-1]  # each group's share of the head's LR
    assert base[-1] == 1 and np.allclose(sorted(set(np.round(base, 8))), [0.5**k for k in range(len(set(np.round(base, 8))))][::-1])
    assert len(set(np.round(base, 8))) >= 3  # embeddings, blocks, head: a real layer-wise decay
    head = lrs[:, -1]
    assert head[0] == pytest.approx(1e-6)  # warmup starts at warmup_lr_init
    assert head[1] == pytest.approx(1e-6 + (0.01 - 1e-6) / 2)  # linear warmup to the LR at step 2
    cosine = [0.01 * 0.5 * (1 + np.cos(np.pi * t / 6)) for t in range(2, 6)]
    assert np.allclose(head[2:], cosine)  # then timm's cosine over the whole run


def test_bf16_channels_last_mixup_ema_and_warmup_together(tmp_path: Path) -> None:
    model = _model(mixup={"mixup_alpha": 0.8, "cutmix_alpha": 1.0}, channels_last=True,
                   scheduler=_warmup_cosine(warmup_steps=1), scheduler_interval="step")
    run = _fit(model, tmp_path, EMAWeights(decay=0.9), precision="bf16-mixed", max_epochs=2)
    conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    metrics = run.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and 0 <= float(metrics["val/acc_ema"]) <= 1


@pytest.mark.slow
def test_compile_with_the_recipe(tmp_path: Path) -> None:
    model = _model(mixup={"mixup_alpha": 0.8}, channels_last=True, compile=True,
                   scheduler=_warmup_cosine(warmup_steps=1), scheduler_interval="step")
    run = _fit(model, tmp_path, EMAWeights(decay=0.9), precision="bf16-mixed", max_steps=2, limit_val_batches=1)
    assert torch.isfinite(run.callback_metrics["train/loss"]) and "val/acc_ema" in run.callback_metrics


@pytest.mark.slow
def test_finetune_imagefolder_experiment_runs(tmp_path: Path) -> None:
    """``experiment=finetune_imagefolder`` end to end (weights from scratch here: no network in tests)."""
    import subprocess
    import sys

    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(2):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / f"c{c}" / f"{i}.jpg")
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "run.py", "experiment=finetune_imagefolder", f"data.train_dir={tmp_path / 'train'}",
         f"data.val_dir={tmp_path / 'val'}", "model.pretrained=false", "model.backbone=resnet10t", "data.image_size=32",
         "data.batch_size=8", "data.num_workers=0", "trainer.max_epochs=2", "logger=none", "report=false",
         "callbacks.rich_progress_bar=null", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "val/acc_ema_best" in proc.stdout + proc.stderr

    # explain.py weights=ema explains the EMA weights saved in the checkpoint, weights=model the trained ones
    from runner.explain.checkpoint import find_checkpoint, load_checkpoint_model, saved_config

    ckpt = find_checkpoint(str(tmp_path / "run"))
    config = saved_config(tmp_path / "run")
    ema_model, checkpoint = load_checkpoint_model(ckpt, config, torch.device("cpu"), weights="ema")
    trained, _ = load_checkpoint_model(ckpt, config, torch.device("cpu"), weights="model")
    ema_state = next(s["ema_state_dict"] for s in checkpoint["callbacks"].values() if "ema_state_dict" in s)
    key = "model.head.fc.weight" if "model.head.fc.weight" in ema_state else next(k for k in ema_state if k.endswith("weight"))
    assert torch.equal(ema_model.state_dict()[key], ema_state[key])
    assert torch.equal(trained.state_dict()[key], checkpoint["state_dict"][key])
    assert not torch.equal(ema_state[key], checkpoint["state_dict"][key])
    del checkpoint["callbacks"]
    torch.save(checkpoint, tmp_path / "no_ema.ckpt")
    with pytest.raises(ValueError, match=r"^weights=ema: .* holds no EMA weights"):
        load_checkpoint_model(tmp_path / "no_ema.ckpt", config, torch.device("cpu"), weights="ema")
