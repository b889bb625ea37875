"""SmoothGrad (Smilkov et al. 2017): average an explanation over noisy copies of the input."""

from __future__ import annotations

import torch

from interpret.checks import non_negative_number, positive_int
from interpret.methods.base import Explainer

__all__ = ["SmoothGrad"]


class SmoothGrad(Explainer):
    """Mean of ``base_explainer``'s raw attribution over ``num_samples`` noisy copies.

    ``M(x) = 1/n sum_i M_base(x + e_i)``, ``e_i ~ N(0, sigma^2)`` with
    ``sigma = noise_level * (max(x) - min(x))`` per image. The raw (un-normalised) attributions
    are averaged, then reduced and normalised as the base explainer does. The class explained is
    the one predicted for the clean image (or the one given) for every copy.

    The noisy copies of a batch go through the base explainer as batches of at most
    ``internal_batch_size`` images. Noise comes from a local ``torch.Generator`` seeded with
    ``seed``: the global RNG is untouched and the result is reproducible.

    Files and PIL images are resized and normalised with the base explainer's ``input_size`` and
    ``mean``/``std``.

    Args:
        base_explainer: any :class:`~interpret.base.Explainer` (e.g. ``Saliency``, ``GradCAM``,
            ``IntegratedGradients``).
        noise_level: noise std as a fraction of each image's value range, >= 0.
        num_samples: noisy copies per image, >= 1.
        internal_batch_size: most noisy copies per call of the base explainer.
        seed: seed of the local noise generator.

    Raises:
        ValueError: a base that is not an Explainer, a negative noise level, a bad count.
    """

    method_name = "smoothgrad"

    def __init__(
        self,
        base_explainer: Explainer,
        noise_level: float = 0.15,
        num_samples: int = 50,
        *,
        internal_batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        if not isinstance(base_explainer, Explainer):
            raise ValueError(
                f"base_explainer must be an interpret Explainer (e.g. Saliency(model), GradCAM(model)), "
                f"got {type(base_explainer).__name__}"
            )
        super().__init__(base_explainer.model)
        # files and PIL images are prepared as the base method would
        self.normalization = base_explainer.normalization
        self.input_size = base_explainer.input_size
        non_negative_number(noise_level, "noise_level")
        for name, value in (("num_samples", num_samples), ("internal_batch_size", internal_batch_size)):
            positive_int(value, name)
        self.base_explainer = base_explainer
        self.noise_level = float(noise_level)
        self.num_samples = num_samples
        self.internal_batch_size = internal_batch_size
        self.seed = seed

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        if targets is None:
            targets = self._predict(x).argmax(dim=1)
        flat = x.flatten(1)
        sigma = (self.noise_level * (flat.amax(dim=1) - flat.amin(dim=1))).view(-1, 1, 1, 1)
        generator = torch.Generator(device=x.device)
        generator.manual_seed(self.seed)
        count = batch * self.num_samples
        total: torch.Tensor | None = None
        for start in range(0, count, self.internal_batch_size):
            image = torch.arange(start, min(start + self.internal_batch_size, count), device=x.device)
            image = image // self.num_samples
            noise = torch.randn(
                (image.numel(), *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype
            )
            noisy = x[image] + sigma[image] * noise
            raw, _ = self.base_explainer._attribute(noisy, targets[image])
            raw = raw.detach().float()
            if total is None:
                total = torch.zeros((batch, *raw.shape[1:]), device=raw.device, dtype=torch.float32)
            total.index_add_(0, image, raw)
        if total is None:  # unreachable: count >= 1
            raise RuntimeError("SmoothGrad produced no samples")
        return total / self.num_samples, targets

    def _to_map(self, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.base_explainer._to_map(raw, size)

    def __repr__(self) -> str:
        return (
            f"SmoothGrad({self.base_explainer!r}, noise_level={self.noise_level}, num_samples={self.num_samples})"
        )
