"""Training callbacks: explanations, feature statistics, gram matrices, NaN guard, gradient norms, weight EMA.

Every periodic callback follows one schedule, :class:`callbacks.schedule.EveryN`; every image goes
through :func:`callbacks.image_logging.log_image` (all attached loggers plus a PNG under
``{default_root_dir}/images/``). The maths live in :mod:`interpret.stats`. Each class has a yaml
under ``conf/callbacks/``.

No name exported here may equal a submodule's name (``gram_matrix``, ``grad_norm``, ...): it would
replace the submodule attribute, and ``_target_: callbacks.<module>.<Class>`` would stop resolving.
"""

from __future__ import annotations

import importlib
from typing import Any

#: each exported name -> the module that defines it, imported on first use (PEP 562): importing
#: ``callbacks.names`` (torch-free, for the run report) must not import torch and Lightning
_EXPORTS = {
    "CartographyCallback": "callbacks.cartography",
    "EMAWeights": "callbacks.ema_weights",
    "EveryN": "callbacks.schedule",
    "FeatureMonitorCallback": "callbacks.feature_monitor",
    "GradNormMonitor": "callbacks.grad_norm",
    "GramMatrixCallback": "callbacks.gram_matrix",
    "InterpretationCallback": "callbacks.interpretation",
    "TerminateOnNaN": "callbacks.terminate_on_nan",
    "cosine_gram": "interpret.stats",
    "effective_rank": "interpret.stats",
    "log_image": "callbacks.image_logging",
    "log_scalars": "callbacks.image_logging",
}

__all__ = [
    "CartographyCallback",
    "EMAWeights",
    "EveryN",
    "FeatureMonitorCallback",
    "GradNormMonitor",
    "GramMatrixCallback",
    "InterpretationCallback",
    "TerminateOnNaN",
    "cosine_gram",
    "effective_rank",
    "log_image",
    "log_scalars",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once: later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
