"""Turn exceptions into short, actionable messages (full tracebacks with HYDRA_FULL_ERROR=1)."""

from __future__ import annotations

import os

__all__ = ["root_cause", "short_message", "full_error_requested"]


def full_error_requested() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def root_cause(exc: BaseException) -> BaseException:
    """Unwrap Hydra's InstantiationException (and similar wrappers) to the error the user caused."""
    from hydra.errors import InstantiationException

    seen = set()
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def short_message(exc: BaseException) -> str:
    """``"<ErrorType>: <message>"`` of the root cause, with Hydra's config path when it adds one."""
    cause = root_cause(exc)
    message = str(cause).strip() or repr(cause)
    text = f"{type(cause).__name__}: {message}"
    if cause is not exc:
        # InstantiationException messages end with "full_key: <node>": keep that pointer.
        outer = str(exc)
        if "full_key:" in outer and "full_key:" not in text:
            text += "\n  (config node: " + outer.split("full_key:")[-1].strip() + ")"
    return text
