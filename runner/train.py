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

from runner.allocator import keep_freed_memory
from runner.paths import close_log_files
from runner.checks import check_config, resolve_ckpt_path
from runner.config_tree import print_config_tree
from runner.ddp import end_child_ranks, global_rank, isolated_distributed_state, prepare_ddp_subprocess_launch
from runner.errors import full_error_requested, short_message
from runner.hparams import log_hyperparameters
from runner.instantiate import instantiate_callbacks, instantiate_loggers
from runner.multirun import write_job_result
from runner.requeue import requeued_resume_path, slurm_job_id

log = logging.getLogger(__name__)

__all__ = ["run", "train", "TrainResult"]

FAILED_MARKER = "FAILED"
METRICS_FILE = "metrics.json"


class TrainResult(dict):
    """Metrics of a run plus what the caller needs to report it."""

    fit_started: bool = False
    failed_by_callback: bool = False
    best_model_path: str = ""
    failure_reason: str = ""
    trainer: Any = None
    start_step: int | None = None

    @property
    def trained(self) -> bool:
        """Whether this run applied at least one optimizer step (a failure before is a failure "before training")."""
        if self.trainer is None or not self.fit_started:
            return False
        start = self.start_step if self.start_step is not None else 0
        return int(self.trainer.global_step) > start


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
        data_config = model.data_config
        datamodule.set_normalization(data_config["mean"], data_config["std"])

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))

    prepare_ddp_subprocess_launch(cfg.trainer)
    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    callbacks.append(_StartStep(result))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    result.trainer = trainer

    if loggers:
        log.info("Logging hyperparameters")
        log_hyperparameters(cfg, model, trainer)

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    ckpt_path = ckpt_path or requeued_resume_path(ckpt_path, output_dir)  # a requeued SLURM job continues
    if cfg.get("train", True):
        log.info("Starting training" + (f" from {ckpt_path}" if ckpt_path else ""))
        result.fit_started = True
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    result.update({k: _to_float(v) for k, v in trainer.callback_metrics.items()})
    failed = [cb for cb in trainer.callbacks if getattr(cb, "run_failed", False)]
    result.failed_by_callback = bool(failed)
    if failed:
        result.failure_reason = f"{type(failed[0]).__name__}: {getattr(failed[0], 'reason', None) or 'run_failed'}"
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


class _StartStep(pl.Callback):
    """Records the global step training starts from (after a resume), to tell whether a step was taken."""

    def __init__(self, result: TrainResult) -> None:
        self.result = result

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.result.start_step = int(trainer.global_step)


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
    file, or to the terminal with ``HYDRA_FULL_ERROR=1``) and exits with status 1; so does a
    single run stopped by a callback (``TerminateOnNaN``). A failed job inside a multirun is
    recorded as failed with a NaN metric and the sweep goes on. A run that fails before its
    first optimizer step leaves no run directory behind (unless the directory held an earlier
    run, e.g. a resume in place); one that fails later keeps its checkpoints and a ``FAILED``
    file, never a ``metrics.json``. Under DDP the error names the rank it happened on.
    """
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    output_dir = Path(hc.runtime.output_dir)
    rank = global_rank()
    fresh_dir = _is_fresh_run_dir(output_dir, str(cfg.get("task_name", "")))
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

    start = time.time()
    job = {
        "job_num": hc.job.get("num") if multirun else None,
        "overrides": list(hc.overrides.task),
        "output_dir": str(output_dir),
        "started_at": start,
        **({"slurm_job_id": slurm_job_id()} if slurm_job_id() else {}),
    }
    progress = TrainResult()
    try:
        if multirun and rank == 0:
            with isolated_distributed_state():
                result = train(cfg, output_dir, progress)
        else:
            result = train(cfg, output_dir, progress)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then handled below
        world = int(getattr(progress.trainer, "world_size", 1) or 1)
        message = _rank_message(short_message(exc), rank, world)
        if rank != 0:  # rank 0 reports and cleans up; the others only say why they stopped
            if full_error_requested():
                raise
            print(f"Error on rank {rank}: {message}", file=sys.stderr)
            sys.exit(1)
        log.error(f"Run failed: {message}")
        log.debug("".join(traceback.format_exception(exc)))
        if not multirun:
            end_child_ranks(timeout=10)  # a rank stuck elsewhere must not outlive the run
        if full_error_requested() and not multirun:
            raise
        if multirun:
            (output_dir / FAILED_MARKER).write_text("".join(traceback.format_exception(exc)))
            write_job_result(output_dir, {**job, "status": "failed", "error": message,
                                          "optimized_metric": math.nan, "finished_at": time.time()})
            _write_report(cfg, output_dir, multirun)
            return math.nan
        if progress.trained or not fresh_dir:
            (output_dir / FAILED_MARKER).write_text("".join(traceback.format_exception(exc)))
            _write_report(cfg, output_dir, multirun)
            where = f" (checkpoints and logs kept in {output_dir})"
        else:
            close_log_files(output_dir)
            shutil.rmtree(output_dir, ignore_errors=True)
            where = " (before training: no run directory kept)"
        print(f"Error: {message}{where}\nSet HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
        sys.exit(1)

    value = _optimized_value(cfg, dict(result), result.failed_by_callback)
    if rank == 0:
        status = "failed" if result.failed_by_callback else "ok"
        payload = {**job, "status": status, "optimized_metric": value, "metrics": dict(result),
                   "best_model_path": result.best_model_path, "seconds": round(time.time() - start, 2),
                   "finished_at": time.time()}
        if result.failed_by_callback:
            payload["error"] = result.failure_reason
            (output_dir / FAILED_MARKER).write_text(f"stopped by a callback: {result.failure_reason}\n")
        else:
            (output_dir / METRICS_FILE).write_text(json.dumps(payload, indent=2))
        write_job_result(output_dir, payload)
        _print_summary(output_dir, result, value, cfg)
        _write_report(cfg, output_dir, multirun)  # a failing report only warns: the run is trained
    if result.failed_by_callback and not multirun:
        if rank == 0:
            print(f"Error: the run was stopped: {result.failure_reason} (checkpoints and logs kept in {output_dir})",
                  file=sys.stderr)
        sys.exit(1)
    return value


def _write_report(cfg: DictConfig, output_dir: Path, multirun: bool) -> None:
    """The run's ``report.html`` unless ``report=false``; also for a failed run whose directory is kept
    (it shows why, and what was logged until then). A failing report only warns."""
    if cfg.get("report", True):
        from runner.report import write_report_safely

        write_report_safely(output_dir, provenance={} if multirun else {"command": " ".join(["python", *sys.argv])})


# What Hydra and the start of run() write into a run directory before anything is trained.
_SETUP_FILES = {".hydra", "config_resolved.yaml", "config_tree.log"}


def _is_fresh_run_dir(output_dir: Path, task_name: str) -> bool:
    """True when ``output_dir`` holds nothing but what this run's start-up wrote (not an earlier run)."""
    if not output_dir.is_dir():
        return True
    setup = _SETUP_FILES | {f"{task_name}.log", "run.log"}
    return all(entry.name in setup for entry in output_dir.iterdir())


def _rank_message(message: str, rank: int, world: int) -> str:
    """Name the rank under DDP (``world`` processes), and say what a collective timeout means."""
    if world > 1:
        message = f"rank {rank} of {world}: {message}"
    lowered = message.lower()
    if world > 1 and ("timed out" in lowered or "timeout" in lowered):
        message += (
            "\n  (a collective waited longer than trainer.strategy.timeout: another rank is stuck or failed;"
            " raise it with trainer.strategy.timeout.seconds=...)"
        )
    return message
