"""FeatureVisualizer: look inside a layer (feature maps, statistics, top channels, receptive fields).

Every method takes the image(s) the explainers take (a file path, a PIL image, a ``(C, H, W)``
tensor or a ``(B, C, H, W)`` batch of normalised model inputs) and a layer by its
``named_modules()`` name (unknown names fail with the closest names). The model is left exactly
as it was found, as with the explainers: it runs in eval mode with frozen parameters inside
:func:`~interpret.base.frozen_eval` (training flags, ``requires_grad`` and ``.grad`` restored, also
on error), hooks go through :class:`~interpret.hooks.HookManager` (removed even when the forward
pass raises), and gradients are enabled locally (works under ``torch.no_grad()``).

Layer outputs are read as ``(B, C, h, w)`` feature maps (NCHW). Token outputs ``(B, N, C)`` of a
timm Vision Transformer are laid out on its patch grid; a vector output ``(B, C)`` is taken as a
``1 x 1`` map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from interpret.checks import positive_int
from interpret.methods.base import InvalidImageError, normalize_maps
from interpret.model_state import frozen_eval, local_grad
from interpret.hooks import HookManager
from interpret.images import is_pathlike, load_image, pil_to_tensor
from interpret.layers import (
    expected_in_channels,
    find_vision_transformer,
    model_device,
    model_dtype,
    resolve_layer,
    resolve_normalization,
    tokens_to_grid,
)

__all__ = ["SORT_BY", "FeatureVisualizer", "feature_statistics"]

SORT_BY: tuple[str, ...] = ("activation", "variance")


def feature_statistics(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-channel ``mean``, ``std`` (population), ``sparsity`` (fraction exactly 0) and ``max``.

    Args:
        features: ``(B, C, h, w)``; statistics are over the batch and the positions.

    Returns:
        ``{name: float32 (C,)}``.
    """
    values = features.detach().double().transpose(0, 1).reshape(features.shape[1], -1)
    return {
        "mean": values.mean(dim=1).float(),
        "std": values.std(dim=1, unbiased=False).float(),
        "sparsity": (values == 0).double().mean(dim=1).float(),
        "max": values.amax(dim=1).float(),
    }


