"""GradNormMonitor: total and per-layer-group gradient norms after backward."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import grad_norm as lightning_grad_norm
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from callbacks.image_logging import log_scalars
from callbacks.schedule import EveryN
from interpret.checks import positive_int

__all__ = ["GradNormMonitor", "grad_norms", "layer_group"]


def layer_group(param_name: str, common_prefix: str = "") -> str:
    """The layer group of a parameter: the first name part after ``common_prefix``.

    ``layer_group("backbone.layer1.0.conv1.weight", "backbone.")`` -> ``"backbone.layer1"``.
    """
    rest = param_name[len(common_prefix) :] if param_name.startswith(common_prefix) else param_name
    return common_prefix + rest.split(".", 1)[0]


def grad_norms(
    module: nn.Module, norm_type: float = 2.0, group_of: Callable[[str], str] = layer_group
) -> dict[str, Tensor]:
    """Gradient norms per group and in total (the norm of all gradients together).

    Each parameter's norm comes from :func:`lightning.pytorch.utilities.grad_norm`; a group's norm
    is the p-norm of its parameters' p-norms (equal to the p-norm of the concatenated gradients,
    also for ``inf``), and so is ``total``.

    Args:
        module: the module whose parameters' ``.grad`` are measured (parameters without one are skipped).
        norm_type: the p of the p-norm, or ``math.inf`` for the max-norm.
        group_of: maps a parameter name to its group name.

    Returns:
        ``{group: norm, ..., "total": norm}`` as float32 scalar tensors (empty without gradients).
    """
    prefix = f"grad_{float(norm_type)}_norm/"
    by_group: dict[str, list[Tensor]] = defaultdict(list)
    for key, value in lightning_grad_norm(module, norm_type, group_separator="/").items():
        if key.startswith(prefix):
            by_group[group_of(key[len(prefix) :])].append(torch.as_tensor(value).float())
    if not by_group:
        return {}
    out = {group: torch.linalg.vector_norm(torch.stack(norms), norm_type) for group, norms in by_group.items()}
    out["total"] = torch.linalg.vector_norm(torch.stack(list(out.values())), norm_type)
    return out


class GradNormMonitor(Callback):
    """Log the total gradient norm and one norm per layer group every ``log_every_n_steps`` steps.

    Schedule (:class:`~callbacks.schedule.EveryN`, as every periodic callback): the gradients of
    the optimizer steps that bring ``trainer.global_step`` to n, 2n, 3n, ... are measured, and
    logged at that step (steps n, 2n, ..., counted after the optimizer step). Norms are taken in
    ``on_before_optimizer_step``: after backward (and after gradient accumulation, AMP unscaling
    and the DDP all-reduce, so every rank holds the same gradients; no collective of its own),
    before gradient clipping and the optimizer step. Rank zero logs ``grad_norm/total`` and
    ``grad_norm/{group}``, where a group is the first name part below the name prefix all
    parameters share, e.g. ``backbone.layer1`` ... ``backbone.fc`` for the timm ResNet classifier.
    Override :meth:`group_name` for other groupings.

    Args:
        log_every_n_steps: log at global steps n, 2n, ... (after the optimizer step).
        norm_type: the p of the p-norm (> 0), or ``"inf"`` for the max-norm.
    """

    def __init__(self, log_every_n_steps: int = 50, norm_type: float | int | str = 2) -> None:
        super().__init__()
        positive_int(log_every_n_steps, "`log_every_n_steps`")
        try:
            p = float(norm_type)
        except (TypeError, ValueError):
            p = float("nan")
        if not (p > 0):
            raise ValueError(f"`norm_type` can be a number > 0 or 'inf', got {norm_type!r}")
        self.log_every_n_steps = log_every_n_steps
        self.schedule = EveryN(every_n_steps=log_every_n_steps)
        self.norm_type = p
        self._prefix = ""

    def group_name(self, param_name: str) -> str:
        """The group a parameter's gradient norm counts into; override for other groupings."""
        return layer_group(param_name, self._prefix)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        names = [n for n, p in pl_module.named_parameters() if p.requires_grad]
        first = {n.split(".", 1)[0] for n in names}
        self._prefix = f"{first.pop()}." if len(first) == 1 and all("." in n for n in names) else ""

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        step = trainer.global_step + 1  # the step this optimizer step completes
        if not self.schedule.step_due(step) or not trainer.is_global_zero:
            return
        norms = grad_norms(pl_module, self.norm_type, group_of=self.group_name)
        if norms:
            log_scalars(trainer, {f"grad_norm/{k}": v for k, v in norms.items()}, step=step)
