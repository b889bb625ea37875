"""Build callbacks and loggers from every config node that has a ``_target_``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

__all__ = ["instantiate_callbacks", "instantiate_loggers", "wandb_has_credentials", "target_nodes"]


def target_nodes(cfg: DictConfig | None, group: str) -> list[tuple[str, DictConfig]]:
    """``(name, node)`` for every child of ``cfg`` that has a ``_target_``; other keys are skipped."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{group}: expected a mapping of name -> config, got {type(cfg).__name__}")
    return [(str(name), node) for name, node in cfg.items() if isinstance(node, DictConfig) and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool) -> list[Callback]:
    """Instantiate the callbacks of ``cfg.callbacks``; LearningRateMonitor is left out without a logger."""
    callbacks: list[Callback] = []
    for name, node in target_nodes(cfg, "callbacks"):
        log.info(f"Instantiating callback {name} <{node._target_}>")
        cb = hydra.utils.instantiate(node)
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks.{name}: {node._target_} is not a lightning.pytorch.Callback")
        if isinstance(cb, LearningRateMonitor) and not has_logger:
            log.info(f"Skipping callback {name}: LearningRateMonitor needs a logger (logger=none)")
            continue
        callbacks.append(cb)
    return callbacks


def wandb_has_credentials() -> bool:
    """True when an API key is set or `wandb login` stored one in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate the loggers of ``cfg.logger``.

    A WandbLogger with ``offline: null`` runs offline unless credentials are configured; an
    mlflow sqlite store's folder is created first.
    """
    loggers: list[Logger] = []
    for name, node in target_nodes(cfg, "logger"):
        target = str(node._target_)
        if target.endswith("WandbLogger") and node.get("offline") is None:
            with open_dict(node):
                node.offline = not wandb_has_credentials()
            if node.offline:
                os.environ.setdefault("WANDB_MODE", "offline")
                log.info("wandb: no credentials found, logging offline (set WANDB_API_KEY or run `wandb login`)")
        if target.endswith("WandbLogger"):
            Path(node.save_dir).mkdir(parents=True, exist_ok=True)
        if target.endswith("MLFlowLogger"):
            uri = str(node.get("tracking_uri") or "")
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        log.info(f"Instantiating logger {name} <{target}>")
        loggers.append(hydra.utils.instantiate(node))
    return loggers


def resolved_container(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain, resolved python containers."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
