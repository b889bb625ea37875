"""Everything around one training run but the training: its records, its report, and the failure policy.

:func:`run_wrapper` turns the straight-line pipeline (:func:`runner.train.train`) into the entry
point of ``run.py`` (as lightning-hydra-template's ``task_wrapper`` does): it saves the config,
runs the pipeline, and records the outcome in the run directory through :mod:`runner.artifacts`.

The failure policy:

- A single run that fails prints a short error (the full traceback goes to the run's log file, or
  to the terminal with ``HYDRA_FULL_ERROR=1``) and exits with status 1; so does a single run that
  a callback stopped (``TerminateOnNaN``).
- A failed job inside a multirun is recorded as failed with a NaN ``optimized_metric`` and the sweep
  goes on.
- A run that fails before its first optimizer step leaves no run directory behind (unless the
  directory held an earlier run, e.g. a resume in place); one that fails later keeps its
  checkpoints and a ``FAILED`` file, never a ``metrics.json``.
- Under DDP the error names the rank it happened on; only rank 0 writes records and reports.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner.artifacts import (
    CONFIG_RESOLVED_FILE,
    CONFIG_TREE_FILE,
    SETUP_FILES,
    JobResult,
    RunMetrics,
    write_failed,
)
from runner.config_tree import print_config_tree
from runner.errors import full_error_requested, short_message
from runner.launch.ddp import end_child_ranks, global_rank, isolated_distributed_state
from runner.launch.requeue import slurm_job_id
from runner.paths import close_log_files
from runner.train_result import FitProgress, TrainResult

log = logging.getLogger(__name__)

__all__ = ["TrainFn", "is_fresh_run_dir", "keeps_failed_run_dir", "optimized_value", "rank_message", "run_wrapper"]

#: the pipeline :func:`run_wrapper` wraps: ``train(cfg, output_dir, progress) -> TrainResult``
TrainFn = Callable[[DictConfig, Path, FitProgress], TrainResult]


def run_wrapper(train_fn: TrainFn) -> Callable[[DictConfig], float | None]:
    """``run(cfg)``: ``train_fn`` with the run's records and the failure policy (see the module).

    Args:
        train_fn: the pipeline; it raises on any error and fills in the :class:`FitProgress` it is given.

    Returns:
        A function of the composed config (inside ``@hydra.main``) returning ``optimized_metric``
        (None when no ``optimized_metric`` is set, NaN for a failed multirun job).
    """

    def run(cfg: DictConfig) -> float | None:
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        output_dir = Path(hc.runtime.output_dir)
        rank = global_rank()
        fresh_dir = is_fresh_run_dir(output_dir, str(cfg.get("task_name", "")))
        _prepare(cfg, output_dir, rank)

        start = time.time()
        job = JobResult(job_num=hc.job.get("num") if multirun else None, overrides=list(hc.overrides.task),
                        output_dir=str(output_dir), started_at=start, slurm_job_id=slurm_job_id())
        progress = FitProgress()
        try:
            with isolated_distributed_state() if multirun and rank == 0 else contextlib.nullcontext():
                result = train_fn(cfg, output_dir, progress)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then handled by the policy
            return _on_exception(exc, cfg, output_dir, job, progress, multirun=multirun, rank=rank,
                                 fresh_dir=fresh_dir)
        return _on_finish(result, cfg, output_dir, job, multirun=multirun, rank=rank)

    return run


# ------------------------------------------------------------------------------------- decisions
def is_fresh_run_dir(output_dir: Path, task_name: str) -> bool:
    """True when ``output_dir`` holds nothing but what this run's start-up wrote (not an earlier run)."""
    if not output_dir.is_dir():
        return True
    setup = SETUP_FILES | {f"{task_name}.log", "run.log"}
    return all(entry.name in setup for entry in output_dir.iterdir())


def keeps_failed_run_dir(trained: bool, fresh_dir: bool) -> bool:
    """Whether a failed single run keeps its directory: it trained, or the directory held an earlier run."""
    return trained or not fresh_dir


def optimized_value(name: str | None, metrics: dict[str, float], failed: bool) -> float | None:
    """The value of ``optimized_metric`` (``name``): None when unset, NaN for a failed run or a metric never logged."""
    if not name:
        return None
    if failed:
        return math.nan
    if name not in metrics:
        log.warning(f"optimized_metric {name!r} was not logged; logged metrics: {', '.join(sorted(metrics))}")
        return math.nan
    return metrics[name]


def rank_message(message: str, rank: int, world: int) -> str:
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


