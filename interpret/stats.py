"""Statistics of activations and features, in plain PyTorch (no Lightning): the callbacks' maths.

Two families, each tested without a Trainer:

- streamed activation statistics (``FeatureMonitorCallback``): :func:`activation_stats` of one
  tensor, :func:`merge_stats` of two sets (Chan's parallel formula for ``count/mean/m2``, a
  ``sum``/``max``/``min`` reduction for the rest), :func:`finalize_stats` into the logged values;
- the cosine Gram matrix of a batch of features and its collapse measures
  (``GramMatrixCallback``): :func:`cosine_gram`, :func:`mean_offdiag`, :func:`effective_rank`,
  :func:`center` and :func:`gram_statistics`, which gives the logged scalars (``mean_offdiag``,
  ``effective_rank``, ``centered_mean_offdiag``, ``centered_effective_rank``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_REDUCTIONS",
    "MOMENT_KEYS",
    "REDUCTION_IDENTITY",
    "activation_stats",
    "center",
    "cosine_gram",
    "effective_rank",
    "even_indices",
    "finalize_stats",
    "gram_statistics",
    "gram_to_show",
    "mean_offdiag",
    "merge_moments",
    "merge_stats",
]

# --------------------------------------------------------------------------- activation statistics
#: The three statistics every layer keeps, merged with Chan's parallel formula (float64).
MOMENT_KEYS: tuple[str, str, str] = ("count", "mean", "m2")
#: How each statistic other than ``count/mean/m2`` combines across batches and ranks: ``"sum"``, ``"max"`` or ``"min"``.
DEFAULT_REDUCTIONS: dict[str, str] = {"zeros": "sum", "max": "max"}
#: The neutral element of each reduction (the value of a statistic before any batch).
REDUCTION_IDENTITY: dict[str, float] = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}


def activation_stats(x: Tensor) -> dict[str, Tensor]:
    """Statistics of one activation tensor, as float64 scalars on its device.

    Returns:
        ``count`` (number of elements), ``mean``, ``m2`` (sum of squared deviations from the
        mean), ``zeros`` (number of elements exactly zero) and ``max``.

    ``m2`` is summed around the tensor's own (float32) mean: the shifted values are small and
    exact, so nothing cancels when ``|mean| >> std`` (unlike ``E[x^2] - mean^2``), and the shift's
    residue corrects mean and ``m2`` in float64. Sums are torch's cascaded float32 sums, at
    float32 speed. A tensor holding NaN or inf gives NaN ``mean``, ``m2`` and ``zeros`` (and a
    NaN or inf ``max``).

    Cost: 6 passes over the values and one temporary (the shifted copy, squared in place). The
    zeros are counted as ``numel - sum(|sign(x)|)``: on CPU a comparison (``x == 0``, bool
    output) and ``count_nonzero`` are slower than these float passes.
    """
    x = x.detach()
    flat = x.reshape(-1)
    if not flat.is_floating_point() or flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    count = torch.tensor(float(flat.numel()), dtype=torch.float64, device=flat.device)
    if flat.numel() == 0:
        zero = torch.zeros((), dtype=torch.float64, device=flat.device)
        return {"count": count, "mean": zero, "m2": zero, "zeros": zero, "max": zero - float("inf")}
    shift = flat.mean()
    nonzero = torch.sign(flat).abs_().sum()  # sign(NaN) is 0: the NaN check is the `poison` below
    top = flat.amax()
    centred = flat - shift
    s1 = centred.sum().double()
    s2 = centred.mul_(centred).sum().double()
    poison = shift.double() * 0.0  # NaN when the tensor holds NaN or inf, else 0
    return {
        "count": count,
        "mean": shift.double() + s1 / count,
        "m2": (s2 - s1 * s1 / count).clamp_min(0.0),
        "zeros": count - nonzero.double() + poison,
        "max": top.double(),
    }


def merge_moments(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Chan et al.'s parallel merge of ``(count, mean, m2)`` of two disjoint sets of values.

    Exact in exact arithmetic and stable in floating point (no ``E[x^2] - mean^2`` cancellation);
    a side with ``count == 0`` leaves the other unchanged.
    """
    na, nb = a["count"], b["count"]
    n = na + nb
    safe = torch.where(n > 0, n, torch.ones_like(n))
    delta = b["mean"] - a["mean"]
    mean = torch.where(n > 0, a["mean"] + delta * (nb / safe), a["mean"])
    m2 = a["m2"] + b["m2"] + delta * delta * (na * nb / safe)
    return {"count": n, "mean": mean, "m2": m2}


def merge_stats(
    acc: Mapping[str, Tensor] | None, new: Mapping[str, Tensor], reductions: Mapping[str, str] | None = None
) -> dict[str, Tensor]:
    """Combine two sets of statistics: ``count/mean/m2`` with :func:`merge_moments`, every
    other key with its reduction in ``reductions`` (``sum``, ``max`` or ``min``).

    Args:
        acc: the statistics so far (None: none yet, ``new`` is returned as is).
        new: the statistics to add.
        reductions: how each key other than ``count/mean/m2`` combines (default :data:`DEFAULT_REDUCTIONS`).

    Raises:
        KeyError: a key of ``new`` without a reduction.
        ValueError: a reduction other than sum, max or min.
    """
    reductions = DEFAULT_REDUCTIONS if reductions is None else reductions
    if acc is None:
        return dict(new)
    out = dict(acc)
    out.update(merge_moments(acc, new))
    for key, value in new.items():
        if key in MOMENT_KEYS:
            continue
        op = reductions.get(key)
        if op is None:
            raise KeyError(f"statistic {key!r} has no reduction; add it to `reductions` (sum, max or min)")
        if key not in out:
            out[key] = value
        elif op == "sum":
            out[key] = out[key] + value
        elif op == "max":
            out[key] = torch.maximum(out[key], value)
        elif op == "min":
            out[key] = torch.minimum(out[key], value)
        else:
            raise ValueError(f"reduction of {key!r} can be sum, max or min, got {op!r}")
    return out


