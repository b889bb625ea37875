"""The explanation metrics of :class:`callbacks.interpretation.InterpretationCallback` and its shortcut alarm.

:class:`ExplanationScoring` is the part of the callback that scores the maps it has just made
(:func:`interpret.metrics.training.training_scores`; a detector's per-detection maps against the
ground-truth boxes they match: :func:`interpret.metrics.training.detection_training_scores`), logs
``{key}/<metric>`` and
``{key}/shortcut_alarm``, warns once when the alarm fires, and keeps that history in the checkpoint.
The callback decides when; the maths is in :mod:`interpret.metrics.training`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from callbacks.image_logging import log_scalars
from callbacks.interpretation_inputs import plain
from interpret.checks import unit_interval
from interpret.metrics.training import (
    DETECTION_METRICS,
    MASK_METRICS,
    check_training_metrics,
    detection_training_scores,
    shortcut_evidence,
    training_scores,
    truth_maps,
)

__all__ = ["ExplanationScoring"]

# the callback's own logger: its messages read as InterpretationCallback's wherever they come from
log = logging.getLogger("callbacks.interpretation")


class ExplanationScoring:
    """Mixin of :class:`~callbacks.interpretation.InterpretationCallback`: score, log, alarm, resume.

    Reads the callback's ``key``, ``task``, ``images``, ``sample_images`` and (detectors) ``truth_boxes``.
    """

    def _init_scoring(
        self,
        metrics: Sequence[str] | None,
        energy_threshold: float,
        agreement_threshold: float,
        min_accuracy: float,
        accuracy_key: str,
    ) -> None:
        """Check and keep the scoring arguments: ``metrics``, the shortcut alarm's thresholds and accuracy key."""
        self.metrics: tuple[str, ...] = check_training_metrics(() if metrics is None else plain(metrics))
        self.energy_threshold = unit_interval(energy_threshold, "`energy_threshold`")
        self.agreement_threshold = unit_interval(agreement_threshold, "`agreement_threshold`")
        self.min_accuracy = unit_interval(min_accuracy, "`min_accuracy`")
        if not isinstance(accuracy_key, str) or not accuracy_key:
            raise ValueError(f"`accuracy_key` must be a logged metric's name such as 'train/acc', got {accuracy_key!r}")
        self.accuracy_key = accuracy_key
        #: ground-truth object masks of the sample images (bool ``(N, H, W)``), when the datamodule has them
        self.masks: Tensor | None = None
        #: one dict per scoring, oldest first: ``epoch``, the scores and ``accuracy`` (``accuracy_key``'s value)
        self.score_history: list[dict[str, float]] = []
        #: the epoch the shortcut alarm first fired (None: it has not)
        self.alarm_epoch: int | None = None
        self._previous_maps: Tensor | None = None
        self._scoring_failed = False
        self._said_task = False
        self._said_masks = False

    def _setup_scoring(self, trainer: pl.Trainer, datamodule: Any) -> None:
        """Find the sample images' ground-truth masks (``datamodule.sample_masks``) when a metric needs them."""
        if not self.metrics or self.task is None or not trainer.is_global_zero:
            return
        if self.task.name == "detection":
            self._setup_detection_scoring()
            return
        if self.task.name != "classification":
            if not self._said_task:
                self._said_task = True
                log.info("InterpretationCallback: explanation metrics are scored for classifiers only; "
                         "this %s is explained without them", self.task.name)
            return
        if self.masks is not None or self._said_masks or not any(m in MASK_METRICS for m in self.metrics):
            return
        self.masks = self._sample_masks(datamodule)
        if self.masks is None:
            self._said_masks = True  # once, also over the fit and test stages
            log.info("InterpretationCallback: no ground-truth masks for the sample images (the datamodule has no "
                     "sample_masks, or sample_images were given): %s skipped",
                     ", ".join(m for m in self.metrics if m in MASK_METRICS))

    def _setup_detection_scoring(self) -> None:
        """Say once what a detector is not scored on: the curves, and the box metrics without ground-truth boxes."""
        if self._said_task:
            return
        self._said_task = True  # once, also over the fit and test stages
        reasons = []
        curves = [m for m in self.metrics if m not in DETECTION_METRICS]
        if curves:
            reasons.append(f"{', '.join(curves)} (the curves read a classifier's class probability)")
        boxed = [m for m in self.metrics if m in (*MASK_METRICS, "drift")]
        if boxed and getattr(self, "truth_boxes", None) is None:
            reasons.append(f"{', '.join(boxed)} (no ground-truth boxes for the sample images)")
        if reasons:
            log.info("InterpretationCallback: a detector's maps are scored per detection, against the ground-truth "
                     "box it overlaps most; not scored: %s", "; ".join(reasons))

    def _sample_masks(self, datamodule: Any) -> Tensor | None:
        """``datamodule.sample_masks(n)`` when the sample images are the datamodule's own ``sample_images(n)``."""
        if self.sample_images is not None or self.images is None or not hasattr(datamodule, "sample_masks"):
            return None
        n = self.images.shape[0]
        try:
            theirs, _ = datamodule.sample_images(n)
            masks = datamodule.sample_masks(n)
        except Exception as err:  # the masks are an extra: without them the other metrics still run
            log.info("InterpretationCallback: the datamodule's sample_masks failed (%s)", err)
            return None
        same = (isinstance(theirs, Tensor) and theirs.shape == self.images.shape
                and torch.equal(theirs.cpu(), self.images))
        if not same or not isinstance(masks, Tensor) or masks.ndim != 3 or masks.shape[0] != n:
            return None
        return masks.detach().cpu().bool()

    def _score(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, images: Tensor, result: Any, *, same_samples: bool
    ) -> dict[str, float]:
        """The explanation metrics of the maps just made (inside the RNG/mode guard; {} when off or failed)."""
        if self.metrics and result.detections is not None:
            return self._score_detections(images, result.detections, same_samples=same_samples)
        if not self.metrics or result.heatmaps is None:
            return {}
        n = images.shape[0]
        masks = self.masks[:n] if same_samples and self.masks is not None and self.masks.shape[0] >= n else None
        previous = self._previous_maps if same_samples else None
        device = next((p.device for p in pl_module.parameters()), torch.device("cpu"))
        try:
            scores = training_scores(
                pl_module, images.to(device), result.heatmaps, result.predicted, masks,
                metrics=self.metrics, previous=previous,
            )
        except Exception:  # a metric must never end training, nor cost the grid
            if not self._scoring_failed:
                self._scoring_failed = True
                log.exception("InterpretationCallback(%s): scoring the explanations failed", self.key)
            return {}
        self._previous_maps = result.heatmaps.detach().float().cpu().clone() if same_samples else None
        return scores

    def _score_detections(self, images: Tensor, detections: Sequence[Any], *, same_samples: bool) -> dict[str, float]:
        """A detector's scores: each detection's map against its matched ground-truth box (when known)."""
        n = images.shape[0]
        boxes = getattr(self, "truth_boxes", None)
        truth = list(boxes[:n]) if same_samples and boxes is not None and len(boxes) >= n else None
        previous = self._previous_maps if same_samples else None
        try:
            scores = detection_training_scores(detections, truth, metrics=self.metrics, previous=previous)
            size = (int(images.shape[-2]), int(images.shape[-1]))
            self._previous_maps = truth_maps(detections, truth, size) if truth is not None else None
        except Exception:  # a metric must never end training, nor cost the grid
            if not self._scoring_failed:
                self._scoring_failed = True
                log.exception("InterpretationCallback(%s): scoring the explanations failed", self.key)
            return {}
        return scores

    def _log_scores(self, trainer: pl.Trainer, scores: dict[str, float], epoch: int) -> None:
        """Log ``{key}/<metric>`` and ``{key}/shortcut_alarm``; warn once when the alarm first fires."""
        if not scores:
            return
        entry: dict[str, float] = {"epoch": float(epoch), **scores}
        accuracy = trainer.callback_metrics.get(self.accuracy_key)
        if accuracy is not None:
            entry["accuracy"] = float(accuracy)
        self.score_history.append(entry)
        values = {f"{self.key}/{name}": value for name, value in scores.items()}
        if "energy_in_mask" in scores or "location_agreement" in scores:
            evidence = shortcut_evidence(
                self.score_history, energy_threshold=self.energy_threshold,
                agreement_threshold=self.agreement_threshold, min_accuracy=self.min_accuracy, accuracy_key="accuracy",
            )
            values[f"{self.key}/shortcut_alarm"] = float(evidence is not None)
            if evidence is not None and self.alarm_epoch is None:
                self.alarm_epoch = epoch
                log.warning(  # logging, not warnings.warn: run.py's ignore_warnings must not hide it
                    "InterpretationCallback(%s): shortcut alarm at epoch %d: %s (%s); the explanations leave "
                    "the objects while the model learns", self.key, epoch, evidence, self.accuracy_key,
                )
        log_scalars(trainer, values, step=trainer.global_step)

    def _scoring_state(self) -> dict[str, Any]:
        return {"score_history": [dict(h) for h in self.score_history], "alarm_epoch": self.alarm_epoch,
                "previous_maps": self._previous_maps}

    def _load_scoring_state(self, state_dict: dict[str, Any]) -> None:
        self.score_history = [dict(h) for h in state_dict.get("score_history", [])]
        self.alarm_epoch = state_dict.get("alarm_epoch")
        previous = state_dict.get("previous_maps")
        self._previous_maps = previous if isinstance(previous, Tensor) else None
