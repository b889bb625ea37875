"""Every callback with every logger option: images and scalars read back from each logger's storage."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from tests.support.callback_fits import (
    TinyData,
    TinyNet,
    mlflow_images,
    read_tensorboard_images,
    read_tensorboard_scalars,
    wandb_images,
)

from callbacks import (
    FeatureMonitorCallback,
    GradNormMonitor,
    GramMatrixCallback,
    InterpretationCallback,
    TerminateOnNaN,
)

IMAGE_KEYS = ("interpretation/gradcam", "gram_matrix")
SCALARS = ("features/act1/mean", "features/conv2/sparsity", "gram_matrix/mean_offdiag", "grad_norm/total")


def all_callbacks() -> list:
    return [
        InterpretationCallback(log_every_n_epochs=1, num_samples=4),
        FeatureMonitorCallback(["act1", "conv2"], num_batches=2),
        GramMatrixCallback(log_every_n_steps=2),
        TerminateOnNaN(),
        GradNormMonitor(log_every_n_steps=2),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["none", "csv", "tensorboard", "wandb", "mlflow"])
def test_every_callback_with_every_logger(trainer_factory, tmp_path: Path, logger: str) -> None:
    cbs = all_callbacks()
    trainer = trainer_factory(cbs, logger=logger, max_epochs=1, limit_train_batches=4, limit_val_batches=1)
    trainer.fit(TinyNet(), TinyData(n=64))
    if logger == "wandb":
        import wandb

        wandb.finish()

    # PNG files, whatever the logger
    assert sorted(p.name for p in (tmp_path / "images" / "interpretation" / "gradcam").iterdir()) == ["step_000004.png"]
    assert sorted(p.name for p in (tmp_path / "images" / "gram_matrix").iterdir()) == [
        "step_000002.png",
        "step_000004.png",
    ]
    assert not cbs[3].run_failed

    if logger == "csv":
        rows = list(csv.DictReader(next((tmp_path / "csv").rglob("metrics.csv")).open()))
        for key in SCALARS:
            assert any(r.get(key) for r in rows), key
    elif logger == "tensorboard":
        for key in IMAGE_KEYS:
            assert read_tensorboard_images(tmp_path / "tb", key), key
        for key in SCALARS:
            assert read_tensorboard_scalars(tmp_path / "tb", key), key
    elif logger == "wandb":
        assert len(wandb_images(tmp_path, "interpretation/gradcam")) == 1
        assert len(wandb_images(tmp_path, "gram_matrix")) == 2
        # wandb 0.31 keeps offline history only in the binary run-*.wandb record log (no python reader)
        record = next(tmp_path.rglob("offline-run-*/run-*.wandb"))
        deadline = time.monotonic() + 30  # wandb-core may still be writing the record after finish()
        while b"features/" not in record.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.2)
        history = record.read_bytes()
        for key in SCALARS:
            assert key.encode() in history, key
    elif logger == "mlflow":
        from mlflow.tracking import MlflowClient

        assert [p.name for p in mlflow_images(tmp_path / "mlartifacts", "interpretation/gradcam")] == ["step_000004.png"]
        assert len(mlflow_images(tmp_path / "mlartifacts", "gram_matrix")) == 2
        run_id = trainer.logger.run_id
        metrics = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id).data.metrics
        for key in SCALARS:
            assert key in metrics, key
