"""Reading what a run, a sweep or an ``explain.py`` directory holds, through :mod:`runner.artifacts`.

Only the standard library and omegaconf (TensorBoard only for a run without ``csv/metrics.csv``):
a report takes well under a second to write.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.artifacts import (
    CARTOGRAPHY_FILE,
    CONFIG_FILES,
    CSV_DIR,
    CSV_METRICS_FILE,
    FAILED_FILE,
    HYDRA_DIR,
    IMAGES_DIR,
    MULTIRUN_FILE,
    TENSORBOARD_DIR,
    JobResult,
    RunMetrics,
    RunStatus,
    csv_metrics_files,
    failure_text,
    job_dirs,
    pid_alive,
)

__all__ = [
    "RunState",
    "Series",
    "SweepJob",
    "epoch_of_step",
    "failure_reason",
    "image_series",
    "load_config",
    "read_cartography",
    "read_csv_table",
    "read_metrics_csv",
    "read_overrides",
    "read_result",
    "read_scalars",
    "read_status",
    "read_sweep",
    "read_tensorboard_scalars",
]

#: metric name -> ``(step, value)`` points
Series = dict[str, list[tuple[float, float]]]
OVERRIDES_FILE = Path(HYDRA_DIR) / "overrides.yaml"
HYDRA_FILE = Path(HYDRA_DIR) / "hydra.yaml"


def _to_float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------ scalars
def read_metrics_csv(path: str | Path) -> Series:
    """Every column of a Lightning ``metrics.csv`` as ``(step, value)`` points (empty cells skipped).

    The ``epoch`` column comes back as ``(step, epoch)`` points like the others.
    """
    path = Path(path)
    series: Series = {}
    if not path.is_file():
        return series
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            step = _to_float(row.get("step", ""))
            if step is None:
                continue
            for key, text in row.items():
                if key in (None, "step") or text in (None, ""):
                    continue
                value = _to_float(text)
                if value is not None:
                    series.setdefault(key, []).append((step, value))
    return series


def read_tensorboard_scalars(log_dir: str | Path) -> Series:
    """Every scalar of the TensorBoard event files below ``log_dir`` as ``(step, value)`` points.

    Used when a run has no ``csv/metrics.csv`` (``logger=tensorboard``); imports tensorboard only then.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: Series = {}
    for folder in sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 1, "histograms": 1,
                                                                     "tensors": 1})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            series.setdefault(tag, []).extend((float(e.step), float(e.value)) for e in accumulator.Scalars(tag))
    return {k: sorted(v) for k, v in series.items()}


def read_scalars(run_dir: Path) -> tuple[Series, str]:
    """The run's logged scalars and where they came from (``csv/metrics.csv``, else TensorBoard's files)."""
    files = csv_metrics_files(run_dir)
    series = read_metrics_csv(files[0]) if files else {}
    if not series and (run_dir / TENSORBOARD_DIR).is_dir():
        return read_tensorboard_scalars(run_dir / TENSORBOARD_DIR), f"{TENSORBOARD_DIR}/ event files"
    return series, files[0].relative_to(run_dir).as_posix() if files else f"{CSV_DIR}/{CSV_METRICS_FILE}"


def epoch_of_step(series: Series, step: int) -> int | None:
    """The epoch a callback logging at ``step`` (after that many optimizer steps) was in.

    Lightning logs epoch-level values at ``global_step - 1``; an image logged at the end of an
    epoch has ``global_step``: the epoch of the last CSV row before ``step``.
    """
    epochs = series.get("epoch") or []
    before = [(s, e) for s, e in epochs if s < step]
    if before:
        return int(max(before)[1])
    return int(epochs[0][1]) if epochs else None


def image_series(run_dir: Path) -> dict[str, list[tuple[int, Path]]]:
    """``images/{key}/step_{n}.png`` of the run: key -> [(step, path)] in step order."""
    root = run_dir / IMAGES_DIR
    found: dict[str, list[tuple[int, Path]]] = {}
    if not root.is_dir():
        return found
    for png in root.rglob("step_*.png"):
        try:
            step = int(png.stem.split("_", 1)[1])
        except (IndexError, ValueError):
            continue
        found.setdefault(png.parent.relative_to(root).as_posix(), []).append((step, png))
    return {k: sorted(v) for k, v in sorted(found.items())}


def read_cartography(run_dir: Path) -> list[dict[str, float]]:
    """The rows of the run's cartography csv (``callbacks.CartographyCallback``), numbers as floats; [] without one.

    The file's name is ``CARTOGRAPHY_FILE`` of ``callbacks.names`` (re-exported by :mod:`runner.artifacts`).
    """
    rows = read_csv_table(run_dir / CARTOGRAPHY_FILE)
    if len(rows) < 2:
        return []
    header = rows[0]
    out = []
    for row in rows[1:]:
        values = {k: _to_float(v) for k, v in zip(header, row)}
        if all(values.get(k) is not None for k in ("index", "confidence", "variability", "correctness")):
            out.append({k: v for k, v in values.items() if v is not None})
    return out


# ------------------------------------------------------------------------------ config and result
def load_config(run_dir: Path) -> tuple[str, Any, str]:
    """The run's config as YAML text (resolved when possible), the config object, and a note saying which."""
    from omegaconf import OmegaConf

    found = next((name for name in CONFIG_FILES if (run_dir / name).is_file()), None)
    if found is None:
        return "", None, f"no saved config ({' or '.join(p.as_posix() for p in CONFIG_FILES)})"
    cfg = OmegaConf.load(run_dir / found)
    hydra_cfg = OmegaConf.load(run_dir / HYDRA_FILE).get("hydra") if (run_dir / HYDRA_FILE).is_file() else None
    try:
        return _resolve_to_yaml(cfg, hydra_cfg), cfg, f"{found.as_posix()}, resolved"
    except Exception as err:  # noqa: BLE001 - show what was saved, and why it is not resolved
        return OmegaConf.to_yaml(cfg), cfg, f"{found.as_posix()}, as saved (not resolved: {type(err).__name__})"


