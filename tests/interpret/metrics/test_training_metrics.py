"""The training-time explanation metrics (interpret.metrics.training) on hand-made maps, no Trainer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from interpret.metrics.training import (
    DEFAULT_TRAINING_METRICS,
    TRAINING_METRICS,
    check_training_metrics,
    DETECTION_METRICS,
    concentration,
    detection_training_scores,
    drift,
    location_agreement,
    shortcut_evidence,
    training_scores,
    truth_maps,
)


def _blob(h: int, w: int, cy: int, cx: int, sigma: float = 2.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def test_drift_is_zero_for_the_same_ranking_one_for_unrelated_two_for_reversed() -> None:
    torch.manual_seed(0)
    maps = torch.rand(4, 8, 8)
    assert drift(maps, maps * 3 + 1) == pytest.approx(0.0, abs=1e-9)  # monotone: same ranks
    assert drift(maps, -maps) == pytest.approx(2.0, abs=1e-9)
    assert drift(maps, torch.rand(4, 8, 8)) == pytest.approx(1.0, abs=0.15)
    with pytest.raises(ValueError, match="same images"):
        drift(maps, maps[:2])


def test_concentration_zero_for_a_flat_map_one_for_a_single_pixel() -> None:
    flat = torch.ones(2, 16, 16)
    spike = torch.zeros(2, 16, 16)
    spike[:, 3, 5] = 1.0
    assert concentration(flat) == pytest.approx(0.0, abs=1e-9)
    assert concentration(spike) == pytest.approx(1.0, abs=1e-9)
    assert concentration(torch.zeros(2, 16, 16)) == 0.0  # no mass: counted as spread
    blob = _blob(16, 16, 8, 8)[None]
    assert 0.0 < concentration(blob) < 1.0
    assert concentration(_blob(16, 16, 8, 8, sigma=1.0)[None]) > concentration(blob)  # tighter, higher


def test_location_agreement_high_for_one_spot_low_for_spots_that_follow_the_objects() -> None:
    same_spot = torch.stack([_blob(32, 32, 3, 3) + 0.05 * torch.rand(32, 32) for _ in range(6)])
    spots = [(4, 4), (4, 27), (27, 4), (27, 27), (16, 10), (10, 20)]
    own_spots = torch.stack([_blob(32, 32, y, x) for y, x in spots])
    assert location_agreement(same_spot) > 0.9
    assert abs(location_agreement(own_spots)) < 0.1
    assert location_agreement(torch.ones(3, 8, 8)) == 0.0  # constant maps: no correlation
    assert math.isnan(location_agreement(own_spots[:1]))


class _ReadsTopLeft(nn.Module):
    """Class 0 logit = mean of the top-left 8x8 block: only those pixels matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :, :8, :8].mean(dim=(1, 2, 3))
        return torch.stack([4 * v, torch.zeros_like(v)], dim=1)


def test_training_scores_curves_masks_and_which_metrics_apply() -> None:
    images = torch.zeros(2, 3, 16, 16)
    images[:, :, :8, :8] = 2.0  # what the model reads; insertion starts from its blur
    right = torch.zeros(2, 16, 16)
    right[:, :8, :8] = 1.0
    wrong = torch.zeros(2, 16, 16)
    wrong[:, 8:, 8:] = 1.0
    masks = right.bool()
    model = _ReadsTopLeft()
    good = training_scores(model, images, right, torch.zeros(2, dtype=torch.long), masks, previous=wrong)
    bad = training_scores(model, images, wrong, torch.zeros(2, dtype=torch.long), masks)
    assert list(good) == list(TRAINING_METRICS)  # every one, in the logged order
    assert good["deletion_auc"] < bad["deletion_auc"]  # deleting the read pixels first: the faithful map
    assert good["insertion_auc"] > bad["insertion_auc"]
    assert good["energy_in_mask"] == pytest.approx(1.0) and bad["energy_in_mask"] == pytest.approx(0.0)
    assert good["pointing_game"] == 1.0
    assert "drift" not in bad  # no previous maps
    # no masks: the mask metrics are left out; masks at another size: the maps are resized to them
    assert "energy_in_mask" not in training_scores(None, None, right, metrics=["energy_in_mask", "concentration"])
    small = training_scores(None, None, right, masks=masks[:, ::2, ::2], metrics=["energy_in_mask"])
    assert small["energy_in_mask"] > 0.9
    with pytest.raises(ValueError, match="need the model"):
        training_scores(None, None, right, metrics=["deletion_auc"])


