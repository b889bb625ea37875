"""CartographyCallback: which training samples are easy, ambiguous or hard to learn (and which look mislabeled)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

import interpret
from callbacks.image_logging import log_image
from callbacks.names import CARTOGRAPHY_COLUMNS, CARTOGRAPHY_FILE, HARDEST_KEY
from interpret.cartography import (
    accumulate,
    empty_sums,
    first_occurrences,
    label_probabilities,
    precision_at_k,
    summarize,
)
from interpret.layers import normalization_of
from interpret.model_state import preserve_rng_and_modes
from interpret.render import make_grid
from interpret.tasks import SampleRequest, class_name, task_for
from interpret.tiles import sample_panel

__all__ = ["CARTOGRAPHY_COLUMNS", "CARTOGRAPHY_FILE", "HARDEST_KEY", "CartographyCallback"]

log = logging.getLogger(__name__)


class CartographyCallback(Callback):
    """Dataset cartography (Swayamdipta et al., 2020) from the logits the training step already computes.

    For every training sample, the probability of its label and whether it was predicted right are
    recorded each epoch, from the training step's own outputs (no extra forward pass; with
    mixup/CutMix they are those of the mixed image, read against the sample's own hard label). At
    the end of training rank zero writes :data:`CARTOGRAPHY_FILE` in ``trainer.default_root_dir``,
    one row per sample seen, by index: ``index``, ``label`` (the one it trained with),
    ``confidence`` (mean probability of the label over epochs), ``variability`` (its standard
    deviation), ``correctness`` (fraction of epochs predicted right), ``epochs`` (epochs it was
    seen), and ``noisy`` (1 for a sample whose label the datamodule flipped on purpose) when
    ``trainer.datamodule`` has ``noisy_indices``. The least confident samples are the ones to
    look at first: hard to learn, or mislabeled. The maths are in :mod:`interpret.cartography`.

    The contract, so that it works in any Lightning project:

    - ``training_step`` returns a dict holding ``logits_key`` (``(B, K)`` class scores) and
      ``targets_key`` (``(B,)`` integer labels: the hard labels, also under mixup; when missing, the
      batch's second element is used);
    - every sample carries its index in the training set (an int that identifies it across
      epochs): the training batch is a tuple/list ``(inputs, labels, indices, ...)`` or a dict with
      ``index_key``; a ``training_step`` output holding ``index_key`` is used first.

    When any of these is missing the callback says so once (a warning) and records nothing.

    At the end, rank zero also logs one image, :data:`HARDEST_KEY` (through
    :func:`callbacks.image_logging.log_image`): the ``num_hardest`` least confident samples, each as
    picture | GradCAM heatmap | overlay (the model's own prediction explained, every RNG and the
    model's modes left as they were), captioned with its index, the label it trained with, the
    model's prediction, its confidence and correctness. It needs ``trainer.datamodule.train_set[i]``
    to give ``(image, label, ...)`` (images normalised with the datamodule's or the model's
    ``mean``/``std``) and a classifier; otherwise it is skipped, and a failure to draw is logged once,
    never ending training.

    Under DDP each epoch's records are gathered from every rank (every rank runs the same
    collectives, in lockstep) at the last training batch of the epoch, before validation and the
    checkpoint that follows it, else at the end of the epoch; a sample that a padded distributed
    sampler gave two ranks counts once. The sums live in the checkpoint (``state_dict``), so a
    resumed run goes on with the epochs before it; the records of an epoch interrupted midway are
    not kept.

    Args:
        logits_key: the key of the logits in the ``training_step`` output.
        targets_key: the key of the hard labels in the ``training_step`` output.
        index_key: the key of the sample indices in a dict batch (or in the ``training_step`` output).
        num_hardest: how many of the least confident samples the end-of-training image shows (0: no image).

    Raises:
        ValueError: a key that is not a non-empty string, or ``num_hardest`` not an int >= 0 (naming it).
    """

    def __init__(self, logits_key: str = "logits", targets_key: str = "targets", index_key: str = "index",
                 num_hardest: int = 8) -> None:
        super().__init__()
        for name, value in (("logits_key", logits_key), ("targets_key", targets_key), ("index_key", index_key)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"callbacks.cartography.{name} must be a non-empty string, got {value!r}")
        if isinstance(num_hardest, bool) or not isinstance(num_hardest, int) or num_hardest < 0:
            raise ValueError(f"callbacks.cartography.num_hardest must be an int >= 0 (0: no image), got {num_hardest!r}")
        self.num_hardest = num_hardest
        self._said_hardest = False
        self.logits_key, self.targets_key, self.index_key = logits_key, targets_key, index_key
        self.sums: Tensor = empty_sums()
        # this rank's records of the running epoch, on the module's device: (indices (B,) int64, (B, 3) float32
        # label, prob, correct)
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._merged = False  # this epoch's records are in the sums already
        self._warned = False

    # ---------------------------------------------------------------- records
    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = []
        self._merged = False

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        record = self._record(outputs, batch)
        if record is not None:
            self._pending.append(record)
        last = trainer.num_training_batches
        if isinstance(last, int) and batch_idx + 1 >= last:  # every rank at the same batch
            self._merge(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._merged:  # an epoch of unknown length, or stopped early
            self._merge(trainer, pl_module)

    def _record(self, outputs: Any, batch: Any) -> tuple[Tensor, Tensor] | None:
        """The indices ``(B,)`` and ``(B, 3)`` float32 rows ``label, prob, correct`` of a batch; None: warned once."""
        if not isinstance(outputs, Mapping) or not isinstance(outputs.get(self.logits_key), Tensor):
            keys = ", ".join(map(str, outputs.keys())) if isinstance(outputs, Mapping) else type(outputs).__name__
            return self._skip(f"training_step returned no {self.logits_key!r} tensor (got: {keys or 'nothing'}); "
                              "return a dict with the logits (or set callbacks.cartography.logits_key)")
        logits = outputs[self.logits_key].detach()
        labels = outputs.get(self.targets_key)
        if labels is None and isinstance(batch, Sequence) and len(batch) > 1:
            labels = batch[1]
        indices = outputs.get(self.index_key)
        if indices is None:
            indices = _batch_indices(batch, self.index_key)
        if indices is None:
            return self._skip(
                f"the training batch carries no sample indices: yield (inputs, labels, indices) or a dict with "
                f"{self.index_key!r} from the training loader (this project's classification datamodules do)"
            )
        if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            return self._skip(f"outputs[{self.targets_key!r}] must hold the (batch,) integer hard labels (not mixed "
                              f"soft targets), got {shape}")
        indices = torch.as_tensor(indices, device=logits.device)
        if logits.ndim != 2 or not (logits.shape[0] == labels.shape[0] == indices.numel()):
            return self._skip(f"logits {tuple(logits.shape)}, labels {tuple(labels.shape)} and indices "
                              f"{tuple(indices.shape)} do not describe one batch of (batch, classes) scores")
        labels = labels.to(logits.device)
        probs, correct = label_probabilities(logits, labels)
        return indices.flatten().long(), torch.stack([labels.float(), probs.float(), correct.float()], dim=1)

    def _skip(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            rank_zero_warn(f"CartographyCallback: {why}; recording nothing. Warned once.")
        return None

    def _merge(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather this epoch's records of every rank and add them to the sums (each sample once)."""
        self._merged = True
        device = pl_module.device
        indices = torch.cat([i for i, _ in self._pending]) if self._pending else torch.zeros(0, dtype=torch.long)
        values = torch.cat([v for _, v in self._pending]) if self._pending else torch.zeros(0, 3)
        self._pending = []
        indices, values = _gather(trainer, indices.to(device), values.to(device))
        if indices.numel() == 0:
            return
        keep = first_occurrences(indices)
        indices, values = indices[keep], values[keep].double()
        self.sums = accumulate(self.sums, indices, values[:, 0].round().long(), values[:, 1], values[:, 2])

    # ------------------------------------------------------------------ write
    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and int((self.sums[:, 0] > 0).sum()) > 0:
            self.write(Path(trainer.default_root_dir) / CARTOGRAPHY_FILE, _noisy_indices(trainer))
            if self.num_hardest > 0:
                self.log_hardest(trainer, pl_module)

    def log_hardest(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        """Log the image of the ``num_hardest`` least confident samples (:data:`HARDEST_KEY`); its path, or None.

        Rank zero only, no collective; skipped (said once) without a readable ``train_set`` or for a model
        that is not a classifier; any error is logged once and swallowed.
        """
        if not trainer.is_global_zero or self.num_hardest == 0:
            return None
        try:
            return self._draw_hardest(trainer, pl_module)
        except Exception:  # a picture must never end a training run
            if not self._said_hardest:
                self._said_hardest = True
                log.exception("CartographyCallback: drawing the hardest samples failed (training goes on)")
            return None

    def _skip_hardest(self, why: str) -> None:
        if not self._said_hardest:
            self._said_hardest = True
            log.info("CartographyCallback: no image of the hardest samples: %s", why)

    def _draw_hardest(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        datamodule = getattr(trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_set", None)
        if dataset is None:
            return self._skip_hardest("the trainer has no datamodule with a train_set")
        task = task_for(pl_module)
        if task.name != "classification":
            return self._skip_hardest(f"the model is a {task.name} model (thumbnails are drawn for classifiers)")
        table = summarize(self.sums)
        order = torch.argsort(table["confidence"], stable=True)[: self.num_hardest]
        indices = [int(i) for i in table["index"][order].tolist()]
        with preserve_rng_and_modes(pl_module), torch.inference_mode(False), torch.enable_grad():
            items = [dataset[i] for i in indices]  # a training transform may draw random numbers: restored
            if not all(isinstance(it, Sequence) and len(it) >= 2 and isinstance(it[0], Tensor) and it[0].ndim == 3
                       and it[0].is_floating_point() for it in items):
                return self._skip_hardest("train_set[i] does not give (float (C, H, W) image, label, ...)")
            images = torch.stack([it[0].detach().cpu() for it in items])
            declared = normalization_of(datamodule, pl_module)
            channels = int(images.shape[1])
            mean, std = declared if declared is not None else ((0.0,) * channels, (1.0,) * channels)
            explainer = interpret.get_explainer("gradcam", pl_module, mean=mean, std=std,
                                                input_size=tuple(images.shape[-2:]))
            request = SampleRequest(method="gradcam", explainer=explainer, mean=mean, std=std)
            result = task.explain_samples(pl_module, images, request)
        names = getattr(datamodule, "class_names", None) or None
        tiles, captions, colours = [], [], []
        for k, index in enumerate(indices):
            row = int(order[k])
            trained, pred = int(table["label"][row]), int(result.predicted[k])
            given = items[k][1]
            true = int(given.item() if isinstance(given, Tensor) else given)
            tiles.append(sample_panel(images[k], result.heatmaps[k], mean=mean, std=std, min_size=96))
            label = f"#{index}: label {class_name(names, trained)}"
            if true != trained:
                label += f" (flipped; dataset: {class_name(names, true)})"
            epochs = int(table["epochs"][row])
            right = round(float(table["correctness"][row]) * epochs)
            captions.append([label, f"pred now {class_name(names, pred)} ({float(result.confidence[k]):.2f}); "
                                    f"confidence {float(table['confidence'][row]):.2f}, right {right}/{epochs} epochs"])
            colours.append((0, 128, 0) if pred == trained else (200, 0, 0))
        title = (f"the {len(indices)} hardest-to-learn training samples (lowest mean probability of their label over "
                 f"the epochs they were seen) | gradcam of the model's prediction at the end of training")
        grid = make_grid(tiles, captions, ncols=min(2, len(tiles)), padding=10, font_size=12, title=title,
                         colors=colours)
        return log_image(trainer, HARDEST_KEY, grid, step=trainer.global_step, caption=title)

    def write(self, path: str | Path, noisy: Sequence[int] | Tensor | None = None) -> Path:
        """Write the cartography of every sample seen to ``path`` (csv; a ``noisy`` column when ``noisy`` is given)."""
        table = summarize(self.sums)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        flipped = None if noisy is None else {int(i) for i in torch.as_tensor(noisy).flatten().tolist()}
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CARTOGRAPHY_COLUMNS + (("noisy",) if flipped is not None else ()))
            for i in range(table["index"].numel()):
                index = int(table["index"][i])
                row = [index, int(table["label"][i]), f"{float(table['confidence'][i]):.6f}",
                       f"{float(table['variability'][i]):.6f}", f"{float(table['correctness'][i]):.6f}",
                       int(table["epochs"][i])]
                writer.writerow(row + ([int(index in flipped)] if flipped is not None else []))
        message = f"CartographyCallback: {table['index'].numel()} training samples mapped in {path}"
        if flipped:
            score = precision_at_k(table["confidence"], flipped, indices=table["index"])
            message += (f"; {score:.0%} of the {len(flipped)} least confident are among the "
                        f"{len(flipped)} flipped labels (precision at k)")
        log.info(message)
        return path

    # ------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.clone()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sums = state_dict.get("sums")
        self.sums = sums.detach().double().cpu().clone() if isinstance(sums, Tensor) else empty_sums()


def _batch_indices(batch: Any, key: str) -> Any:
    """The sample indices a training batch carries: ``batch[key]`` of a dict, the third item of a tuple/list."""
    if isinstance(batch, Mapping):
        return batch.get(key)
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) >= 3:
        third = batch[2]
        if isinstance(third, Tensor) and third.ndim == 1 and not third.is_floating_point():
            return third
    return None


def _noisy_indices(trainer: pl.Trainer) -> Any:
    """``trainer.datamodule.noisy_indices`` when the datamodule flips labels on purpose (any non-empty set)."""
    noisy = getattr(getattr(trainer, "datamodule", None), "noisy_indices", None)
    return noisy if noisy is not None and len(noisy) > 0 else None


def _gather(trainer: pl.Trainer, indices: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """``indices`` ``(M_r,)`` and ``values`` ``(M_r, 3)`` of every rank, concatenated in rank order, on the CPU.

    Ranks may hold different ``M_r``; every rank runs the same three collectives: the counts, then the
    indices and the values, each padded to the longest.
    """
    if trainer.world_size <= 1:
        return indices.cpu(), values.cpu()
    strategy = trainer.strategy
    count = torch.tensor([indices.numel()], dtype=torch.long, device=indices.device)
    sizes = strategy.all_gather(count).flatten().tolist()
    longest = max(1, max(sizes))
    padded_indices = indices.new_zeros(longest)
    padded_indices[: indices.numel()] = indices
    padded_values = values.new_zeros(longest, values.shape[1])
    padded_values[: values.shape[0]] = values
    all_indices = strategy.all_gather(padded_indices).cpu()  # (world, longest)
    all_values = strategy.all_gather(padded_values).cpu()  # (world, longest, 3)
    return (torch.cat([all_indices[r, :n] for r, n in enumerate(sizes)]),
            torch.cat([all_values[r, :n] for r, n in enumerate(sizes)]))
