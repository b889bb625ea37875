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
  checkpoints, a ``FAILED`` file and a failed ``job_result.json``, never a ``metrics.json``.
- A full disk is one line: the file that could not be written and the space left.
- A run stopped by SIGTERM or SIGINT (:mod:`runner.interrupts`) is *interrupted*: its report says
  so and how to resume it, and it exits with ``128 + signal`` (143, 130). Any other exit raised
  inside the run (submitit's after requeueing a SLURM job) is recorded and goes on as it was.
- ``status.json`` (:class:`runner.artifacts.RunStatus`) holds the one status of the directory:
  ``running`` at each start, then ``finished``, ``failed`` or ``interrupted`` with the step reached;
  a start first removes the temporary files of writers that were killed.
- Under DDP the error names the rank it happened on; only rank 0 writes records and reports.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner.artifacts import (
    CONFIG_RESOLVED_FILE,
    CONFIG_TREE_FILE,
    FAILED_FILE,
    SETUP_FILES,
    JobResult,
    RunMetrics,
    RunStatus,
    stale_temporaries,
    write_failed,
)
from runner.config_tree import print_config_tree
from runner.disk_space import disk_full_message
from runner.errors import full_error_requested, short_message
from runner.interrupts import exit_status, interruption, stop_signals_raise
from runner.launch.ddp import end_child_ranks, global_rank, isolated_distributed_state
from runner.launch.requeue import slurm_job_id, slurm_restart_count
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
        if rank == 0:
            _begin_attempt(cfg, output_dir)

        start = time.time()
        job = JobResult(job_num=hc.job.get("num") if multirun else None, overrides=list(hc.overrides.task),
                        output_dir=str(output_dir), started_at=start, slurm_job_id=slurm_job_id())
        progress = FitProgress()
        try:
            with stop_signals_raise(), (isolated_distributed_state() if multirun and rank == 0
                                        else contextlib.nullcontext()):
                result = train_fn(cfg, output_dir, progress)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then handled by the policy
            return _on_exception(exc, cfg, output_dir, job, progress, multirun=multirun, rank=rank,
                                 fresh_dir=fresh_dir)
        except BaseException as exc:  # a stop from outside: SIGTERM, SIGINT, submitit's requeue exit
            how = interruption(exc)
            if how is None:
                raise
            _on_interrupt(how, cfg, output_dir, job, progress, multirun=multirun, rank=rank, fresh_dir=fresh_dir)
            raise  # a stop that is not a signal goes on as it was
        return _on_finish(result, cfg, output_dir, job, progress, multirun=multirun, rank=rank)

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


def _begin_attempt(cfg: DictConfig, output_dir: Path) -> None:
    """Remove the temporary files of killed writers, then record this attempt as running."""
    stale = stale_temporaries(output_dir)
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning(f"Removed {len(stale)} temporary file(s) left by a writer that was killed: "
                    + ", ".join(str(p.relative_to(output_dir)) for p in stale))
    resumed_from = cfg.get("ckpt_path") or (f"SLURM requeue {slurm_restart_count()}" if slurm_restart_count() else None)
    _set_status(lambda: RunStatus.begin(output_dir, resumed_from=resumed_from))


def _set_status(write: Callable[[], object]) -> None:
    """Write ``status.json`` (or another record); a failure (a full disk) only warns: the record still says
    what it said, never ``finished`` for a run that did not finish."""
    try:
        write()
    except OSError as err:
        log.warning(f"Could not write the run's record: {err}")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def resume_command(overrides: Sequence[str], output_dir: Path) -> str:
    """The command that resumes a run from its last checkpoint: its own overrides (an ``experiment=``
    among them picks the same model), less any ``ckpt_path``, then ``ckpt_path=last hydra.run.dir=<dir>``."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    return " ".join(["python run.py", *(shlex.quote(o) for o in kept), "ckpt_path=last",
                     shlex.quote(f"hydra.run.dir={output_dir}")])


def _on_interrupt(how: str, cfg: DictConfig, output_dir: Path, job: JobResult, progress: FitProgress, *,
                  multirun: bool, rank: int, fresh_dir: bool) -> None:
    """Record a run stopped from outside as interrupted, with the step it reached; a signal exits with
    ``128 + signal`` (rank 0 tells how to resume; an earlier attempt's ``metrics.json`` goes, the job
    record says interrupted), anything else (submitit's requeue) returns to be re-raised."""
    code = exit_status(how)
    if rank != 0:
        if code is not None:
            sys.exit(code)
        return
    step = progress.step
    if code is not None and not multirun:
        end_child_ranks(timeout=10)
    if code is not None and not multirun and not keeps_failed_run_dir(progress.trained, fresh_dir):
        close_log_files(output_dir)
        shutil.rmtree(output_dir, ignore_errors=True)
        print(f"Interrupted by {how} before training: no run directory kept", file=sys.stderr)
        sys.exit(code)
    log.warning(f"Run interrupted by {how} at global step {step}")
    _set_status(lambda: RunStatus.end(output_dir, "interrupted", step, f"interrupted by {how}",
                                      resumed_from=progress.resumed_from))
    if code is None:
        return
    _remove(output_dir / RunMetrics.FILE)
    job.status, job.error, job.optimized_metric, job.finished_at = "interrupted", f"interrupted by {how}", math.nan, \
        time.time()
    _set_status(lambda: job.write(output_dir))
    _write_report(cfg, output_dir, multirun)
    print(f"Interrupted by {how} at global step {step} (checkpoints and logs kept in {output_dir}).\n"
          f"Resume it from its last checkpoint with: {resume_command(job.overrides, output_dir)}", file=sys.stderr)
    sys.exit(code)


def _on_exception(exc: Exception, cfg: DictConfig, output_dir: Path, job: JobResult, progress: FitProgress, *,
                  multirun: bool, rank: int, fresh_dir: bool) -> float:
    """The failure policy for a pipeline that raised: returns NaN in a multirun, else exits with status 1."""
    message = rank_message(disk_full_message(exc) or short_message(exc), rank, progress.world_size)
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
        _record_failure(exc, message, output_dir, job, progress)
        raise exc
    if multirun:
        _record_failure(exc, message, output_dir, job, progress)
        _write_report(cfg, output_dir, multirun)
        return math.nan
    if keeps_failed_run_dir(progress.trained, fresh_dir):
        _record_failure(exc, message, output_dir, job, progress)
        _write_report(cfg, output_dir, multirun)
        where = f" (checkpoints and logs kept in {output_dir})"
    else:
        close_log_files(output_dir)
        shutil.rmtree(output_dir, ignore_errors=True)
        where = " (before training: no run directory kept)"
    print(f"Error: {message}{where}\nSet HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
    sys.exit(1)


def _record_failure(exc: Exception, message: str, output_dir: Path, job: JobResult, progress: FitProgress) -> None:
    """``status.json`` failed, ``FAILED`` with the traceback, a failed ``job_result.json``, no ``metrics.json``
    (one from an earlier attempt would read as this one's); on a full disk whatever still fits."""
    _set_status(lambda: RunStatus.end(output_dir, "failed", progress.step, message,
                                      resumed_from=progress.resumed_from))
    _remove(output_dir / RunMetrics.FILE)
    job.status, job.error, job.optimized_metric, job.finished_at = "failed", message, math.nan, time.time()
    for write in (lambda: write_failed(output_dir, "".join(traceback.format_exception(exc))),
                  lambda: job.write(output_dir)):
        try:
            write()
        except OSError as err:
            log.warning(f"Could not record the failure: {err}")


def _on_finish(result: TrainResult, cfg: DictConfig, output_dir: Path, job: JobResult, progress: FitProgress, *,
               multirun: bool, rank: int) -> float | None:
    """Record a run that went through: ``metrics.json`` (or ``FAILED`` when a callback stopped it), the job
    record, the summary and the report; a single run a callback stopped then exits with status 1."""
    value = optimized_value(cfg.get("optimized_metric"), result.metrics, result.failed)
    if rank == 0:
        job.status = "failed" if result.failed else "ok"
        job.optimized_metric, job.metrics, job.best_model_path = value, dict(result.metrics), result.best_model_path
        job.seconds, job.finished_at = round(time.time() - (job.started_at or 0.0), 2), time.time()
        if result.failed:
            job.error = result.stopped_by
            _remove(output_dir / RunMetrics.FILE)
            write_failed(output_dir, f"stopped by a callback: {result.stopped_by}\n")
        else:
            RunMetrics.from_dict(job.to_dict()).write(output_dir)
            _remove(output_dir / FAILED_FILE)  # an earlier attempt's: this one finished
        job.write(output_dir)
        _set_status(lambda: RunStatus.end(output_dir, "failed" if result.failed else "finished", progress.step,
                                          result.stopped_by, resumed_from=progress.resumed_from))
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
