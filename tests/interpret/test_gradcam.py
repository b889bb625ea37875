"""GradCAM and GradCAM++ against pytorch-grad-cam, target layers, ViT token grids."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from torch import nn
from tests.support.tiny_models import Wrapper, randomize_batchnorm, tiny_cnn
from pytorch_grad_cam import GradCAM as OracleGradCAM
from pytorch_grad_cam import GradCAMPlusPlus as OracleGradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from interpret import GradCAM, GradCAMPlusPlus
from interpret.layers import default_target_layer


def _minmax(maps: np.ndarray) -> np.ndarray:
    low = maps.reshape(len(maps), -1).min(1)[:, None, None]
    high = maps.reshape(len(maps), -1).max(1)[:, None, None]
    span = np.where(high - low > 0, high - low, 1.0)
    return np.where(high - low > 0, (maps - low) / span, 0.0)


def _oracle(cls, model, layer, x, targets, reshape_transform=None) -> np.ndarray:
    cam = cls(model=model, target_layers=[layer], reshape_transform=reshape_transform)
    try:
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    # pytorch-grad-cam normalises, then resizes; re-normalising gives normalise(resize(cam)).
    return _minmax(out.astype(np.float64))


@pytest.mark.parametrize(("ours", "oracle"), [(GradCAM, OracleGradCAM), (GradCAMPlusPlus, OracleGradCAMPlusPlus)])
def test_matches_pytorch_grad_cam_on_resnet(resnet, ours, oracle) -> None:
    # pytorch-grad-cam adds eps=1e-6 to GradCAM++'s denominator (we add none): large logits make
    # the gradients large enough for that epsilon not to matter.
    resnet = copy.deepcopy(resnet)
    with torch.no_grad():
        resnet.fc.weight.mul_(1e3)
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 64)
    targets = [0, 3, 4]
    explainer = ours(resnet, "layer3")
    got = explainer.explain(x, target_class=targets).numpy()
    expected = _oracle(oracle, resnet, resnet.layer3, x, targets)
    assert got.shape == (3, 64, 64)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_gradcam_matches_oracle_on_tiny_cnn_predicted_class(cnn) -> None:
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    predicted = cnn(x).argmax(1).tolist()
    got = GradCAM(cnn, "4").explain(x).numpy()
    expected = _oracle(OracleGradCAM, cnn, cnn[4], x, predicted)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_gradcam_on_vit_matches_oracle_with_reshape(vit) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[:, 1:, :].reshape(tensor.shape[0], 4, 4, tensor.shape[2]).permute(0, 3, 1, 2)

    explainer = GradCAM(vit)
    assert explainer.target_layer_name == "blocks.2.norm1"
    got = explainer.explain(x, target_class=[1, 2]).numpy()
    expected = _oracle(OracleGradCAM, vit, vit.blocks[-1].norm1, x, [1, 2], reshape_transform=reshape)
    assert got.max() == pytest.approx(1.0)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_vit_with_register_tokens_and_other_input_size(vit_registers) -> None:
    x = torch.randn(2, 3, 48, 40)
    maps = GradCAM(vit_registers).explain(x)
    assert maps.shape == (2, 48, 40)
    assert maps.max() == pytest.approx(1.0)  # not the all-zero map of a wrong token layout


def test_class_token_vit_last_block_output_warns_zero_map(vit) -> None:
    with pytest.warns(UserWarning, match="zero on every patch token"):
        maps = GradCAM(vit, "blocks.2").explain(torch.randn(1, 3, 32, 32))
    assert torch.count_nonzero(maps) == 0


def test_gradcampp_closed_form_by_hand() -> None:
    acts = torch.rand(1, 2, 3, 3)
    grads = torch.randn(1, 2, 3, 3)
    weights = GradCAMPlusPlus.channel_weights(acts, grads)
    for k in range(2):
        total = float(acts[0, k].sum())
        expected = 0.0
        for g in grads[0, k].flatten().tolist():
            if g > 0:
                expected += g**2 / (2 * g**2 + total * g**3) * g
        assert float(weights[0, k]) == pytest.approx(expected, rel=1e-5)


def test_default_target_layers() -> None:
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert default_target_layer(resnet)[0] == "layer4"
    assert default_target_layer(Wrapper(resnet))[0] == "backbone.layer4"
    convnext = timm.create_model("convnext_atto", pretrained=False, num_classes=3)
    assert default_target_layer(Wrapper(convnext))[0] == "backbone.stages.3"
    # the automatic layer skips stages whose map is smaller than 4x4 at the input size
    assert default_target_layer(Wrapper(resnet), input_size=32)[0] == "backbone.layer2"  # 4x4, layer4 is 1x1
    assert default_target_layer(Wrapper(resnet), input_size=(64, 96))[0] == "backbone.layer3"
    assert default_target_layer(Wrapper(resnet), input_size=224)[0] == "backbone.layer4"
    assert default_target_layer(Wrapper(convnext), input_size=32)[0] == "backbone.stages.1"
    assert default_target_layer(Wrapper(convnext), input_size=8)[0] == "backbone.stages.0"  # nothing is 4x4
    assert GradCAM(Wrapper(resnet), input_size=32).target_layer_name == "backbone.layer2"
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)
    assert default_target_layer(Wrapper(vit))[0] == "backbone.blocks.1.norm1"
    # any other model: probed with one forward; the last stage output after its activation of at
    # least 4x4 (the ReLU after the last conv, not the conv), else the first stage
    assert default_target_layer(tiny_cnn())[0] == "5"
    assert default_target_layer(tiny_cnn(), input_size=4)[0] == "2"  # 4x4, "5" is 2x2
    assert default_target_layer(tiny_cnn(), input_size=2)[0] == "2"  # nothing is 4x4: the first
    tv = torchvision_resnet18()
    assert default_target_layer(tv, input_size=64)[0] == "layer3"  # layer4 is 2x2 at 64 px
    assert default_target_layer(tv, input_size=224)[0] == "layer4"
    # no activation module (F.relu in forward) and a forward that fails: the last Conv2d
    assert default_target_layer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)))[0] == "1"


def torchvision_resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None)


def test_normalization_of_reads_the_data_then_the_model_never_guesses() -> None:
    from interpret.layers import normalization_of

    class Data:
        mean, std = [0.5], [0.25]

    model = tiny_cnn()
    assert normalization_of(Data(), model) == ((0.5,), (0.25,))
    assert normalization_of(None, model) is None  # nothing declared: no ImageNet guess
    model.mean, model.std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    assert normalization_of(object(), model) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert normalization_of(None, Wrapper(resnet)) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # timm's cfg


def test_wrapper_and_bare_model_give_the_same_map() -> None:
    torch.manual_seed(0)
    bare = randomize_batchnorm(timm.create_model("resnet18", pretrained=False, num_classes=3)).eval()
    x = torch.randn(2, 3, 32, 32)
    a = GradCAM(bare).explain(x, target_class=1)
    b = GradCAM(Wrapper(bare)).explain(x, target_class=1)
    torch.testing.assert_close(a, b)


def test_unknown_layer_suggests_close_names(resnet) -> None:
    with pytest.raises(ValueError, match=r"'layer5'.*Closest names: 'layer4'"):
        GradCAM(resnet, "layer5")
    with pytest.raises(ValueError, match="backbone.layer4"):
        GradCAM(Wrapper(resnet), "layer4x")


def test_module_target_layer_and_foreign_module(resnet) -> None:
    assert GradCAM(resnet, resnet.layer2).target_layer_name == "layer2"
    with pytest.raises(ValueError, match="not part of the model"):
        GradCAM(resnet, torch.nn.Conv2d(3, 3, 1))


def test_non_spatial_layer_is_rejected(resnet) -> None:
    with pytest.raises(ValueError, match="spatial feature map"):
        GradCAM(resnet, "fc").explain(torch.randn(1, 3, 32, 32))


def test_constant_map_is_zeros_not_nan() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(1.0)
    maps = GradCAM(model).explain(torch.randn(2, 3, 8, 8))
    assert not torch.isnan(maps).any()
    assert torch.count_nonzero(maps) == 0


def test_output_in_unit_range_and_input_resolution(resnet) -> None:
    maps = GradCAMPlusPlus(resnet).explain(torch.randn(2, 3, 40, 56))
    assert maps.shape == (2, 40, 56)
    assert maps.dtype == torch.float32
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


@pytest.mark.slow
def test_project_image_classifier_wrapper() -> None:
    """The project's LightningModule: automatic layer under ``backbone``, mean/std from its data config."""
    from interpret import IntegratedGradients
    from runner.models.classifier import ImageClassifier

    model = ImageClassifier(backbone="resnet18", num_classes=3).eval()
    explainer = GradCAM(model)
    assert explainer.target_layer_name == "backbone.layer4"
    with torch.inference_mode():
        assert explainer.explain(torch.randn(2, 3, 32, 32)).shape == (2, 32, 32)
    baseline = IntegratedGradients(model).make_baseline(torch.zeros(1, 3, 2, 2))
    torch.testing.assert_close(baseline[0, 0, 0, 0], torch.tensor(-0.485 / 0.229))
    # trained at 32 px (its image_size hyper-parameter): the automatic layer is the last 4x4 stage
    small = ImageClassifier(backbone="resnet18", num_classes=3, image_size=32).eval()
    assert GradCAM(small).target_layer_name == "backbone.layer2"
    assert GradCAM(small).input_size == (32, 32)


