"""The Jinja2 environment of the reports: templates in ``runner/report/templates/``, autoescaped.

Python code builds plain values (text, numbers, paths); every tag is written by a template. A page
is a list of :class:`Section` whose bodies are rendered templates (:class:`markupsafe.Markup`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from runner.report.values import fmt

__all__ = ["Section", "data_uri", "environment", "page", "render"]

TEMPLATES = Path(__file__).parent / "templates"
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".webp": "image/webp", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Section:
    """One ``<section>`` of a page: its anchor (``id``), its heading and its rendered body."""

    anchor: str
    heading: str
    body: Markup


def data_uri(path: str | Path) -> str:
    """The file as a ``data:`` URI (base64): the page opens offline."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


@cache
def environment() -> Environment:
    """The reports' Jinja2 environment: autoescape on, ``fmt`` and ``data_uri`` filters, ``markup`` test."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["fmt"] = fmt
    env.filters["data_uri"] = data_uri
    env.tests["markup"] = lambda value: isinstance(value, Markup)
    return env


def render(template: str, **context: Any) -> Markup:
    """``templates/<template>`` rendered with ``context``, as markup to embed in another template."""
    return Markup(environment().get_template(template).render(**context))


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """A whole HTML document (``base.html``): header, a link per section, the sections, the slider script."""
    return environment().get_template("base.html").render(title=title, subtitle=subtitle, sections=sections) + "\n"
