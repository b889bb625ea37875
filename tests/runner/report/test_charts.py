"""The SVG charts of the reports (``runner/report/charts.py``)."""

from __future__ import annotations

import math
import re

import pytest

from runner.report.charts import MAX_POINTS, is_constant, nice_ticks, svg_chart, tick_label


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3.0, 3.0) == [3.0]
    assert nice_ticks(0.0, math.inf) == []


def test_tick_labels() -> None:
    assert (tick_label(0), tick_label(0.25), tick_label(1e-4), tick_label(20000)) == ("0", "0.25", "1e-04", "2e+04")


def test_a_line_has_a_polyline_a_dot_per_point_and_a_legend_with_its_last_value() -> None:
    svg = svg_chart({"val/loss": [(2, 0.5), (0, 1.0), (1, 0.75)]}, "loss")
    assert svg.startswith("<svg") and 'aria-label="loss"' in svg
    assert svg.count("<polyline") == 1 and svg.count('class="dot"') == 3
    assert "val/loss (last 0.5000)" in svg  # points are joined in x order
    assert "val/loss: 1.0000 at step 0" in svg


def test_long_lines_are_thinned_and_drawn_without_dots() -> None:
    svg = svg_chart({"x": [(i, float(i)) for i in range(3 * MAX_POINTS)]}, "long")
    (points,) = re.findall(r'<polyline[^>]* points="([^"]+)"', svg)
    assert len(points.split()) == MAX_POINTS and 'class="dot"' not in svg


def test_log_y_drops_non_positive_values() -> None:
    svg = svg_chart({"lr": [(0, 1e-3), (1, 0.0), (2, 1e-5)]}, "learning rate", log_y=True)
    assert "(log y)" in svg and svg.count('class="dot"') == 2


def test_marks_of_failed_jobs_are_crosses_and_categories_label_the_x_axis() -> None:
    svg = svg_chart({}, "acc vs net", xlabel="net", xcategories=["a", "b"],
                    marks={"jobs": [(0, 0.5, "job 0")], "failed jobs": [(1, 0.5, "job 1 <failed>")]})
    assert svg.count("<circle") == 2  # the ok job and its legend symbol
    assert "<title>job 1 &lt;failed&gt;</title></path>" in svg
    assert ">a</text>" in svg and ">b</text>" in svg


def test_lines_drawn_over_each_other_stay_distinct() -> None:
    same = [(0, 0.5), (1, 0.7), (2, 0.7)]
    svg = svg_chart({"val/acc": same, "val/acc_best": same}, "accuracy")
    first, second = re.findall(r"<polyline[^>]*>", svg)
    assert "stroke-dasharray" not in first and 'stroke-dasharray="7 4"' in second  # the second is dashed
    assert svg.count('fill="white"') >= 3  # ... and its markers hollow squares, the first's showing through


def test_values_spanning_decades_get_a_log_axis_labelled_with_values() -> None:
    jobs = {"jobs": [(1e-4, 0.3, "a"), (1e-3, 0.6, "b"), (1e-2, 0.5, "c")]}
    svg = svg_chart({}, "acc vs lr", xlabel="lr", marks=jobs, log_x="auto")
    assert "lr (log x)" in svg and ">1e-04</text>" in svg and ">0.001</text>" in svg and ">0.01</text>" in svg
    xs = [float(v) for v in re.findall(r'<circle cx="([0-9.]+)"', svg)[:3]]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)  # evenly spaced decades
    assert 58 + 3 < xs[0] and xs[2] < 430 - 24 - 3  # inside the plot, never clipped
    linear = svg_chart({}, "acc vs wd", xlabel="wd", marks={"jobs": [(0.1, 0.3, "a"), (0.2, 0.6, "b")]}, log_x="auto")
    assert "(log x)" not in linear and is_constant([(0, 2.0), (1, 2.0)]) and not is_constant([(0, 1.0), (1, 2.0)])
