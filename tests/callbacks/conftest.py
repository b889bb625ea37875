"""Fixtures of the callback tests: offline loggers in tmp_path and tiny CPU trainers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

# the repository root first, also in DDP spawn children: the packages under test and tests.support
# are imported from the working tree
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture(autouse=True)
def _finish_wandb() -> Any:
    """Close any wandb run a test left open: WandbLogger would otherwise reuse it (and its folder)."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def make_logger(kind: str, root: Path) -> Any:
    """One logger of the runner's options, writing below ``root``; None for ``none``."""
    from lightning.pytorch import loggers

    if kind == "none":
        return None
    if kind == "csv":
        return loggers.CSVLogger(str(root), name="csv")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(str(root), name="tb")
    if kind == "wandb":
        return loggers.WandbLogger(save_dir=str(root), offline=True, project="cbtest")
    if kind == "mlflow":
        return loggers.MLFlowLogger(
            experiment_name="cbtest",
            tracking_uri=f"sqlite:///{root}/mlflow.db",
            artifact_location=str(root / "mlartifacts"),
        )
    raise ValueError(kind)


@pytest.fixture
def trainer_factory(tmp_path: Path) -> Callable[..., Any]:
    """``trainer_factory(callbacks, logger="csv", **trainer_kwargs)`` -> a tiny CPU Trainer in tmp_path."""
    import lightning.pytorch as pl

    def make(callbacks: list[Any], logger: str | list[str] = "csv", **kwargs: Any) -> pl.Trainer:
        kinds = [logger] if isinstance(logger, str) else list(logger)
        made = [make_logger(k, tmp_path) for k in kinds]
        made = [m for m in made if m is not None]
        options: dict[str, Any] = dict(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            default_root_dir=str(tmp_path),
            logger=made or False,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
        )
        options.update(kwargs)
        return pl.Trainer(**options)

    return make
