"""Per-job results and the table printed at the end of a multirun.

Each job (in whatever process a launcher runs it) writes ``job_result.json`` into its own
directory; the Hydra callback :class:`MultirunSummary` reads them all back in the launching
process when the sweep ends, prints a table and writes ``summary.csv`` in the sweep directory.
This module is imported by Hydra at start-up, so it imports nothing heavy.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

__all__ = ["MultirunSummary", "write_job_result", "read_job_result", "read_job_results", "RESULT_FILE"]

RESULT_FILE = "job_result.json"


def write_job_result(output_dir: str | Path, result: dict[str, Any]) -> None:
    """Write one job's result atomically (a reader never sees half a file)."""
    path = Path(output_dir) / RESULT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(path)


def read_job_result(output_dir: str | Path) -> dict[str, Any] | None:
    """One job's ``job_result.json``, or None when it has none (yet) or it cannot be read."""
    try:
        return json.loads((Path(output_dir) / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_job_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """All ``job_result.json`` below ``sweep_dir``, ordered by job number."""
    results = []
    for path in Path(sweep_dir).rglob(RESULT_FILE):
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            log.warning(f"Could not read {path}: {err}")
    return sorted(results, key=lambda r: (r.get("job_num") is None, r.get("job_num", 0)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


class MultirunSummary(Callback):
    """Hydra callback: after a multirun, a table of every job's overrides, status and ``optimized_metric``.

    Jobs run through SLURM (:mod:`runner.slurm_launcher`) also show their SLURM job id and state, and
    every job that did not end ``ok`` is listed below the table with its error and log. The multirun
    exits with status 1 when every job failed (or was cancelled); with at least one ``ok`` job it
    exits 0, whatever happened to the others.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        results = read_job_results(sweep_dir)
        if not results:
            log.warning(f"No job results found under {sweep_dir}")
            return
        metric = config.get("optimized_metric", "optimized_metric")
        slurm = any(r.get("slurm_job_id") for r in results)
        rows = [
            {
                "job": _fmt(r.get("job_num")),
                "overrides": " ".join(r.get("overrides", [])),
                "status": r.get("status", ""),
                str(metric): _fmt(r.get("optimized_metric")),
                "output_dir": r.get("output_dir", ""),
                **({"slurm_job_id": r.get("slurm_job_id", ""), "slurm_state": r.get("slurm_state", ""),
                    "log": r.get("log", "")} if slurm else {}),
            }
            for r in results
        ]
        with open(sweep_dir / "summary.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Multirun summary ({len(rows)} jobs): {sweep_dir}")
        columns = ["job", "overrides", *(("slurm_job_id", "slurm_state") if slurm else ()), "status", str(metric)]
        for col in columns:
            table.add_column(col, justify="right" if col in ("job", str(metric)) else "left")
        for row in rows:
            table.add_row(*(row[col] for col in columns))
        console = Console(width=160)
        console.print(table)
        for r in results:  # what went wrong, and where to read more
            if r.get("status") != "ok":
                where = r.get("log") or r.get("output_dir", "")
                console.print(f"job {_fmt(r.get('job_num'))} {r.get('status')} (log: {where}): {r.get('error', '')}",
                              soft_wrap=True, markup=False, highlight=False)
        log.info(f"Multirun summary written to {sweep_dir / 'summary.csv'}")
        if config.get("report", True):  # one report of the whole sweep; a failure only warns
            from runner.report import write_report_safely

            write_report_safely(sweep_dir)
        if all(r.get("status") != "ok" for r in results):
            log.error(f"Every job of the multirun failed ({len(results)} jobs): exiting with status 1")
            sys.exit(1)
