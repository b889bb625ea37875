"""FeatureMonitorCallback: streamed activation statistics of named layers, reduced across ranks.

The maths are small pure functions (:func:`activation_sums`, :func:`merge_sums`,
:func:`finalize_stats`), tested without a Trainer; the callback only decides when to hook which
layer, reduces the running sums across ranks and logs.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from callbacks.image_logging import log_scalars

__all__ = [
    "DEFAULT_REDUCTIONS",
    "FeatureMonitorCallback",
    "activation_sums",
    "finalize_stats",
    "merge_sums",
    "resolve_layers",
]

log = logging.getLogger(__name__)

#: How each running sum combines across batches and ranks: ``"sum"``, ``"max"`` or ``"min"``.
DEFAULT_REDUCTIONS: dict[str, str] = {"count": "sum", "sum": "sum", "sum_sq": "sum", "zeros": "sum", "max": "max"}
_IDENTITY = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}


# --------------------------------------------------------------------------- pure functions
def activation_sums(x: Tensor) -> dict[str, Tensor]:
    """Running sums of one activation tensor, as float64 scalars on its device.

    Returns:
        ``count`` (number of elements), ``sum``, ``sum_sq`` (sum of squares), ``zeros`` (number of
        elements exactly zero) and ``max``.
    """
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    flat = x.reshape(-1)
    return {
        "count": torch.tensor(float(flat.numel()), dtype=torch.float64, device=flat.device),
        "sum": flat.sum(dtype=torch.float64),
        "sum_sq": torch.dot(flat.float(), flat.float()).double(),
        "zeros": (flat == 0).sum().double(),
        "max": flat.max().double() if flat.numel() else torch.tensor(float("-inf"), dtype=torch.float64),
    }


def merge_sums(
    acc: Mapping[str, Tensor] | None, new: Mapping[str, Tensor], reductions: Mapping[str, str] = DEFAULT_REDUCTIONS
) -> dict[str, Tensor]:
    """Combine two sets of running sums key by key with each key's reduction (sum, max or min)."""
    if acc is None:
        return dict(new)
    out = dict(acc)
    for key, value in new.items():
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


def finalize_stats(sums: Mapping[str, Tensor]) -> dict[str, float]:
    """Turn running sums into ``mean``, ``std`` (population), ``sparsity`` and ``max``.

    Empty sums (``count == 0``) give an empty dict.
    """
    count = float(sums["count"])
    if count <= 0:
        return {}
    mean = float(sums["sum"]) / count
    var = max(float(sums["sum_sq"]) / count - mean * mean, 0.0)
    return {"mean": mean, "std": var**0.5, "sparsity": float(sums["zeros"]) / count, "max": float(sums["max"])}


def resolve_layers(model: nn.Module, layer_names: Sequence[str], where: str = "layer_names") -> dict[str, nn.Module]:
    """Map each name to ``model.named_modules()[name]``; a wrong name fails with the closest names.

    Raises:
        ValueError: naming the unknown layer, the closest existing names and ``where`` to fix it.
    """
    modules = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    for name in layer_names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            if close:
                hint = f"closest names: {', '.join(close)}"
            else:
                top = [n for n in modules if n and "." not in n][:10]
                hint = f"top-level modules: {', '.join(top)}"
            raise ValueError(
                f"{where}: layer {name!r} is not in the model's named_modules() ({hint}). "
                f"Fix it in the callback's config (e.g. callbacks.feature_monitor.layer_names)."
            )
        out[name] = modules[name]
    return out


