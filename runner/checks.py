"""Config checks that run before anything is built, so bad input fails in a second, not an hour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.artifacts import LAST_CHECKPOINT, last_checkpoint

__all__ = ["check_config", "resolve_ckpt_path"]

_INT = (int,)
_NUM = (int, float)
# Known fields and the types they take; `None` in a tuple means null is allowed.
EXPECTED_TYPES: dict[str, tuple[Any, ...]] = {
    "seed": (int, None),
    "train": (bool,),
    "test": (bool,),
    "ckpt_path": (str, None),
    "optimized_metric": (str, None),
    "print_config": (bool,),
    "report": (bool,),
    "keep_freed_memory": (bool,),
    "trainer.max_epochs": (int, None),
    "trainer.min_epochs": (int, None),
    "trainer.num_nodes": _INT,
    "trainer.log_every_n_steps": (int, None),
    "trainer.check_val_every_n_epoch": (int, None),
    "trainer.devices": (int, str, list),
    "trainer.accelerator": (str,),
    "trainer.deterministic": (bool, str),
    "model.backbone": (str,),
    "model.pretrained": (bool,),
    "model.label_smoothing": _NUM,
    "model.optimizer.lr": _NUM,
    "model.optimizer.weight_decay": _NUM,
    "data.batch_size": _INT,
    "data.image_size": _INT,
    "data.num_workers": (int, None),
}
_TYPE_NAMES = {int: "an int", float: "a float", bool: "true/false", str: "a string", list: "a list", None: "null"}


def _is(value: Any, kind: Any) -> bool:
    if kind is None:
        return value is None
    if kind in (int, float) and isinstance(value, bool):
        return False  # true/false is not a number
    return isinstance(value, kind)


def check_config(cfg: DictConfig) -> None:
    """Raise a ValueError naming every missing required value and every value of the wrong type."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    if missing:
        hint = " ".join(f"{k}=..." for k in missing)
        raise ValueError(f"missing required value(s): {', '.join(missing)}. Set them on the command line: {hint}")
    problems = []
    for key, kinds in EXPECTED_TYPES.items():
        node = OmegaConf.select(cfg, key, throw_on_missing=False, default="__absent__")
        if isinstance(node, str) and node == "__absent__":
            continue
        value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        if not any(_is(value, k) for k in kinds):
            allowed = " or ".join(_TYPE_NAMES.get(k, str(k)) for k in kinds)
            problems.append(f"{key}: expected {allowed}, got {value!r} ({type(value).__name__})")
    if problems:
        raise ValueError("wrong value type: " + "; ".join(problems))
    trainer = cfg.get("trainer") or {}
    if trainer.get("sync_batchnorm") and trainer.get("accelerator") == "cpu":
        raise ValueError(
            "trainer.sync_batchnorm=true needs GPUs (SyncBatchNorm has no CPU kernel); "
            "with trainer.accelerator=cpu set trainer.sync_batchnorm=false, or use trainer=ddp_cpu"
        )


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """Turn the ``ckpt_path`` config value into a checkpoint file.

    - ``null``: start from scratch.
    - ``last``: ``<output_dir>/checkpoints/last.ckpt``, where ``output_dir`` is this run's directory
      (resume an earlier run with ``ckpt_path=last hydra.run.dir=<that run's directory>``).
    - a run directory: its ``checkpoints/last.ckpt``.
    - a file: that file (relative paths are taken from the launch directory).
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        path = last_checkpoint(output_dir)
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: no checkpoints/last.ckpt in {str(output_dir)!r}; "
                "resume a run with ckpt_path=last hydra.run.dir=<that run's directory>"
            )
        return str(path)
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(ckpt_path)))
    if path.is_dir():
        for candidate in (last_checkpoint(path), path / LAST_CHECKPOINT):
            if candidate.is_file():
                return str(candidate)
        raise FileNotFoundError(f"ckpt_path: directory {str(path)!r} has no checkpoints/last.ckpt")
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path: no such checkpoint file {str(path)!r}")
    return str(path)