def _resolve_to_yaml(cfg: Any, hydra_cfg: Any) -> str:
    """Resolve ``cfg``; ``${hydra:...}`` reads the run's own ``.hydra/hydra.yaml`` when Hydra is not running."""
    from omegaconf import OmegaConf

    registered = OmegaConf.has_resolver("hydra")
    if not registered and hydra_cfg is not None:
        OmegaConf.register_new_resolver("hydra", lambda key: OmegaConf.select(hydra_cfg, key))
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    finally:
        if not registered and hydra_cfg is not None:
            OmegaConf.clear_resolver("hydra")
    if isinstance(container, dict):
        container.pop("hydra", None)
    return OmegaConf.to_yaml(OmegaConf.create(container))


def read_result(run_dir: Path) -> JobResult | None:
    """``metrics.json`` of a finished run, else its ``job_result.json``, else None."""
    return RunMetrics.read(run_dir) or JobResult.read(run_dir)


def read_overrides(run_dir: Path, result: JobResult | None = None) -> list[str]:
    """The run's command-line overrides: ``.hydra/overrides.yaml``, else those its result recorded."""
    if (run_dir / OVERRIDES_FILE).is_file():
        from omegaconf import OmegaConf

        return [str(o) for o in (OmegaConf.load(run_dir / OVERRIDES_FILE) or [])]
    return [str(o) for o in (result.overrides if result else None) or []]


def failure_reason(run_dir: Path, result: JobResult | None) -> str:
    """Why the run failed in one line: its recorded error, else the last line of ``FAILED``."""
    reason = (result.error if result else None) or ""
    text = failure_text(run_dir)
    if not reason and text is not None:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else ""
    return reason


@dataclass
class RunState:
    """A run directory's status as its report shows it.

    Attributes:
        state: running, interrupted, failed, finished, or ``unknown``.
        reason: why it failed or was interrupted, one line.
        step: the global step the latest attempt reached, when known.
        attempts: each start of the run (``status.json``'s history), oldest first.
    """

    state: str
    reason: str = ""
    step: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


def read_status(run_dir: Path, result: JobResult | None = None) -> RunState:
    """The run's one status: ``status.json``; for a directory written before it existed, ``FAILED``,
    ``metrics.json`` and ``job_result.json`` (``result``) as they were read then.

    A ``running`` attempt whose process no longer runs on this host was killed (``kill -9``, out of
    memory, the machine went down): it shows as interrupted.
    """
    status = RunStatus.read(run_dir)
    if status is not None and status.state:
        state, reason = status.state, status.reason or ""
        last = status.attempts[-1] if status.attempts else {}
        if state == "running" and last.get("pid") and last.get("host") == _host() and not pid_alive(int(last["pid"])):
            state, reason = "interrupted", f"its process ({last['pid']}) ended without a record: killed"
        return RunState(state, reason, status.step, list(status.attempts))
    if (run_dir / FAILED_FILE).is_file() or (result is not None and result.status == "failed"):
        return RunState("failed", failure_reason(run_dir, result))
    if RunMetrics.read(run_dir) is not None or (result is not None and result.status == "ok"):
        return RunState("finished")
    return RunState("unknown")


def _host() -> str:
    import socket

    return socket.gethostname()


def read_csv_table(path: Path) -> list[list[str]]:
    """A CSV file's rows (the header first); empty when it is missing."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


# ------------------------------------------------------------------------------ a sweep
@dataclass
class SweepJob:
    """One job of a sweep as its report shows it."""

    dir: Path
    num: Any
    overrides: list[str]
    status: str
    value: float
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def params(self) -> dict[str, str]:
        """``key=value`` overrides as a dict (keys as written, ``+``/``++``/``~`` included)."""
        return dict(o.split("=", 1) for o in self.overrides if "=" in o)

    def param(self, name: str) -> str:
        """The value this job gave to the override ``name`` (``+name``/``++name`` too), "" when none."""
        params = self.params
        return next((str(params[k]) for k in (name, "+" + name, "++" + name) if k in params), "")


def read_sweep(sweep_dir: Path) -> tuple[str, str | None, list[SweepJob]]:
    """The sweep's ``optimized_metric`` name, its direction (``minimize``/``maximize``/None) and its jobs."""
    from omegaconf import OmegaConf

    metric_name, direction = "optimized_metric", None
    if (sweep_dir / MULTIRUN_FILE).is_file():
        sweep_cfg = OmegaConf.load(sweep_dir / MULTIRUN_FILE)
        metric_name = str(sweep_cfg.get("optimized_metric") or metric_name)
        direction = OmegaConf.select(sweep_cfg, "hydra.sweeper.direction", default=None)
    jobs = []
    for job_dir in job_dirs(sweep_dir):
        result = JobResult.read(job_dir)
        overrides = (result.overrides if result else None) or read_overrides(job_dir)
        status = (result.status if result else None) or (
            "failed" if (job_dir / FAILED_FILE).is_file() else "no result (crashed or running)")
        value = result.optimized_metric if result else None
        jobs.append(SweepJob(
            dir=job_dir, num=result.job_num if result and result.job_num is not None else job_dir.name,
            overrides=list(overrides), status=status,
            value=float(value) if isinstance(value, (int, float)) else math.nan,
            error=(result.error if result else None) or "", metrics=(result.metrics if result else None) or {},
            seconds=result.seconds if result else None,
        ))
    return metric_name, direction, jobs

