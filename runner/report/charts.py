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

__all__ = ["MAX_POINTS", "PALETTE", "Points", "is_constant", "spans_decades", "svg_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
FAILED_COLOR = "#d62728"
MAX_POINTS = 2000  # points per chart line (more are thinned evenly)
LEFT, RIGHT, TOP, BOTTOM = 58, 24, 26, 40  # margins around the plot area (room for the last tick's label)
#: dash patterns of the 1st, 2nd, ... line, so a line drawn over another never hides it
DASHES = ("", "7 4", "2 3", "9 3 2 3")
#: the point markers of the 1st, 2nd, ... line (filled circle, hollow square, hollow diamond, hollow triangle)
MARKERS = ("circle", "square", "diamond", "triangle")
LOG_RATIO = 50  # values spanning this factor or more get a logarithmic axis with log="auto"
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


def spans_decades(values: list[float], ratio: float = LOG_RATIO) -> bool:
    """Whether positive ``values`` span a factor of ``ratio`` or more (a log axis shows them better)."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= ratio


def is_constant(points: Points) -> bool:
    """Whether a series never changes (one value repeated): a chart of it says nothing a table would not."""
    values = {y for _, y in points if math.isfinite(y)}
    return len(values) <= 1


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick exponents of a log axis over ``[lo, hi]`` (exponents): whole decades, or round steps within one."""
    whole = [float(e) for e in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]
    if len(whole) >= 2:
        step = max(1, math.ceil(len(whole) / 6))
        return whole[::step]
    return [math.log10(v) for v in nice_ticks(10**lo, 10**hi, 4) if v > 0]


def _marker(shape: str, x: float, y: float, r: float = 3.0) -> str:
    """The SVG path of a point marker centred on ``(x, y)``."""
    if shape == "square":
        return f"M{x - r:.1f},{y - r:.1f}h{2 * r:.1f}v{2 * r:.1f}h{-2 * r:.1f}Z"
    if shape == "diamond":
        return f"M{x:.1f},{y - r - 1:.1f}L{x + r + 1:.1f},{y:.1f}L{x:.1f},{y + r + 1:.1f}L{x - r - 1:.1f},{y:.1f}Z"
    if shape == "triangle":
        return f"M{x:.1f},{y - r - 1:.1f}L{x + r + 1:.1f},{y + r:.1f}L{x - r - 1:.1f},{y + r:.1f}Z"
    return f"M{x - r:.1f},{y:.1f}a{r:.1f},{r:.1f} 0 1,0 {2 * r:.1f},0a{r:.1f},{r:.1f} 0 1,0 {-2 * r:.1f},0"


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
    log_y: bool | str = False,
    marks: dict[str, list[tuple[float, float, str]]] | None = None,
    xcategories: list[str] | None = None,
    log_x: bool | str = False,
    mark_colors: dict[str, str] | None = None,
    mark_radius: float = 4.5,
    ring_marks: tuple[str, ...] = (),
) -> Markup:
    """A line chart (points joined in x order) as inline SVG; empty when no point is finite.

    Args:
        series: name -> [(x, y)]; non-finite points are dropped (and y <= 0 ones with ``log_y``).
        title: the chart's title (also its ``aria-label``).
        xlabel: the x axis' name.
        width: the SVG's width in pixels.
        height: the SVG's height in pixels, without the legend below it.
        log_y: a logarithmic y axis; ``"auto"``: when the positive values span :data:`LOG_RATIO` or more.
        log_x: the same for the x axis (ticks labelled with the values, not their logarithms).
        marks: name -> [(x, y, tooltip)] drawn as points only (no line), e.g. a sweep's jobs; a name
            with "fail" in it is drawn as red crosses.
        xcategories: names of x = 0, 1, ... for a categorical x axis.
        mark_colors: name -> CSS colour of a ``marks`` group (default: the palette in order).
        mark_radius: the radius of a mark's dot (small for a scatter of many points).
        ring_marks: the ``marks`` groups drawn as hollow rings around the dots (e.g. samples flipped on purpose).
    """
    if log_y == "auto":
        log_y = spans_decades([y for v in [*series.values(), *(marks or {}).values()] for _, y, *_ in v])
    if log_x == "auto":
        log_x = xcategories is None and spans_decades([x for v in [*series.values(), *(marks or {}).values()] for x, *_ in v])
    log_x, log_y = bool(log_x), bool(log_y)

    def keep(x: float, y: float) -> bool:
        return math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y) and (x > 0 or not log_x)

    lines = {k: sorted((x, y) for x, y in v if keep(x, y)) for k, v in series.items()}
    lines = {k: thin(v, MAX_POINTS) for k, v in lines.items() if v}
    points = {k: [(x, y, t) for x, y, t in v if keep(x, y)] for k, v in (marks or {}).items()}
    xs = [x for v in lines.values() for x, _ in v] + [x for v in points.values() for x, _, _ in v]
    ys = [y for v in lines.values() for _, y in v] + [y for v in points.values() for _, y, _ in v]
    if not xs:
        return Markup("")
    fy: Callable[[float], float] = math.log10 if log_y else (lambda y: y)
    fx: Callable[[float], float] = math.log10 if log_x else (lambda x: x)
    if xcategories is not None:
        x0, x1 = -0.5, len(xcategories) - 0.5
    else:
        x0, x1 = min(fx(x) for x in xs), max(fx(x) for x in xs)
        if points and x1 > x0:  # markers at the ends stay whole inside the plot
            x0, x1 = x0 - (x1 - x0) * 0.04, x1 + (x1 - x0) * 0.04
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = _padded(min(fy(y) for y in ys), max(fy(y) for y in ys))
    pw, ph = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: float) -> str:
        return f"{LEFT + (fx(x) - x0) / (x1 - x0) * pw:.1f}"

    def py(y: float) -> str:
        return f"{TOP + (1 - (fy(y) - y0) / (y1 - y0)) * ph:.1f}"

    yticks = [{"y": f"{TOP + (1 - (t - y0) / (y1 - y0)) * ph:.1f}",
               "label": tick_label(10 ** t) if log_y else tick_label(t)}
              for t in (log_ticks(y0, y1) if log_y else nice_ticks(y0, y1)) if y0 <= t <= y1]
    if xcategories is not None:
        xticks = [{"x": f"{LEFT + (i - x0) / (x1 - x0) * pw:.1f}", "label": c if len(c) <= 14 else c[:13] + "…"}
                  for i, c in enumerate(xcategories)]
    else:
        xticks = [{"x": f"{LEFT + (t - x0) / (x1 - x0) * pw:.1f}", "label": tick_label(10 ** t) if log_x else tick_label(t)}
                  for t in (log_ticks(x0, x1) if log_x else nice_ticks(x0, x1)) if x0 - 1e-9 <= t <= x1 + 1e-9]
    legend = [height + 6 + LEGEND_ROW * row for row in range(len(lines) + len(points))]
    drawn_lines: list[dict[str, Any]] = []
    for index, (name, pts) in enumerate(lines.items()):
        shape = MARKERS[index % len(MARKERS)]
        dots = ([{"d": _marker(shape, float(px(x)), float(py(y))), "tip": f"{name}: {fmt(y)} at {xlabel} {x:g}"}
                 for x, y in pts] if len(pts) <= MAX_DOTS else [])
        legend_y = legend.pop(0)
        drawn_lines.append({"color": PALETTE[index % len(PALETTE)], "dots": dots, "legend_y": legend_y,
                            "dash": DASHES[index % len(DASHES)], "hollow": index % len(MARKERS) != 0,
                            "width": 1.6 if index == 0 else 2.0,
                            "legend_dot": _marker(shape, LEFT + 9, legend_y + 5) if dots else "",
                            "path": " ".join(f"{px(x)},{py(y)}" for x, y in pts),
                            "legend": f"{name} (last {fmt(pts[-1][1])})"})
    drawn_marks: list[dict[str, Any]] = []
    for index, (name, pts) in enumerate(points.items()):
        failed = "fail" in name and name not in (mark_colors or {})
        drawn_marks.append({
            "name": name, "failed": failed, "legend_y": legend.pop(0), "ring": name in ring_marks,
            "r": mark_radius + 2.5 if name in ring_marks else mark_radius,
            "color": (mark_colors or {}).get(name) or (FAILED_COLOR if failed else PALETTE[index % len(PALETTE)]),
            "points": [{"x": float(px(x)), "y": float(py(y)), "tip": tip} for x, y, tip in pts],
        })
    axis_note = " (log x)" if log_x else ""
    axis_note += " (log y)" if log_y else ""
    return render("chart.svg", title=title, width=width, height=height + LEGEND_ROW * len(drawn_lines + drawn_marks) + 6,
                  left=LEFT, top=TOP, pw=pw, ph=ph, yticks=yticks, xticks=xticks,
                  xlabel=xlabel + axis_note, lines=drawn_lines, marks=drawn_marks)
