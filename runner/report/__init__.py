"""One self-contained HTML report per run, per sweep and per ``explain.py`` output.

``python -m runner.report <dir>`` writes ``<dir>/report.html``; ``python run.py`` does it at the end
of every run (``report: true``, rank zero, after fit and test) and the multirun summary once per sweep.

The file opens offline: every image is base64-embedded, every style and script is inline, the charts
are inline SVG; nothing is fetched. What it reads, all of it written by the run itself (the names are
:mod:`runner.artifacts`'):

- ``.hydra/config.yaml`` (resolved here, with Hydra's runtime values from ``.hydra/hydra.yaml``),
  ``.hydra/overrides.yaml``; ``metrics.json`` / ``job_result.json`` (final metrics, status, times);
  ``FAILED`` (why a run failed);
- ``csv/metrics.csv`` (else TensorBoard's event files): a curve per ``train/*``/``val/*`` metric, the
  learning rate, feature statistics (``features/{layer}/{stat}``), Gram-matrix scalars
  (``gram_matrix/*``) and any other scalar;
- the explanation metrics (``interpretation/<method>/<metric>``, ``.../shortcut_alarm``) and
  ``cartography.csv`` (``callbacks.CartographyCallback``): the "What the model learned" section
  (``learned``), and in a sweep's report the last explanation metrics of each job;
- ``images/{key}/step_*.png`` (every image a callback logs goes there through
  ``callbacks.image_logging.log_image``, whatever the loggers): one slider per key over training;
- ``provenance.json``: git commit, library versions and the command line, recorded the first time a
  report of the run is written (at the end of the run when ``report: true``).

The package: ``readers`` (the directories), ``provenance`` (recording ``provenance.json``), ``html``
(the Jinja2 templates in ``templates/``), ``charts`` (SVG), one module per page (``run_page``,
``sweep_page``, ``explain_page``), ``learned`` (the run page's "What the model learned"), ``write`` and ``cli``. Only the standard library, jinja2 and
omegaconf are imported (no torch, no Lightning): a report takes well under a second to write.
"""

from runner.artifacts import REPORT_FILE, is_sweep_dir
from runner.report.charts import svg_chart
from runner.report.cli import main
from runner.report.explain_page import build_explain_report
from runner.report.provenance import current_provenance, record_provenance
from runner.report.readers import read_metrics_csv, read_tensorboard_scalars
from runner.report.run_page import build_run_report
from runner.report.sweep_page import build_sweep_report
from runner.report.write import write_report, write_report_safely

__all__ = [
    "REPORT_FILE",
    "build_explain_report",
    "build_run_report",
    "build_sweep_report",
    "current_provenance",
    "is_sweep_dir",
    "main",
    "read_metrics_csv",
    "read_tensorboard_scalars",
    "record_provenance",
    "svg_chart",
    "write_report",
    "write_report_safely",
]
