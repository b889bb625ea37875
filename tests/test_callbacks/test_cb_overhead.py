"""The callbacks' per-step costs that sit outside their own work (scripts/bench_callbacks.py measures them)."""

from __future__ import annotations

from cb_helpers import TinyData, TinyNet

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
    # (that the values are those of all collected batches: test_cb_feature_monitor.py,
    # test_logged_stats_equal_stats_of_the_first_batches)
    assert "features/conv2/mean" in trainer.callback_metrics
