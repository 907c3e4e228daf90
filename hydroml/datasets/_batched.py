"""Whole-batch sampling shared by the sequence datasets.

- :class:`BatchSampler`: yields whole batches of sample positions, shuffled per epoch, split across ranks.
- :class:`BatchedDataset`: the ``__getitem__`` and :meth:`~BatchedDataset.loader` of a dataset that gathers
  whole batches at once through ``get_batch(idx)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from hydroml.exceptions import ConfigError


class BatchedDataset(torch.utils.data.Dataset):
    """Base of datasets that gather whole batches at once with ``get_batch(idx)`` (and define ``__len__``)."""

    def get_batch(self, idx) -> dict[str, torch.Tensor]:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def __getitem__(self, idx) -> dict[str, torch.Tensor]:
        """A batch for an array of positions; one sample (no batch dimension) for an int."""
        if np.ndim(idx) == 0:
            return {k: v[0] for k, v in self.get_batch(np.array([int(idx)])).items()}
        return self.get_batch(np.asarray(idx))

    def loader(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        **kwargs,
    ) -> torch.utils.data.DataLoader:
        """A :class:`torch.utils.data.DataLoader` over whole batches (``sampler.set_epoch(e)`` each epoch).

        ``batch_size`` is per rank (see :class:`BatchSampler`). Extra keyword arguments go to the DataLoader.
        """
        sampler = BatchSampler(
            len(self),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        return torch.utils.data.DataLoader(
            self, sampler=sampler, batch_size=None, num_workers=num_workers, **kwargs
        )


class BatchSampler(torch.utils.data.Sampler):
    """Yields whole batches of sample positions (numpy int64 arrays), split across ranks.

    Each epoch the order is a permutation seeded by ``seed + epoch`` (call :meth:`set_epoch`), identical on every
    rank; rank ``r`` takes positions ``r, r + world_size, ...`` of it (padded by wrapping around so every rank
    gets the same number of samples, like :class:`torch.utils.data.DistributedSampler`, unless ``drop_last``).

    Parameters
    ----------
    n_samples : int
        Dataset length.
    batch_size : int
        Samples per batch (per rank).
    shuffle : bool
        Shuffle each epoch; otherwise sequential order.
    seed : int
        Base seed.
    drop_last : bool
        Drop the tail that does not fill a batch (and the samples that do not split evenly across ranks).
    rank, world_size : int
        This process's rank and the number of processes.
    """

    def __init__(
        self,
        n_samples: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, found {batch_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size={world_size}), found {rank}")
        self.n_samples = int(n_samples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for ``epoch``."""
        self.epoch = int(epoch)

    def _per_rank(self) -> int:
        if self.drop_last:
            return self.n_samples // self.world_size
        return -(-self.n_samples // self.world_size)

    def rank_positions(self) -> np.ndarray:
        """All positions this rank visits this epoch, in order."""
        dtype = np.int32 if self.n_samples < np.iinfo(np.int32).max else np.int64
        order = np.arange(self.n_samples, dtype=dtype)
        if self.shuffle:
            np.random.default_rng((self.seed, self.epoch)).shuffle(order)
        per = self._per_rank()
        total = per * self.world_size
        if total > self.n_samples:
            order = np.concatenate([order, order[: total - self.n_samples]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        pos = self.rank_positions()
        n_full = len(pos) // self.batch_size
        for i in range(n_full):
            yield pos[i * self.batch_size : (i + 1) * self.batch_size].astype(np.int64)
        if not self.drop_last and len(pos) % self.batch_size:
            yield pos[n_full * self.batch_size :].astype(np.int64)

    def __len__(self) -> int:
        per = self._per_rank()
        return per // self.batch_size if self.drop_last else -(-per // self.batch_size)
