"""The training pipeline: seed -> data -> model -> loggers -> callbacks -> trainer -> fit -> test.

:func:`run` is what ``run.py`` calls; :func:`train` is the straight-line pipeline.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner.checks import check_config, resolve_ckpt_path
from runner.config_tree import print_config_tree
from runner.ddp import global_rank, isolated_distributed_state, prepare_ddp_subprocess_launch
from runner.errors import full_error_requested, short_message
from runner.hparams import log_hyperparameters
from runner.instantiate import instantiate_callbacks, instantiate_loggers
from runner.multirun import write_job_result

log = logging.getLogger(__name__)

__all__ = ["run", "train", "TrainResult"]

FAILED_MARKER = "FAILED"
METRICS_FILE = "metrics.json"


class TrainResult(dict):
    """Metrics of a run plus what the caller needs to report it."""

    fit_started: bool = False
    failed_by_callback: bool = False
    best_model_path: str = ""


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu().item())
    return float(value)


def train(cfg: DictConfig, output_dir: Path, progress: TrainResult | None = None) -> TrainResult:
    """Fit and test the model described by ``cfg``; return every logged metric.

    Args:
        cfg: the composed config.
        output_dir: this run's directory.
        progress: filled in as the run goes (so a caller can tell how far a failed run got).
    """
    result = progress if progress is not None else TrainResult()
    check_config(cfg)
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
        data_config = model.data_config
        datamodule.set_normalization(data_config["mean"], data_config["std"])

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))

    prepare_ddp_subprocess_launch(cfg.trainer)
    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if loggers:
        log.info("Logging hyperparameters")
        log_hyperparameters(cfg, model, trainer)

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    if cfg.get("train", True):
        log.info("Starting training" + (f" from {ckpt_path}" if ckpt_path else ""))
        result.fit_started = True
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    result.update({k: _to_float(v) for k, v in trainer.callback_metrics.items()})
    result.failed_by_callback = any(getattr(cb, "run_failed", False) for cb in trainer.callbacks)
    if trainer.checkpoint_callback is not None:
        result.best_model_path = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""

    if cfg.get("test", True) and not result.failed_by_callback:
        best = result.best_model_path or None
        if cfg.get("train", True) and best is None:
            log.warning("No best checkpoint (no ModelCheckpoint or nothing saved): testing the current weights")
        log.info(f"Starting testing with {best or 'the current weights'}")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best if cfg.get("train", True) else ckpt_path)
        result.update({k: _to_float(v) for k, v in trainer.callback_metrics.items()})
    for logger in trainer.loggers:
        logger.finalize("success" if not result.failed_by_callback else "failed")
    _finish_wandb(trainer)
    return result


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


def _optimized_value(cfg: DictConfig, metrics: dict[str, float], failed: bool) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if failed:
        return math.nan
    if name not in metrics:
        log.warning(f"optimized_metric {name!r} was not logged; logged metrics: {', '.join(sorted(metrics))}")
        return math.nan
    return metrics[name]


def _print_summary(output_dir: Path, result: TrainResult, value: float | None, cfg: DictConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(result):
        table.add_row(key, f"{result[key]:.4f}")
    console = Console(width=120)
    console.print(table)
    console.print(f"Output dir: {output_dir}")
    console.print(f"Best checkpoint: {result.best_model_path or '(none)'}")
    if value is not None:
        console.print(f"{cfg.optimized_metric}: {value:.4f}")


def run(cfg: DictConfig) -> float | None:
    """Entry point of ``run.py``: run :func:`train`, report, and return ``optimized_metric``.

    A single run that fails prints a short error (the full traceback goes to the run's log
    file, or to the terminal with ``HYDRA_FULL_ERROR=1``) and exits with status 1. A failed
    job inside a multirun is recorded as failed with a NaN metric and the sweep goes on.
    A run that fails before training leaves no run directory behind; one that fails later
    keeps its checkpoints and a ``FAILED`` file, never a ``metrics.json``.
    """
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    output_dir = Path(hc.runtime.output_dir)
    rank = global_rank()
    if logging.getLogger().handlers:
        # `import lightning` adds its own console handler; Hydra's root handlers already print
        # (and save) everything, so drop it to avoid every line appearing twice.
        logging.getLogger("lightning").handlers.clear()
    if cfg.get("ignore_warnings"):
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        warnings.filterwarnings("ignore", category=FutureWarning)
    if rank == 0:
        OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=False)
        print_config_tree(cfg, save_to=output_dir / "config_tree.log", show=bool(cfg.get("print_config", True)))

    job = {
        "job_num": hc.job.get("num") if multirun else None,
        "overrides": list(hc.overrides.task),
        "output_dir": str(output_dir),
    }
    progress = TrainResult()
    start = time.time()
    try:
        if multirun and rank == 0:
            with isolated_distributed_state():
                result = train(cfg, output_dir, progress)
        else:
            result = train(cfg, output_dir, progress)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then handled below
        message = short_message(exc)
        if rank != 0:  # rank 0 reports and cleans up; the others only say why they stopped
            if full_error_requested():
                raise
            print(f"Error on rank {rank}: {message}", file=sys.stderr)
            sys.exit(1)
        log.error(f"Run failed: {message}")
        log.debug("".join(traceback.format_exception(exc)))
        if full_error_requested() and not multirun:
            raise
        if multirun:
            (output_dir / FAILED_MARKER).write_text("".join(traceback.format_exception(exc)))
            write_job_result(output_dir, {**job, "status": "failed", "error": message, "optimized_metric": math.nan})
            return math.nan
        if progress.fit_started:
            (output_dir / FAILED_MARKER).write_text("".join(traceback.format_exception(exc)))
            where = f" (checkpoints and logs kept in {output_dir})"
        else:
            shutil.rmtree(output_dir, ignore_errors=True)
            where = ""
        print(f"Error: {message}{where}\nSet HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
        sys.exit(1)

    value = _optimized_value(cfg, dict(result), result.failed_by_callback)
    if rank == 0:
        status = "failed" if result.failed_by_callback else "ok"
        payload = {**job, "status": status, "optimized_metric": value, "metrics": dict(result),
                   "best_model_path": result.best_model_path, "seconds": round(time.time() - start, 2)}
        if result.failed_by_callback:
            (output_dir / FAILED_MARKER).write_text("stopped by a callback (run_failed), e.g. a NaN loss\n")
        else:
            (output_dir / METRICS_FILE).write_text(json.dumps(payload, indent=2))
        write_job_result(output_dir, payload)
        _print_summary(output_dir, result, value, cfg)
    return value
