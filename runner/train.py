"""The training pipeline, a straight line: seed -> data -> model -> loggers -> callbacks -> trainer -> fit -> test.

:func:`train` is the pipeline: it returns a :class:`~runner.train_result.TrainResult` and raises on any
error. :func:`run` (what ``run.py`` calls) is :func:`train` inside :func:`runner.run_wrapper.run_wrapper`,
which writes the run's records and owns the failure policy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from runner.allocator import keep_freed_memory
from runner.checks import check_config, resolve_ckpt_path
from runner.hparams import log_hyperparameters
from runner.instantiate import instantiate_callbacks, instantiate_loggers
from runner.launch.ddp import global_rank, prepare_ddp_subprocess_launch
from runner.launch.requeue import drop_rows_after_checkpoint, requeued_resume_path
from runner.run_wrapper import run_wrapper
from runner.train_result import FitProgress, TrainResult

log = logging.getLogger(__name__)

__all__ = ["FitProgress", "TrainResult", "run", "train"]


def train(cfg: DictConfig, output_dir: Path, progress: FitProgress | None = None) -> TrainResult:
    """Fit and test the model described by ``cfg``; return every logged metric.

    Args:
        cfg: the composed config.
        output_dir: this run's directory.
        progress: filled in as the run goes, so that a caller can tell how far a failed run got.

    Returns:
        The metrics, the best checkpoint, and which callback (if any) stopped the run as failed.
    """
    progress = progress if progress is not None else FitProgress()
    check_config(cfg)
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()  # glibc: no page faults from memory handed back and taken again every step
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    log.info(f"Instantiating datamodule <{cfg.data._target_}>")
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)

    num_classes = datamodule.num_classes
    if cfg.model.get("num_classes") not in (None, num_classes):
        raise ValueError(
            f"model.num_classes={cfg.model.num_classes} but the data has {num_classes} classes; leave it null"
        )
    log.info(f"Instantiating model <{cfg.model._target_}> with backbone <{cfg.model.get('backbone')}>")
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model, num_classes=num_classes)
    if hasattr(datamodule, "set_normalization") and hasattr(model, "data_config"):
        datamodule.set_normalization(model.data_config["mean"], model.data_config["std"])

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))

    prepare_ddp_subprocess_launch(cfg.trainer)
    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=[*callbacks, _RecordStartStep(progress)], logger=loggers or False
    )
    progress.trainer = trainer

    if loggers:
        log.info("Logging hyperparameters")
        log_hyperparameters(cfg, model, trainer)

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    ckpt_path = ckpt_path or requeued_resume_path(ckpt_path, output_dir)  # a requeued SLURM job continues
    progress.resumed_from = ckpt_path
    if ckpt_path and cfg.get("train", True) and global_rank() == 0:
        # rows an interrupted run logged after its checkpoint are trained (and logged) again
        epoch, step, dropped = drop_rows_after_checkpoint(ckpt_path, output_dir)
        if dropped:
            log.info(f"Dropped {dropped} csv rows logged after the checkpoint (epoch {epoch}, global step {step})")
    if cfg.get("train", True):
        log.info("Starting training" + (f" from {ckpt_path}" if ckpt_path else ""))
        progress.fit_started = True
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    result = TrainResult(metrics=_metrics(trainer), best_model_path=_best_model_path(trainer),
                         stopped_by=_stopped_by(trainer))

    if cfg.get("test", True) and not result.failed:
        best = result.best_model_path or None
        if cfg.get("train", True) and best is None:
            log.warning("No best checkpoint (no ModelCheckpoint or nothing saved): testing the current weights")
        log.info(f"Starting testing with {best or 'the current weights'}")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best if cfg.get("train", True) else ckpt_path)
        result.metrics.update(_metrics(trainer))

    for logger in trainer.loggers:
        logger.finalize("failed" if result.failed else "success")
    _finish_wandb(trainer)
    return result


run = run_wrapper(train)
run.__doc__ = """Entry point of ``run.py``: :func:`train` with the run's records and failure policy
(:func:`runner.run_wrapper.run_wrapper`); returns ``optimized_metric``."""


class _RecordStartStep(pl.Callback):
    """Records the global step training starts from (after a resume), to tell whether a step was taken."""

    def __init__(self, progress: FitProgress) -> None:
        self.progress = progress

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.progress.start_step = int(trainer.global_step)


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu().item())
    return float(value)


def _metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: _to_float(v) for k, v in trainer.callback_metrics.items()}


def _best_model_path(trainer: pl.Trainer) -> str:
    if trainer.checkpoint_callback is None:
        return ""
    return getattr(trainer.checkpoint_callback, "best_model_path", "") or ""


def _stopped_by(trainer: pl.Trainer) -> str | None:
    """``"<Callback>: <reason>"`` of the first callback that declared the run failed (``run_failed``)."""
    failed = [cb for cb in trainer.callbacks if getattr(cb, "run_failed", False)]
    if not failed:
        return None
    return f"{type(failed[0]).__name__}: {getattr(failed[0], 'reason', None) or 'run_failed'}"


def _finish_wandb(trainer: pl.Trainer) -> None:
    """Close wandb runs (each job of a multirun gets its own run) and say how to upload offline ones."""
    for logger in trainer.loggers:
        if type(logger).__name__ != "WandbLogger" or getattr(logger, "_experiment", None) is None:
            continue
        run_dir = Path(logger.experiment.dir).parent
        offline = bool(getattr(logger, "_offline", False))
        logger.experiment.finish()
        if offline:
            log.info(f"wandb: offline run saved in {run_dir}; upload it later with: wandb sync {run_dir}")
