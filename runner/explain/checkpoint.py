"""Find the checkpoint of ``ckpt_path`` and rebuild its model from the run's saved config.

:func:`find_checkpoint` turns a ``.ckpt`` file or a run directory into a checkpoint file;
:func:`load_checkpoint_model` rebuilds the model (from the run's ``.hydra/config.yaml`` or
``config_resolved.yaml``, else from the hyperparameters stored in the checkpoint: a classifier of
this project, or a detector through the one detector loader,
:func:`runner.models.detector_checkpoint.load_detector_checkpoint`) and loads its weights.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from runner.artifacts import CHECKPOINTS_DIR, CONFIG_FILES, RunMetrics
from runner.explain.inputs import CKPT_PATH_HELP

log = logging.getLogger(__name__)

__all__ = ["ema_state_dict", "find_checkpoint", "load_checkpoint_model", "run_dir_of", "saved_config", "saved_config_file", "sha256_of"]


def _best_from_metrics(run_dir: Path) -> Path | None:
    """The best checkpoint a finished run recorded in its ``metrics.json``, if it still exists."""
    metrics = RunMetrics.read(run_dir)
    best = metrics.best_model_path if metrics is not None else None
    if not best:
        return None
    path = Path(best)
    if not path.is_absolute():
        path = run_dir / path
    if path.is_file():
        return path
    local = run_dir / CHECKPOINTS_DIR / path.name  # a run directory that was moved
    return local if local.is_file() else None


def find_checkpoint(ckpt_path: Any) -> Path:
    """Turn ``ckpt_path`` (a ``.ckpt`` file or a run directory) into a checkpoint file.

    A run directory gives its best checkpoint (``metrics.json``'s ``best_model_path``, else the
    newest ``checkpoints/*.ckpt`` that is not ``last*.ckpt``), else ``checkpoints/last.ckpt``.

    Args:
        ckpt_path: the ``ckpt_path`` key, relative to the directory ``explain.py`` was started in.

    Raises:
        ValueError: ``ckpt_path`` not given.
        FileNotFoundError: nothing there, or no checkpoint in the run directory.
    """
    if ckpt_path is None or (isinstance(ckpt_path, str) and not ckpt_path.strip()):
        raise ValueError(CKPT_PATH_HELP)
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(ckpt_path)))
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"ckpt_path: no such checkpoint file or run directory {str(path)!r} "
            "(give a .ckpt file or a run directory such as outputs/train/runs/<run>)"
        )
    best = _best_from_metrics(path)
    if best is not None:
        return best
    for folder in (path / CHECKPOINTS_DIR, path):
        files = sorted((p for p in folder.glob("*.ckpt") if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
        best_files = [p for p in files if not p.name.startswith("last")]
        if best_files:
            return best_files[0]
        if files:
            return files[0]
    raise FileNotFoundError(f"ckpt_path: run directory {str(path)!r} has no checkpoint (no checkpoints/*.ckpt)")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_dir_of(ckpt: Path) -> Path:
    """The run directory of a checkpoint: above ``checkpoints/``, else the checkpoint's folder."""
    return ckpt.parent.parent if ckpt.parent.name == CHECKPOINTS_DIR else ckpt.parent


def saved_config_file(run_dir: Path) -> Path | None:
    """The run's saved config file (``.hydra/config.yaml``, else ``config_resolved.yaml``), if any."""
    return next((run_dir / name for name in CONFIG_FILES if (run_dir / name).is_file()), None)


def saved_config(run_dir: Path) -> DictConfig | None:
    """The run's saved training config, when one with a ``model`` node is there."""
    for name in CONFIG_FILES:
        if (run_dir / name).is_file():
            cfg = OmegaConf.load(run_dir / name)
            if isinstance(cfg, DictConfig) and "model" in cfg:
                return cfg
    return None


def _read(ckpt: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input
        raise ValueError(f"ckpt_path: {str(ckpt)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path: {str(ckpt)!r} is not a Lightning checkpoint of this project (no state_dict)")
    return checkpoint


def _from_config(train_cfg: DictConfig, hparams: dict[str, Any]) -> torch.nn.Module:
    import hydra

    node = OmegaConf.to_container(train_cfg.model, resolve=True)
    if not isinstance(node, dict):
        raise ValueError(f"the run's saved config has no model mapping (model: {node!r})")
    node.update({"pretrained": False, "weights_path": None})
    if "compile" in node:
        node["compile"] = False
    if hparams.get("num_classes") is not None:
        node["num_classes"] = hparams["num_classes"]
    log.info(f"Instantiating model <{node.get('_target_')}> with backbone <{node.get('backbone')}>")
    return hydra.utils.instantiate(node)


def _from_hparams(ckpt: Path, checkpoint: dict[str, Any]) -> torch.nn.Module:
    """A model of this project from the checkpoint's own hyperparameters.

    A detector's checkpoint (``detector.*`` tensors) goes through the one detector loader,
    :func:`~runner.models.detector_checkpoint.load_detector_checkpoint`; a classifier is rebuilt here.
    """
    from runner.models import ImageClassifier
    from runner.models.backbone import checkpoint_task
    from runner.models.detector_checkpoint import load_detector_checkpoint

    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if not hparams.get("backbone"):
        raise ValueError(
            f"ckpt_path: {str(ckpt)!r} has no run config next to it (.hydra/config.yaml) and no model "
            "hyperparameters inside it; give a checkpoint of a run of this project"
        )
    detector = checkpoint_task(checkpoint["state_dict"]) == "detection"
    cls_name = "ObjectDetector" if detector else "ImageClassifier"
    log.info(f"Instantiating model <runner.models.{cls_name}> with backbone <{hparams['backbone']}> (from the checkpoint)")
    if detector:
        return load_detector_checkpoint(ckpt)
    return ImageClassifier(**{**hparams, "pretrained": False, "weights_path": None, "compile": False})


def ema_state_dict(ckpt: Path, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The EMA weights a run with ``callbacks=[default,ema]`` saved in its checkpoint.

    :class:`callbacks.ema_weights.EMAWeights` keeps them in its callback state
    (``checkpoint["callbacks"][<its state key>]["ema_state_dict"]``), keyed as the model's own ``state_dict``.

    Raises:
        ValueError: naming ``weights=ema``: the checkpoint has no EMA weights.
    """
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and isinstance(state.get("ema_state_dict"), dict):
            return state["ema_state_dict"]
    raise ValueError(
        f"weights=ema: {str(ckpt)!r} holds no EMA weights (train with callbacks=[default,ema] to keep them); "
        "use weights=model"
    )


def load_checkpoint_model(
    ckpt: Path, train_cfg: DictConfig | None, device: torch.device, weights: str = "model"
) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model and load its weights.

    Args:
        ckpt: the checkpoint file.
        train_cfg: the run's saved config (its ``model`` node is instantiated); None: the model is
            rebuilt from the hyperparameters stored in the checkpoint.
        device: where the model goes.
        weights: ``model`` (the trained weights) or ``ema`` (the EMA average, :func:`ema_state_dict`).

    Returns:
        the model (in eval mode, on ``device``) and the loaded checkpoint dict.

    Raises:
        ValueError: naming ``ckpt_path``: unreadable, not of this project, or weights that do not fit.
    """
    checkpoint = _read(ckpt)
    if train_cfg is not None:
        model = _from_config(train_cfg, dict(checkpoint.get("hyper_parameters") or {}))
    else:
        model = _from_hparams(ckpt, checkpoint)
    state_dict = ema_state_dict(ckpt, checkpoint) if weights == "ema" else checkpoint["state_dict"]
    if weights == "ema":
        log.info("Explaining the EMA weights of the checkpoint (weights=ema)")
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"ckpt_path: the weights of {str(ckpt)!r} do not fit the model of its config "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[:3]})"
        )
    model.eval().to(device)
    return model, checkpoint
