"""The pointing game on boxes: a hit, a miss, empty boxes, the random baseline, true positives."""

from __future__ import annotations

import math

import pytest
import torch

from interpret.metrics.boxes import box_masks, box_pointing_game, match_truth, random_box_pointing_game, true_positives


def _peak_map(size: int, y: int, x: int) -> torch.Tensor:
    heat = torch.zeros(1, size, size)
    heat[0, y, x] = 1.0
    return heat


def test_peak_inside_the_box_is_a_hit() -> None:
    result = box_pointing_game(_peak_map(224, 50, 60), torch.tensor([[40.0, 40.0, 80.0, 80.0]]))
    assert result.scores.tolist() == [1.0] and result.excluded == 0


def test_peak_far_from_the_box_is_a_miss_and_tolerance_scales() -> None:
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    assert box_pointing_game(_peak_map(224, 200, 200), boxes).scores.tolist() == [0.0]
    # 10 px right of the box: inside the 15 px tolerance at 224 px, outside with no tolerance
    near = _peak_map(224, 10, 30)
    assert box_pointing_game(near, boxes).scores.tolist() == [1.0]
    assert box_pointing_game(near, boxes, tolerance=0).scores.tolist() == [0.0]


def test_empty_boxes_are_excluded_not_scored() -> None:
    maps = torch.rand(2, 32, 32)
    boxes = torch.tensor([[5.0, 5.0, 5.0, 20.0], [40.0, 40.0, 50.0, 50.0]])  # no area; outside the image
    assert box_masks(boxes, (32, 32)).sum().item() == 0
    result = box_pointing_game(maps, boxes)
    assert all(math.isnan(v) for v in result.scores.tolist()) and result.excluded == 2
    nothing = box_pointing_game(torch.zeros(0, 32, 32), torch.zeros(0, 4))
    assert nothing.scores.numel() == 0 and nothing.excluded == 0


def test_box_pointing_game_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="got 2 maps for 1 boxes"):
        box_pointing_game(torch.rand(2, 8, 8), torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\) xyxy"):
        box_pointing_game(torch.rand(1, 8, 8), torch.zeros(1, 3))


def test_random_baseline_is_near_the_box_share_and_seeded() -> None:
    boxes = torch.tensor([[0.0, 0.0, 112.0, 224.0]]).repeat(400, 1)  # the left half of the image
    first = random_box_pointing_game(boxes, (224, 224), seed=3)
    again = random_box_pointing_game(boxes, (224, 224), seed=3)
    assert torch.equal(first.scores, again.scores)
    share = (112 + 15) / 224  # the box and its tolerance band
    assert abs(float(first.scores.mean()) - share) < 0.1
    state = torch.get_rng_state()
    random_box_pointing_game(boxes[:1], (224, 224), seed=0)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG untouched


def test_true_positives_need_the_same_class_and_overlap() -> None:
    class Detections:  # what a DetectionExplanation offers: boxes, labels, len
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
        labels = torch.tensor([1, 2, 1])

        def __len__(self) -> int:
            return 3

    truth = {"boxes": torch.tensor([[1.0, 1.0, 10.0, 10.0]]), "labels": torch.tensor([1])}
    assert true_positives(Detections(), truth).tolist() == [True, False, False]
    assert true_positives(Detections(), None).tolist() == [False, False, False]


def test_match_truth_takes_the_most_overlapping_box_at_iou_half_whatever_the_class() -> None:
    truth = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    boxes = torch.tensor([
        [21.0, 21.0, 40.0, 40.0],  # IoU 0.90 with truth 1
        [0.0, 0.0, 10.0, 9.0],  # IoU 0.90 with truth 0
        [0.0, 0.0, 10.0, 4.0],  # IoU 0.40 with truth 0: too little
        [50.0, 50.0, 60.0, 60.0],  # overlaps nothing
    ])
    assert match_truth(boxes, truth).tolist() == [1, 0, -1, -1]
    assert match_truth(boxes, truth, iou=0.3).tolist() == [1, 0, 0, -1]
    assert match_truth(torch.zeros(0, 4), truth).tolist() == []
    assert match_truth(boxes, torch.zeros(0, 4)).tolist() == [-1, -1, -1, -1]
