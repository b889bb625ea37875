"""``python -m runner.report <dir>`` writes ``<dir>/report.html`` (see :func:`runner.report.cli.main`)."""

import sys

from runner.report.cli import main

sys.exit(main())
