"""Every file name of a run, sweep and ``explain.py`` directory, and the records written there.

This module owns the run directory's contract: writers (``runner.run_wrapper``, ``runner.launch``,
``runner.explain``) and readers (``runner.report``, ``explain.py``'s checkpoint lookup, the tests)
import the names and records from here instead of spelling them. It imports nothing heavy (Hydra
imports ``runner.launch.multirun`` at start-up, which reads job records through it).

A run directory (``outputs/train/runs/<date>_<time>``)::

    .hydra/config.yaml  config_resolved.yaml  config_tree.log  <task_name>.log
    checkpoints/epoch_NNN.ckpt  checkpoints/last.ckpt
    csv/metrics.csv  tensorboard/  wandb/
    images/<key>/step_NNNNNN.png        (written by callbacks.image_logging, which owns that layout)
    status.json  metrics.json  job_result.json  FAILED  report.html  provenance.json
    .lock                               held while a run writes here (runner.run_lock)
    slurm.out  slurm.err  slurm.<task>.out ...   (a SLURM job: links to its logs, see :func:`slurm_log`)

A sweep directory holds numbered job directories, ``multirun.yaml``, ``summary.csv``,
``optimization_results.yaml`` and ``report.html``. An ``explain.py`` directory holds
``manifest.json``, ``maps.npz``, ``grid.png``, ``metrics.csv``, ``overlays/``, ``detections/``,
``features/`` and ``report.html``; the per-image file names come from :func:`image_stem`,
:func:`method_file_name` and :func:`safe_name`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from callbacks.names import CARTOGRAPHY_FILE

__all__ = [
    "CARTOGRAPHY_FILE", "CHECKPOINTS_DIR", "CONFIG_FILES", "CONFIG_RESOLVED_FILE", "CONFIG_TREE_FILE", "CSV_DIR",
    "CSV_METRICS_FILE", "DETECTIONS_DIR", "EXPLAIN_METRICS_FILE", "FAILED_FILE", "FEATURES_DIR", "GRID_FILE",
    "HYDRA_DIR", "IMAGES_DIR", "JOB_RESULT_FILE", "LAST_CHECKPOINT", "MANIFEST_FILE", "MAPS_FILE",
    "METRICS_FILE", "MULTIRUN_FILE", "OPTIMIZATION_RESULTS_FILE", "OVERLAYS_DIR", "PROVENANCE_FILE",
    "REPORT_FILE", "SETUP_FILES", "SUMMARY_FILE", "TENSORBOARD_DIR", "LOCK_FILE", "RUN_STATES", "STATUS_FILE",
    "JobResult", "Manifest", "Provenance", "Record", "RunMetrics", "RunStatus", "csv_metrics_files",
    "failure_text", "image_stem", "is_explain_dir", "is_run_dir", "is_sweep_dir", "job_dirs", "last_checkpoint",
    "method_file_name", "pid_alive", "read_json", "safe_name", "slurm_log", "stale_temporaries", "write_failed",
    "write_json",
]

# ------------------------------------------------------------------------------ a run directory
HYDRA_DIR = ".hydra"
#: the saved config, in the order a reader should try them
CONFIG_FILES = (Path(HYDRA_DIR) / "config.yaml", Path("config_resolved.yaml"))
CONFIG_RESOLVED_FILE = "config_resolved.yaml"
CONFIG_TREE_FILE = "config_tree.log"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
CSV_DIR = "csv"
CSV_METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
IMAGES_DIR = "images"
METRICS_FILE = "metrics.json"
JOB_RESULT_FILE = "job_result.json"
FAILED_FILE = "FAILED"
REPORT_FILE = "report.html"
PROVENANCE_FILE = "provenance.json"
STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
#: what Hydra and the start of a run (``runner.run_wrapper``) write before anything is trained
SETUP_FILES = frozenset({HYDRA_DIR, CONFIG_RESOLVED_FILE, CONFIG_TREE_FILE, STATUS_FILE, LOCK_FILE})
#: the states of ``status.json`` (:class:`RunStatus`)
RUN_STATES = ("running", "interrupted", "failed", "finished")
#: ``CARTOGRAPHY_FILE`` (``callbacks.CartographyCallback``'s csv) is re-exported from the torch-free
#: ``callbacks.names``, which owns the names the callbacks write (callbacks never import ``runner/``)


# ---------------------------------------------------------------------------- a sweep directory
MULTIRUN_FILE = "multirun.yaml"
SUMMARY_FILE = "summary.csv"
OPTIMIZATION_RESULTS_FILE = "optimization_results.yaml"

# -------------------------------------------------------------------- an explain.py directory
MANIFEST_FILE = "manifest.json"
MAPS_FILE = "maps.npz"
GRID_FILE = "grid.png"
EXPLAIN_METRICS_FILE = "metrics.csv"
OVERLAYS_DIR = "overlays"
DETECTIONS_DIR = "detections"
FEATURES_DIR = "features"


def last_checkpoint(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints/last.ckpt`` (it may not exist)."""
    return Path(run_dir) / CHECKPOINTS_DIR / LAST_CHECKPOINT


