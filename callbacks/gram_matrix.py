"""GramMatrixCallback: the cosine-similarity matrix of a global batch's features, to spot collapse.

The maths are pure functions in :mod:`interpret.stats` (:func:`~interpret.stats.cosine_gram`,
:func:`~interpret.stats.gram_statistics`, :func:`~interpret.stats.even_indices`) and
:mod:`interpret.class_structure` (the order by class, ``class_separation``), tested without a
Trainer; :func:`interpret.gram_render.render_gram` draws the heatmap (re-exported here); the
callback decides when, gathers and logs.
(The matrix function is not called ``gram_matrix``: a package-level name must never shadow this
module, or ``_target_: callbacks.gram_matrix.GramMatrixCallback`` stops resolving.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from callbacks.image_logging import log_image, log_scalars
from callbacks.names import GRAM_PREFIX
from callbacks.schedule import EveryN
from interpret.checks import positive_int
from interpret.class_structure import class_separation, label_order
from interpret.gram_render import render_gram
from interpret.stats import even_indices, gram_statistics, gram_to_show

log = logging.getLogger(__name__)

__all__ = ["GramMatrixCallback", "render_gram"]


# --------------------------------------------------------------------------- callback
class GramMatrixCallback(Callback):
    """Every ``log_every_n_steps`` optimizer steps, log the cosine-similarity matrix of a batch's features.

    Schedule (:class:`~callbacks.schedule.EveryN`): at global steps n, 2n, 3n, ...
    (``trainer.global_step`` after the optimizer step, in ``on_train_batch_end``). The features are ``outputs[feature_key]`` of ``training_step``
    (for the project's ``ImageClassifier``: ``"features"``, the pooled pre-logits ``(B, D)``).
    They are gathered from all ranks (batches of different sizes are padded for the gather and
    trimmed), so the matrix covers the global batch in rank order; more than ``max_samples`` rows
    are thinned to ``max_samples`` evenly spaced ones (so every rank stays represented), and rank
    zero logs:

    - ``gram_matrix``: the heatmap of the cosines of the features minus their batch mean
      (``centered=True``, the default: similar samples positive, dissimilar ones negative; the raw
      cosines of post-ReLU features are all near 1, a uniform picture) or of the raw features
      (``centered=False``), on the fixed scale -1 to 1 with a colour bar and sample indices;
    - ``gram_matrix/mean_offdiag`` and ``gram_matrix/effective_rank`` of the raw features;
    - ``gram_matrix/centered_mean_offdiag`` and ``gram_matrix/centered_effective_rank`` of the
      features minus their batch mean. **Collapse shows in ``centered_effective_rank``** (towards
      1, or 0 when all samples are identical); raw post-ReLU features are non-negative, so the raw
      ``mean_offdiag`` is high without any collapse.
    - ``gram_matrix/num_samples``: how many samples the matrix covers.

    **Sorted by class.** When every rank has the batch's integer class labels (``outputs[label_key]``
    of ``training_step``, else ``batch[1]`` when the batch is a tuple or list whose second item is
    an integer tensor ``(B,)``, as in ``(images, labels)`` or ``(images, labels, indices)``), they
    are gathered like the features and the rows and columns are sorted by class (stable: within a
    class, batch order), the picture gets class bands (a coloured strip per class along the top and
    left edges, the class names of ``trainer.datamodule.class_names`` or the label numbers beside
    them, thin lines between the classes), and rank zero logs
    ``gram_matrix/class_separation``: the mean centred cosine of two samples of one class minus
    that of two samples of different classes (:func:`~interpret.class_structure.class_separation`;
    near 0 when the features ignore the class; not logged with fewer than 2 classes or no class
    with 2 samples). Without labels (detection batches, whose targets are lists of dicts) the
    matrix stays in batch order, said once at info level.

    When ``centered_effective_rank`` falls below ``collapse_threshold``, rank zero warns once
    (naming the step); ``collapse_warned`` records it, also in checkpoints.

    The gather happens in ``on_train_batch_end``, which every rank reaches in lockstep and in which
    neither Lightning's progress bars nor its checkpoint/early-stopping callbacks run a collective
    (the progress bars only read step-level values there). Every rank always takes part in the
    same collectives: a rank whose outputs lack the features says so in the first (size) gather,
    and then every rank skips; a rank without labels says so in the same gather, and then every
    rank skips the labels' gather (and the sort). It never interrupts training: a missing key, a
    non-dict output or a bad shape logs one warning naming what is available and is skipped.

    A run shorter than ``log_every_n_steps`` steps is warned about when training starts, and a
    run that never reached a logging step logs the last batch's matrix when training ends.

    In any Lightning project ``training_step`` returns the features beside the loss, e.g.
    ``return {"loss": loss, "features": pooled}`` (``(B, D)``, any float tensor per sample).

    Args:
        log_every_n_steps: log when ``trainer.global_step`` is a positive multiple of this.
        feature_key: the key of the ``training_step`` output dict holding ``(B, D)`` features.
        label_key: the key of the ``training_step`` output dict holding the ``(B,)`` integer class
            labels that sort the matrix; when absent, ``batch[1]`` if it is such a tensor.
        max_samples: the largest matrix side (>= 2).
        collapse_threshold: warn when the centred effective rank is below this (> 0); None: never.
        centered: show the Gram matrix of the centred features (True) or of the raw ones.
        config_key: where this callback's arguments live in a config (``callbacks.gram_matrix``
            under this project's ``run.py``), named in hints; None (any other project): hints
            name the constructor arguments (``feature_key=``).
    """

    def __init__(
        self,
        log_every_n_steps: int = 100,
        feature_key: str = "features",
        label_key: str = "labels",
        max_samples: int = 128,
        collapse_threshold: float | None = 2.0,
        centered: bool = True,
        config_key: str | None = None,
    ) -> None:
        super().__init__()
        positive_int(log_every_n_steps, "`log_every_n_steps`")
        if not isinstance(feature_key, str) or not feature_key:
            raise ValueError(f"`feature_key` must be a key of the training_step output dict, got {feature_key!r}")
        if not isinstance(label_key, str) or not label_key:
            raise ValueError(f"`label_key` must be a key of the training_step output dict, got {label_key!r}")
        if not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 2:
            raise ValueError(f"`max_samples` must be an int >= 2, got {max_samples!r}")
        if collapse_threshold is not None and (
            isinstance(collapse_threshold, bool)
            or not isinstance(collapse_threshold, (int, float))
            or not collapse_threshold > 0
        ):
            raise ValueError(f"`collapse_threshold` must be a number > 0 or null, got {collapse_threshold!r}")
        self.log_every_n_steps = log_every_n_steps
        self.schedule = EveryN(every_n_steps=log_every_n_steps)
        self.feature_key = feature_key
        self.label_key = label_key
        self.max_samples = max_samples
        self.collapse_threshold = None if collapse_threshold is None else float(collapse_threshold)
        if config_key is not None and (not isinstance(config_key, str) or not config_key):
            raise ValueError(f"`config_key` must be a config path such as 'callbacks.gram_matrix' or null, got {config_key!r}")
        self.centered = bool(centered)
        self.config_key = config_key
        self.collapse_warned = False
        self._warned = False
        self._said_no_labels = False
        #: the last batch's features and labels while nothing was logged yet (logged at the end of a short run)
        self._last_features: Tensor | None = None
        self._last_labels: Tensor | None = None

    def _argument(self, name: str) -> str:
        """How the user sets argument ``name``: its config key under the runner, else ``name=``."""
        if self.config_key is not None:
            return f"set {self.config_key}.{name}"
        return f"pass GramMatrixCallback({name}=...)"

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            total = trainer.estimated_stepping_batches
        except Exception:  # noqa: BLE001 - only for a hint: an unsized loader says nothing
            return
        if isinstance(total, int | float) and total < self.log_every_n_steps and self.schedule.last_step < 0:
            rank_zero_warn(
                f"GramMatrixCallback: this run has about {int(total)} optimizer steps, fewer than log_every_n_steps="
                f"{self.log_every_n_steps}: the matrix is logged once, at the end of training "
                f"({self._argument('log_every_n_steps')} to log during training)"
            )

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        features, self._last_features = self._last_features, None
        labels, self._last_labels = self._last_labels, None
        if self.schedule.last_step >= 0:  # logged at least once
            return
        # every rank gets here with or without features: the gather decides on all of them together
        self.schedule.mark_step(trainer.global_step)
        self._log(trainer, pl_module, features, labels, trainer.global_step)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(feature_key=self.feature_key)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not self.schedule.step_due(step):
            if self.schedule.last_step < 0:  # nothing logged yet: keep the batch for on_train_end
                features = self._features(outputs)
                self._last_features = None if features is None else features.detach()
                self._last_labels = None if features is None else self._labels(outputs, batch, features.shape[0])
            return
        self.schedule.mark_step(step)
        self._last_features = self._last_labels = None
        features = self._features(outputs)
        labels = None if features is None else self._labels(outputs, batch, features.shape[0])
        self._log(trainer, pl_module, features, labels, step)

    def _log(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, features: Tensor | None, labels: Tensor | None,
        step: int,
    ) -> None:
        """Gather ``features`` and ``labels`` of every rank (all ranks call this together), log on rank zero."""
        if features is not None:
            features = features.detach().reshape(features.shape[0], -1)
        features, labels = _gather_rows(trainer, features, pl_module.device, labels)
        if features is None or not trainer.is_global_zero:
            return
        if not bool(torch.isfinite(features).all()):  # a diverged run (TerminateOnNaN says why): nothing to draw
            log.warning(f"GramMatrixCallback: the features hold NaN or inf at global step {step}: not drawn")
            return
        n_total = features.shape[0]
        keep = even_indices(n_total, self.max_samples).to(features.device)
        features = features[keep].float()
        if labels is not None:  # sorted by class, stable
            labels = labels.to(features.device)[keep]
            order = label_order(labels)
            features, labels = features[order], labels[order]
        gram = gram_to_show(features, centered=self.centered)
        stats = gram_statistics(features)
        scalars = {f"{GRAM_PREFIX}/{k}": v for k, v in stats.items()}
        scalars[f"{GRAM_PREFIX}/num_samples"] = float(features.shape[0])
        title = (
            f"step {step}: {features.shape[0]} of {n_total} samples, {trainer.world_size} rank(s); "
            f"mean off-diag {stats['mean_offdiag']:.3f}, centred eff. rank {stats['centered_effective_rank']:.2f}"
        )
        if labels is not None:
            centred = gram if self.centered else gram_to_show(features, centered=True)
            separation = class_separation(centred, labels)
            title += f"\nsorted by class: {len(torch.unique(labels))} class(es)"
            if math.isfinite(separation):  # not NaN: 2+ classes and a class with 2+ samples
                scalars[f"{GRAM_PREFIX}/class_separation"] = separation
                title += f"; class separation {separation:.3f} (within minus between, centred)"
        label = "cosine similarity (centred features)" if self.centered else "cosine similarity (raw features)"
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        image = render_gram(gram, title, label=label, labels=labels, class_names=_names(names))
        del features, gram, labels
        log_scalars(trainer, scalars, step=step)
        log_image(trainer, GRAM_PREFIX, image, step=step)
        self._check_collapse(stats["centered_effective_rank"], step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**self.schedule.state_dict(), "collapse_warned": self.collapse_warned}  # + last_logged_step

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state_dict)
        self.collapse_warned = bool(state_dict.get("collapse_warned", False))

    def _check_collapse(self, rank: float, step: int) -> None:
        if self.collapse_threshold is None or self.collapse_warned or not rank < self.collapse_threshold:
            return
        self.collapse_warned = True
        message = (
            f"GramMatrixCallback: representation collapse at global step {step}: centred effective rank "
            f"{rank:.3f} < collapse_threshold {self.collapse_threshold:g} (the features of different samples "
            f"vary along about one direction). Warned once; {self._argument('collapse_threshold')} to change it."
        )
        log.warning(message)
        rank_zero_warn(message)

    def _features(self, outputs: Any) -> Tensor | None:
        if not isinstance(outputs, Mapping):
            self._warn_once(
                f"GramMatrixCallback: training_step returned {type(outputs).__name__}, not a dict with "
                f"{self.feature_key!r}; skipping (return {{'loss': loss, {self.feature_key!r}: features}} from "
                f"training_step, features (B, D) per sample, or {self._argument('feature_key')} to another key)."
            )
            return None
        if self.feature_key not in outputs:
            self._warn_once(
                f"GramMatrixCallback: training_step outputs have no {self.feature_key!r}; available keys: "
                f"{', '.join(map(str, outputs.keys())) or 'none'}; skipping ({self._argument('feature_key')} to one "
                f"of them, or return {{'loss': loss, {self.feature_key!r}: features}} from training_step)."
            )
            return None
        value = outputs[self.feature_key]
        if not isinstance(value, Tensor) or value.ndim < 2 or not value.is_floating_point() or value.shape[0] < 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            self._warn_once(
                f"GramMatrixCallback: outputs[{self.feature_key!r}] must be a float tensor (B, D), got {shape}; "
                f"skipping. Available keys: {', '.join(map(str, outputs.keys()))}."
            )
            return None
        return value

    def _labels(self, outputs: Any, batch: Any, n: int) -> Tensor | None:
        """The batch's ``(n,)`` integer labels: ``outputs[label_key]``, else ``batch[1]``; None (said once) else."""
        found = outputs.get(self.label_key) if isinstance(outputs, Mapping) else None
        fallback = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        for value in (found, fallback):
            if (
                isinstance(value, Tensor) and value.ndim == 1 and value.shape[0] == n
                and not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
            ):
                return value.detach().long()
        if not self._said_no_labels and rank_zero_only.rank == 0:
            self._said_no_labels = True
            log.info(
                f"GramMatrixCallback: no per-sample class labels (an integer tensor (B,) in "
                f"outputs[{self.label_key!r}] or batch[1]; detection targets have none): the matrix stays in "
                f"batch order, without class bands or gram_matrix/class_separation"
            )
        return None

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            rank_zero_warn(message)


