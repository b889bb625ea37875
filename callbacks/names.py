"""The names the callbacks write under, for the code that reads them back (the run report, ``runner.artifacts``).

This module imports nothing (no torch, no Lightning), and ``callbacks/__init__.py`` imports its classes
lazily: ``from callbacks.names import CARTOGRAPHY_FILE`` costs a report nothing, and the callbacks and
their readers share one spelling of each name.
"""

from __future__ import annotations

__all__ = ["CARTOGRAPHY_COLUMNS", "CARTOGRAPHY_FILE", "FEATURES_PREFIX", "GRAM_PREFIX", "HARDEST_KEY"]

#: the file :class:`~callbacks.CartographyCallback` writes in the run directory (``trainer.default_root_dir``)
CARTOGRAPHY_FILE = "cartography.csv"
#: its columns (``noisy`` only when the datamodule has ``noisy_indices``)
CARTOGRAPHY_COLUMNS: tuple[str, ...] = ("index", "label", "confidence", "variability", "correctness", "epochs")
#: the key of its image of the hardest samples (``images/cartography/hardest/step_NNNNNN.png``)
HARDEST_KEY = "cartography/hardest"
#: :class:`~callbacks.FeatureMonitorCallback` logs ``features/<layer>/<statistic>``
FEATURES_PREFIX = "features"
#: :class:`~callbacks.GramMatrixCallback` logs ``gram_matrix/<scalar>`` and the image ``gram_matrix``
GRAM_PREFIX = "gram_matrix"
