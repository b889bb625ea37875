"""The callbacks' per-step costs that sit outside their own work (scripts/bench_callbacks.py measures them)."""

from __future__ import annotations

from tests.support.callback_fits import TinyData, TinyNet

from callbacks import FeatureMonitorCallback


def test_feature_monitor_logs_each_value_once_per_epoch_with_the_stats_of_every_collected_batch(
    trainer_factory,
) -> None:
    # Each pl_module.log call costs ~1 ms in Lightning's result collection: 8 values logged on
    # every collected batch cost more than the statistics themselves. Once per epoch is enough:
    # Lightning computes the logged views at the epoch's end.
    model, data = TinyNet(lr=0.0), TinyData(n=128, batch_size=16)
    calls: list[str] = []
    log = model.log

    def counting_log(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name.startswith("features/"):
            calls.append(name)
        return log(name, *args, **kwargs)

    model.log = counting_log
    cb = FeatureMonitorCallback(["act1", "conv2"], log_every_n_epochs=1, num_batches=3)
    trainer = trainer_factory([cb], max_epochs=2, limit_train_batches=5, limit_val_batches=0)
    trainer.fit(model, data)
    assert len(calls) == 2 * 2 * 4  # epochs x layers x (mean, std, sparsity, max)
    assert len(set(calls)) == 8
    # (that the values are those of all collected batches: tests/callbacks/test_feature_monitor.py,
    # test_logged_stats_equal_stats_of_the_first_batches)
    assert "features/conv2/mean" in trainer.callback_metrics


def test_feature_monitor_merges_the_batches_once_per_epoch(trainer_factory) -> None:
    # Merging into the torchmetrics state on every forward cost ~0.2 ms per layer and batch
    # (the metric's update wrapper and ~30 scalar ops); the rows are merged at the epoch's end.
    cb = FeatureMonitorCallback(["act1", "conv2"], log_every_n_epochs=1, num_batches=3)
    trainer = trainer_factory([cb], max_epochs=2, limit_train_batches=5, limit_val_batches=0)
    updates: list[int] = []
    setup = cb.setup

    def counting_setup(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        setup(*args, **kwargs)
        for metric in cb._metrics.values():
            update = metric.update

            def counted(stats, _update=update):  # noqa: ANN001, ANN202
                updates.append(1 if stats.ndim == 1 else stats.shape[0])
                return _update(stats)

            metric.update = counted

    cb.setup = counting_setup
    trainer.fit(TinyNet(lr=0.0), TinyData(n=128, batch_size=16))
    assert updates == [3, 3, 3, 3]  # (2 layers x 2 epochs) merges of the 3 collected batches
