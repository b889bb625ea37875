"""``python run.py --help``: the config groups and their options, without importing torch,
Lightning or even Hydra (Hydra's own help composes every group and takes seconds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["help_text"]

HEADER = "run.py: train a timm image classifier with PyTorch Lightning, configured by Hydra."
EXAMPLES = """\
Examples:
  python run.py                                   # default experiment: digits, resnet18, csv logger
  python run.py model.backbone=efficientnet_b0 model.optimizer.lr=3e-4 data.batch_size=64 trainer.max_epochs=3 seed=7
  python run.py data=shapes logger=tensorboard callbacks=interp
  python run.py trainer=ddp_cpu                   # 2 CPU processes over gloo
  python run.py -m model.optimizer.lr=1e-3,1e-2 data.batch_size=32,64
  python run.py -m hparams_search=optuna hydra/launcher=joblib
  python run.py ckpt_path=last hydra.run.dir=outputs/train/runs/<date_time>

More: python run.py --cfg job (print the composed config), --hydra-help (Hydra's flags),
HYDRA_FULL_ERROR=1 (full tracebacks)."""

# Options that installed Hydra plugins add to Hydra's own groups: (group, option, plugin module).
PLUGIN_OPTIONS = (
    ("hydra/launcher", "joblib", "hydra_plugins.hydra_joblib_launcher"),
    ("hydra/launcher", "submitit_local", "hydra_plugins.hydra_submitit_launcher"),
    ("hydra/launcher", "submitit_slurm", "hydra_plugins.hydra_submitit_launcher"),
    ("hydra/sweeper", "optuna", "hydra_plugins.hydra_optuna_sweeper"),
)


def _groups(conf_dir: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in sorted(conf_dir.rglob("*.yaml")):
        group = path.parent.relative_to(conf_dir).as_posix()
        if group != ".":
            groups.setdefault(group, []).append(path.stem)
    return groups


def _plugin_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def help_text(conf_dir: str | Path) -> str:
    """The help screen for the configs under ``conf_dir``."""
    groups = _groups(Path(conf_dir))
    app = {g: o for g, o in groups.items() if not g.startswith("hydra/")}
    hydra_groups: dict[str, list[str]] = {"hydra/launcher": ["basic"], "hydra/sweeper": ["basic"]}
    for group, option, module in PLUGIN_OPTIONS:
        if _plugin_installed(module):
            hydra_groups[group].append(option)
    for group, options in groups.items():
        if group.startswith("hydra/"):
            hydra_groups.setdefault(group, []).extend(options)
    width = max(len(g) for g in [*app, *hydra_groups])
    lines = [HEADER, "", "Config groups (pick one option: group=option):"]
    lines += [f"  {g:<{width}}  {', '.join(o)}" for g, o in app.items()]
    lines += ["", "Hydra groups:"]
    lines += [f"  {g:<{width}}  {', '.join(o)}" for g, o in hydra_groups.items()]
    lines += ["", "Any value can be overridden: key=value (see conf/ for every key).", "", EXAMPLES]
    return "\n".join(lines)
