"""Hydra launcher for SLURM: submits a multirun's jobs with submitit, watches them, reports each one.

``hydra/launcher=submitit_slurm`` (and ``slurm``, ``slurm_cpu``) use :class:`SlurmLauncher` (through
``hydra_plugins/vision_runner_slurm``: Hydra instantiates launchers only from there). It
submits exactly as hydra-submitit-launcher does (one job array per batch of jobs, the job runs the
Hydra task through ``srun``), but waits differently. hydra-submitit-launcher waits on submitit's
``job.results()``, which reads job states from ``sacct`` (without SLURM's accounting database it
never learns that a cancelled job ended, and waits forever), raises at the first failed job (the
rest of the sweep is lost) and prints nothing while it waits. This launcher instead:

- polls ``squeue`` (:mod:`runner.launch.slurm_queue`) and logs the jobs' states whenever they change (and
  every ``progress_every_s`` seconds): ``SLURM jobs 12_[0-1]: 1 RUNNING, 1 PENDING (Resources), 14 s``;
- cancels at once a job that can never start as asked (``PartitionConfig``: more CPUs or memory than
  any node has, and the other reasons in ``runner.launch.slurm_queue.NEVER_STARTS_REASONS``) and reports
  it failed with SLURM's reason, instead of waiting for hours;
- records every job in its ``job_result.json`` with its SLURM job id, SLURM state and log paths: a job
  that was cancelled (``scancel``) is ``cancelled``, one that SLURM ended otherwise (a crash, a time
  limit, out of memory) or that could not start is ``failed``; each gets a NaN ``optimized_metric``
  and the sweep goes on (the multirun summary then lists them, see :mod:`runner.launch.multirun`);
- links each job's stdout and stderr into the job's own directory (``slurm.out``, ``slurm.err``;
  ``slurm.<task>.out`` for the other tasks of a multi-task job), opened in append mode so that the
  run before a requeue stays in them;
- sets submitit's preemption signal (``preempt_signal``, default USR1): SLURM sends it
  ``signal_delay_s`` before the time limit, and ``scancel --signal=USR1 <job>`` sends it by hand;
  submitit then requeues the job (``scontrol requeue``), and the requeued job resumes from its
  ``checkpoints/last.ckpt`` (:mod:`runner.launch.requeue`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
from omegaconf import OmegaConf, open_dict

from runner.launch.ddp import without_distributed_env
from runner.artifacts import JobResult, slurm_log
from runner.errors import full_error_requested
from runner.launch.slurm_queue import JobState, cancel, query_states

log = logging.getLogger(__name__)

__all__ = ["SlurmLauncher", "SlurmSubmitError", "PREEMPT_SIGNALS"]

PREEMPT_SIGNALS = ("USR1", "USR2")
# submitit reads the preemption signal from this variable (in the submitting process for sbatch's
# --signal, in the job for its handler; sbatch exports the environment to the job)
_SUBMITIT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
_OWN_PARAMS = ("preempt_signal", "poll_s", "progress_every_s")


class SlurmSubmitError(RuntimeError):
    """sbatch refused the jobs (or SLURM is not there); the message has SLURM's reason."""