class FeatureVisualizer:
    """Feature maps, statistics, top channels and receptive fields of a model's layers.

    Args:
        model: any ``nn.Module`` (e.g. a timm model or the runner's ``ImageClassifier``).
        mean: per-channel normalisation of PIL images/files (default: the model's timm data config).
        std: as ``mean``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: only one of ``mean``/``std`` given.
    """

    def __init__(
        self, model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.model = model
        self.normalization = (tuple(mean), tuple(std)) if mean is not None and std is not None else None

    # ------------------------------------------------------------------ inputs
    def _batch(self, image: Any) -> torch.Tensor:
        device, dtype = model_device(self.model), model_dtype(self.model)
        if is_pathlike(image):
            image = load_image(image)
        if isinstance(image, Image.Image):
            normalization = self.normalization or resolve_normalization(self.model)
            mean, std = normalization if normalization is not None else (None, None)
            channels = expected_in_channels(self.model)
            tensor = pil_to_tensor(image, channels if channels in (1, 3) else 3, mean, std)
            image = tensor.unsqueeze(0)
        if not isinstance(image, torch.Tensor):
            raise InvalidImageError(
                f"image must be a file path, a PIL image, a (C, H, W) or a (B, C, H, W) tensor, got {type(image).__name__}"
            )
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.ndim != 4 or image.shape[0] == 0 or not image.is_floating_point():
            raise ValueError(
                f"image must be a float (C, H, W) tensor or a non-empty (B, C, H, W) batch, got "
                f"{image.dtype} of shape {tuple(image.shape)}"
            )
        with torch.inference_mode(False):
            return image.detach().to(device=device, dtype=dtype, copy=True)

    def _layer(self, layer_name: str) -> tuple[str, nn.Module]:
        if not isinstance(layer_name, str):
            raise ValueError(f"layer_name must be a name from model.named_modules(), got {type(layer_name).__name__}")
        try:
            return resolve_layer(self.model, layer_name)
        except ValueError as err:
            raise ValueError(str(err).replace("target_layer", "layer_name", 1)) from None

    def _as_map(self, name: str, output: Any, image_size: tuple[int, int]) -> torch.Tensor:
        if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
        if output.ndim == 4:
            return output
        if output.ndim == 3:
            vit = find_vision_transformer(self.model)
            if vit is not None and (vit[0] == "" or name.startswith(vit[0] + ".")):
                return tokens_to_grid(output, vit[1], image_size)
        if output.ndim == 2:
            return output[:, :, None, None]
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(output.shape)}; a feature map (B, C, h, w), ViT tokens "
            "(B, N, C) or a vector (B, C) is needed"
        )

    def _features(self, batch: torch.Tensor, layer_names: Sequence[str]) -> dict[str, torch.Tensor]:
        """One forward pass; the outputs of ``layer_names`` as ``(B, C, h, w)`` (detached)."""
        layers = [self._layer(name) for name in layer_names]
        captured: dict[str, torch.Tensor] = {}
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        with frozen_eval(self.model), torch.no_grad(), HookManager() as hooks:
            for name, module in layers:

                def hook(_module: nn.Module, _inputs: Any, output: Any, name: str = name) -> None:
                    if name not in captured:
                        captured[name] = self._as_map(name, output, size).detach()

                hooks.register_forward_hook(module, hook)
            self.model(batch)
        missing = [name for name, _ in layers if name not in captured]
        if missing:
            raise RuntimeError(f"layer {missing[0]!r} was not called during the forward pass of {type(self.model).__name__}")
        return {name: captured[name] for name, _ in layers}

    # ------------------------------------------------------------------ public API
    def get_feature_maps(self, image: Any, layer_name: str) -> torch.Tensor:
        """The layer's output for ``image`` as ``(B, C, h, w)`` (float32, CPU)."""
        batch = self._batch(image)
        return self._features(batch, [layer_name])[self._layer(layer_name)[0]].float().cpu()

    def get_feature_statistics(self, image: Any, layer_name: str) -> dict[str, torch.Tensor]:
        """Per-channel ``mean``, ``std``, ``sparsity`` (fraction exactly 0) and ``max`` of the layer, ``(C,)`` each."""
        return feature_statistics(self.get_feature_maps(image, layer_name))

    def compare_layers(self, image: Any, layer_names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Statistics of several layers from one forward pass, to see how features change with depth.

        Returns:
            ``{layer: {"shape": (C, h, w), "mean", "std", "sparsity", "max", "active_channels"}}``:
            scalars over the whole layer; ``active_channels`` is the fraction of channels that are
            non-zero somewhere (dead channels show up as a low value).
        """
        if isinstance(layer_names, str) or not isinstance(layer_names, Sequence) or not layer_names:
            raise ValueError(f"layer_names must be a non-empty list of layer names, got {layer_names!r}")
        features = self._features(self._batch(image), list(layer_names))
        out: dict[str, dict[str, Any]] = {}
        for name, value in features.items():
            values = value.detach().double()
            out[name] = {
                "shape": tuple(int(s) for s in value.shape[1:]),
                "mean": float(values.mean()),
                "std": float(values.std(unbiased=False)),
                "sparsity": float((values == 0).double().mean()),
                "max": float(values.max()),
                "active_channels": float((values.transpose(0, 1).flatten(1) != 0).any(dim=1).double().mean()),
            }
        return out

    def get_top_activating_features(
        self, images: Any, layer_name: str, top_k: int = 5, images_per_channel: int | None = None
    ) -> dict[str, torch.Tensor]:
        """The channels with the highest mean activation over ``images`` and the images exciting each most.

        A channel's response to an image is its spatial mean activation on that image.

        Args:
            images: a ``(N, C, H, W)`` batch (or anything :meth:`get_feature_maps` takes).
            layer_name: the layer.
            top_k: how many channels (at most the layer's channel count).
            images_per_channel: images listed per channel (default ``min(top_k, N)``).

        Returns:
            ``channels`` ``(k,)`` channel indices, best first; ``channel_scores`` ``(k,)`` their
            mean response; ``images`` ``(k, m)`` indices into ``images`` of the images that excite
            each channel most; ``image_scores`` ``(k, m)`` those responses.
        """
        positive_int(top_k, "top_k")
        responses = self.get_feature_maps(images, layer_name).mean(dim=(2, 3))  # (N, C)
        n, c = responses.shape
        k = min(top_k, c)
        m = min(images_per_channel if images_per_channel is not None else top_k, n)
        if m < 1:
            raise ValueError(f"images_per_channel must be >= 1, got {images_per_channel!r}")
        scores, channels = responses.mean(dim=0).topk(k)
        image_scores, image_ids = responses[:, channels].t().topk(m, dim=1)
        return {"channels": channels, "channel_scores": scores, "images": image_ids, "image_scores": image_scores}

    def visualize_receptive_field(
        self, image: Any, layer_name: str, channel: int, position: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """The input-gradient map of one unit: ``|d a_{channel}(centre) / d x|`` summed over colour channels.

        Shows which input pixels the unit at the centre of the feature map (or at ``position``)
        can see and how strongly: its effective receptive field on this image.

        Args:
            image: one image (a batch uses its first image).
            layer_name: the layer.
            channel: the channel index.
            position: ``(row, col)`` in the feature map; default its centre.

        Returns:
            float32 ``(H, W)`` in [0, 1] (all zeros when the unit does not depend on the input).
        """
        name, module = self._layer(layer_name)
        batch = self._batch(image)[:1]
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        captured: list[torch.Tensor] = []
        with frozen_eval(self.model), local_grad(), HookManager() as hooks:

            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                if not captured:
                    captured.append(self._as_map(name, output, size))

            hooks.register_forward_hook(module, hook)
            inputs = batch.detach().requires_grad_(True)
            self.model(inputs)
            if not captured:
                raise RuntimeError(f"layer {name!r} was not called during the forward pass of {type(self.model).__name__}")
            features = captured[0]
            c, h, w = features.shape[1:]
            if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < c:
                raise ValueError(f"channel must be an int from 0 to {c - 1} (layer {name!r} has {c} channels), got {channel!r}")
            row, col = position if position is not None else (h // 2, w // 2)
            if not (0 <= row < h and 0 <= col < w):
                raise ValueError(f"position must lie in the {h}x{w} feature map of {name!r}, got {position!r}")
            unit = features[0, channel, row, col]
            if not unit.requires_grad:
                return torch.zeros(size)
            (gradient,) = torch.autograd.grad(unit, inputs, allow_unused=True)
        if gradient is None:
            return torch.zeros(size)
        return normalize_maps(gradient.detach().abs().sum(dim=1).float())[0].cpu()

    def plot_feature_maps(
        self,
        image: Any,
        layer_name: str,
        num_features: int = 16,
        sort_by: str = "activation",
        save_path: str | os.PathLike[str] | None = None,
        colormap: str = "viridis",
    ) -> Any:
        """A grid of the layer's ``num_features`` most active (or most varying) channels for one image.

        Args:
            image: one image (a batch uses its first image).
            layer_name: the layer.
            num_features: how many channels to show (at most the layer's channel count).
            sort_by: ``"activation"`` (highest mean activation first) or ``"variance"`` (highest
                spatial variance first).
            save_path: also write the figure there (PNG, or any format matplotlib knows by the suffix).
            colormap: a matplotlib colormap name.

        Returns:
            the matplotlib ``Figure``; each panel is titled with its channel index. The shown
            channel indices are in ``figure.channels``.
        """
        if sort_by not in SORT_BY:
            raise ValueError(f"sort_by can be {', '.join(SORT_BY)}, got {sort_by!r}")
        positive_int(num_features, "num_features")
        import matplotlib

        if colormap not in matplotlib.colormaps:
            raise ValueError(f"colormap {colormap!r} is not a matplotlib colormap (e.g. viridis, magma, gray)")
        from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

        features = self.get_feature_maps(self._batch(image)[:1], layer_name)[0]  # (C, h, w)
        c = features.shape[0]
        k = min(num_features, c)
        flat = features.flatten(1)
        key = flat.mean(dim=1) if sort_by == "activation" else flat.var(dim=1, unbiased=False)
        channels = key.topk(k).indices.tolist()
        cols = int(np.ceil(np.sqrt(k)))
        rows = int(np.ceil(k / cols))
        figure = Figure(figsize=(2.0 * cols, 2.1 * rows))
        axes = figure.subplots(rows, cols, squeeze=False)
        for index, axis in enumerate(axes.flat):
            axis.set_axis_off()
            if index < k:
                axis.imshow(features[channels[index]].numpy(), cmap=colormap)
                axis.set_title(f"ch {channels[index]}", fontsize=8)
        figure.suptitle(f"{layer_name}: {k} of {c} channels by {sort_by}", fontsize=9)
        figure.channels = channels
        if save_path is not None:
            figure.savefig(save_path, dpi=80)
        return figure
