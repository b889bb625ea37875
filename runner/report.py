"""One self-contained HTML report per run, per sweep and per ``explain.py`` output.

``python -m runner.report <dir>`` writes ``<dir>/report.html``; ``python run.py`` does it at the end
of every run (``report: true``, rank zero, after fit and test) and the multirun summary once per sweep.

The file opens offline: every image is base64-embedded, every style and script is inline, the charts
are inline SVG; nothing is fetched. What it reads, all of it written by the run itself:

- ``.hydra/config.yaml`` (resolved here, with Hydra's runtime values from ``.hydra/hydra.yaml``),
  ``.hydra/overrides.yaml``; ``metrics.json`` / ``job_result.json`` (final metrics, status, times);
  ``FAILED`` (why a run failed);
- ``csv/metrics.csv`` (the CSV logger): loss, accuracy and learning-rate curves, feature statistics
  (``features/{layer}/{stat}``), Gram-matrix scalars (``gram_matrix/*``) and any other scalar;
- ``images/{key}/step_*.png`` (every image a callback logs goes there through
  ``callbacks.image_logging.log_image``, whatever the loggers): one slider per key over training;
- ``provenance.json``: git commit, library versions and the command line, recorded the first time a
  report of the run is written (at the end of the run when ``report: true``).

Only the standard library and omegaconf are imported (no torch, no Lightning): a report takes well
under a second to write.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from runner.provenance import git, git_commit, library_versions

log = logging.getLogger(__name__)

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
    "svg_chart",
    "write_report",
    "write_report_safely",
]

REPORT_FILE = "report.html"
PROVENANCE_FILE = "provenance.json"
PACKAGES = ("torch", "torchvision", "lightning", "timm", "hydra-core", "omegaconf", "torchmetrics", "numpy",
            "vision-runner")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
GRAM_KEY = "gram_matrix"
MAX_FRAMES = 60  # images per slider (more are thinned evenly): keeps the file a few MB at most
MAX_POINTS = 2000  # points per chart line (more are thinned evenly)


# ============================================================================ entry points
def is_sweep_dir(path: Path) -> bool:
    """A multirun directory: Hydra's ``multirun.yaml``, or job subfolders and no run of its own."""
    if (path / "multirun.yaml").is_file():
        return True
    if (path / ".hydra").is_dir() or (path / "job_result.json").is_file():
        return False
    return any(p.name.isdigit() for p in _job_dirs(path))  # Hydra's numbered job folders


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists()
               for name in (".hydra", "job_result.json", "metrics.json", "csv", "images", "tensorboard", "checkpoints"))


def _is_explain_dir(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def write_report(path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``report.html`` into a run, sweep or ``explain.py`` output directory; return its path.

    Args:
        path: the directory.
        provenance: given by the run itself at its end (e.g. ``{"command": ...}``, or ``{}``): the git
            commit, library versions and these are recorded now in ``provenance.json``. None (a report
            written later): the recorded ones are shown, or recorded now when there are none.

    Raises:
        FileNotFoundError: ``path`` is not such a directory (the message names it).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: no such directory (give a run directory, e.g. outputs/train/runs/<run>)")
    if _is_explain_dir(directory):
        page = build_explain_report(directory)
    elif is_sweep_dir(directory):
        page = build_sweep_report(directory)
    elif _is_run_dir(directory):
        page = build_run_report(directory, provenance=provenance)
    else:
        raise FileNotFoundError(
            f"{path}: not a run directory (none of .hydra/, job_result.json, metrics.json, csv/, images/, "
            "tensorboard/, checkpoints/, multirun.yaml or manifest.json in it)"
        )
    out = directory / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def write_report_safely(path: str | Path, provenance: dict[str, Any] | None = None) -> Path | None:
    """:func:`write_report`, but a failure only warns (a trained run must never fail because of its report)."""
    started = time.perf_counter()
    try:
        out = write_report(path, provenance=provenance)
    except Exception as err:  # noqa: BLE001 - the report is a by-product; say why and go on
        log.warning(f"Could not write the run report of {path}: {type(err).__name__}: {err}")
        return None
    log.info(f"Report written to {out} ({time.perf_counter() - started:.2f} s)")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runner.report <dir>``: write ``<dir>/report.html``; exit 1 in one line on a bad path."""
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


# ============================================================================ reading a run
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _to_float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Every column of a Lightning ``metrics.csv`` as ``(step, value)`` points (empty cells skipped).

    The ``epoch`` column comes back as ``(step, epoch)`` points like the others.
    """
    series: dict[str, list[tuple[float, float]]] = {}
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


def read_tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Every scalar of the TensorBoard event files below ``log_dir`` as ``(step, value)`` points.

    Used when a run has no ``csv/metrics.csv`` (``logger=tensorboard``); imports tensorboard only then.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[float, float]]] = {}
    folders = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")})
    for folder in folders:
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 1, "histograms": 1,
                                                                     "tensors": 1})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            series.setdefault(tag, []).extend((float(e.step), float(e.value)) for e in accumulator.Scalars(tag))
    return {k: sorted(v) for k, v in series.items()}