def slurm_log(job_dir: str | Path, stream: str, task: int = 0) -> Path:
    """``<job_dir>/slurm.out`` or ``slurm.err`` (``stream``): a SLURM job's log, linked there by
    ``runner.launch.slurm_launcher``; ``slurm.<task>.<stream>`` for the other tasks of a multi-task job."""
    if stream not in ("out", "err"):
        raise ValueError(f"stream can be out or err, got {stream!r}")
    return Path(job_dir) / (f"slurm.{stream}" if task == 0 else f"slurm.{task}.{stream}")


def csv_metrics_files(run_dir: str | Path) -> list[Path]:
    """Every Lightning ``metrics.csv`` under the run's ``csv/`` folder (the project's logger writes one)."""
    return sorted(Path(run_dir).glob(f"{CSV_DIR}/**/{CSV_METRICS_FILE}"))


def is_run_dir(path: str | Path) -> bool:
    """A training run's directory: any of what a run writes is there."""
    path = Path(path)
    names = (HYDRA_DIR, JOB_RESULT_FILE, METRICS_FILE, CSV_DIR, IMAGES_DIR, TENSORBOARD_DIR, CHECKPOINTS_DIR)
    return any((path / name).exists() for name in names)


def is_explain_dir(path: str | Path) -> bool:
    """An ``explain.py`` output directory."""
    return (Path(path) / MANIFEST_FILE).is_file()


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """The job directories of a sweep (Hydra's numbered folders, or any holding a run), by job number."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    found = [p for p in sweep_dir.iterdir() if p.is_dir() and (p.name.isdigit() or (p / HYDRA_DIR).is_dir()
                                                              or (p / JOB_RESULT_FILE).is_file())]
    return sorted(found, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def is_sweep_dir(path: str | Path) -> bool:
    """A multirun directory: Hydra's ``multirun.yaml``, or numbered job folders and no run of its own."""
    path = Path(path)
    if (path / MULTIRUN_FILE).is_file():
        return True
    if (path / HYDRA_DIR).is_dir() or (path / JOB_RESULT_FILE).is_file():
        return False
    return any(p.name.isdigit() for p in job_dirs(path))


# -------------------------------------------------------------------------- explain file names
def safe_name(text: str) -> str:
    """``text`` as a file-name part: characters outside ``[A-Za-z0-9-_.]`` become ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text)) or "image"


def method_file_name(method: str) -> str:
    """A method's name in file and array names: ``gradcam++`` -> ``gradcampp``."""
    return method.replace("++", "pp").replace("+", "p")


def image_stem(index: int, name: str | Path) -> str:
    """``NN_<stem>``: the prefix every per-image file of an explain directory starts with."""
    return f"{index:02d}_{safe_name(Path(str(name)).stem)}"


