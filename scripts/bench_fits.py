"""The seeded fits ``scripts/bench_callbacks.py`` times: resnet18 on the digits data, with or without a callback.

:func:`build` sets one fit up (its timing callbacks first, then the callback of its kind: :data:`CALLBACKS`),
:func:`fit` runs one on its own and returns its train wall time, the time inside the callback, its CPU
time and page faults. :func:`timed` wraps a callback's hooks to add up the time spent inside them.
"""

from __future__ import annotations

import functools
import gc
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from callbacks import CartographyCallback, FeatureMonitorCallback, GramMatrixCallback, InterpretationCallback
from runner.data import DigitsDataModule
from runner.models.classifier import ImageClassifier

__all__ = ["CALLBACKS", "TimerEnd", "TrainTimer", "build", "fit", "hooks_of", "timed"]

#: the callback each kind of fit adds (a kind not here: none), as its conf/callbacks/*.yaml ships it unless said
CALLBACKS: dict[str, Callable[[], Callback]] = {
    # conf/callbacks/feature_monitor.yaml's layers (auto) and num_batches, logging every epoch
    "feature_monitor": lambda: FeatureMonitorCallback("auto", log_every_n_epochs=1, num_batches=10),
    "gram_matrix": lambda: GramMatrixCallback(log_every_n_steps=100),
    # conf/callbacks/interpretation.yaml's defaults: gradcam, 8 samples (the datamodule's sample_images, as under
    # run.py), at the end of epochs 0, 5, 10, ... and at the end of training, scored with the default metrics
    "interpretation": lambda: InterpretationCallback(),
    # conf/callbacks/cartography.yaml's defaults, the image of the num_hardest=8 hardest samples at the end included
    "cartography": lambda: CartographyCallback(),
}


class TrainTimer(Callback):
    """Wall and CPU (process) time from the start to the end of the training loop (no setup, no teardown).

    First in a fit's callbacks; its clock stops in :class:`TimerEnd`, last in them, so that the other
    callbacks' ``on_train_end`` work (a last image, a file written) is inside the time.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def stop(self, trainer: pl.Trainer) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults_start
        self.steps = trainer.global_step


class TimerEnd(Callback):
    """Last in a fit's callbacks: stops its :class:`TrainTimer` at the end of training."""

    def __init__(self, timer: TrainTimer) -> None:
        self.timer = timer

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer.stop(trainer)


def hooks_of(callback: Callback) -> list[str]:
    """The Lightning hooks (``on_*``) the callback's class overrides: the ones that run its code."""
    return [name for name in dir(Callback) if name.startswith("on_") and callable(getattr(Callback, name))
            and getattr(type(callback), name, None) is not getattr(Callback, name)]


def timed(callback: Callback, extra: tuple[str, ...] = ()) -> Callback:
    """Wrap the callback's hooks (every ``on_*`` hook its class overrides, and ``extra`` methods) to add up the
    time spent inside them (``setup`` is not: it runs before training, outside the timed loop)."""
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

    for name in [*hooks_of(callback), *extra]:
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
    extra: list[Callback] = [timed(CALLBACKS[kind]())] if kind in CALLBACKS else []
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
    trainer.callbacks.append(TimerEnd(timer))
    trainer.fit(model, data)
    inside = sum(getattr(cb, "bench_seconds", 0.0) for cb in extra)
    if timer.steps != steps:
        raise RuntimeError(f"{kind}: the fit ran {timer.steps} steps, not {steps}")
    return timer.seconds, inside, timer.cpu_seconds, timer.faults
