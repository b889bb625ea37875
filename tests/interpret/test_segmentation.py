"""explain_segmentation on a small segmentation head trained on the shapes masks."""

from __future__ import annotations

import pytest
import torch
from tests.support.tiny_models import tiny_cnn
from torch import nn

from interpret import IntegratedGradients
from interpret.metrics import energy_in_mask, pointing_game
from interpret.tasks.segmentation import SegmentationScore, explain_segmentation, pixel_entropy
from runner.data import ShapesDataModule


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout), nn.ReLU())


@pytest.fixture(scope="module")
def segmenter() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Background (0) vs object (1) per pixel; a few seconds of training on 32 px shapes."""
    torch.manual_seed(0)
    data = ShapesDataModule(num_train=400, num_val=16, num_test=1, image_size=32, seed=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    data.setup("fit")
    x = data.train_set.tensors[0]
    _, train_masks = data._make(400, 0)  # the training images' masks (same seed as train_set)
    model = nn.Sequential(_block(3, 16), _block(16, 16, 2), _block(16, 16, 4), nn.Conv2d(16, 2, 1))
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is several times faster on a busy machine
    try:
        for _ in range(4):
            model.train()
            order = torch.randperm(len(x))
            for start in range(0, len(x), 25):
                index = order[start : start + 25]
                loss = nn.functional.cross_entropy(model(x[index]), train_masks[index].long())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    images, _ = data.sample_images(16)
    return model.eval(), images, data.sample_masks(16)


def test_the_segmenter_learned_the_masks(segmenter) -> None:
    model, images, masks = segmenter
    with torch.no_grad():
        predicted = model(images).argmax(1).bool()
    iou = (predicted & masks).sum() / (predicted | masks).sum()
    assert iou > 0.6, f"object IoU {iou:.2f}"


def test_gradcam_of_the_object_segment_lands_on_the_object(segmenter) -> None:
    model, images, masks = segmenter
    result = explain_segmentation(model, images, target_class=1, target_layer="2")
    assert result.heatmap.shape == (16, 32, 32) and result.entropy.shape == (16, 32, 32)
    assert result.region.shape == (16, 32, 32) and result.prediction.shape == (16, 32, 32)
    torch.testing.assert_close(result.region, result.prediction == 1)
    energy = energy_in_mask(None, None, result.heatmap, None, masks).mean
    area = masks.float().mean().item()
    assert energy > 2.5 * area, (energy, area)  # a uniform map would give the area share
    assert pointing_game(None, None, result.heatmap, None, masks).mean >= 0.8
    # one image in, one map out
    single = explain_segmentation(model, images[0], target_class=1, target_layer="2")
    assert single.heatmap.shape == (32, 32) and isinstance(single.score, float)
    torch.testing.assert_close(single.heatmap, result.heatmap[0])


def test_entropy_is_highest_on_object_boundaries(segmenter) -> None:
    model, images, masks = segmenter
    entropy = explain_segmentation(model, images, target_class=1, target_layer="2").entropy
    m = masks.float()[:, None]
    dilated = nn.functional.max_pool2d(m, 3, 1, 1)[:, 0].bool()
    eroded = (-nn.functional.max_pool2d(-m, 3, 1, 1))[:, 0].bool()
    boundary = dilated & ~eroded
    assert entropy[boundary].mean() > 3 * entropy[~boundary].mean()
    assert float(entropy.min()) >= 0 and float(entropy.max()) <= 1
    uniform = pixel_entropy(torch.zeros(1, 5, 2, 2))
    torch.testing.assert_close(uniform, torch.ones(1, 2, 2))


def test_integrated_gradients_explain_the_summed_logits_in_the_mask(segmenter) -> None:
    model, images, masks = segmenter
    image = images[3]
    region = masks[3]
    result = explain_segmentation(model, image, target_class=1, mask=region, method="integrated_gradients", steps=32)
    assert torch.equal(result.region, region) and result.heatmap.shape == (32, 32)
    with torch.no_grad():
        assert result.score == pytest.approx(float(model(image[None])[0, 1][region].sum()), rel=1e-5)
    # completeness: the attributions add up to the change of the summed logits inside the mask
    ig = IntegratedGradients(SegmentationScore(model, region), steps=64)
    attributions, delta = ig.attribute(image, target_class=1, return_convergence_delta=True)
    with torch.no_grad():
        gap = float(model(image[None])[0, 1][region].sum() - model(torch.zeros_like(image[None]))[0, 1][region].sum())
    assert abs(float(delta[0])) < 0.02 * abs(gap)


def test_model_state_and_bad_inputs(segmenter) -> None:
    model, images, masks = segmenter
    model.train()
    flags = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        explain_segmentation(model, images[:2], target_class=0, target_layer="2")
        with pytest.raises(ValueError, match="target_class must be an int from 0 to 1"):
            explain_segmentation(model, images[:2], target_class=2)
        with pytest.raises(ValueError, match=r"mask must be \(H, W\) or \(B, H, W\) with \(H, W\) = \(32, 32\)"):
            explain_segmentation(model, images[:2], target_class=1, mask=masks[0, :16])
        with pytest.raises(ValueError, match="target_layer is only for CAM methods"):
            explain_segmentation(model, images[:2], target_class=1, method="integrated_gradients", target_layer="2")
        with pytest.raises(ValueError, match=r"must return logits of shape \(B, K, H, W\)"):
            explain_segmentation(tiny_cnn(), images[:2], target_class=1)
        with pytest.warns(UserWarning, match="no pixel of class 1"):
            empty = explain_segmentation(model, images[:1], target_class=1, mask=torch.zeros(32, 32, dtype=torch.bool))
        assert float(empty.heatmap.abs().sum()) == 0.0
    finally:
        assert all(m.training == flag for m, flag in flags)
        assert all(p.requires_grad == rg and p.grad is g for p, rg, g in params)
        model.eval()