# ---------------------------------------------------------------------------------- the phases
def _prepare(cfg: DictConfig, output_dir: Path, rank: int) -> None:
    """Quiet duplicate log handlers and asked-for warnings; rank 0 saves the config and its tree."""
    if logging.getLogger().handlers:
        # `import lightning` adds its own console handler; Hydra's root handlers already print
        # (and save) everything, so drop it to avoid every line appearing twice.
        logging.getLogger("lightning").handlers.clear()
    if cfg.get("ignore_warnings"):
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        warnings.filterwarnings("ignore", category=FutureWarning)
    if rank == 0:
        OmegaConf.save(cfg, output_dir / CONFIG_RESOLVED_FILE, resolve=False)
        print_config_tree(cfg, save_to=output_dir / CONFIG_TREE_FILE, show=bool(cfg.get("print_config", True)))


def _on_exception(exc: Exception, cfg: DictConfig, output_dir: Path, job: JobResult, progress: FitProgress, *,
                  multirun: bool, rank: int, fresh_dir: bool) -> float:
    """The failure policy for a pipeline that raised: returns NaN in a multirun, else exits with status 1."""
    message = rank_message(short_message(exc), rank, progress.world_size)
    if rank != 0:  # rank 0 reports and cleans up; the others only say why they stopped
        if full_error_requested():
            raise exc
        print(f"Error on rank {rank}: {message}", file=sys.stderr)
        sys.exit(1)
    log.error(f"Run failed: {message}")
    log.debug("".join(traceback.format_exception(exc)))
    if not multirun:
        end_child_ranks(timeout=10)  # a rank stuck elsewhere must not outlive the run
    if full_error_requested() and not multirun:
        raise exc
    if multirun:
        write_failed(output_dir, "".join(traceback.format_exception(exc)))
        job.status, job.error, job.optimized_metric, job.finished_at = "failed", message, math.nan, time.time()
        job.write(output_dir)
        _write_report(cfg, output_dir, multirun)
        return math.nan
    if keeps_failed_run_dir(progress.trained, fresh_dir):
        write_failed(output_dir, "".join(traceback.format_exception(exc)))
        _write_report(cfg, output_dir, multirun)
        where = f" (checkpoints and logs kept in {output_dir})"
    else:
        close_log_files(output_dir)
        shutil.rmtree(output_dir, ignore_errors=True)
        where = " (before training: no run directory kept)"
    print(f"Error: {message}{where}\nSet HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
    sys.exit(1)


def _on_finish(result: TrainResult, cfg: DictConfig, output_dir: Path, job: JobResult, *, multirun: bool,
               rank: int) -> float | None:
    """Record a run that went through: ``metrics.json`` (or ``FAILED`` when a callback stopped it), the job
    record, the summary and the report; a single run a callback stopped then exits with status 1."""
    value = optimized_value(cfg.get("optimized_metric"), result.metrics, result.failed)
    if rank == 0:
        job.status = "failed" if result.failed else "ok"
        job.optimized_metric, job.metrics, job.best_model_path = value, dict(result.metrics), result.best_model_path
        job.seconds, job.finished_at = round(time.time() - (job.started_at or 0.0), 2), time.time()
        if result.failed:
            job.error = result.stopped_by
            write_failed(output_dir, f"stopped by a callback: {result.stopped_by}\n")
        else:
            RunMetrics.from_dict(job.to_dict()).write(output_dir)
        job.write(output_dir)
        _print_summary(output_dir, result, value, cfg)
        _write_report(cfg, output_dir, multirun)  # a failing report only warns: the run is trained
    if result.failed and not multirun:
        if rank == 0:
            print(f"Error: the run was stopped: {result.stopped_by} (checkpoints and logs kept in {output_dir})",
                  file=sys.stderr)
        sys.exit(1)
    return value


def _print_summary(output_dir: Path, result: TrainResult, value: float | None, cfg: DictConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(result.metrics):
        table.add_row(key, f"{result.metrics[key]:.4f}")
    console = Console(width=120)
    console.print(table)
    console.print(f"Output dir: {output_dir}")
    console.print(f"Best checkpoint: {result.best_model_path or '(none)'}")
    if value is not None:
        console.print(f"{cfg.optimized_metric}: {value:.4f}")


def _write_report(cfg: DictConfig, output_dir: Path, multirun: bool) -> None:
    """The run's ``report.html`` unless ``report=false``; also for a failed run whose directory is kept
    (it shows why, and what was logged until then). A failing report only warns."""
    if cfg.get("report", True):
        from runner.report import write_report_safely

        write_report_safely(output_dir, provenance={} if multirun else {"command": " ".join(["python", *sys.argv])})
