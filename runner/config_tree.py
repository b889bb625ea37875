"""Print the composed config as a rich tree and save it in the run dir."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf

__all__ = ["print_config_tree"]

ORDER = ("data", "model", "callbacks", "logger", "trainer", "paths")


def print_config_tree(
    cfg: DictConfig, print_order: Sequence[str] = ORDER, save_to: str | Path | None = None, show: bool = True
) -> str:
    """Render ``cfg`` (resolved) as a tree of yaml blocks, one per top-level key.

    Args:
        cfg: the composed config.
        print_order: top-level keys shown first, in this order; the others follow.
        save_to: a file to write the tree to (plain text).
        show: print it to the terminal.

    Returns:
        The tree as plain text.
    """
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in print_order if k in cfg] + [k for k in cfg if k not in print_order]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    console = rich.console.Console(record=True, width=120, file=None if show else io.StringIO())
    console.print(tree)
    text = console.export_text()
    if save_to is not None:
        Path(save_to).write_text(text)
    return text
