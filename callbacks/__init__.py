"""Training callbacks: explanations, feature statistics, gram matrices, NaN guard, gradient norms, weight EMA.

Every periodic callback follows one schedule, :class:`callbacks.schedule.EveryN`; every image goes
through :func:`callbacks.image_logging.log_image` (all attached loggers plus a PNG under
``{default_root_dir}/images/``). The maths live in :mod:`interpret.stats`. Each class has a yaml
under ``conf/callbacks/``.

No name exported here may equal a submodule's name (``gram_matrix``, ``grad_norm``, ...): it would
replace the submodule attribute, and ``_target_: callbacks.<module>.<Class>`` would stop resolving.
"""

from callbacks.cartography import CartographyCallback
from callbacks.ema_weights import EMAWeights
from callbacks.feature_monitor import FeatureMonitorCallback
from callbacks.grad_norm import GradNormMonitor
from callbacks.gram_matrix import GramMatrixCallback
from callbacks.image_logging import log_image, log_scalars
from callbacks.interpretation import InterpretationCallback
from callbacks.schedule import EveryN
from callbacks.terminate_on_nan import TerminateOnNaN
from interpret.stats import cosine_gram, effective_rank

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
