"""FeatureMonitorCallback: streamed activation statistics of named layers, reduced across ranks.

The maths are pure functions in :mod:`interpret.stats` (:func:`~interpret.stats.activation_stats`,
:func:`~interpret.stats.merge_stats`, :func:`~interpret.stats.finalize_stats`) and the layer choice
is in :mod:`callbacks.monitored_layers`, both tested without a Trainer; the callback only decides
when to hook which layer and logs through Lightning's metric path, which merges the ranks'
statistics without a collective of the callback's own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics import Metric
from typing_extensions import override

from callbacks.monitored_layers import auto_layer_names, resolve_layers
from callbacks.names import FEATURES_PREFIX
from callbacks.schedule import EveryN
from interpret.checks import positive_int
from interpret.stats import (
    DEFAULT_REDUCTIONS,
    MOMENT_KEYS,
    REDUCTION_IDENTITY,
    activation_stats,
    finalize_stats,
    merge_stats,
)

__all__ = ["FeatureMonitorCallback", "LayerStats"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rank reduction
def _merge_rows(rows: Tensor, keys: tuple[str, ...], reductions: Mapping[str, str]) -> Tensor:
    """Fold ``(R, len(keys))`` rows of statistics (one row per rank) into one row."""
    acc: dict[str, Tensor] | None = None
    for row in rows.reshape(-1, len(keys)):
        new = dict(zip(keys, row))
        acc = merge_stats(acc, new, reductions)
    assert acc is not None
    return torch.stack([acc[k] for k in keys])


class LayerStats(Metric):
    """Running statistics of one layer as a torchmetrics state: one float64 vector ordered as
    ``keys`` (``count, mean, m2`` first). Its rank reduction is the Chan/Welford merge (plus
    sum/max/min for the other keys), run by torchmetrics when Lightning computes the logged
    metrics at the epoch's end, on every rank at the same point of Lightning's own metric sync."""

    full_state_update = False

    def __init__(self, keys: Sequence[str], reductions: Mapping[str, str]) -> None:
        super().__init__(sync_on_compute=True, compute_with_cache=True)
        self.keys = tuple(keys)
        self.reductions = dict(reductions)
        identity = [0.0 if k in MOMENT_KEYS else REDUCTION_IDENTITY[self.reductions[k]] for k in self.keys]
        reduce = functools.partial(_merge_rows, keys=self.keys, reductions=self.reductions)
        self.add_state("stats", default=torch.tensor(identity, dtype=torch.float64), dist_reduce_fx=reduce)

    def update(self, stats: Mapping[str, Tensor] | Tensor) -> None:
        """Merge one batch's statistics (a mapping of ``keys``), or rows of them (``(R, len(keys))``)."""
        if isinstance(stats, Tensor):
            rows = stats.to(self.stats).reshape(-1, len(self.keys))
        else:
            rows = self.row(stats)[None]
        self.stats = _merge_rows(torch.cat([self.stats[None], rows]), self.keys, self.reductions)

    def row(self, stats: Mapping[str, Tensor]) -> Tensor:
        """One batch's statistics as a float64 row ordered as ``keys`` (for :meth:`update`)."""
        return torch.stack([stats[k].to(self.stats) for k in self.keys])

    def compute(self) -> Tensor:
        return self.stats.clone()

    def as_dict(self, vector: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.keys, vector))


class _StatView(Metric):
    """One logged scalar ``features/{layer}/{name}`` read from the layer's synced statistics."""

    full_state_update = False

    def __init__(self, owner: FeatureMonitorCallback, layer: str, name: str) -> None:
        super().__init__(sync_on_compute=False, compute_with_cache=False)
        self._owner = owner
        self._layer = layer
        self._name = name

    def update(self) -> None:
        pass

    def compute(self) -> Tensor:
        return torch.tensor(self._owner._epoch_value(self._layer, self._name), dtype=torch.float32)