def _names(names: Any) -> Sequence[str] | Mapping[int, str] | None:
    """``datamodule.class_names`` when it is a sequence or a mapping of names, else None."""
    return names if isinstance(names, (Sequence, Mapping)) and not isinstance(names, str) else None


def _gather_rows(
    trainer: pl.Trainer, x: Tensor | None, device: torch.device, labels: Tensor | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """Concatenate ``x`` (N_r, D) and ``labels`` (N_r,) of every rank in rank order; ranks may hold
    different N_r.

    Every rank runs the same collectives whatever it holds: first each rank's ``(N_r, D, has
    labels)`` (``-1`` when it has no features), then, only when every rank has features of one
    width, the rows, and then, only when every rank also has labels, the labels. Returns
    ``(None, None)`` when some rank has no features (or the widths differ), ``(rows, None)`` when
    some rank has no labels.
    """
    if trainer.world_size <= 1:
        return x, None if x is None else labels
    strategy = trainer.strategy
    shape = [-1, -1, 0] if x is None else [x.shape[0], x.shape[1], int(labels is not None)]
    sizes = strategy.all_gather(torch.tensor(shape, device=device, dtype=torch.long)).reshape(-1, 3).tolist()
    widths = {d for _, d, _ in sizes}
    if any(n < 0 for n, _, _ in sizes) or len(widths) != 1:
        return None, None
    assert x is not None
    longest = max(n for n, _, _ in sizes)
    padded = x.new_zeros((longest, x.shape[1]))
    padded[: x.shape[0]] = x
    gathered = strategy.all_gather(padded)  # (world, longest, D)
    rows = torch.cat([gathered[r, :n] for r, (n, _, _) in enumerate(sizes)])
    if not all(has for _, _, has in sizes):  # every rank knows: none gathers the labels
        return rows, None
    assert labels is not None
    padded_labels = torch.zeros(longest, dtype=torch.long, device=device)
    padded_labels[: labels.shape[0]] = labels.to(device)
    gathered_labels = strategy.all_gather(padded_labels)  # (world, longest)
    return rows, torch.cat([gathered_labels[r, :n] for r, (n, _, _) in enumerate(sizes)])