def test_metric_names_are_checked_in_one_line_naming_the_key() -> None:
    assert check_training_metrics([]) == ()
    assert check_training_metrics(["drift", "drift"]) == ("drift",)
    assert set(DEFAULT_TRAINING_METRICS) <= set(TRAINING_METRICS)
    with pytest.raises(ValueError, match=r"`metrics` can be deletion_auc, .*location_agreement.*got 'foo'"):
        check_training_metrics(["drift", "foo"])
    with pytest.raises(ValueError, match="`metrics` must be a list"):
        check_training_metrics("drift")


def test_shortcut_evidence_needs_learned_accuracy_and_low_energy_or_high_agreement() -> None:
    kw = {"energy_threshold": 0.3, "agreement_threshold": 0.5, "min_accuracy": 0.8}
    first = {"energy_in_mask": 0.1, "location_agreement": 0.1, "accuracy": 0.4}
    low_energy = {"energy_in_mask": 0.2, "location_agreement": 0.1, "accuracy": 0.85}
    agreeing = {"energy_in_mask": 0.5, "location_agreement": 0.7, "accuracy": 0.85}
    assert shortcut_evidence([], **kw) is None
    assert shortcut_evidence([first], **kw) is None  # low energy before the model learned: no evidence
    assert "energy_in_mask 0.200 < 0.3" in shortcut_evidence([first, low_energy], **kw)
    assert "location_agreement 0.700 > 0.5" in shortcut_evidence([first, agreeing], **kw)
    assert "accuracy is 0.850 (>= 0.8; 0.400 at the first scoring)" in shortcut_evidence([first, agreeing], **kw)
    assert shortcut_evidence([first, {**low_energy, "accuracy": 0.79}], **kw) is None  # not learned yet
    assert shortcut_evidence([first, {**low_energy, "energy_in_mask": 0.6}], **kw) is None  # on the objects
    assert shortcut_evidence([first, {"energy_in_mask": 0.1}], **kw) is None  # no accuracy now


def _detections(boxes: list[list[float]], maps: list[torch.Tensor]) -> SimpleNamespace:
    """What ``interpret.explain_detection`` returns, as far as the scores read it: boxes and one map per box."""
    stacked = torch.stack(maps) if maps else torch.zeros(0, 32, 32)
    return SimpleNamespace(boxes=torch.tensor(boxes).reshape(-1, 4), maps=stacked)


def _box_map(x1: int, y1: int, x2: int, y2: int, size: int = 32) -> torch.Tensor:
    heat = torch.zeros(size, size)
    heat[y1:y2, x1:x2] = 1.0
    return heat


def test_detection_scores_each_map_against_the_truth_box_it_matches() -> None:
    truth = [torch.tensor([[2.0, 2.0, 12.0, 12.0], [18.0, 18.0, 30.0, 30.0]]), torch.tensor([[4.0, 16.0, 14.0, 28.0]])]
    on_box = _detections([[2, 2, 12, 12], [18, 18, 30, 30]], [_box_map(2, 2, 12, 12), _box_map(18, 18, 30, 30)])
    # image 1: the box is right, its map half on the box (columns 9-13 of 4-13) and half right of it
    half = _box_map(9, 16, 19, 28)
    beside = _detections([[4, 16, 14, 28], [0, 0, 3, 3]], [half, _box_map(0, 0, 3, 3)])  # the 2nd matches nothing
    scores = detection_training_scores([on_box, beside], truth)
    assert set(scores) == {"energy_in_mask", "pointing_game", "concentration", "location_agreement"}
    assert scores["energy_in_mask"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)  # the unmatched detection left out
    assert scores["pointing_game"] == pytest.approx(1.0)  # the half map's maximum (first pixel) is in its box
    off = _detections([[4, 16, 14, 28]], [_box_map(20, 0, 30, 8)])  # matched box, map elsewhere: a miss, no energy
    scores = detection_training_scores([on_box, off], truth, metrics=["energy_in_mask", "pointing_game"])
    assert scores == {"energy_in_mask": pytest.approx(2 / 3), "pointing_game": pytest.approx(2 / 3)}
    # without ground truth, or with no detection matching it: only the metrics that need none
    assert set(detection_training_scores([on_box, off], None)) == {"concentration", "location_agreement"}
    far = _detections([[0, 0, 3, 3]], [_box_map(0, 0, 3, 3)])
    assert "energy_in_mask" not in detection_training_scores([far, far], truth)
    assert detection_training_scores([_detections([], []), _detections([], [])], truth) == {}


