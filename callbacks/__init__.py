"""Training callbacks: explanations, feature statistics, gram matrices, NaN guard, gradient norms.

Every image goes through :func:`callbacks.image_logging.log_image` (all attached loggers plus a PNG
under ``{default_root_dir}/images/``). Each class has a yaml under ``conf/callbacks/``.
"""

from callbacks.feature_monitor import FeatureMonitorCallback
from callbacks.grad_norm import GradNormMonitor
from callbacks.gram_matrix import GramMatrixCallback, effective_rank, gram_matrix
from callbacks.image_logging import log_image, log_scalars
from callbacks.interpretation import InterpretationCallback
from callbacks.nan_guard import TerminateOnNaN

__all__ = [
    "FeatureMonitorCallback",
    "GradNormMonitor",
    "GramMatrixCallback",
    "InterpretationCallback",
    "TerminateOnNaN",
    "effective_rank",
    "gram_matrix",
    "log_image",
    "log_scalars",
]