def _epoch_of_step(series: dict[str, list[tuple[float, float]]], step: int) -> int | None:
    """The epoch a callback logging at ``step`` (after that many optimizer steps) was in.

    Lightning logs epoch-level values at ``global_step - 1``; an image logged at the end of an
    epoch has ``global_step``: the epoch of the last CSV row before ``step``.
    """
    epochs = series.get("epoch") or []
    before = [(s, e) for s, e in epochs if s < step]
    if before:
        return int(max(before)[1])
    return int(epochs[0][1]) if epochs else None


def _image_series(run_dir: Path) -> dict[str, list[tuple[int, Path]]]:
    """``images/{key}/step_{n}.png`` of the run: key -> [(step, path)] in step order."""
    root = run_dir / "images"
    found: dict[str, list[tuple[int, Path]]] = {}
    if not root.is_dir():
        return found
    for png in root.rglob("step_*.png"):
        try:
            step = int(png.stem.split("_", 1)[1])
        except (IndexError, ValueError):
            continue
        key = png.parent.relative_to(root).as_posix()
        found.setdefault(key, []).append((step, png))
    return {k: sorted(v) for k, v in sorted(found.items())}


def _load_config(run_dir: Path) -> tuple[str, Any, str]:
    """The run's config as YAML text (resolved when possible), the config object, and a note."""
    from omegaconf import OmegaConf

    for name in (Path(".hydra") / "config.yaml", Path("config_resolved.yaml")):
        path = run_dir / name
        if path.is_file():
            break
    else:
        return "", None, "no saved config (.hydra/config.yaml or config_resolved.yaml)"
    cfg = OmegaConf.load(path)
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    hydra_cfg = OmegaConf.load(hydra_yaml).get("hydra") if hydra_yaml.is_file() else None
    try:
        text = _resolve_to_yaml(cfg, hydra_cfg)
        note = f"{name.as_posix()}, resolved"
    except Exception as err:  # noqa: BLE001 - show what was saved, and why it is not resolved
        text = OmegaConf.to_yaml(cfg)
        note = f"{name.as_posix()}, as saved (not resolved: {type(err).__name__})"
    return text, cfg, note


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


