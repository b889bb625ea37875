"""Line and scatter charts as inline SVG (``templates/chart.svg``): axes, ticks, legend, tooltips.

The geometry is computed here; the markup is the template's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from runner.report.html import render
from runner.report.values import fmt, thin

__all__ = ["MAX_POINTS", "PALETTE", "Points", "svg_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
FAILED_COLOR = "#d62728"
MAX_POINTS = 2000  # points per chart line (more are thinned evenly)
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 26, 40  # margins around the plot area
LEGEND_ROW = 15
MAX_DOTS = 60  # a line with this many points or fewer gets a dot (with a tooltip) per point

#: ``(x, y)`` points of one line
Points = list[tuple[float, float]]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering ``[lo, hi]``."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks, value = [], math.ceil(lo / step) * step
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_label(value: float) -> str:
    """A tick's label: ``0``, 4 significant digits, or scientific notation when tiny or huge."""
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:.4g}"


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """The y range with a margin (a flat line gets one around its value)."""
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
    else:
        pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def svg_chart(
    series: dict[str, Points],
    title: str,
    xlabel: str = "step",
    width: int = 430,
    height: int = 260,
    log_y: bool = False,
    marks: dict[str, list[tuple[float, float, str]]] | None = None,
    xcategories: list[str] | None = None,
) -> Markup:
    """A line chart (points joined in x order) as inline SVG; empty when no point is finite.

    Args:
        series: name -> [(x, y)]; non-finite points are dropped (and y <= 0 ones with ``log_y``).
        title: the chart's title (also its ``aria-label``).
        xlabel: the x axis' name.
        width: the SVG's width in pixels.
        height: the SVG's height in pixels, without the legend below it.
        log_y: a logarithmic y axis.
        marks: name -> [(x, y, tooltip)] drawn as points only (no line), e.g. a sweep's jobs; a name
            with "fail" in it is drawn as red crosses.
        xcategories: names of x = 0, 1, ... for a categorical x axis.
    """
    lines = {k: sorted((x, y) for x, y in v if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y))
             for k, v in series.items()}
    lines = {k: thin(v, MAX_POINTS) for k, v in lines.items() if v}
    points = {k: [(x, y, t) for x, y, t in v if math.isfinite(x) and math.isfinite(y)] for k, v in (marks or {}).items()}
    xs = [x for v in lines.values() for x, _ in v] + [x for v in points.values() for x, _, _ in v]
    ys = [y for v in lines.values() for _, y in v] + [y for v in points.values() for _, y, _ in v]
    if not xs:
        return Markup("")
    fy: Callable[[float], float] = math.log10 if log_y else (lambda y: y)
    x0, x1 = (-0.5, len(xcategories) - 0.5) if xcategories is not None else (min(xs), max(xs))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = _padded(min(fy(y) for y in ys), max(fy(y) for y in ys))
    pw, ph = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: float) -> str:
        return f"{LEFT + (x - x0) / (x1 - x0) * pw:.1f}"

    def py(y: float) -> str:
        return f"{TOP + (1 - (fy(y) - y0) / (y1 - y0)) * ph:.1f}"

    yticks = [{"y": f"{TOP + (1 - (t - y0) / (y1 - y0)) * ph:.1f}",
               "label": tick_label(10 ** t) if log_y else tick_label(t)} for t in nice_ticks(y0, y1)]
    if xcategories is not None:
        xs_labels = [(float(i), c) for i, c in enumerate(xcategories)]
    else:
        xs_labels = [(t, tick_label(t)) for t in nice_ticks(x0, x1)]
    xticks = [{"x": px(t), "label": label[:14]} for t, label in xs_labels]
    legend = [height + 6 + LEGEND_ROW * row for row in range(len(lines) + len(points))]
    drawn_lines: list[dict[str, Any]] = []
    for index, (name, pts) in enumerate(lines.items()):
        dots = ([{"x": px(x), "y": py(y), "tip": f"{name}: {fmt(y)} at {xlabel} {x:g}"} for x, y in pts]
                if len(pts) <= MAX_DOTS else [])
        drawn_lines.append({"color": PALETTE[index % len(PALETTE)], "dots": dots, "legend_y": legend.pop(0),
                            "path": " ".join(f"{px(x)},{py(y)}" for x, y in pts),
                            "legend": f"{name} (last {fmt(pts[-1][1])})"})
    drawn_marks: list[dict[str, Any]] = []
    for index, (name, pts) in enumerate(points.items()):
        failed = "fail" in name
        drawn_marks.append({
            "name": name, "failed": failed, "legend_y": legend.pop(0),
            "color": FAILED_COLOR if failed else PALETTE[index % len(PALETTE)],
            "points": [{"x": float(px(x)), "y": float(py(y)), "tip": tip} for x, y, tip in pts],
        })
    return render("chart.svg", title=title, width=width, height=height + LEGEND_ROW * len(drawn_lines + drawn_marks) + 6,
                  left=LEFT, top=TOP, pw=pw, ph=ph, yticks=yticks, xticks=xticks,
                  xlabel=xlabel + (" (log y)" if log_y else ""), lines=drawn_lines, marks=drawn_marks)
