"""``python -m runner.report <dir>``: write ``<dir>/report.html``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runner.report.write import write_report

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``<dir>/report.html`` and print its path; exit 1 with one line on stderr on a bad path."""
    parser = argparse.ArgumentParser(
        prog="python -m runner.report",
        description="Write <dir>/report.html: one self-contained HTML file (opens offline) of a run, "
        "a multirun sweep or an explain.py output directory.",
    )
    parser.add_argument("run_dir", help="a run directory (outputs/train/runs/<run>), a sweep directory "
                        "(outputs/multirun/train/<sweep>) or an explain.py output directory")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.run_dir)
    except FileNotFoundError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - one line, the path and what went wrong
        print(f"Error: could not write the report of {args.run_dir}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0
