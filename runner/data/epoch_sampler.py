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

Persistent workers (``per_sample_seeds=True`` with :class:`SeededItems`): a worker kept across epochs
carries its generators' state from one epoch to the next, and that state is in no checkpoint. So the
sampler hands out ``(index, seed)`` keys, the seed a function of ``(seed, epoch, index)`` only
(:func:`sample_seed`), and :class:`SeededItems` seeds torch's, numpy's and python's generators of the
process that loads the item with it first: every augmentation draw of a sample depends on
``(seed, epoch, index)`` alone, whichever worker loads it and however many there are, and the workers
need not restart each epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sized

import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler

__all__ = ["EpochSeededSampler", "SeededItems", "epoch_seed", "sample_seed"]

#: a large odd multiplier keeps the per-epoch seeds of nearby base seeds apart (seed 1 epoch 0 vs seed 0 epoch 1)
_EPOCH_STRIDE = 1_000_003


_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded with ``seed`` (non-negative, below 2**63)."""
    return (int(seed) * _EPOCH_STRIDE + int(epoch)) % (2**63)


def sample_seed(epoch_seed_value: int, index: int) -> int:
    """The seed sample ``index`` is loaded with in the epoch of ``epoch_seed_value`` (splitmix64; below 2**63)."""
    z = (int(epoch_seed_value) + (int(index) + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


class EpochSeededSampler(RandomSampler):
    """Shuffles ``data_source`` in an order that depends only on ``(seed, epoch)``.

    Pass :attr:`generator` to the DataLoader too (``DataLoader(..., sampler=s, generator=s.generator)``):
    its worker base seed is then drawn from the same per-epoch generator.

    Args:
        data_source: the training set.
        seed: the run's data seed.
        epoch: the epoch the first iteration belongs to (a resumed run starts at its checkpoint's epoch).
        reseed_globals: also seed torch/numpy/python's global generators in :meth:`set_epoch`.
        per_sample_seeds: yield ``(index, seed)`` keys (:func:`sample_seed`) for :class:`SeededItems`
            instead of indices: what lets the loader keep its workers across epochs.
    """

    def __init__(self, data_source: Sized, seed: int, epoch: int = 0, reseed_globals: bool = False,
                 per_sample_seeds: bool = False) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = int(seed)
        self.reseed_globals = reseed_globals
        self.per_sample_seeds = per_sample_seeds
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

    def __iter__(self):  # type: ignore[override]
        if not self.per_sample_seeds:
            yield from super().__iter__()
            return
        # the order from the epoch's seed alone: a loader with kept workers draws its base seed from
        # the generator only when it first starts them (a resumed process), not each epoch
        base = epoch_seed(self.seed, self.epoch)
        self.generator.manual_seed(base)
        for index in super().__iter__():
            yield index, sample_seed(base, index)


class SeededItems(Dataset):
    """A dataset whose items are loaded under their own seed: the training set behind persistent workers.

    A key ``(index, seed)`` (from ``EpochSeededSampler(per_sample_seeds=True)``) seeds torch's, numpy's
    and python's generators of the loading process, then loads ``dataset[index]``; a plain index (a
    ``DistributedSampler`` under DDP) loads as it is.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, tuple):
            index, seed = key
            # the CPU generator only: torch.manual_seed also seeds every CUDA/MPS/XPU generator, ~460 us a
            # call in a loader worker; items are loaded on the CPU, and a forked worker has no CUDA
            torch.default_generator.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            return self.dataset[index]
        return self.dataset[key]

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        # the wrapped set's attributes (classes, targets, ...) stay reachable; not its dunders
        # (a Subset's __getitems__ would take the (index, seed) keys for indices)
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
