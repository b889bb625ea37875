"""Issue 7 item 12: every third-party module imported by the project's code is declared in pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from tests.support.paths import REPO

OWN = {"runner", "callbacks", "interpret", "scripts", "run", "tests"}
#: the scripts' own modules, imported by their siblings (``python scripts/x.py`` puts scripts/ on sys.path)
SCRIPT_MODULES = {p.stem for p in (REPO / "scripts").glob("*.py")}


def imported_top_level_modules() -> dict[str, set[str]]:
    """``{module: {files}}`` of every absolute import in runner/, callbacks/, interpret/, scripts/, run.py."""
    files = [REPO / "run.py", *(p for d in ("runner", "callbacks", "interpret", "scripts") for p in (REPO / d).rglob("*.py"))]
    found: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for group in project["optional-dependencies"].values() for s in group]
    return {_normalise(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    dists = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    missing = {}
    for module, where in sorted(imported_top_level_modules().items()):
        if module in stdlib or module in OWN or module in SCRIPT_MODULES:
            continue
        owners = {_normalise(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported by {sorted(where)}) is not installed"
        if not owners & declared:
            missing[module] = (sorted(owners), sorted(where)[:3])
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
