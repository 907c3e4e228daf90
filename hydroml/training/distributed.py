"""Several processes: ``torchrun --nproc_per_node=N -m hydroml train CONFIG``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` joins the process group (``gloo`` on
CPU, ``nccl`` on GPU). The data order is a pure function of ``(seed, epoch)`` (:func:`epoch_order`): every
process computes the same permutation, cuts it into global batches of ``batch_size`` samples, and takes its
share of each global batch (:func:`shard`), so the sampler is "reseeded" every epoch without any state and
the union of the shards is exactly the single-process batch. DistributedDataParallel averages gradients; the
training loop scales each process's loss so that the average equals the loss of the whole global batch
(exactly, also when NaN targets are masked or the last batch does not split evenly). Validation is split too:
each process evaluates its contiguous block of the validation windows (:func:`split`), the predictions and
loss sums are reduced to rank 0, which computes the scores and broadcasts them, so every process takes the
same early-stopping decision. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger("hydroml.training")

__all__ = [
    "DistInfo",
    "setup",
    "teardown",
    "epoch_order",
    "global_batches",
    "shard",
    "split",
    "all_reduce_sum",
    "reduce_sum",
    "all_gather",
    "broadcast",
    "broadcast_str",
]


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (``0, 1, 0`` without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(use_cuda: bool) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Parameters
    ----------
    use_cuda : bool
        Use ``nccl`` for CUDA tensors (and pin this process to GPU ``LOCAL_RANK``), with ``gloo`` for the CPU
        tensors of the loop's bookkeeping collectives (counts, validation sums, the run directory name), which
        ``nccl`` alone cannot carry; otherwise ``gloo``.

    Returns
    -------
    DistInfo
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        log.info("joined process group: rank %d of %d (%s)", rank, world, backend)
    return DistInfo(rank, world, local)


def teardown(info: DistInfo) -> None:
    """Leave the process group (if :func:`setup` joined one)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def epoch_order(n_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a permutation that depends on ``(seed, epoch)`` only.

    Parameters
    ----------
    n_samples : int
    seed : int
    epoch : int
        1-based epoch number.

    Returns
    -------
    numpy.ndarray of int64
    """
    return np.random.default_rng([seed, epoch, 0x68796472]).permutation(n_samples)


def global_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cut an epoch's order into global batches of ``batch_size`` (the last may be smaller)."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shard(batch: np.ndarray, info: DistInfo) -> np.ndarray:
    """This process's share of a global batch (every ``world_size``-th sample from ``rank``)."""
    return batch[info.rank :: info.world_size]


def split(n: int, info: DistInfo) -> np.ndarray:
    """This process's contiguous block of ``range(n)`` (validation windows): disjoint, covering, sizes differ by
    at most one; ``arange(n)`` in one process.

    Parameters
    ----------
    n : int
        Number of items.
    info : DistInfo
        Rank and world size.

    Returns
    -------
    numpy.ndarray of int64
    """
    lo, hi = n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size
    return np.arange(lo, hi, dtype=np.int64)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over processes (a no-op in one process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over processes into rank 0's ``t`` (in place; other ranks' ``t`` is left undefined)."""
    if info.distributed:
        dist.reduce(t, dst=0, op=dist.ReduceOp.SUM)
    return t


def all_gather(t: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every process's ``t`` (same shape and dtype everywhere), in rank order; ``[t]`` in one process."""
    if not info.distributed:
        return [t]
    out = [torch.zeros_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return out


def broadcast(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Rank 0's values of ``t`` on every process, in place (a no-op in one process)."""
    if info.distributed:
        dist.broadcast(t, src=0)
    return t


def broadcast_str(text: str | None, info: DistInfo) -> str | None:
    """Rank 0's string on every process (sent as UTF-8 bytes in a tensor; no pickle)."""
    if not info.distributed:
        return text
    data = (text or "").encode() if info.is_main else b""
    n = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(n, src=0)
    buf = torch.zeros(int(n), dtype=torch.uint8)
    if info.is_main:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else buf
    dist.broadcast(buf, src=0)
    out = bytes(buf.tolist()).decode()
    return out or None
