"""The table printed at the end of a multirun.

Each job (in whatever process a launcher runs it) writes its ``job_result.json``
(:class:`runner.artifacts.JobResult`) into its own directory; the Hydra callback
:class:`MultirunSummary` reads them all back in the launching process when the sweep ends, prints
a table and writes ``summary.csv`` in the sweep directory.
This module is imported by Hydra at start-up, so it imports nothing heavy.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.artifacts import SUMMARY_FILE, JobResult

log = logging.getLogger(__name__)

__all__ = ["MultirunSummary"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


class MultirunSummary(Callback):
    """Hydra callback: after a multirun, a table of every job's overrides, status and ``optimized_metric``.

    Jobs run through SLURM (:mod:`runner.launch.slurm_launcher`) also show their SLURM job id and state, and
    every job that did not end ``ok`` is listed below the table with its error and log. The multirun
    exits with status 1 when every job failed (or was cancelled); with at least one ``ok`` job it
    exits 0, whatever happened to the others.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        results = [record.to_dict() for record in JobResult.read_all(sweep_dir)]
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
        with open(sweep_dir / SUMMARY_FILE, "w", newline="") as fh:
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
        log.info(f"Multirun summary written to {sweep_dir / SUMMARY_FILE}")
        if config.get("report", True):  # one report of the whole sweep; a failure only warns
            from runner.report import write_report_safely

            write_report_safely(sweep_dir)
        if all(r.get("status") != "ok" for r in results):
            log.error(f"Every job of the multirun failed ({len(results)} jobs): exiting with status 1")
            sys.exit(1)
