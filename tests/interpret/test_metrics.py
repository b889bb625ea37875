"""interpret.metrics with known answers: deletion/insertion, sensitivity, localisation, randomisation."""

from __future__ import annotations

import copy

import pytest
import torch
from tests.support.tiny_models import randomize_batchnorm, tiny_cnn
from torch import nn

from interpret import Explainer, GradCAM, Saliency
from interpret.metrics import (
    CentreGaussianMap,
    RandomMap,
    bootstrap_interval,
    deletion,
    deletion_insertion,
    energy_in_mask,
    evaluate_methods,
    insertion,
    localisation,
    mask_iou,
    max_sensitivity,
    model_randomisation,
    pixel_counts,
    pointing_game,
    spearman,
    trapezoid_auc,
)


class KnownPixels(nn.Module):
    """Two classes; the logit of class 1 grows with the mean value of a known set of pixels."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.scale = nn.Parameter(torch.tensor(8.0))
        self.forward_calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_calls.append(x.shape[0])
        s = (x * self.mask).sum(dim=(1, 2, 3)) / (self.mask.sum() * x.shape[1])
        return torch.stack([torch.zeros_like(s), self.scale * s - 4.0], dim=1)


def _known_setup(size: int = 16, batch: int = 4):
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[3:7, 9:14] = True  # an off-centre block of 20 pixels
    mask[12, 2] = True
    images = torch.randn(batch, 3, size, size, generator=generator)
    images[:, :, mask] = 1.0
    return KnownPixels(mask), images, mask


# ---------------------------------------------------------------------------- deletion / insertion
def test_auc_of_a_piecewise_curve_equals_its_hand_value() -> None:
    # (1 + 1)/2 + (1 + 0)/2 + (0 + 0)/2 + (0 + 0.5)/2 over 4 equal intervals of 1/4
    curve = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.5]])
    assert trapezoid_auc(curve).item() == pytest.approx(1.75 / 4)
    assert trapezoid_auc(curve, torch.linspace(0, 1, 5)).item() == pytest.approx(1.75 / 4)
    # uneven x: a triangle 0 -> 1 at x=0.25 -> 0 at x=1 has area 0.5
    assert trapezoid_auc(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.25, 1.0])).item() == pytest.approx(0.5)


def test_rise_default_is_224_pixels_per_step_at_224_px() -> None:
    counts = pixel_counts(224 * 224, 224)
    assert counts[0] == 0 and counts[-1] == 224 * 224
    assert set((counts[1:] - counts[:-1]).tolist()) == {224}


def test_oracle_map_has_the_lowest_deletion_and_highest_insertion_auc() -> None:
    model, images, mask = _known_setup()
    b, size = images.shape[0], images.shape[-1]
    generator = torch.Generator().manual_seed(1)
    oracle = mask.float().expand(b, size, size)
    half = mask.clone()
    half[3:7, 9:11] = False  # only part of the known pixels ranked first
    others = {
        "random": torch.rand(b, size, size, generator=generator),
        "centre": CentreGaussianMap(model).explain(images),
        "inverted": 1.0 - oracle,
        "constant": torch.ones(b, size, size),
        "partial": half.float().expand(b, size, size) + 0.01 * torch.rand(b, size, size, generator=generator),
    }
    targets = torch.ones(b, dtype=torch.long)
    best = deletion_insertion(model, images, oracle, targets, n_steps=64, batch_size=40)
    assert best["deletion"].curves.shape == (b, 65)
    for name, maps in others.items():
        result = deletion_insertion(model, images, maps, targets, n_steps=64, batch_size=40)
        assert (best["deletion"].auc < result["deletion"].auc).all(), name
        assert (best["insertion"].auc > result["insertion"].auc).all(), name
    # the curves start at the clean prediction (deletion) and at the blurred image (insertion)
    clean = torch.softmax(model(images), 1)[:, 1]
    torch.testing.assert_close(best["deletion"].curves[:, 0], clean)
    torch.testing.assert_close(best["insertion"].curves[:, -1], clean)
    # deleting the 21 known pixels (of 256) drops the probability to sigmoid(-4)
    assert best["deletion"].curves[:, 6].max() < 0.02


def test_deletion_insertion_are_batched_and_leave_the_model_alone() -> None:
    model, images, mask = _known_setup(batch=3)
    model.train()
    maps = torch.rand(3, 16, 16)
    model.forward_calls.clear()
    result = deletion(model, images, maps, torch.ones(3, dtype=torch.long), n_steps=32, batch_size=25)
    # 3 images x 33 points = 99 perturbed images in chunks of 25; never one at a time
    assert model.forward_calls == [25, 25, 25, 24]
    assert model.training and model.scale.requires_grad and model.scale.grad is None
    assert result.auc.shape == (3,) and ((result.auc >= 0) & (result.auc <= 1)).all()
    # the same numbers whatever the chunk size, and the predicted class when targets is None
    again = deletion(model, images, maps, None, n_steps=32, batch_size=7)
    torch.testing.assert_close(again.curves, result.curves)
    single = insertion(model, images[:1], maps[:1], None, n_steps=32, batch_size=99)
    model.forward_calls.clear()
    both = deletion_insertion(model, images, maps, None, n_steps=32)
    # the predicted classes, then 3 x (33 + 32) images: the clean image is scored once for both curves
    assert model.forward_calls[0] == 3 and sum(model.forward_calls[1:]) == 3 * 65
    torch.testing.assert_close(single.curves[0], both["insertion"].curves[0])


def test_deletion_substrate_and_bad_arguments() -> None:
    model, images, mask = _known_setup(batch=2)
    oracle = mask.float().expand(2, 16, 16)
    targets = torch.ones(2, dtype=torch.long)
    zeros = deletion(model, images, oracle, targets, n_steps=16)
    # deleting to the known pixels' own value (1.0) changes nothing: a flat curve
    same = deletion(model, images, oracle, targets, n_steps=16, substrate=1.0)
    assert torch.allclose(same.curves, same.curves[:, :1].expand_as(same.curves))
    assert (zeros.auc < same.auc).all()
    with pytest.raises(ValueError, match="substrate can be zeros, blur, mean"):
        deletion(model, images, oracle, targets, substrate="black")
    with pytest.raises(ValueError, match=r"n_steps must be an int from 1 to H\*W = 256"):
        deletion(model, images, oracle, targets, n_steps=1000)
    with pytest.raises(ValueError, match=r"maps must have shape \(B, H, W\) = \(2, 16, 16\)"):
        deletion(model, images, oracle[:, :8], targets)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        deletion(model, images, oracle, targets, batch_size=0)
    with pytest.raises(ValueError, match="out of range"):
        deletion(model, images, oracle, torch.tensor([0, 5]))


# ------------------------------------------------------------------------------------- sensitivity
def test_sensitivity_of_a_constant_map_is_zero() -> None:
    model, images, _ = _known_setup(batch=3)
    constant = lambda x: torch.full((x.shape[0], 16, 16), 0.5)  # noqa: E731
    assert torch.equal(max_sensitivity(model, images, None, None, constant), torch.zeros(3))
    assert torch.equal(max_sensitivity(model, images, None, None, CentreGaussianMap(model)), torch.zeros(3))
    # a random map moves completely
    assert (max_sensitivity(model, images, None, None, RandomMap(model)) > 0.3).all()


def test_sensitivity_radius_is_in_pixel_space() -> None:
    """For the map x -> x[:, 0], the change is the noise of channel 0 divided by std: a known ratio."""
    model, images, _ = _known_setup(batch=2)
    calls: list[int] = []

    def identity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x[:, 0]

    norm = images[:, 0].flatten(1).norm(dim=1)
    unit = max_sensitivity(model, images, None, None, identity, radius=0.02, std=(1.0, 1.0, 1.0), batch_size=8)
    half = max_sensitivity(model, images, None, None, identity, radius=0.02, std=(0.5, 0.5, 0.5), batch_size=8)
    torch.testing.assert_close(half, 2 * unit)
    # uniform noise in [-r, r]: ||d||_F lies below r * sqrt(HW) and near r * sqrt(HW / 3)
    bound = 0.02 * 16 / norm
    assert (unit <= bound).all() and (unit >= 0.5 * bound / 3**0.5).all()
    assert calls == [2, 8, 8, 4] * 2  # per call: clean maps, then 20 noisy copies in chunks of 8
    with pytest.raises(ValueError, match="radius must be a number >= 0"):
        max_sensitivity(model, images, None, None, identity, radius=-1)
    with pytest.raises(ValueError, match="std must hold 3 positive values"):
        max_sensitivity(model, images, None, None, identity, std=(1.0, 1.0))


# ------------------------------------------------------------------------------------ localisation
def test_pointing_game_tolerance_scales_with_size_and_empty_masks_are_excluded() -> None:
    size = 224
    masks = torch.zeros(4, size, size, dtype=torch.bool)
    masks[:, 100:120, 100:120] = True
    masks[3] = False  # nothing to point at
    maps = torch.zeros(4, size, size)
    maps[0, 110, 110] = 1.0  # inside
    maps[1, 110, 134] = 1.0  # 15 px right of the mask's last column 119: a hit at 224 px
    maps[2, 110, 135] = 1.0  # 16 px: a miss
    maps[3, 110, 110] = 1.0
    result = pointing_game(None, None, maps, None, masks)
    assert result.scores[:3].tolist() == [1.0, 1.0, 0.0]
    assert torch.isnan(result.scores[3]) and result.excluded == 1
    assert result.mean == pytest.approx(2 / 3)
    strict = pointing_game(None, None, maps, None, masks, tolerance=0)
    assert strict.scores[:3].tolist() == [1.0, 0.0, 0.0]
    # at 32 px the tolerance is 15 * 32 / 224 = 2.14 px
    small_masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    small_masks[:, 10:14, 10:14] = True
    small = torch.zeros(2, 32, 32)
    small[0, 12, 15] = 1.0  # 2 px from column 13
    small[1, 12, 16] = 1.0  # 3 px
    assert pointing_game(None, None, small, None, small_masks).scores.tolist() == [1.0, 0.0]
    only_empty = pointing_game(None, None, maps[3:], None, masks[3:])
    assert only_empty.excluded == 1 and torch.isnan(torch.tensor(only_empty.mean))


def test_energy_in_mask_and_iou_hand_values() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, :4] = True  # the top half
    maps = torch.zeros(2, 8, 8)
    maps[0, 2:6] = 1.0  # rows 2-5: half its mass inside; IoU = 16 / 48
    maps[1] = 0.0  # an empty map: no energy anywhere, selects nothing
    energy = energy_in_mask(None, None, maps, None, masks)
    iou = mask_iou(None, None, maps, None, masks)
    assert energy.scores.tolist() == pytest.approx([0.5, 0.0])
    assert iou.scores.tolist() == pytest.approx([16 / 48, 0.0])
    both = localisation(None, None, maps, None, masks.numpy())
    assert set(both) == {"pointing_game", "energy_in_mask", "iou"}
    with pytest.raises(ValueError, match=r"masks must have shape \(B, H, W\) = \(2, 8, 8\)"):
        energy_in_mask(None, None, maps, None, masks[:, :4])
    with pytest.raises(ValueError, match="threshold must be a number in"):
        mask_iou(None, None, maps, None, masks, threshold=2)


# ----------------------------------------------------------------------------------- randomisation
def test_spearman_with_ties_and_constants() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 7.0, 7.0], [3.0, 3.0, 3.0, 3.0]])
    assert spearman(a, b).tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert spearman(a[:1], -b[:1]).item() == pytest.approx(-1.0)


def test_randomisation_drops_to_near_zero_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(tiny_cnn()).train()
    before = copy.deepcopy(model.state_dict())
    params = [(p, p.requires_grad) for p in model.parameters()]
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    rng = torch.get_rng_state()
    result = model_randomisation(model, images, None, None, GradCAM(model, "4"), batch_size=4)
    assert result.layers == ("8", "4", "1", "0")
    assert result.similarity.shape == (6, 4) and result.maps.shape == (4, 6, 16, 16)
    assert result.curve[-1].abs() < 0.25, result.curve
    # the caller's model, its flags and the global RNG are untouched
    assert model.training and all(p.requires_grad == flag for p, flag in params)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng)
    # the same seed gives the same curve; a model-independent map never changes (similarity 1)
    again = model_randomisation(model, images, None, None, "gradcam", explainer_kwargs={"target_layer": "4"})
    torch.testing.assert_close(again.similarity, result.similarity)
    centre = model_randomisation(model, images, None, None, CentreGaussianMap(model), layers=["8", "4"])
    assert torch.allclose(centre.similarity, torch.ones(6, 2))


def test_randomisation_keeps_batchnorm_statistics_and_checks_layers() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(tiny_cnn()).eval()
    images = torch.randn(2, 3, 16, 16)
    result = model_randomisation(model, images, None, None, Saliency(model), layers=["8", "1", "4", "0"])
    assert torch.isfinite(result.similarity).all() and torch.isfinite(result.maps).all()
    with pytest.raises(ValueError, match="layers: '88' is not a module of Sequential. Closest names: '8'"):
        model_randomisation(model, images, None, None, Saliency(model), layers=["88"])
    other = tiny_cnn()
    with pytest.raises(ValueError, match="explainer must explain the model given"):
        model_randomisation(model, images, None, None, Saliency(other))


# ------------------------------------------------------------------------------------ the table
def test_bootstrap_interval_contains_the_mean_and_excludes_nan() -> None:
    values = torch.tensor([0.0, 1.0, 0.0, 1.0, float("nan")])
    summary = bootstrap_interval(values, n_bootstrap=500)
    assert summary.mean == pytest.approx(0.5) and summary.n == 4 and summary.excluded == 1
    assert 0.0 <= summary.low <= 0.5 <= summary.high <= 1.0 and summary.low < summary.high


def test_evaluate_methods_table_with_baselines_and_recommendations(tmp_path) -> None:
    model, images, mask = _known_setup(batch=6)
    masks = mask.expand(6, 16, 16).clone()
    masks[5] = False

    class Oracle(Explainer):
        method_name = "oracle"

        def _attribute(self, x, targets):
            return self.model.mask.expand(x.shape[0], 16, 16).clone(), targets

    table = evaluate_methods(
        model, images, torch.ones(6, dtype=torch.long), [Oracle(model), "saliency"], masks=masks,
        n_steps=32, n_samples=3, n_bootstrap=200,
    )
    assert table.methods == ["oracle", "saliency", "random", "centre_gaussian"]
    assert table.metrics == ["deletion", "insertion", "max_sensitivity", "pointing_game", "energy_in_mask", "iou"]
    for cell in table.summaries.values():
        assert cell.low <= cell.mean <= cell.high
    assert table.summaries[("oracle", "pointing_game")].excluded == 1
    assert table.summaries[("oracle", "pointing_game")].mean == 1.0
    text = str(table)
    assert "deletion ↓" in text and "insertion ↑" in text and "pointing_game ↑" in text
    assert table.recommendations["deletion"].startswith("deletion ↓: oracle is best")
    assert "clearly better than the random map" in table.recommendations["insertion"]
    table.to_csv(tmp_path / "metrics.csv")
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("method,metric,direction,mean,ci_low,ci_high") and len(lines) == 1 + 4 * 6
    with pytest.raises(ValueError, match="metrics can be deletion, insertion"):
        evaluate_methods(model, images, None, ["saliency"], metrics=["faithfulness"])
    with pytest.raises(ValueError, match="needs masks"):
        evaluate_methods(model, images, None, ["saliency"], metrics=["iou"])
    with pytest.raises(ValueError, match="unknown method 'gradcan'"):
        evaluate_methods(model, images, None, ["gradcan"])


def test_evaluate_methods_randomisation_column() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(tiny_cnn()).eval()
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    table = evaluate_methods(
        model, images, None, ["gradcam"], metrics=["randomisation"], method_kwargs={"gradcam": {"target_layer": "4"}},
        n_bootstrap=100,
    )
    assert table.curves[("gradcam", "randomisation")].shape == (4, 4)  # 4 parametrised layers of tiny_cnn
    # the centred Gaussian ignores the model: it keeps a similarity of 1 after full randomisation
    assert table.summaries[("centre_gaussian", "randomisation")].mean == pytest.approx(1.0)
    assert table.summaries[("gradcam", "randomisation")].mean < 0.5
    assert table.recommendations["randomisation"].startswith("randomisation ↓: gradcam is best")
