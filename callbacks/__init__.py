"""Training callbacks: explanations, feature statistics, gram matrices, NaN guard, gradient norms.

Every image goes through :func:`callbacks.image_logging.log_image` (all attached loggers plus a PNG
under ``{default_root_dir}/images/``). Each class has a yaml under ``conf/callbacks/``.

No name exported here may equal a submodule's name (``gram_matrix``, ``grad_norm``, ...): it would
replace the submodule attribute, and ``_target_: callbacks.<module>.<Class>`` would stop resolving.
"""

from callbacks.feature_monitor import FeatureMonitorCallback
from callbacks.grad_norm import GradNormMonitor
from callbacks.gram_matrix import GramMatrixCallback, cosine_gram, effective_rank
from callbacks.image_logging import log_image, log_scalars
from callbacks.interpretation import InterpretationCallback
from callbacks.nan_guard import TerminateOnNaN

__all__ = [
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