# --------------------------------------------------------------------------- callback
class FeatureMonitorCallback(Callback):
    """Log activation statistics of named layers: ``features/{layer}/mean|std|sparsity|max``.

    On every logged epoch (``current_epoch % log_every_n_epochs == 0``) forward hooks are put on
    the layers for the first ``num_batches`` training batches (added at each batch's start and
    removed once its forward pass is done, before backward; also when training raises). Each
    hook folds its output into running sums (``count``, ``sum``, ``sum_sq``, ``zeros``,
    ``max``), so memory is O(layers) whatever the number of batches.
    At the epoch's end the sums are reduced across ranks (sums added, maxima
    maxed), so the logged values equal those of one process seeing all ranks' batches, and rank
    zero logs them at step ``trainer.global_step``. ``sparsity`` is the fraction of activations
    exactly zero (e.g. after a ReLU).

    Layer names are ``named_modules()`` names, checked at ``setup``; a wrong one fails with the
    closest names. For the timm ResNet classifier: ``backbone.layer2``, ``backbone.layer3``,
    ``backbone.layer4``.

    Custom statistics (the override point): add running sums in :meth:`batch_statistics`, say
    how they combine in ``reductions``, derive the logged values in :meth:`epoch_statistics`::

        class L1FeatureMonitor(FeatureMonitorCallback):
            reductions = {**FeatureMonitorCallback.reductions, "abs_sum": "sum"}

            def batch_statistics(self, layer_name, output):
                sums = super().batch_statistics(layer_name, output)
                sums["abs_sum"] = output.detach().abs().sum(dtype=torch.float64)
                return sums

            def epoch_statistics(self, layer_name, sums):
                stats = super().epoch_statistics(layer_name, sums)
                stats["l1"] = float(sums["abs_sum"] / sums["count"])  # -> features/{layer}/l1
                return stats

    Args:
        layer_names: one or more ``named_modules()`` names.
        log_every_n_epochs: collect and log on epochs 0, n, 2n, ...
        num_batches: how many training batches of a logged epoch to collect from (>= 1).
    """

    #: How each running statistic combines across batches and ranks (sum, max or min).
    reductions: ClassVar[dict[str, str]] = dict(DEFAULT_REDUCTIONS)

    def __init__(self, layer_names: str | Sequence[str], log_every_n_epochs: int = 1, num_batches: int = 10) -> None:
        super().__init__()
        names = [layer_names] if isinstance(layer_names, str) else list(layer_names or [])
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"`layer_names` must be one or more named_modules() names, got {layer_names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"`layer_names` lists a layer twice: {names}")
        _check_positive_int("log_every_n_epochs", log_every_n_epochs)
        _check_positive_int("num_batches", num_batches)
        self.layer_names = names
        self.log_every_n_epochs = log_every_n_epochs
        self.num_batches = num_batches
        self._layers: dict[str, nn.Module] = {}
        self._sums: dict[str, dict[str, Tensor]] = {}
        self._handles: list[RemovableHandle] = []
        self._last_logged_epoch = -1

    # ------------------------------------------------------------------ override points
    def batch_statistics(self, layer_name: str, output: Tensor) -> dict[str, Tensor]:
        """Running sums of one layer output for one batch; every key needs a ``reductions`` entry."""
        return activation_sums(output)

    def epoch_statistics(self, layer_name: str, sums: Mapping[str, Tensor]) -> dict[str, float]:
        """The values logged as ``features/{layer_name}/{key}`` from the rank-reduced sums."""
        return finalize_stats(sums)

    # ------------------------------------------------------------------ hooks
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer_names=tuple(self.layer_names))

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._layers = resolve_layers(pl_module, self.layer_names, where="FeatureMonitorCallback.layer_names")

    def _collecting(self, trainer: pl.Trainer) -> bool:
        return trainer.current_epoch % self.log_every_n_epochs == 0 and trainer.current_epoch != self._last_logged_epoch

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sums = {}

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._remove_hooks()
        if batch_idx < self.num_batches and self._collecting(trainer):
            for name, module in self._layers.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        # The batch's forward is done: whatever runs later (another callback explaining samples
        # at the batch's end, validation) is not training data.
        self._remove_hooks()

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._remove_hooks()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()
        if not self._collecting(trainer):
            return
        # Every rank takes part in the same reductions, whatever it collected.
        reduced = self._reduce(trainer, self._sums)
        self._sums = {}
        self._last_logged_epoch = trainer.current_epoch
        metrics: dict[str, float] = {}
        for name in self.layer_names:
            for key, value in self.epoch_statistics(name, reduced[name]).items():
                metrics[f"features/{name}/{key}"] = value
        log_scalars(trainer, metrics)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hooks()
        self._sums = {}

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_logged_epoch": self._last_logged_epoch}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_logged_epoch = int(state_dict.get("last_logged_epoch", -1))

    # ------------------------------------------------------------------ internals
    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                return
            with torch.no_grad():
                stats = self.batch_statistics(name, tensor)
                self._sums[name] = merge_sums(self._sums.get(name), stats, self.reductions)

        return hook

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _reduce(self, trainer: pl.Trainer, sums: dict[str, dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        device = trainer.strategy.root_device
        keys_by_op: dict[str, list[tuple[str, str]]] = {}
        for key, op in self.reductions.items():
            if op not in _IDENTITY:
                raise ValueError(f"reduction of {key!r} can be sum, max or min, got {op!r}")
            for name in self.layer_names:
                keys_by_op.setdefault(op, []).append((name, key))
        out: dict[str, dict[str, Tensor]] = {name: {} for name in self.layer_names}
        for op, entries in keys_by_op.items():
            values = torch.tensor(
                [float(sums.get(n, {}).get(k, _IDENTITY[op])) for n, k in entries], dtype=torch.float64, device=device
            )
            if trainer.world_size > 1:
                values = trainer.strategy.reduce(values, reduce_op=op)
            for (name, key), value in zip(entries, values.cpu()):
                out[name][key] = value
        return out



def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    return None


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