def finalize_stats(stats: Mapping[str, Tensor]) -> dict[str, float]:
    """Turn merged statistics into ``mean``, ``std`` (population), ``sparsity`` and ``max``.

    ``sparsity`` is the fraction of values exactly zero. Without any value (``count == 0``)
    every statistic is NaN.
    """
    count = float(stats["count"])
    if count <= 0:
        return {k: float("nan") for k in ("mean", "std", "sparsity", "max")}
    var = max(float(stats["m2"]) / count, 0.0)
    return {
        "mean": float(stats["mean"]),
        "std": var**0.5,
        "sparsity": float(stats["zeros"]) / count,
        "max": float(stats["max"]),
    }


# --------------------------------------------------------------------------- gram matrix
def _rows(features: Tensor) -> Tensor:
    """``features`` detached, float32, flattened to one row per sample."""
    return features.detach().float().reshape(features.shape[0], -1)


def cosine_gram(features: Tensor) -> Tensor:
    """Cosine-similarity (Gram) matrix of the rows of ``features``.

    Args:
        features: ``(N, D)`` (or ``(N, ...)``, flattened per sample).

    Returns:
        ``(N, N)`` float32 matrix with entries in [-1, 1]; an all-zero row has zero similarity
        to everything (including itself).

    Raises:
        ValueError: ``features`` has fewer than 2 dimensions.
    """
    if features.ndim < 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    x = F.normalize(_rows(features), dim=1)
    return (x @ x.T).clamp_(-1.0, 1.0)


def mean_offdiag(gram: Tensor) -> float:
    """Mean of the off-diagonal entries of a square matrix (NaN for fewer than 2 rows).

    Near 1 means all samples look alike to the model: representation collapse.
    """
    n = gram.shape[0]
    if n < 2:
        return float("nan")
    total = gram.sum() - gram.diagonal().sum()
    return float(total / (n * (n - 1)))


def effective_rank(features: Tensor, normalize: bool = True) -> float:
    """Effective rank (Roy & Vetterli, 2007): exp of the entropy of the normalised singular values.

    Args:
        features: ``(N, D)`` (or ``(N, ...)``, flattened per sample).
        normalize: L2-normalise each row first (as the gram matrix does).

    Returns:
        A value between 1 (all rows on one line: collapse) and ``min(N, D)``; 0 for all-zero input;
        NaN when a feature is NaN or infinite (a diverged run: there is no rank to speak of, and the
        SVD would fail).
    """
    x = _rows(features)
    if not bool(torch.isfinite(x).all()):
        return float("nan")
    if normalize:
        x = F.normalize(x, dim=1)
    s = torch.linalg.svdvals(x.double())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def center(features: Tensor) -> Tensor:
    """``features`` (flattened per sample, float32) minus their mean over the batch (rows).

    The ``centered_*`` statistics of :func:`gram_statistics` are those of these rows.
    """
    x = _rows(features)
    return x - x.mean(dim=0, keepdim=True)


def gram_statistics(features: Tensor) -> dict[str, float]:
    """The collapse measures of one ``(N, D)`` batch of features (the logged scalars, without prefix).

    ``mean_offdiag`` and ``effective_rank`` of the raw features, and ``centered_mean_offdiag``
    and ``centered_effective_rank`` of the :func:`center`-ed features (minus their batch mean).
    Raw post-ReLU features are non-negative, so their cosines are high without any collapse;
    after centring only the variation between samples is left: ``centered_effective_rank`` near 1
    (or 0: all samples identical) is the collapse signal, and ``centered_mean_offdiag`` stays near
    ``-1/(N-1)`` for healthy features.
    """
    centered = center(features)
    return {
        "mean_offdiag": mean_offdiag(cosine_gram(features)),
        "effective_rank": effective_rank(features),
        "centered_mean_offdiag": mean_offdiag(cosine_gram(centered)),
        "centered_effective_rank": effective_rank(centered),
    }


def gram_to_show(features: Tensor, centered: bool = True) -> Tensor:
    """The cosine Gram matrix worth looking at: of the :func:`center`-ed features by default.

    The raw cosines of non-negative (post-ReLU) features are all near 1 (a uniform picture: a
    plain CNN's raw matrix has a mean near 0.995); after centring, similar samples are positive
    and dissimilar ones negative. ``centered=False`` gives :func:`cosine_gram` of the raw rows.
    """
    return cosine_gram(center(features) if centered else features)


def even_indices(n: int, k: int) -> Tensor:
    """``min(n, k)`` indices spread evenly over ``range(n)``, first and last included (to thin rows)."""
    if k >= n:
        return torch.arange(n)
    if k == 1:
        return torch.zeros(1, dtype=torch.long)
    return torch.linspace(0, n - 1, k).round().long().unique()
