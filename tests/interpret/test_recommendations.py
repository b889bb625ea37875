"""Recommendations test the best method against both baselines and say how many images would tell."""

from __future__ import annotations

import torch

from interpret.metrics.evaluate import DIRECTIONS, MethodTable, _recommend, bootstrap_interval, images_needed


def _table(values: dict[str, list[float]], metric: str = "insertion") -> MethodTable:
    table = MethodTable(methods=list(values), metrics=[metric])
    for method, v in values.items():
        table.values[(method, metric)] = torch.tensor(v)
        table.summaries[(method, metric)] = bootstrap_interval(torch.tensor(v), 200)
    return table


def test_images_needed_follows_the_normal_interval() -> None:
    assert images_needed(torch.tensor([0.1, -0.05, 0.1, -0.05])) == 47  # ceil((1.96 * 0.0866 / 0.025)^2 = 46.1)
    assert images_needed(torch.tensor([0.0, 0.0])) is None and images_needed(torch.tensor([1.0])) is None


def test_a_method_that_beats_random_but_not_the_centre_is_reported_so() -> None:
    gen = torch.Generator().manual_seed(0)
    method = (0.6 + 0.05 * torch.randn(8, generator=gen)).tolist()
    centre = [v - 0.01 + 0.05 * float(e) for v, e in zip(method, torch.randn(8, generator=gen))]
    table = _table({"gradcam": method, "random": [0.2] * 8, "centre_gaussian": centre})
    line = _recommend(table, "insertion")
    assert DIRECTIONS["insertion"] == "higher" and line.startswith("insertion ↑: gradcam is best")
    assert "clearly better than the random map" in line
    assert "from the centred Gaussian on 8 images" in line and "images needed" in line, line