# ------------------------------------------------------------------------------------ JSON I/O
def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically (a temporary file renamed over ``path``): never half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_json(path: str | Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_failed(run_dir: str | Path, text: str) -> Path:
    """The ``FAILED`` marker of a failed run, holding why (a traceback or one line); written atomically,
    so a full disk leaves no marker rather than an empty one."""
    path = Path(run_dir) / FAILED_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Temporary files (``.<name>.<pid>.tmp``, here and in ``checkpoints/``) whose writer is no longer running.

    Checkpoints and JSON records are written to such a file and renamed over their target; a writer
    killed mid-write leaves it behind. Files of a live process (this one included) are not listed.
    """
    run_dir = Path(run_dir)
    found = []
    for folder in (run_dir, run_dir / CHECKPOINTS_DIR):
        for path in folder.glob(".*.tmp") if folder.is_dir() else ():
            pid = path.name[: -len(".tmp")].rpartition(".")[2]
            if pid.isdigit() and not pid_alive(int(pid)):
                found.append(path)
    return sorted(found)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def failure_text(run_dir: str | Path) -> str | None:
    """What the ``FAILED`` marker says, or None when the run has none."""
    try:
        return (Path(run_dir) / FAILED_FILE).read_text(errors="replace")
    except OSError:
        return None


# ------------------------------------------------------------------------------------ records
R = TypeVar("R", bound="Record")


def _default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (calling its factory), None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclass
class Record:
    """A JSON file of a run directory as a dataclass: the known keys as fields, any others in ``extra``.

    ``to_dict()`` gives the file's content exactly as it was read or built (key order: fields, then extra):
    a record read from a file writes back the same keys (a null it held stays, a key it lacked stays out);
    a record built in code writes its fields that are not None, and those of ``_always`` even when None.
    ``read`` returns None for a missing or unreadable file.
    """

    FILE: ClassVar[str] = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        record = cls(**known, extra={k: v for k, v in data.items() if k not in names})
        record._read_keys = frozenset(known)
        return record

    def to_dict(self) -> dict[str, Any]:
        read = getattr(self, "_read_keys", None)
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if read is None:  # built in code
                keep = value is not None or f.name in self._always
            else:  # read from a file: its keys, and fields set since
                keep = f.name in read or (value is not None and value != _default(f))
            if keep:
                out[f.name] = value
        return {**out, **self.extra}

    #: fields written even when None
    _always: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def path(cls, directory: str | Path) -> Path:
        return Path(directory) / cls.FILE

    def write(self, directory: str | Path) -> Path:
        return write_json(self.path(directory), self.to_dict())

    @classmethod
    def read(cls: type[R], directory: str | Path) -> R | None:
        data = read_json(cls.path(directory))
        return cls.from_dict(data) if isinstance(data, dict) else None


@dataclass
class JobResult(Record):
    """``job_result.json``: one run's (or sweep job's) status and ``optimized_metric``; every run writes it."""

    FILE: ClassVar[str] = JOB_RESULT_FILE
    _always: ClassVar[frozenset[str]] = frozenset({"job_num", "overrides", "output_dir", "started_at",
                                                   "status", "optimized_metric"})
    job_num: int | None = None
    overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    started_at: float | None = None
    slurm_job_id: str | None = None
    status: str | None = None
    optimized_metric: float | None = None
    error: str | None = None
    metrics: dict[str, float] | None = None
    best_model_path: str | None = None
    seconds: float | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        value = out.get("optimized_metric")
        if isinstance(value, float) and math.isnan(value):
            out["optimized_metric"] = math.nan  # json writes NaN, as before
        return out

    @classmethod
    def read_all(cls, sweep_dir: str | Path) -> list[JobResult]:
        """Every ``job_result.json`` below ``sweep_dir``, by job number (unreadable ones left out)."""
        found = [cls.read(p.parent) for p in Path(sweep_dir).rglob(JOB_RESULT_FILE)]
        results = [r for r in found if r is not None]
        return sorted(results, key=lambda r: (r.job_num is None, r.job_num or 0))


@dataclass
class RunMetrics(JobResult):
    """``metrics.json``: written only by a finished run; the same keys as its ``job_result.json``."""

    FILE: ClassVar[str] = METRICS_FILE


@dataclass
class Provenance(Record):
    """``provenance.json``: git commit, library versions, host, time, and the command line when known."""

    FILE: ClassVar[str] = PROVENANCE_FILE
    _always: ClassVar[frozenset[str]] = frozenset({"git_commit", "git_dirty"})
    git_commit: str | None = None
    git_dirty: bool | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    platform: str | None = None
    host: str | None = None
    recorded_at: str | None = None


@dataclass
class Manifest(Record):
    """``manifest.json`` of an ``explain.py`` directory: what was explained, with what, and the files written.

    The task-specific keys (``masks``, ``metrics``, ``features``, detection settings, ...) stay in ``extra``.
    """

    FILE: ClassVar[str] = MANIFEST_FILE
    checkpoint: dict[str, Any] | None = None
    methods: list[str] | None = None
    images: list[dict[str, Any]] | None = None
    runtime_s: dict[str, float] | None = None
    files: list[str] | None = None

    def add_files(self, names: Iterable[str]) -> None:
        self.files = sorted({*(self.files or []), *names})


@dataclass
class RunStatus(Record):
    """``status.json``: the one status of a run directory and the history of its attempts.

    ``state``: one of :data:`RUN_STATES`; ``step``: the global step the latest attempt reached; ``reason``:
    why it was interrupted or failed. Each start (a run, a resume, a requeued SLURM job) appends an attempt
    ``{started_at, pid, host, resumed_from, state, step, ended_at, reason}``. Written atomically at each
    transition (:meth:`begin`, :meth:`end`); a run killed with ``kill -9`` stays ``running``.
    """

    FILE: ClassVar[str] = STATUS_FILE
    _always: ClassVar[frozenset[str]] = frozenset({"state", "step"})
    state: str | None = None
    step: int | None = None
    reason: str | None = None
    updated_at: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def begin(cls, run_dir: str | Path, *, resumed_from: str | None = None) -> RunStatus:
        """Record a new attempt as ``running`` (the earlier attempts stay in the history; one still
        ``running`` was killed, as its process no longer holds the directory's lock)."""
        import socket
        import time

        status = cls.read(run_dir) or cls()
        now = time.time()
        if status.attempts and status.attempts[-1].get("state") == "running":  # its process is gone (the lock)
            status.attempts[-1] = {**status.attempts[-1], "state": "interrupted", "reason": "killed: no record"}
        status.state, status.reason, status.updated_at = "running", None, now
        status.attempts = [*status.attempts, {"started_at": now, "pid": os.getpid(), "host": socket.gethostname(),
                                              "resumed_from": resumed_from, "state": "running", "step": None}]
        status.write(run_dir)
        return status

    @classmethod
    def end(cls, run_dir: str | Path, state: str, step: int | None, reason: str | None = None,
            **attempt: Any) -> RunStatus:
        """Record how the latest attempt ended: ``state`` (interrupted, failed or finished) at ``step``;
        ``attempt`` adds keys to its entry (e.g. the checkpoint it resumed from)."""
        import time

        if state not in RUN_STATES[1:]:
            raise ValueError(f"state can be {', '.join(RUN_STATES[1:])}, got {state!r}")
        status = cls.read(run_dir) or cls()
        now = time.time()
        status.state, status.step, status.reason, status.updated_at = state, step, reason, now
        if not status.attempts:
            status.attempts = [{"started_at": None}]
        status.attempts[-1] = {**status.attempts[-1], **attempt, "state": state, "step": step, "ended_at": now,
                               "reason": reason}
        status.write(run_dir)
        return status
