"""The seeded fits ``scripts/bench_callbacks.py`` times: resnet18 on the digits data, with or without a callback.

:func:`build` sets one fit up (its timing callbacks first, then the callback of its kind), :func:`fit`
runs one on its own and returns its train wall time, the time inside the callback, its CPU time and
page faults. :func:`timed` wraps a callback's hooks to add up the time spent inside them.
"""

from __future__ import annotations

import functools
import gc
import resource
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from callbacks import FeatureMonitorCallback, GramMatrixCallback
from runner.data import DigitsDataModule
from runner.models.classifier import ImageClassifier

__all__ = ["HOOKS", "TrainTimer", "build", "fit", "timed"]

HOOKS = ("setup", "on_train_epoch_start", "on_train_batch_start", "on_train_batch_end", "on_train_epoch_end")


class TrainTimer(Callback):
    """Wall and CPU (process) time from the start to the end of the training loop (no setup, no teardown)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults_start
        self.steps = trainer.global_step


def timed(callback: Callback, extra: tuple[str, ...] = ()) -> Callback:
    """Wrap the callback's hooks (and ``extra`` methods) to add up the time spent inside them."""
    callback.bench_seconds = 0.0

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                callback.bench_seconds += time.perf_counter() - start

        return inner

    for name in HOOKS + extra:
        if name != "setup":
            setattr(callback, name, wrap(getattr(callback, name)))
    if hasattr(callback, "_make_hook"):  # FeatureMonitor's forward hooks run inside the model's forward
        make_hook = callback._make_hook
        callback._make_hook = lambda name: wrap(make_hook(name))
    return callback


def build(kind: str, steps: int, image_size: int, batch_size: int, root: Path,
          timing: list[Callback]) -> tuple[pl.Trainer, ImageClassifier, DigitsDataModule, list[Callback]]:
    """One seeded fit, ready to run: ``timing`` callbacks first, then the callback ``kind`` names."""
    pl.seed_everything(0, verbose=False)
    model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=image_size)
    data = DigitsDataModule(batch_size=batch_size, image_size=image_size, seed=0)
    extra: list[Callback] = []
    if kind == "feature_monitor":
        extra = [timed(FeatureMonitorCallback("auto", log_every_n_epochs=1, num_batches=10))]
    elif kind == "gram_matrix":
        extra = [timed(GramMatrixCallback(log_every_n_steps=100))]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=pl.loggers.CSVLogger(str(root), name=kind),
        default_root_dir=str(root / kind),
        callbacks=[*timing, *extra],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    return trainer, model, data, extra


def fit(kind: str, steps: int, image_size: int, batch_size: int, root: Path) -> tuple[float, float, float, int]:
    """One seeded fit on its own; returns (train seconds, seconds inside the callback, train CPU seconds, page faults)."""
    gc.collect()  # the previous fit's objects (Lightning's are full of cycles) are not collected inside this one
    timer = TrainTimer()
    trainer, model, data, extra = build(kind, steps, image_size, batch_size, root, [timer])
    trainer.fit(model, data)
    inside = sum(getattr(cb, "bench_seconds", 0.0) for cb in extra)
    if timer.steps != steps:
        raise RuntimeError(f"{kind}: the fit ran {timer.steps} steps, not {steps}")
    return timer.seconds, inside, timer.cpu_seconds, timer.faults