# --------------------------------------------------------------------------- callback
class FeatureMonitorCallback(Callback):
    """Log activation statistics of named layers: ``features/{layer}/mean|std|sparsity|max``.

    On every logged epoch (:class:`~callbacks.schedule.EveryN`: epochs 0, n, 2n, ...)
    forward hooks are put on the layers for the first ``num_batches`` training batches (added at
    each batch's start and removed once its forward pass is done, before backward; also when
    training raises). Each hook reduces its output to a few float64 scalars (``count``, ``mean``,
    ``m2``, ``zeros``, ``max``: no activation is kept), merged once per epoch with Chan's parallel
    formula, so ``std`` stays exact when ``|mean| >> std``. A layer whose output holds NaN or inf
    reports NaN mean, std and sparsity.

    The values are logged through Lightning's own metric path (``pl_module.log`` of torchmetrics
    states, epoch level): the statistics are merged across DDP ranks when Lightning computes its
    epoch metrics, which every rank does at the same point (the progress bar on rank zero, the
    logger connector on the others). The callback itself never calls a collective, so it
    cannot deadlock against a progress bar, checkpointing or early stopping. The logged values
    equal those of one process seeing all ranks' batches, at the epoch's end step.
    ``sparsity`` is the fraction of activations exactly zero (e.g. after a ReLU).

    ``layer_names="auto"`` (the default) picks 3 evenly spaced feature stages of the model, the
    last included, each after its activation (:func:`auto_layer_names`: timm's ``feature_info``,
    e.g. ``backbone.layer1, backbone.layer2, backbone.layer4`` for a ResNet,
    ``backbone.stages.0/2/3`` for a ConvNeXt, ``backbone.blocks.3/7/11`` for a ViT; any other
    model is probed with one forward at ``setup``: ``layer1, layer2, layer4`` of torchvision's
    resnet18, the ReLUs of a plain CNN; never the logits). Names are ``named_modules()`` names,
    checked at ``setup``; a wrong one fails with the closest names.

    Custom statistics (the override point): add running sums in :meth:`batch_statistics`, say
    how they combine in ``reductions``, name the logged values in ``stat_names`` and derive them
    in :meth:`epoch_statistics`::

        class L1FeatureMonitor(FeatureMonitorCallback):
            reductions = {**FeatureMonitorCallback.reductions, "abs_sum": "sum"}
            stat_names = (*FeatureMonitorCallback.stat_names, "l1")

            def batch_statistics(self, layer_name, output):
                stats = super().batch_statistics(layer_name, output)
                stats["abs_sum"] = output.detach().abs().sum(dtype=torch.float64)
                return stats

            def epoch_statistics(self, layer_name, stats):
                values = super().epoch_statistics(layer_name, stats)
                values["l1"] = float(stats["abs_sum"] / stats["count"])  # -> features/{layer}/l1
                return values

    Args:
        layer_names: ``"auto"``, or one or more ``named_modules()`` names.
        log_every_n_epochs: collect and log on epochs 0, n, 2n, ...
        num_batches: how many training batches of a logged epoch to collect from (>= 1).
    """

    #: How each statistic other than count/mean/m2 combines across batches and ranks (sum, max or min).
    reductions: ClassVar[dict[str, str]] = dict(DEFAULT_REDUCTIONS)
    #: The values :meth:`epoch_statistics` returns, logged as ``features/{layer}/{name}``.
    stat_names: ClassVar[tuple[str, ...]] = ("mean", "std", "sparsity", "max")

    def __init__(
        self, layer_names: str | Sequence[str] = "auto", log_every_n_epochs: int = 1, num_batches: int = 10
    ) -> None:
        super().__init__()
        names = [layer_names] if isinstance(layer_names, str) else list(layer_names or [])
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"`layer_names` must be 'auto' or one or more named_modules() names, got {layer_names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"`layer_names` lists a layer twice: {names}")
        if "auto" in names and len(names) > 1:
            raise ValueError(f"`layer_names` is either 'auto' or a list of layer names, got {names}")
        positive_int(log_every_n_epochs, "`log_every_n_epochs`")
        positive_int(num_batches, "`num_batches`")
        for key, op in self.reductions.items():
            if key not in MOMENT_KEYS and op not in REDUCTION_IDENTITY:
                raise ValueError(f"reduction of {key!r} can be sum, max or min, got {op!r}")
        self.layer_names = names
        self.log_every_n_epochs = log_every_n_epochs
        self.schedule = EveryN(every_n_epochs=log_every_n_epochs)
        self.num_batches = num_batches
        self._layers: dict[str, nn.Module] = {}
        self._metrics: dict[str, LayerStats] = {}
        self._views: dict[str, dict[str, _StatView]] = {}
        self._epoch_cache: dict[str, dict[str, float]] = {}
        self._handles: list[RemovableHandle] = []
        self._logged_this_epoch = False
        self._pending: dict[str, list[Tensor]] = {}

    # ------------------------------------------------------------------ override points
    def batch_statistics(self, layer_name: str, output: Tensor) -> dict[str, Tensor]:
        """Statistics of one layer output for one batch; keys other than count/mean/m2 need a
        ``reductions`` entry."""
        return activation_stats(output)

    def epoch_statistics(self, layer_name: str, stats: Mapping[str, Tensor]) -> dict[str, float]:
        """The values logged as ``features/{layer_name}/{key}`` (keys: ``stat_names``) from the
        rank-merged statistics."""
        return finalize_stats(stats)

    # ------------------------------------------------------------------ hooks
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer_names=tuple(self.layer_names))

    @property
    def resolved_layer_names(self) -> list[str]:
        """The layers monitored (after ``setup``; ``"auto"`` resolved)."""
        return list(self._layers)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.layer_names == ["auto"]:
            # the size a non-timm model is probed at: the datamodule's, else the model's own (or 224 px)
            names = auto_layer_names(pl_module, input_size=getattr(trainer.datamodule, "image_size", None))
        else:
            names = self.layer_names
        self._layers = resolve_layers(pl_module, names, where="FeatureMonitorCallback.layer_names")
        keys = (*MOMENT_KEYS, *(k for k in self.reductions if k not in MOMENT_KEYS))
        self._metrics = {name: LayerStats(keys, self.reductions) for name in self._layers}
        self._views = {name: {s: _StatView(self, name, s) for s in self.stat_names} for name in self._layers}
        if stage == "fit" and trainer.is_global_zero:
            log.info("FeatureMonitorCallback: monitoring %s", ", ".join(self._layers))

    def _collecting(self, trainer: pl.Trainer) -> bool:
        return self.schedule.epoch_due(trainer.current_epoch)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # `setup` runs before the strategy moves the model: put the states where the model (and
        # the process group's backend, e.g. NCCL) is now.
        for name, metric in self._metrics.items():
            self._metrics[name] = metric.to(pl_module.device)
            metric.reset()
        self._epoch_cache = {}
        self._pending = {name: [] for name in self._metrics}
        self._logged_this_epoch = False

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
        if batch_idx >= self.num_batches or not self._collecting(trainer) or self._logged_this_epoch:
            return
        # Once per epoch (each log call goes through Lightning's result collection, which costs
        # more than the statistics): Lightning keeps the views and computes them at the
        # epoch's end, from the statistics of every collected batch. Every rank logs the same
        # keys in the same order (whatever it collected): Lightning merges them across ranks then.
        self._logged_this_epoch = True
        for name, views in self._views.items():
            for stat, view in views.items():
                view.update()
                pl_module.log(
                    f"{FEATURES_PREFIX}/{name}/{stat}",
                    view,
                    on_step=False,
                    on_epoch=True,
                    metric_attribute=f"_feature_monitor/{name}/{stat}",
                )

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()
        if self._collecting(trainer):
            self.schedule.mark_epoch(trainer.current_epoch)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hooks()

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()  # {"last_logged_epoch": ...}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state_dict)

    # ------------------------------------------------------------------ internals
    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                return
            with torch.no_grad():
                # one row per batch; merged into the metric once, when the epoch's values are computed
                self._pending[name].append(self._metrics[name].row(self.batch_statistics(name, tensor)))

        return hook

    def _epoch_value(self, layer: str, stat: str) -> float:
        """Called by Lightning (through :class:`_StatView`) when it computes the epoch metrics."""
        if layer not in self._epoch_cache:
            metric = self._metrics[layer]
            pending = self._pending.get(layer)
            if pending:
                metric.update(torch.stack(pending))
                pending.clear()
            merged = metric.as_dict(metric.compute().cpu())  # synced across ranks by torchmetrics
            values = self.epoch_statistics(layer, merged)
            missing = [s for s in self.stat_names if s not in values]
            if missing:
                raise KeyError(
                    f"{type(self).__name__}.epoch_statistics returned no {missing}: return every name in stat_names"
                )
            self._epoch_cache[layer] = values
        return float(self._epoch_cache[layer][stat])

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()


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

