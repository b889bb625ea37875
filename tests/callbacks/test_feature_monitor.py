"""FeatureMonitorCallback in real (tiny) fits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from callbacks import FeatureMonitorCallback
from callbacks.feature_monitor import LayerStats
from interpret.stats import DEFAULT_REDUCTIONS, activation_stats, finalize_stats, merge_stats
from tests.support.callback_fits import RaiseAt, TinyData, TinyNet, count_hooks, csv_rows


def expected_stats(model: TinyNet, data: TinyData, layer: str, num_batches: int) -> dict[str, float]:
    """What one process seeing the first ``num_batches`` training batches should log."""
    module = dict(model.named_modules())[layer]
    acc = None
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, a, o: outputs.append(o.detach()))
    try:
        with torch.no_grad():
            for i, (x, _) in enumerate(data.train_dataloader()):
                if i == num_batches:
                    break
                model(x)
    finally:
        handle.remove()
    for o in outputs:
        acc = merge_stats(acc, activation_stats(o))
    return finalize_stats(acc)


def test_logged_stats_equal_stats_of_the_first_batches(trainer_factory) -> None:
    model, data = TinyNet(lr=0.0), TinyData(n=128, batch_size=16)
    cb = FeatureMonitorCallback(["act1", "conv2"], log_every_n_epochs=1, num_batches=3)
    trainer = trainer_factory([cb], limit_train_batches=6, limit_val_batches=0)
    trainer.fit(model, data)
    for layer in ("act1", "conv2"):
        expected = expected_stats(model, data, layer, 3)
        for key in ("mean", "std", "sparsity", "max"):
            got = float(trainer.callback_metrics[f"features/{layer}/{key}"])
            assert got == pytest.approx(expected[key], rel=1e-5, abs=1e-7), (layer, key)
    assert 0.2 < float(trainer.callback_metrics["features/act1/sparsity"]) < 0.8  # after a ReLU
    assert count_hooks(model) == 0


def test_logs_on_the_scheduled_epochs_only(trainer_factory, tmp_path: Path) -> None:
    cb = FeatureMonitorCallback("act2", log_every_n_epochs=2, num_batches=2)
    trainer = trainer_factory([cb], max_epochs=3, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(TinyNet(), TinyData(n=64))
    rows = csv_rows(tmp_path / "csv")
    logged = sorted((int(r["epoch"]), int(r["step"])) for r in rows if r.get("features/act2/mean"))
    # epoch-level metrics of Lightning: the epoch's last step (3 steps per epoch), epochs 0 and 2
    assert logged == [(0, 2), (2, 8)]
    assert cb.state_dict() == {"last_logged_epoch": 2}


def test_hooks_are_removed_after_an_exception(trainer_factory) -> None:
    model = TinyNet()
    cb = FeatureMonitorCallback(["act1", "act2"], num_batches=5)
    trainer = trainer_factory([cb, RaiseAt(at_batch=2)], limit_train_batches=4, limit_val_batches=0)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, TinyData(n=64))
    assert count_hooks(model) == 0


def test_a_wrong_layer_name_fails_at_setup_with_the_closest_names(trainer_factory) -> None:
    trainer = trainer_factory([FeatureMonitorCallback(["act1", "conv3"])], limit_train_batches=1)
    with pytest.raises(ValueError, match=r"'conv3'.*closest names: conv2, conv1"):
        trainer.fit(TinyNet(), TinyData(n=32))
    assert trainer.global_step == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer_names": []}, "layer_names"),
        ({"layer_names": ["a", "a"]}, "twice"),
        ({"layer_names": "a", "num_batches": 0}, "num_batches"),
        ({"layer_names": "a", "log_every_n_epochs": 1.5}, "log_every_n_epochs"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureMonitorCallback(**kwargs)


class L1FeatureMonitor(FeatureMonitorCallback):
    """The documented override point: an extra statistic without copying the class."""

    reductions = {**FeatureMonitorCallback.reductions, "abs_sum": "sum"}
    stat_names = (*FeatureMonitorCallback.stat_names, "l1")

    def batch_statistics(self, layer_name, output):
        sums = super().batch_statistics(layer_name, output)
        sums["abs_sum"] = output.detach().abs().sum(dtype=torch.float64)
        return sums

    def epoch_statistics(self, layer_name, sums):
        stats = super().epoch_statistics(layer_name, sums)
        stats["l1"] = float(sums["abs_sum"] / sums["count"])
        return stats


def test_custom_statistic_through_the_override_point(trainer_factory) -> None:
    model, data = TinyNet(lr=0.0), TinyData(n=64)
    trainer = trainer_factory([L1FeatureMonitor("conv1", num_batches=2)], limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, data)
    x = torch.cat([b[0] for b, _ in zip(data.train_dataloader(), range(2))])
    with torch.no_grad():
        expected = model.conv1(x).abs().mean().item()
    assert float(trainer.callback_metrics["features/conv1/l1"]) == pytest.approx(expected, rel=1e-5)
    assert "features/conv1/mean" in trainer.callback_metrics


def test_only_training_forwards_are_counted(trainer_factory) -> None:
    """Validation (and anything else outside the first training batches) is not recorded."""
    model, data = TinyNet(lr=0.0), TinyData(n=64)
    cb = FeatureMonitorCallback("act1", num_batches=1)
    trainer = trainer_factory([cb], limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=2)
    trainer.fit(model, data)
    expected = expected_stats(model, data, "act1", 1)
    assert float(trainer.callback_metrics["features/act1/mean"]) == pytest.approx(expected["mean"], rel=1e-6)


def test_other_callbacks_forwards_at_batch_end_are_not_counted(trainer_factory) -> None:
    """An InterpretationCallback listed first runs the model at every batch end: not training data."""
    from callbacks import InterpretationCallback

    model, data = TinyNet(lr=0.0), TinyData(n=64)
    cbs = [InterpretationCallback(log_every_n_steps=1, num_samples=4), FeatureMonitorCallback("act1", num_batches=3)]
    trainer = trainer_factory(cbs, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(model, data)
    assert cbs[0].num_logged == 3
    expected = expected_stats(model, data, "act1", 3)
    assert float(trainer.callback_metrics["features/act1/mean"]) == pytest.approx(expected["mean"], rel=1e-6)


def test_layer_stats_rank_reduction_is_the_chan_merge() -> None:
    """The torchmetrics state's dist_reduce_fx (what DDP sync runs) merges stacked rank rows."""
    g = torch.Generator().manual_seed(2)
    rank_data = [100 + 0.01 * torch.randn(4, 7, generator=g), 100 + 0.01 * torch.randn(9, 7, generator=g)]
    metrics = []
    for x in rank_data:
        m = LayerStats(("count", "mean", "m2", "zeros", "max"), DEFAULT_REDUCTIONS)
        m.update(activation_stats(x))
        metrics.append(m)
    stacked = torch.stack([m.stats for m in metrics])
    merged = metrics[0].as_dict(metrics[0]._reductions["stats"](stacked))
    everything = torch.cat([x.flatten() for x in rank_data]).double()
    stats = finalize_stats(merged)
    assert stats["std"] == pytest.approx(float(everything.std(unbiased=False)), rel=1e-6)
    assert stats["max"] == pytest.approx(float(everything.max()))
