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
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

__all__ = ["MultirunSummary", "write_job_result", "read_job_results", "RESULT_FILE"]

RESULT_FILE = "job_result.json"


def write_job_result(output_dir: str | Path, result: dict[str, Any]) -> None:
    """Write one job's result atomically (a reader never sees half a file)."""
    path = Path(output_dir) / RESULT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(path)


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
    """Hydra callback: after a multirun, a table of every job's overrides, status and ``optimized_metric``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        results = read_job_results(sweep_dir)
        if not results:
            log.warning(f"No job results found under {sweep_dir}")
            return
        metric = config.get("optimized_metric", "optimized_metric")
        rows = [
            {
                "job": _fmt(r.get("job_num")),
                "overrides": " ".join(r.get("overrides", [])),
                "status": r.get("status", ""),
                str(metric): _fmt(r.get("optimized_metric")),
                "output_dir": r.get("output_dir", ""),
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
        for col in ("job", "overrides", "status", str(metric)):
            table.add_column(col, justify="right" if col in ("job", str(metric)) else "left")
        for row in rows:
            table.add_row(row["job"], row["overrides"], row["status"], row[str(metric)])
        Console(width=160).print(table)
        log.info(f"Multirun summary written to {sweep_dir / 'summary.csv'}")
        if config.get("report", True):  # one report of the whole sweep; a failure only warns
            from runner.report import write_report_safely

            write_report_safely(sweep_dir)