def current_provenance() -> dict[str, Any]:
    """Git commit (and whether the tree had changes), library versions, Python, host, now."""
    versions = library_versions(PACKAGES)
    commit = git_commit()
    dirty = git(["status", "--porcelain", "--untracked-files=no"]) if commit else None
    return {
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "versions": versions,
        "platform": platform.platform(),
        "host": platform.node(),
        "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _provenance(run_dir: Path, extra: dict[str, Any] | None) -> dict[str, Any]:
    """``provenance.json`` of the run.

    Recorded now (from this process) when ``extra`` is given (the run itself is writing its report, a
    resumed run included) or when there is none yet; otherwise the one recorded earlier.
    """
    path = run_dir / PROVENANCE_FILE
    saved = _read_json(path) if extra is None else None
    if saved is None:
        saved = {**current_provenance(), **(extra or {})}
        try:
            path.write_text(json.dumps(saved, indent=2, default=str))
        except OSError:
            pass
    return saved


# ============================================================================ HTML pieces
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header .sub{opacity:.8;font-size:13px;margin-top:4px;word-break:break-all}
nav{padding:6px 28px;background:#e9ecf1;font-size:13px}nav a{margin-right:14px;color:#1d4f91;text-decoration:none}
main{padding:8px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 18px 16px;margin:16px 0}
h2{font-size:17px;margin:6px 0 10px}h3{font-size:14px;margin:14px 0 6px}
.empty{color:#6b7280;font-style:italic}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{border:1px solid #dde1e7;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecec}.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600}
.ok{background:#dff3e4;color:#176c2e}.failed{background:#fbd5d5;color:#9b1c1c}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:8px 10px;overflow:auto;max-height:480px;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:14px}.chart{border:1px solid #eceef2;border-radius:4px;background:#fff}
.slider{margin:8px 0 18px}.slider .controls{display:flex;align-items:center;gap:10px;margin:4px 0 8px}
.slider input[type=range]{width:min(600px,70vw)}.slider .label{font-weight:600;min-width:170px}
.slider img{max-width:100%;image-rendering:pixelated;border:1px solid #dde1e7}
.imgs img{max-width:100%;border:1px solid #dde1e7;margin:4px}
.banner{background:#fdecec;border:1px solid #f5b5b5;color:#7d1a1a;padding:8px 12px;border-radius:4px;margin:10px 0}
details summary{cursor:pointer;color:#1d4f91}
"""

_JS = """
(function(){
  function show(box, i){
    var frames = box.querySelectorAll('img.frame');
    i = Math.max(0, Math.min(frames.length - 1, i));
    frames.forEach(function(img, k){ img.hidden = (k !== i); });
    box.querySelector('input[type=range]').value = i;
    box.querySelector('.label').textContent = frames[i].dataset.label;
  }
  document.querySelectorAll('.slider').forEach(function(box){
    var range = box.querySelector('input[type=range]');
    var button = box.querySelector('button');
    var timer = null;
    range.addEventListener('input', function(){ show(box, parseInt(range.value, 10)); });
    if (button) button.addEventListener('click', function(){
      if (timer) { clearInterval(timer); timer = null; button.textContent = 'play'; return; }
      var n = box.querySelectorAll('img.frame').length;
      if (parseInt(range.value, 10) >= n - 1) show(box, 0);
      button.textContent = 'pause';
      timer = setInterval(function(){
        var i = parseInt(range.value, 10) + 1;
        if (i >= n) { clearInterval(timer); timer = null; button.textContent = 'play'; return; }
        show(box, i);
      }, 700);
    });
    show(box, parseInt(range.value, 10));
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """A whole HTML document: ``sections`` are ``(anchor, heading, body html)``."""
    nav = "".join(f'<a href="#{_e(a)}">{_e(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{_e(a)}"><h2>{_e(h)}</h2>{b}</section>' for a, h, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><div class=\"sub\">{_e(subtitle)}</div></header>"
        f"<nav>{nav}</nav><main>{body}</main><script>{_JS}</script></body></html>\n"
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{_e(row_classes[index])}"' if row_classes and row_classes[index] else ""
        cells = "".join(
            f'<td class="num">{_e(_fmt(c))}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{c.html if isinstance(c, _Html) else _e(_fmt(c))}</td>"
            for c in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Html:
    """A table cell that is already HTML."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
            ".webp": "image/webp", ".svg": "image/svg+xml"}.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _img(path: Path, alt: str, extra: str = "") -> str:
    return f'<img src="{_data_uri(path)}" alt="{_e(alt)}"{extra}>'


def _slider(key: str, frames: list[tuple[str, Path]]) -> str:
    """An image per frame (all embedded, one shown) and a range input choosing which."""
    imgs = "".join(
        _img(path, f"{key}: {label}", f' class="frame" data-label="{_e(label)}"'
             + (" hidden" if i != len(frames) - 1 else ""))
        for i, (label, path) in enumerate(frames)
    )
    last = len(frames) - 1
    return (
        f'<div class="slider" data-key="{_e(key)}"><h3>{_e(key)}</h3><div class="controls">'
        f'<input type="range" min="0" max="{last}" step="1" value="{last}" aria-label="{_e(key)}: frame">'
        f'<span class="label">{_e(frames[-1][0])}</span>'
        + ('<button type="button">play</button>' if len(frames) > 1 else "")
        + f"<span>{len(frames)} frame(s)</span></div>{imgs}</div>"
    )


# ---------------------------------------------------------------------------- SVG charts
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:.4g}"


def svg_chart(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    xlabel: str = "step",
    width: int = 430,
    height: int = 260,
    log_y: bool = False,
    marks: dict[str, list[tuple[float, float, str]]] | None = None,
    xcategories: list[str] | None = None,
) -> str:
    """A line chart (points joined in x order) as inline SVG, with axes, ticks, legend and tooltips.

    Args:
        series: name -> [(x, y)]; non-finite points are dropped.
        marks: name -> [(x, y, tooltip)] drawn as points only (no line), e.g. a sweep's jobs.
        xcategories: names of x = 0, 1, ... for a categorical x axis.
    """
    lines = {k: sorted((x, y) for x, y in v if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y))
             for k, v in series.items()}
    lines = {k: _thin(v, MAX_POINTS) for k, v in lines.items() if v}
    points = {k: [(x, y, t) for x, y, t in v if math.isfinite(x) and math.isfinite(y)] for k, v in (marks or {}).items()}
    xs = [x for v in lines.values() for x, _ in v] + [x for v in points.values() for x, _, _ in v]
    ys = [y for v in lines.values() for _, y in v] + [y for v in points.values() for _, y, _ in v]
    if not xs:
        return ""
    fy = (lambda y: math.log10(y)) if log_y else (lambda y: y)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(fy(y) for y in ys), max(fy(y) for y in ys)
    if xcategories is not None:
        x0, x1 = -0.5, len(xcategories) - 0.5
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 0.5
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.06
        y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 58, 12, 26, 40
    legend_rows = len(lines) + len(points)
    legend_h = 15 * legend_rows + 6
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1 - (fy(y) - y0) / (y1 - y0)) * ph

    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + legend_h}" '
           f'viewBox="0 0 {width} {height + legend_h}" role="img" aria-label="{_e(title)}">',
           f'<text x="{left}" y="16" font-size="13" font-weight="600">{_e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccd"/>']
    yticks = _nice_ticks(y0, y1)
    for t in yticks:
        yy = top + (1 - (t - y0) / (y1 - y0)) * ph
        label = _tick_label(10 ** t) if log_y else _tick_label(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eef"/>'
                   f'<text x="{left - 4}" y="{yy + 4:.1f}" font-size="10" text-anchor="end">{_e(label)}</text>')
    if xcategories is not None:
        xticks = [(float(i), c) for i, c in enumerate(xcategories)]
    else:
        xticks = [(t, _tick_label(t)) for t in _nice_ticks(x0, x1)]
    for t, label in xticks:
        xx = px(t)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#889"/>'
                   f'<text x="{xx:.1f}" y="{top + ph + 15}" font-size="10" text-anchor="middle">{_e(label[:14])}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 31}" font-size="11" text-anchor="middle">{_e(xlabel)}'
               f'{" (log y)" if log_y else ""}</text>')
    row = 0
    for index, (name, pts) in enumerate(lines.items()):
        color = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>')
        if len(pts) <= 60:
            for x, y in pts:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.4" fill="{color}">'
                           f"<title>{_e(name)}: {_e(_fmt(y))} at {_e(xlabel)} {x:g}</title></circle>")
        ly = height + 6 + 15 * row
        out.append(f'<line x1="{left}" x2="{left + 18}" y1="{ly + 5}" y2="{ly + 5}" stroke="{color}" stroke-width="2"/>'
                   f'<text x="{left + 24}" y="{ly + 9}" font-size="11">{_e(name)} (last {_e(_fmt(pts[-1][1]))})</text>')
        row += 1
    for index, (name, pts) in enumerate(points.items()):
        color = "#d62728" if "fail" in name else PALETTE[index % len(PALETTE)]
        for x, y, tip in pts:
            if "fail" in name:
                cx, cy = px(x), py(y)
                out.append(f'<path d="M{cx - 5:.1f},{cy - 5:.1f}L{cx + 5:.1f},{cy + 5:.1f}M{cx - 5:.1f},{cy + 5:.1f}'
                           f'L{cx + 5:.1f},{cy - 5:.1f}" stroke="{color}" stroke-width="2.2"><title>{_e(tip)}</title></path>')
            else:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4.5" fill="{color}" fill-opacity="0.8">'
                           f"<title>{_e(tip)}</title></circle>")
        ly = height + 6 + 15 * row
        symbol = (f'<path d="M{left + 5},{ly + 1}L{left + 13},{ly + 9}M{left + 5},{ly + 9}L{left + 13},{ly + 1}" '
                  f'stroke="{color}" stroke-width="2"/>' if "fail" in name
                  else f'<circle cx="{left + 9}" cy="{ly + 5}" r="4" fill="{color}"/>')
        out.append(symbol + f'<text x="{left + 24}" y="{ly + 9}" font-size="11">{_e(name)}</text>')
        row += 1
    out.append("</svg>")
    return "".join(out)


def _charts(items: list[str]) -> str:
    items = [c for c in items if c]
    return f'<div class="charts">{"".join(items)}</div>' if items else ""


# ============================================================================ run report
_LOSS = ("train/loss_step", "train/loss_epoch", "train/loss", "val/loss")
_ACC = ("train/acc", "val/acc", "val/acc_best")
_MAP = ("val/map", "val/map_50", "val/map_50_best")  # detection (model=detector)


def _section_config(run_dir: Path, result: dict[str, Any] | None, prov: dict[str, Any]) -> tuple[str, Any]:
    text, cfg, note = _load_config(run_dir)
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    overrides: list[str] = []
    if overrides_path.is_file():
        from omegaconf import OmegaConf

        overrides = [str(o) for o in (OmegaConf.load(overrides_path) or [])]
    elif result and result.get("overrides"):
        overrides = [str(o) for o in result["overrides"]]
    command = prov.get("command") or ("python run.py " + " ".join(overrides)).strip()
    versions = prov.get("versions") or {}
    commit = prov.get("git_commit") or "unknown (not a git checkout)"
    if prov.get("git_dirty"):
        commit += " (with uncommitted changes)"
    rows: list[tuple[str, Any]] = [
        ("command", command + ("" if prov.get("command") else "   (reconstructed from .hydra/overrides.yaml)")),
        ("overrides", " ".join(overrides) or "(none)"),
        ("seed", _fmt(cfg.get("seed")) if cfg is not None and cfg.get("seed") is not None else "null (unseeded)"),
        ("git commit", commit),
    ]
    if result:
        if result.get("started_at"):
            rows.append(("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(result["started_at"])))))
        if result.get("seconds") is not None:
            rows.append(("duration", f"{float(result['seconds']):.1f} s"))
        if result.get("job_num") is not None:
            rows.append(("multirun job", result["job_num"]))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "unknown"))
    rows.append(("recorded", f"{prov.get('recorded_at', '?')} on {prov.get('host', '?')} ({prov.get('platform', '?')})"))
    rows.append(("run directory", str(run_dir.resolve())))
    body = _table(("", ""), rows)
    body += (f"<h3>Config ({_e(note)})</h3><pre>{_e(text)}</pre>" if text else _empty(note))
    return body, cfg


def _section_curves(series: dict[str, list[tuple[float, float]]], source: str) -> str:
    if not series:
        return _empty("no metric curves: no csv/metrics.csv nor TensorBoard scalars "
                      "(logger=csv, tensorboard or many writes them)")
    loss = {k: series[k] for k in _LOSS if k in series}
    if "train/loss_step" in loss and "train/loss_epoch" in loss:
        loss.pop("train/loss", None)
    acc = {k: series[k] for k in _ACC if k in series}
    detection = {k: series[k] for k in _MAP if k in series}
    lr = {k: v for k, v in series.items() if k.startswith("lr-") or k in ("lr", "learning_rate")}
    charts = [svg_chart(loss, "loss"), svg_chart(acc, "accuracy"), svg_chart(detection, "detection mAP")]
    if lr:
        positive = all(y > 0 for v in lr.values() for _, y in v)
        spread = [y for v in lr.values() for _, y in v]
        charts.append(svg_chart(lr, "learning rate", log_y=positive and max(spread) / min(spread) > 50))
    body = f"<p>From {_e(source)}, against the global step.</p>" + _charts(charts)
    if not lr:
        body += _empty("no learning-rate curve: LearningRateMonitor not enabled (it needs a logger)")
    return body or _empty("no loss, accuracy or learning-rate columns in csv/metrics.csv")


def _thin(items: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` items, evenly spaced, the first and the last always kept."""
    if len(items) <= limit:
        return items
    picks = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in picks]


def _section_images(images: dict[str, list[tuple[int, Path]]], series: dict[str, list[tuple[float, float]]],
                    keys: list[str]) -> str:
    out = []
    for key in keys:
        frames = []
        kept = _thin(images[key], MAX_FRAMES)
        if len(kept) < len(images[key]):
            out.append(_empty(f"{key}: {len(kept)} of {len(images[key])} logged images shown, evenly spaced "
                              f"(all of them are in images/{key}/)"))
        for step, path in kept:
            epoch = _epoch_of_step(series, step)
            frames.append((f"epoch {epoch} · step {step}" if epoch is not None else f"step {step}", path))
        out.append(_slider(key, frames))
    return "".join(out)


def _section_features(series: dict[str, list[tuple[float, float]]]) -> str:
    by_stat: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for key, pts in series.items():
        parts = key.split("/")
        if parts[0] == "features" and len(parts) >= 3:
            by_stat.setdefault(parts[-1], {})["/".join(parts[1:-1])] = pts
    if not by_stat:
        return _empty("no feature statistics: FeatureMonitorCallback not enabled (callbacks=monitor or callbacks=all)")
    order = [s for s in ("mean", "std", "sparsity", "max") if s in by_stat] + sorted(set(by_stat) - {"mean", "std", "sparsity", "max"})
    return ("<p>Per monitored layer, over the first batches of each logged epoch.</p>"
            + _charts([svg_chart(by_stat[s], f"features: {s}") for s in order]))


def _section_gram(series: dict[str, list[tuple[float, float]]], images: dict[str, list[tuple[int, Path]]]) -> str:
    scalars = {k.split("/", 1)[1]: v for k, v in series.items() if k.startswith(GRAM_KEY + "/")}
    if not scalars and GRAM_KEY not in images:
        return _empty("no Gram matrices: GramMatrixCallback not enabled (callbacks=gram or callbacks=all), "
                      "or training was shorter than its log_every_n_steps")
    body = ""
    if scalars:
        ranks = {k: v for k, v in scalars.items() if "rank" in k}
        offdiag = {k: v for k, v in scalars.items() if "offdiag" in k}
        rest = {k: v for k, v in scalars.items() if k not in ranks and k not in offdiag}
        body += _charts([svg_chart(ranks, "Gram: effective rank"), svg_chart(offdiag, "Gram: mean off-diagonal"),
                         svg_chart(rest, "Gram: other")])
        body += ("<p>Collapse shows in <code>centered_effective_rank</code> falling towards 1; the raw "
                 "<code>mean_offdiag</code> is high for any non-negative features.</p>")
    if GRAM_KEY in images:
        body += _section_images(images, series, [GRAM_KEY])
    else:
        body += _empty("no Gram matrix images")
    return body


def _section_other(series: dict[str, list[tuple[float, float]]]) -> str:
    covered = set(_LOSS) | set(_ACC) | set(_MAP) | {"epoch"}
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for key, pts in series.items():
        if key in covered or key.startswith(("lr-", "features/", GRAM_KEY + "/", "test/")) or len(pts) < 2:
            continue
        head, _, tail = key.partition("/")
        groups.setdefault(head, {})[tail or head] = pts
    if not groups:
        return ""
    return _charts([svg_chart(v, k) for k, v in sorted(groups.items())])


def _section_final(result: dict[str, Any] | None, run_dir: Path, series: dict[str, list[tuple[float, float]]]) -> str:
    metrics = dict((result or {}).get("metrics") or {})
    if not metrics and series:  # no metrics.json (e.g. a run stopped by an error): the CSV's last values
        metrics = {k: v[-1][1] for k, v in series.items() if k != "epoch"}
    if not metrics:
        return _empty("no final metrics: nothing was logged (none in metrics.json or job_result.json, no csv/metrics.csv)")
    order = sorted(metrics, key=lambda k: (not k.startswith("test/"), not k.startswith("val/"), k))
    body = _table(("metric", "value"), [(k, float(metrics[k])) for k in order])
    if result and result.get("best_model_path"):
        body += f"<p>Best checkpoint: <code>{_e(result['best_model_path'])}</code></p>"
    return body


def build_run_report(run_dir: Path, provenance: dict[str, Any] | None = None) -> str:
    """The HTML of one training run's report (see the module docstring for what it reads)."""
    run_dir = Path(run_dir)
    result = _read_json(run_dir / "metrics.json") or _read_json(run_dir / "job_result.json")
    prov = _provenance(run_dir, provenance)
    csv_path = run_dir / "csv" / "metrics.csv"
    series = read_metrics_csv(csv_path)
    source = "csv/metrics.csv"
    if not series and (run_dir / "tensorboard").is_dir():
        series, source = read_tensorboard_scalars(run_dir / "tensorboard"), "tensorboard/ event files"
    images = _image_series(run_dir)

    config_html, cfg = _section_config(run_dir, result, prov)
    failed = (run_dir / "FAILED").is_file() or (result or {}).get("status") == "failed"
    status = "failed" if failed else ("ok" if result else "unknown (no metrics.json)")
    banner = ""
    if failed:
        reason = (result or {}).get("error") or ""
        if not reason and (run_dir / "FAILED").is_file():
            lines = [l for l in (run_dir / "FAILED").read_text(errors="replace").strip().splitlines() if l.strip()]
            reason = lines[-1] if lines else ""
        banner = f'<div class="banner"><b>This run failed.</b> {_e(reason)}</div>'

    interp_keys = [k for k in images if k != GRAM_KEY]
    if interp_keys:
        interp = ("<p>Heatmaps of the same fixed sample images at each logged step: move the slider to see how "
                  "the model's attention moves over training (the caption of each tile: true label, prediction, "
                  "confidence).</p>" + _section_images(images, series, interp_keys))
    else:
        interp = _empty("no interpretation images: callbacks=interp (or callbacks=all) not enabled")
    final = _section_final(result, run_dir, series)
    task = str(cfg.get("task_name", "run")) if cfg is not None else "run"
    backbone = None
    if cfg is not None:
        from omegaconf import OmegaConf

        backbone = OmegaConf.select(cfg, "model.backbone", default=None)
    title = f"{task} report: {run_dir.name}" + (f" ({backbone})" if backbone else "")
    sections = [
        ("final", "Final metrics", banner + f'<p>Status: <span class="badge {"failed" if failed else "ok"}">{_e(status)}</span></p>' + final),
        ("curves", "Metric curves", _section_curves(series, source)),
        ("interpretation", "Interpretation over training", interp),
        ("features", "Feature statistics per layer", _section_features(series)),
        ("gram", "Gram matrices", _section_gram(series, images)),
    ]
    other = _section_other(series)
    if other:
        sections.append(("other", "Other scalars", other))
    sections.insert(0, ("config", "Config and provenance", config_html))
    return _page(title, str(run_dir.resolve()), sections)


# ============================================================================ sweep report
def _job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "job_result.json").is_file())]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _parse_value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _param(job: dict[str, Any], name: str) -> str:
    """The value job ``job`` gave to the override ``name`` (``+name``/``++name`` too), "" when none."""
    for key in (name, "+" + name, "++" + name):
        if key in job["params"]:
            return str(job["params"][key])
    return ""


def build_sweep_report(sweep_dir: Path) -> str:
    """The HTML of a multirun: jobs with status (failed ones marked), hyperparameters against ``optimized_metric``."""
    from omegaconf import OmegaConf

    sweep_dir = Path(sweep_dir)
    metric_name = "optimized_metric"
    direction = None
    if (sweep_dir / "multirun.yaml").is_file():
        sweep_cfg = OmegaConf.load(sweep_dir / "multirun.yaml")
        metric_name = str(sweep_cfg.get("optimized_metric") or metric_name)
        direction = OmegaConf.select(sweep_cfg, "hydra.sweeper.direction", default=None)
    jobs = []
    for job_dir in _job_dirs(sweep_dir):
        result = _read_json(job_dir / "job_result.json") or {}
        overrides = result.get("overrides")
        if overrides is None and (job_dir / ".hydra" / "overrides.yaml").is_file():
            overrides = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml") or []]
        status = result.get("status") or ("failed" if (job_dir / "FAILED").is_file() else "no result (crashed or running)")
        value = result.get("optimized_metric")
        value = float(value) if isinstance(value, (int, float)) else math.nan
        jobs.append({"dir": job_dir, "num": result.get("job_num", job_dir.name), "overrides": list(overrides or []),
                     "status": status, "value": value, "error": result.get("error", ""),
                     "metrics": result.get("metrics") or {}, "seconds": result.get("seconds")})
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: a multirun directory without any job directory")

    params: dict[str, list[str]] = {}
    for job in jobs:
        job["params"] = dict(o.split("=", 1) for o in job["overrides"] if "=" in o)
        for k, v in job["params"].items():
            params.setdefault(k.lstrip("+~"), []).append(v)
    swept = [k for k, v in params.items() if len(set(v)) > 1 or len(v) < len(jobs)]
    ok = [j for j in jobs if j["status"] == "ok" and math.isfinite(j["value"])]
    best = (min if direction == "minimize" else max)(ok, key=lambda j: j["value"]) if ok else None

    rows, classes = [], []
    shown_metrics = sorted({k for j in jobs for k in j["metrics"] if k.startswith(("test/", "val/acc", "val/loss", "val/map"))}
                           - {metric_name})
    common = [o for o in jobs[0]["overrides"] if all(o in j["overrides"] for j in jobs)]
    for job in jobs:
        failed = job["status"] != "ok"
        status = f'<span class="badge {"failed" if failed else "ok"}">{_e(job["status"].upper() if failed else "ok")}</span>'
        if failed and job["error"]:
            status += f"<br><small>{_e(job['error'][:300])}</small>"
        link = job["dir"] / REPORT_FILE
        name = job["dir"].relative_to(sweep_dir).as_posix()
        where = f'<a href="{_e(name)}/{REPORT_FILE}">{_e(name)}/</a>' if link.is_file() else _e(name + "/")
        own = [o for o in job["overrides"] if o not in common and o.split("=", 1)[0].lstrip("+~") not in swept]
        rows.append([job["num"], _Html(status), *[_param(job, p) for p in swept], job["value"],
                     *[job["metrics"].get(m, "") for m in shown_metrics], " ".join(own),
                     f'{float(job["seconds"]):.1f}' if job["seconds"] is not None else "", _Html(where)])
        classes.append("failed" if failed else ("best" if job is best else ""))
    n_failed = sum(1 for j in jobs if j["status"] != "ok")
    summary = (f"<p>{len(jobs)} jobs, {len(jobs) - n_failed} ok, <b>{n_failed} failed</b>"
               + (f"; best: job {_e(best['num'])} with {_e(metric_name)} = {_e(_fmt(best['value']))}" if best else "")
               + "</p>")
    if common:
        summary += f"<p>Overrides of every job: <code>{_e(' '.join(common))}</code></p>"
    table = summary + _table(["job", "status", *swept, metric_name, *shown_metrics, "other overrides", "seconds",
                              "directory"], rows, classes)

    charts = []
    for param in swept:
        values = [(j, _param(j, param)) for j in jobs]
        numeric = all(v != "" and isinstance(_parse_value(v), float) for _, v in values)
        cats = None if numeric else sorted({str(v) for _, v in values})
        finite = [j["value"] for j in jobs if math.isfinite(j["value"])]
        floor = min(finite) if finite else 0.0
        good, bad = [], []
        for job, v in values:
            x = float(_parse_value(v)) if numeric else float(cats.index(str(v)))  # type: ignore[union-attr]
            tip = f"job {job['num']}: {param}={v}, {metric_name}={_fmt(job['value'])}"
            if job["status"] == "ok" and math.isfinite(job["value"]):
                good.append((x, job["value"], tip))
            else:
                bad.append((x, floor, tip + f" ({job['status']})"))
        xs = [x for x, _, _ in good + bad]
        log_x = numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 50
        if log_x:
            good = [(math.log10(x), y, t) for x, y, t in good]
            bad = [(math.log10(x), y, t) for x, y, t in bad]
        marks = {"jobs": good}
        if bad:
            marks["failed jobs (drawn at the lowest value)"] = bad
        charts.append(svg_chart({}, f"{metric_name} vs {param}", xlabel=param + (" (log10)" if log_x else ""),
                                marks=marks, xcategories=cats))
    scatter = _charts(charts) or _empty("no hyperparameter varies between the jobs")

    curves: dict[str, dict[str, list[tuple[float, float]]]] = {"val/acc": {}, "val/loss": {}}
    for job in jobs:
        series = read_metrics_csv(job["dir"] / "csv" / "metrics.csv")
        for key in curves:
            if key in series:
                curves[key][f"job {job['num']}"] = series[key]
    curve_html = _charts([svg_chart(v, f"{k} of every job") for k, v in curves.items() if v])
    curve_html = curve_html or _empty("no per-job curves: the jobs wrote no csv/metrics.csv")

    details = []
    for job in jobs:
        metrics = job["metrics"]
        inner = _table(("metric", "value"), [(k, float(v)) for k, v in sorted(metrics.items())]) if metrics else _empty("no metrics")
        details.append(f"<details><summary>job {_e(job['num'])}: {_e(' '.join(job['overrides']))} "
                       f"({_e(job['status'])})</summary>{inner}</details>")
    title = f"sweep report: {sweep_dir.name}"
    return _page(title, str(sweep_dir.resolve()), [
        ("jobs", "Jobs", table),
        ("hparams", f"Hyperparameters against {metric_name}", scatter),
        ("curves", "Validation curves of every job", curve_html),
        ("details", "Final metrics per job", "".join(details)),
    ])


# ============================================================================ explain report
def build_explain_report(output_dir: Path) -> str:
    """The HTML of an ``explain.py`` output: provenance, the comparison grid, overlays, metrics, feature maps."""
    output_dir = Path(output_dir)
    manifest = _read_json(output_dir / "manifest.json") or {}
    ckpt = manifest.get("checkpoint") or {}
    versions = manifest.get("versions") or {}
    rows = [
        ("checkpoint", ckpt.get("path", "")), ("sha256", ckpt.get("sha256", "")), ("run config", ckpt.get("config") or ""),
        ("git commit", manifest.get("git_commit") or "unknown"), ("seed", _fmt(manifest.get("seed"))),
        ("device", manifest.get("device", "")), ("input size", "x".join(map(str, manifest.get("input_size") or []))),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    runtime = manifest.get("runtime_s") or {}
    prov = _table(("", ""), rows)
    if runtime:
        prov += "<h3>Runtime per method</h3>" + _table(("method", "seconds"), [(k, float(v)) for k, v in runtime.items()])

    grid = output_dir / "grid.png"
    grid_html = _img(grid, "comparison grid") if grid.is_file() else _empty("no comparison grid (grid.png)")

    images = manifest.get("images") or []
    names = manifest.get("class_names") or []

    def cls(i: Any) -> str:
        return str(names[i]) if isinstance(i, int) and 0 <= i < len(names) else _fmt(i)

    overlay_rows = []
    overlays = sorted((output_dir / "overlays").glob("*.png")) if (output_dir / "overlays").is_dir() else []
    for index, image in enumerate(images):
        mine = [p for p in overlays if p.name.startswith(f"{index:02d}_")]
        pics = "".join(_img(p, p.stem, ' width="160"') for p in mine)
        overlay_rows.append([image.get("name", ""), cls(image.get("label")), cls(image.get("predicted")),
                             float(image.get("probability", math.nan)), _Html(f'<div class="imgs">{pics}</div>')])
    overlay_html = (_table(("image", "true", "predicted", "p", "overlays (" + ", ".join(manifest.get("methods") or []) + ")"),
                           overlay_rows) if overlay_rows else _empty("no overlays"))
    if manifest.get("task") == "detection":  # explain.py on a detector: boxes, then one map per detection
        rows = []
        for index, image in enumerate(images):
            boxed = sorted((output_dir / "detections").glob(f"{index:02d}_*.png")) if (output_dir / "detections").is_dir() else []
            pics = "".join(_img(p, p.stem, ' width="160"') for p in boxed)
            pics += "".join(_img(output_dir / p, Path(p).stem, ' width="160"') for p in image.get("overlays") or []
                            if (output_dir / p).is_file())
            found = ", ".join(f"{d.get('class')} {float(d.get('score', math.nan)):.2f}" for d in image.get("detections") or [])
            rows.append([image.get("name", ""), _fmt(image.get("true_objects")), found or "no detection above the threshold",
                         _Html(f'<div class="imgs">{pics}</div>')])
        overlay_html = (_table(("image", "true objects", f"detections (score >= {_fmt(manifest.get('detection_threshold'))})",
                                "boxes, then each detection's map (" + ", ".join(manifest.get("methods") or []) + ")"), rows)
                        if rows else _empty("no images"))

    metrics_path = output_dir / "metrics.csv"
    if metrics_path.is_file():
        with open(metrics_path, newline="") as fh:
            table = list(csv.reader(fh))
        metrics_html = _table(table[0], table[1:]) if table else _empty("metrics.csv is empty")
    else:
        metrics_html = _empty("no explanation metrics: run explain.py with metrics=true")
    features = [output_dir / f for f in manifest.get("features") or [] if (output_dir / f).is_file()]
    features_html = ("".join(f"<h3>{_e(p.stem)}</h3>{_img(p, p.stem)}" for p in features)
                     or _empty("no feature maps: run explain.py with features=[backbone.layer2,...]"))
    return _page(f"explain report: {output_dir.name}", str(output_dir.resolve()), [
        ("provenance", "Checkpoint and provenance", prov),
        ("grid", "Comparison grid", grid_html),
        ("overlays", "Overlays per image", overlay_html),
        ("metrics", "Explanation metrics", metrics_html),
        ("features", "Feature maps", features_html),
    ])


if __name__ == "__main__":
    sys.exit(main())
