"""The training loader's shuffling, seeded from ``(seed, epoch)`` so that a resumed run replays exactly.

A ``RandomSampler`` with one ``torch.Generator`` seeded once per process gives epoch ``e`` of a run
resumed from a checkpoint the order of epoch 0 (the generator starts over in the new process and is
in no checkpoint). :class:`EpochSeededSampler` instead derives every epoch's draws from ``(seed,
epoch)`` only; the epoch is in the checkpoint (Lightning's loop state), so an end-of-epoch resume
continues with the same order, the same worker seeds and the same augmentation draws as the run that
was never interrupted.

What is drawn, per epoch ``e``, from a generator freshly seeded with :func:`epoch_seed` ``(seed, e)``:

- the DataLoader's worker base seed (torch seeds worker ``i`` with ``base + i``; Lightning's
  ``seed_everything(workers=True)`` derives numpy/random in the workers from it), then
- the permutation of the training set.

When ``reseed_globals`` is true (a seeded run), :meth:`EpochSeededSampler.set_epoch`, which Lightning
calls at the start of every training epoch, also seeds torch's, numpy's and python's global
generators from ``(seed, e)``: augmentations in the main process (``num_workers=0``), dropout and drop
path then draw the same numbers in a resumed epoch as in the uninterrupted one.

Under DDP Lightning replaces this sampler (a ``RandomSampler``) by its ``DistributedSampler``, whose
order is already a function of ``(seed, epoch)``.
"""

from __future__ import annotations

import random
from collections.abc import Sized

import numpy as np
import torch
from torch.utils.data import RandomSampler

__all__ = ["EpochSeededSampler", "epoch_seed"]

#: a large odd multiplier keeps the per-epoch seeds of nearby base seeds apart (seed 1 epoch 0 vs seed 0 epoch 1)
_EPOCH_STRIDE = 1_000_003


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded with ``seed`` (non-negative, below 2**63)."""
    return (int(seed) * _EPOCH_STRIDE + int(epoch)) % (2**63)


class EpochSeededSampler(RandomSampler):
    """Shuffles ``data_source`` in an order that depends only on ``(seed, epoch)``.

    Pass :attr:`generator` to the DataLoader too (``DataLoader(..., sampler=s, generator=s.generator)``):
    its worker base seed is then drawn from the same per-epoch generator.

    Args:
        data_source: the training set.
        seed: the run's data seed.
        epoch: the epoch the first iteration belongs to (a resumed run starts at its checkpoint's epoch).
        reseed_globals: also seed torch/numpy/python's global generators in :meth:`set_epoch`.
    """

    def __init__(self, data_source: Sized, seed: int, epoch: int = 0, reseed_globals: bool = False) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = int(seed)
        self.reseed_globals = reseed_globals
        self.epoch = int(epoch)
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: Lightning calls this before each training epoch.

        The loader's generator is re-seeded only when the epoch changes: the iterator of the first
        epoch of a process (made before this call) has already drawn from the generator seeded for
        that epoch, and must go on drawing from it.
        """
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.generator.manual_seed(epoch_seed(self.seed, epoch))
        if self.reseed_globals:
            seed = epoch_seed(self.seed, epoch)
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
