"""GradCAM (Selvaraju et al. 2017) and GradCAM++ (Chattopadhyay et al. 2018).

Both need the activations ``A`` of one layer and the gradient of the class score ``S`` w.r.t.
them. The gradient is taken with ``torch.autograd.grad`` w.r.t. the captured activation while
the parameters are frozen and the input does not require grad: no graph is built below the layer
and no weight gradient is computed, so one explanation costs about one forward pass plus the
backward pass from the logits down to the layer (the least these methods can cost).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from interpret.checks import non_negative_number
from interpret.methods.base import Explainer, resize_maps
from interpret.hooks import ActivationCapture, HookManager
from interpret.layers import (
    default_target_layer,
    find_timm_model,
    find_vision_transformer,
    layer_channels,
    resolve_layer,
    tokens_to_grid,
)

__all__ = ["GradCAM", "GradCAMPlusPlus"]


def _inside(prefix: str, name: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


class GradCAM(Explainer):
    """GradCAM: ``ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``dS/dA_k``.

    The map is bilinearly upsampled to the input size and min-max normalised per image (a constant
    map becomes zeros).

    For a timm Vision Transformer layer that outputs tokens ``(B, N, C)``, the patch tokens (after
    the model's prefix tokens) are laid out on the model's own patch grid for the input's size.
    The automatic layer of a ViT is ``blocks[-1].norm1`` (see
    :func:`interpret.layers.default_target_layer`).

    A 4-D layer output is laid out per layer, from the output itself: channels-first
    ``(B, C, h, w)`` when its dim 1 equals the layer's channel count
    (:func:`interpret.layers.layer_channels`), channels-last ``(B, h, w, C)`` (Swin stages, the
    norm/MLP inside ConvNeXt blocks) when its last dim does. Only when both or neither match, the
    timm model's ``output_fmt`` decides. So ``patch_embed.proj`` (a Conv2d) of a Swin is read
    NCHW and ``layers.3`` NHWC.

    Args:
        model: any ``nn.Module`` returning logits ``(B, num_classes)``.
        target_layer: a ``named_modules()`` name such as ``"backbone.layer4"``, the module itself,
            or None for the automatic choice (the last spatial stage of a timm CNN whose map is at
            least 4x4 at ``input_size``, last block of a ViT, else the last ``nn.Conv2d``).
        mean: see :class:`~interpret.base.Explainer`.
        std: see :class:`~interpret.base.Explainer`.
        input_size: see :class:`~interpret.base.Explainer`; also the size the automatic layer is
            chosen for.

    Raises:
        ValueError: an unknown layer name (with the closest names) or a module not in ``model``.
    """

    method_name = "gradcam"

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(model, mean=mean, std=std, input_size=input_size)
        if target_layer is None:
            name, module = default_target_layer(model, self.input_size)
        else:
            name, module = resolve_layer(model, target_layer)
        self.target_layer_name: str = name
        self.target_layer: nn.Module = module
        vit = find_vision_transformer(model)
        self._vit = vit[1] if vit is not None and _inside(vit[0], name) else None
        timm_model = find_timm_model(model)
        self._model_nhwc = bool(
            timm_model is not None
            and _inside(timm_model[0], name)
            and getattr(timm_model[1], "output_fmt", None) in ("NHWC", "NLC")
        )
        self.layer_channels: int | None = layer_channels(model, name, module)

    def channels_last(self, output: torch.Tensor) -> bool:
        """Whether a 4-D output of the target layer is ``(B, h, w, C)`` (decided from its shape)."""
        channels = self.layer_channels
        first, last = int(output.shape[1]), int(output.shape[-1])
        if channels is not None and (first == channels) != (last == channels):
            return last == channels
        return self._model_nhwc

    # -------------------------------------------------------------------------- maths
    @staticmethod
    def channel_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """GradCAM weights ``(B, K)``: the spatial mean of the gradients ``(B, K, h, w)``."""
        return gradients.mean(dim=(2, 3))

    @staticmethod
    def weighted_maps(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        """``ReLU(sum_k w_k A_k)`` ``(B, h, w)`` from channel weights ``(B, K)`` (GradCAM's or GradCAM++'s)."""
        return F.relu(torch.einsum("bk,bkhw->bhw", weights, activations))

    @classmethod
    def cam(cls, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps ``(B, h, w)``: ``ReLU(sum_k w_k A_k)``."""
        return cls.weighted_maps(cls.channel_weights(activations, gradients), activations)

    # -------------------------------------------------------------------- internals
    def _spatial(self, tensor: torch.Tensor, image_size: tuple[int, int], nhwc: bool) -> torch.Tensor:
        if tensor.ndim == 4:
            return tensor.permute(0, 3, 1, 2) if nhwc else tensor
        if tensor.ndim == 3 and self._vit is not None:
            return tokens_to_grid(tensor, self._vit, image_size)
        raise ValueError(
            f"target_layer {self.target_layer_name!r} outputs shape {tuple(tensor.shape)}; GradCAM needs a "
            "spatial feature map (B, C, h, w) or ViT tokens (B, N, C); choose a convolutional stage or a "
            "transformer block"
        )

    def activations_and_gradients(
        self, x: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass and a backward pass down to the target layer.

        Must be called inside the explainer's protected context (frozen parameters, grad enabled).

        Returns:
            ``(activations, gradients, targets)``, the first two as ``(B, K, h, w)``.
        """
        capture = ActivationCapture()
        with HookManager() as hooks:
            hooks.register_forward_hook(self.target_layer, capture)
            logits = self.model(x)
        if capture.activation is None:
            raise RuntimeError(
                f"target_layer {self.target_layer_name!r} was not called during the forward pass of "
                f"{type(self.model).__name__}"
            )
        targets = self._resolve_targets(logits, targets)
        score = logits.gather(1, targets[:, None]).sum()
        if not score.requires_grad:
            raise RuntimeError(
                f"the class scores do not depend on target_layer {self.target_layer_name!r}; "
                "choose a layer on the path to the logits"
            )
        (gradients,) = torch.autograd.grad(score, capture.activation, allow_unused=True)
        activations = capture.activation.detach()
        if gradients is None:
            gradients = torch.zeros_like(activations)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        nhwc = activations.ndim == 4 and self.channels_last(activations)
        activations, gradients = self._spatial(activations, size, nhwc), self._spatial(gradients, size, nhwc)
        if self._vit is not None and not bool(gradients.any()):
            warnings.warn(
                f"GradCAM: the class score's gradient is zero on every patch token at "
                f"{self.target_layer_name!r}; with a class-token head use an earlier layer such as "
                "'blocks[-1].norm1' (the default)",
                stacklevel=3,
            )
        return activations, gradients, targets

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        activations, gradients, targets = self.activations_and_gradients(x, targets)
        maps = self.cam(activations.float(), gradients.float())
        return resize_maps(maps, (int(x.shape[-2]), int(x.shape[-1]))), targets

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, target_layer={self.target_layer_name!r})"


class GradCAMPlusPlus(GradCAM):
    """GradCAM++: channel weights from the closed-form ``alpha`` of Chattopadhyay et al. (2018).

    For an exponential score ``Y = exp(S)`` the higher derivatives reduce to powers of
    ``g = dS/dA`` (eq. 19 of the paper)::

        alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3)
        w_k       = sum_ij alpha_kij ReLU(g_kij)

    (the common factor ``exp(S)`` of the paper's weights cancels in the normalised map).
    ``alpha`` is set to 0 where ``g = 0`` or the denominator vanishes.

    Difference from pytorch-grad-cam (deliberate, measured): its ``GradCAMPlusPlus`` adds
    ``eps = 1e-6`` to the denominator. Where ``|g|`` is small (``2 g^2`` near ``1e-6``, typical
    of an untrained or deep network) that shrinks ``alpha`` and changes the weights: on a
    random-init resnet18 at 224 px the normalised maps then differ by up to about 0.05. With
    ``eps=1e-6`` this class reproduces pytorch-grad-cam to float precision (the test suite checks
    both). The default ``eps=0`` is the paper's formula, which does not depend on the scale of
    the gradients.

    Args:
        model: any ``nn.Module`` returning logits ``(B, num_classes)``.
        target_layer: as for :class:`GradCAM`.
        eps: added to the denominator of ``alpha`` (0: the paper; 1e-6: pytorch-grad-cam).
        mean: see :class:`~interpret.base.Explainer`.
        std: see :class:`~interpret.base.Explainer`.
        input_size: see :class:`GradCAM`.
    """

    method_name = "gradcam++"

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | None = None,
        *,
        eps: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(model, target_layer, mean=mean, std=std, input_size=input_size)
        non_negative_number(eps, "eps")
        self.eps = float(eps)

    @staticmethod
    def channel_weights(activations: torch.Tensor, gradients: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """GradCAM++ weights ``(B, K)`` from activations and gradients ``(B, K, h, w)``."""
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        total = activations.sum(dim=(2, 3), keepdim=True)
        denominator = 2.0 * g2 + total * g3 + eps
        valid = (gradients != 0) & (denominator != 0)
        alpha = torch.where(valid, g2 / torch.where(valid, denominator, torch.ones_like(denominator)), 0.0)
        return (alpha * F.relu(gradients)).sum(dim=(2, 3))

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        activations, gradients, targets = self.activations_and_gradients(x, targets)
        activations, gradients = activations.float(), gradients.float()
        weights = self.channel_weights(activations, gradients, self.eps)
        maps = self.weighted_maps(weights, activations)
        return resize_maps(maps, (int(x.shape[-2]), int(x.shape[-1]))), targets