class SlurmLauncher(_SubmititSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher, with job watching and failure reporting (see the module).

    Args:
        preempt_signal: the signal SLURM sends before the time limit and that requeues the job,
            ``USR1`` or ``USR2``.
        poll_s: seconds between two ``squeue`` calls while waiting.
        progress_every_s: log the jobs' states at least this often, even when nothing changed.
        **params: the arguments of hydra-submitit-launcher's SlurmQueueConf (``timeout_min``,
            ``cpus_per_task``, ``tasks_per_node``, ``partition``, ``signal_delay_s``, ...).
    """

    def __init__(self, preempt_signal: str = "USR1", poll_s: float = 2.0, progress_every_s: float = 30.0,
                 **params: Any) -> None:
        if preempt_signal not in PREEMPT_SIGNALS:
            raise ValueError(f"hydra.launcher.preempt_signal can be {' or '.join(PREEMPT_SIGNALS)}, got {preempt_signal!r}")
        if poll_s <= 0:
            raise ValueError(f"hydra.launcher.poll_s must be > 0, got {poll_s}")
        super().__init__(**params)
        self.preempt_signal = preempt_signal
        self.poll_s = float(poll_s)
        self.progress_every_s = float(progress_every_s)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        os.environ[_SUBMITIT_SIGNAL_ENV] = self.preempt_signal
        from submitit.core.job_environment import JobEnvironment

        JobEnvironment.USR_SIG = self.preempt_signal  # read by sbatch's --signal=<sig>@<signal_delay_s>
        _export_import_path(type(self))

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitting {len(job_overrides)} job(s) to SLURM; sweep output dir: {sweep_dir}")
        job_params: list[Any] = []
        job_dirs: list[Path] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
            job_dirs.append(self._job_dir(overrides, idx))
        jobs = self._submit(job_params)
        tasks = int(self.params.get("tasks_per_node") or 1) * int(self.params.get("nodes") or 1)
        for job, job_dir in zip(jobs, job_dirs):
            self._link_logs(job.job_id, job_dir, tasks)
        ids = [job.job_id for job in jobs]
        nums = range(initial_job_idx, initial_job_idx + len(ids))
        log.info(f"SLURM job ids: {', '.join(f'#{n}={i}' for n, i in zip(nums, ids))}")
        ended = self._wait(ids)
        return [self._job_return(job_id, list(overrides), num, job_dir, *ended[job_id])
                for job_id, overrides, num, job_dir in zip(ids, job_overrides, nums, job_dirs)]

    # -- submission -------------------------------------------------------------------------------

    def _submit(self, job_params: list[Any]) -> list[Any]:
        """Submit one job array, the way hydra-submitit-launcher does; when sbatch refuses, exit 1 with one
        line saying why (``HYDRA_FULL_ERROR=1``: raise :class:`SlurmSubmitError`)."""
        import submitit

        params = dict(self.params)
        init_params = {"folder": params.pop("submitit_folder"), "slurm_max_num_timeout": params.pop("max_num_timeout", 0)}
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        try:
            executor = submitit.AutoExecutor(cluster="slurm", **init_params)
            executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
            with without_distributed_env():  # each DDP job's ranks pick a port of their own (from the job id)
                return list(executor.map_array(self, *zip(*job_params)))
        except Exception as err:  # noqa: BLE001 - sbatch's (or submitit's) reason, in one message
            text = str(err).strip()
            lines = [line for line in text.splitlines() if "error" in line.lower()] or text.splitlines()[-1:]
            asked = ", ".join(f"hydra.launcher.{k}={params[k]}" for k in
                              ("partition", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node", "mem_gb",
                               "timeout_min") if params.get(k) is not None)
            error = SlurmSubmitError(f"SLURM refused the jobs: {lines[0] if lines else type(err).__name__} "
                                     f"(asked for {asked})")
            if full_error_requested():
                raise error from err
            print(f"Error: {error}\nSet HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
            sys.exit(1)

    def _job_dir(self, overrides: Sequence[str], num: int) -> Path:
        """The directory Hydra will give job ``num`` (``hydra.sweep.dir``/``hydra.sweep.subdir``)."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = num
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)

    def _paths(self, job_id: str, task: int = 0) -> Any:
        from submitit.core.utils import JobPaths

        return JobPaths(self.params["submitit_folder"], job_id=job_id, task_id=task)

    def _link_logs(self, job_id: str, job_dir: Path, tasks: int) -> None:
        """``<job dir>/slurm.out`` and ``slurm.err`` (``slurm.<task>.*`` for other tasks) -> submitit's log files."""
        job_dir.mkdir(parents=True, exist_ok=True)
        for task in range(tasks):
            paths = self._paths(job_id, task)
            for target, stream in ((paths.stdout, "out"), (paths.stderr, "err")):
                link = slurm_log(job_dir, stream, task)
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(os.path.relpath(Path(target).resolve(), job_dir.resolve()))

    # -- waiting ----------------------------------------------------------------------------------

    def _wait(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """Poll squeue until every job ended; ``{job_id: (final SLURM state, reason)}``."""
        ended: dict[str, tuple[str, str]] = {}
        last: dict[str, str] = {}
        started: dict[str, str] = {}
        unseen: Counter[str] = Counter()
        start = time.monotonic()
        last_line, last_print = "", 0.0
        while True:
            waiting = [i for i in ids if i not in ended]
            if not waiting:
                return ended
            try:
                states = query_states(waiting)
            except RuntimeError as err:
                log.warning(f"{err}; trying again")
                states = {}
            for job_id in waiting:
                state = states.get(job_id)
                if state is None:
                    self._unlisted(job_id, last.get(job_id), unseen, ended)
                    continue
                if state.never_starts:
                    cancel(job_id)
                    ended[job_id] = ("PENDING", state.reason)
                    log.error(f"SLURM job {job_id} can never start as asked ({state.reason}): cancelled it")
                elif not state.active:
                    ended[job_id] = (state.state, state.reason)
                    log.info(f"SLURM job {job_id} ended {state.state} after {time.monotonic() - start:.0f} s")
                elif last.get(job_id) in ("RUNNING", "COMPLETING") and state.state in ("PENDING", "REQUEUED"):
                    log.info(f"SLURM job {job_id} was requeued: {state.state} again ({state.reason})")
                elif (last.get(job_id) in ("RUNNING", "COMPLETING") and state.state == "RUNNING"
                      and started.get(job_id) not in (None, state.start)):
                    log.info(f"SLURM job {job_id} was requeued: RUNNING again since {state.start}")
                last[job_id] = state.state
                if state.state == "RUNNING":
                    started[job_id] = state.start
            line = _progress_line([states[i] for i in waiting if i in states and i not in ended])
            now = time.monotonic()
            if line and (line != last_line or now - last_print >= self.progress_every_s):
                log.info(f"SLURM jobs {_id_range(ids)}: {line}, {now - start:.0f} s")
                last_line, last_print = line, now
            if len(ended) < len(ids):
                time.sleep(self.poll_s)

    def _unlisted(self, job_id: str, last: str | None, unseen: Counter[str], ended: dict[str, tuple[str, str]]) -> None:
        """A job squeue does not list: just submitted (not there yet), ended and purged (MinJobAge), or a
        pending array element that was cancelled (SLURM drops those at once, without a record)."""
        if self._paths(job_id).result_pickle.exists():
            ended[job_id] = ("COMPLETED", "")
            return
        unseen[job_id] += 1
        if last == "PENDING" and unseen[job_id] >= 2:
            ended[job_id] = ("CANCELLED", "while pending")
            log.info(f"SLURM job {job_id} was cancelled while pending")
        elif unseen[job_id] * self.poll_s >= 60:  # not listed for a minute and no result: it is gone
            ended[job_id] = ("UNKNOWN", "SLURM no longer lists the job")

    # -- results ----------------------------------------------------------------------------------

    def _job_return(self, job_id: str, overrides: list[str], num: int, job_dir: Path, state: str,
                    reason: str) -> JobReturn:
        """The job's JobReturn for the sweeper (NaN when it failed), and its job_result.json completed."""
        from submitit.core.utils import pickle_load

        ret: JobReturn | None = None
        error = ""
        pickle = self._paths(job_id).result_pickle
        if pickle.exists():
            outcome, value = pickle_load(pickle)
            if outcome == "success" and isinstance(value, JobReturn):
                ret = value
                if ret.status == JobStatus.FAILED:
                    error = f"{type(ret._return_value).__name__}: {ret._return_value}"
            elif outcome == "error":
                error = str(value).strip().splitlines()[-1] if str(value).strip() else "the job raised"
        record = JobResult.read(job_dir) or JobResult(job_num=num, overrides=filter_overrides(overrides),
                                                      output_dir=str(job_dir), optimized_metric=math.nan)
        result = record.to_dict()
        log_file = self._log_file(job_dir)
        # the job's own verdict when it returned (SLURM may still say FAILED for a non-zero exit after that)
        status = result.get("status") if (state == "COMPLETED" or ret is not None) and not error else None
        if state == "CANCELLED":
            started = slurm_log(job_dir, "out").exists() or slurm_log(job_dir, "err").exists()
            status, error = "cancelled", f"SLURM job {job_id} was cancelled" + ("" if started else " before it started")
        elif state == "PENDING":
            status, error = "failed", (f"SLURM cannot start job {job_id} as asked: {reason} "
                                       f"(see `scontrol show partition`; the request: {self._request()})")
        elif status is None:
            status = "failed"
            error = error or result.get("error") or f"SLURM job {job_id} ended {state}: {_last_line(log_file)}"
        if status != "ok":
            result["optimized_metric"] = math.nan
            result.setdefault("finished_at", time.time())
        if error and status != "ok" and not (status == "failed" and result.get("status") == "failed"):
            result["error"] = error
        result.update({"status": status, "slurm_job_id": job_id, "slurm_state": state + (f" ({reason})" if
                       reason and reason != "None" else ""), "log": str(log_file),
                       "slurm_stdout": str(slurm_log(job_dir, "out"))})
        JobResult.from_dict(result).write(job_dir)
        if status != "ok":
            log.warning(f"Job #{num} (SLURM {job_id}) {status}: {result.get('error', '')}; log: {log_file}")
        if ret is None or ret.status != JobStatus.COMPLETED:
            ret = JobReturn(overrides=list(overrides), working_dir=str(job_dir), task_name=str(self.config.hydra.job.name))
            ret.return_value = math.nan
            ret.status = JobStatus.COMPLETED
        return ret

    def _log_file(self, job_dir: Path) -> Path:
        """The job's log to read first: its stderr when anything is in it (a crash), else its stdout (which
        has the console log, errors included)."""
        err = slurm_log(job_dir, "err")
        if not self.params.get("stderr_to_stdout") and err.exists() and err.stat().st_size > 0:
            return err
        return slurm_log(job_dir, "out")

    def _request(self) -> str:
        keys = ("partition", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node", "mem_gb", "timeout_min")
        return ", ".join(f"hydra.launcher.{k}={self.params[k]}" for k in keys if self.params.get(k) is not None)


def _export_import_path(cls: type) -> None:
    """Put the folder ``cls``'s package is imported from on ``PYTHONPATH`` (sbatch exports it to the job).

    The job unpickles the launcher by its module name (``hydra_plugins.vision_runner_slurm...``), which
    Python finds next to ``run.py``; a job started from another directory would not find it.
    """
    module = sys.modules[cls.__module__]
    depth = cls.__module__.count(".")
    root = str(Path(module.__file__ or ".").resolve().parents[depth])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


def _progress_line(states: list[JobState]) -> str:
    counts = Counter(s.state + (f" ({s.reason})" if s.state == "PENDING" and s.reason not in ("", "None") else "")
                     for s in states)
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))


def _id_range(ids: list[str]) -> str:
    masters = sorted({i.split("_")[0] for i in ids})
    if len(masters) == 1 and all("_" in i for i in ids):
        tasks = sorted(int(i.split("_")[1]) for i in ids)
        return f"{masters[0]}_[{tasks[0]}-{tasks[-1]}]" if len(tasks) > 1 else ids[0]
    return ",".join(ids)


def _last_line(path: Path) -> str:
    """The last non-empty line of a log file (where a crash says why), or where to look."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {path}"
    return lines[-1][:300] if lines else f"nothing in {path}"