def test_detection_location_agreement_pairs_only_detections_of_different_images() -> None:
    same_spot = [_box_map(0, 0, 6, 6), _box_map(0, 0, 6, 6)]
    # two images, each with one detection, the same spot lit on both: a shortcut-like agreement of 1
    one_each = [_detections([[0, 0, 6, 6]], same_spot[:1]), _detections([[0, 0, 6, 6]], same_spot[1:])]
    agreement = detection_training_scores(one_each, metrics=["location_agreement"])["location_agreement"]
    assert agreement == pytest.approx(1.0)
    # one image with both: no pair of different images
    both = [_detections([[0, 0, 6, 6], [0, 0, 6, 6]], same_spot)]
    assert detection_training_scores(both, metrics=["location_agreement"]) == {}
    maps = torch.stack([_box_map(0, 0, 6, 6), _box_map(0, 0, 6, 6), _box_map(20, 20, 30, 30)])
    assert location_agreement(maps, groups=torch.tensor([0, 0, 1])) < 0  # the two same-image maps not counted
    with pytest.raises(ValueError, match="groups"):
        location_agreement(maps, groups=torch.tensor([0, 1]))


def test_detection_drift_follows_each_truth_box_across_scorings() -> None:
    truth = [torch.tensor([[2.0, 2.0, 12.0, 12.0], [18.0, 18.0, 30.0, 30.0]])]
    torch.manual_seed(0)
    first, second = torch.rand(32, 32), torch.rand(32, 32)
    before = [_detections([[2, 2, 12, 12]], [first])]  # the second box found by no detection yet
    previous = truth_maps(before, truth, (32, 32))
    assert previous.shape == (2, 32, 32) and not previous[0].isnan().any() and previous[1].isnan().all()
    # now both are found (in another order): the first box's map is the same, so drift 0 on the one box seen twice
    now = [_detections([[18, 18, 30, 30], [2, 2, 12, 12]], [second, first * 2])]
    assert detection_training_scores(now, truth, metrics=["drift"], previous=previous) == {"drift": pytest.approx(0.0)}
    reversed_map = [_detections([[2, 2, 12, 12]], [-first])]
    scores = detection_training_scores(reversed_map, truth, metrics=["drift"], previous=previous)
    assert scores["drift"] == pytest.approx(2.0)
    # the highest-scoring (first) of two detections matched to one box is the one kept
    twice = truth_maps([_detections([[2, 2, 12, 12], [2, 2, 12, 11]], [first, second])], truth, (32, 32))
    assert torch.equal(twice[0], first)
    assert detection_training_scores(now, truth, metrics=["drift"], previous=previous[:1]) == {}  # other images
    assert detection_training_scores(now, truth, metrics=["drift"]) == {}  # nothing before
    assert "deletion_auc" not in DETECTION_METRICS
    with pytest.raises(ValueError, match="the boxes of 1 images for the detections of 2"):
        detection_training_scores(now + now, truth)
    with pytest.raises(ValueError, match="boxes .* and maps .*, one map per box"):
        detection_training_scores([SimpleNamespace(boxes=torch.zeros(2, 4), maps=torch.zeros(1, 32, 32))])