def test_gradcampp_differs_from_pytorch_grad_cam_only_by_its_eps(resnet) -> None:
    """Issue 7 item 5: on a random-init resnet18 (small gradients) the two differ by ~0.01-0.05;
    the whole difference is pytorch-grad-cam's eps=1e-6 in the denominator of alpha."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 96, 96)
    targets = [1, 2]
    expected = _oracle(OracleGradCAMPlusPlus, resnet, resnet.layer4, x, targets)
    paper = GradCAMPlusPlus(resnet, "layer4").explain(x, target_class=targets).numpy()
    with_eps = GradCAMPlusPlus(resnet, "layer4", eps=1e-6).explain(x, target_class=targets).numpy()
    assert np.abs(paper - expected).max() > 5e-3  # the documented, deliberate difference
    np.testing.assert_allclose(with_eps, expected, atol=2e-5)
    with pytest.raises(ValueError, match="eps must be a number >= 0"):
        GradCAMPlusPlus(resnet, eps=-1.0)


def _gradcam_by_hand(model, layer, x, target: int, channels_last: bool) -> torch.Tensor:
    """GradCAM in plain PyTorch with the layout stated by the test, not inferred."""
    captured = []
    handle = layer.register_forward_hook(lambda m, a, o: captured.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[:, target].sum(), captured[0])
    acts = captured[0].detach()
    if channels_last:
        acts, grad = acts.permute(0, 3, 1, 2), grad.permute(0, 3, 1, 2)
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return torch.from_numpy(_minmax(cam.double().numpy())).float()


@pytest.mark.parametrize(
    ("name", "kwargs", "layer", "channels_last"),
    [
        ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 4, "depths": (1, 1, 1, 1)}, "patch_embed.proj", False),
        ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 4, "depths": (1, 1, 1, 1)}, "layers.2", True),
        ("convnext_nano", {"conv_mlp": False}, "stages.2", False),
        ("convnext_nano", {"conv_mlp": False}, "stages.2.blocks.0.norm", True),
        ("convnext_nano", {"conv_mlp": False}, "stages.2.blocks.0.mlp", True),
    ],
)
def test_layout_is_decided_per_layer_on_nhwc_models(name, kwargs, layer, channels_last) -> None:
    """Issue 7 item 4: NCHW convolutions inside NHWC models are not permuted, NHWC layers are."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=3, **kwargs).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = GradCAM(model, layer)
    got = cam.explain(x, target_class=1)
    module = dict(model.named_modules())[layer]
    with torch.enable_grad():
        expected = _gradcam_by_hand(model, module, x, 1, channels_last)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
