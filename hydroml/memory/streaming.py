"""Streaming recurrent inference: long periods in time chunks, carrying the state.

:func:`stream_predict` runs a *stateful* model over a period chunk by chunk under ``torch.inference_mode``:
each chunk's batch holds the time slice of the dynamic inputs and ``batch["state"]`` = the ``(h_n, c_n)``
returned by the previous chunk. Memory depends on the chunk length, not on the period's: inputs may be lazy
(an ``xarray.DataArray``, a ``netCDF4``/``zarr`` variable, a ``np.memmap``: only the chunk is read) and outputs
can go to an array-like (``out=``, e.g. a ``np.memmap`` or a netCDF4 variable) or a callback, so nothing of
length ``T`` needs to exist in memory. For a recurrent model the result equals one pass over the whole period
(to float round-off).

The model contract (``hydroml.models.lstm`` follows it): ``forward(batch)`` accepts an optional
``batch["state"] = (h, c)`` and returns ``"y_hat"`` ``[B, t, ...]``, ``"h_n"`` and ``"c_n"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from hydroml._progress import tqdm
from hydroml.exceptions import ConfigError

__all__ = ["stream_predict", "recurrent_threads"]

# Below this many multiply-adds per recurrent step (batch x 4 hidden x hidden), a recurrence runs on one intra-op
# thread: a batch-of-one LSTM step is a matrix-vector product that a second OpenMP thread slows down (nn.LSTM,
# hidden 128, one basin, 2-vCPU Xeon: 15 us per step on 1 thread, 146-184 us on 2 while another job held a core).
SERIAL_STEP_MACS = 1 << 21


@contextlib.contextmanager
def recurrent_threads(model: Any, n_batch: int, device: Any = "cpu") -> Iterator[None]:
    """Run a small recurrent batch on one intra-op thread; restore the thread count afterwards.

    Parameters
    ----------
    model : object
        The recurrent model; its ``hidden_size`` attribute sizes the per-step work (no attribute: threads are
        left alone).
    n_batch : int
        Sequences per step (basins in the batch).
    device : str or torch.device
        Only CPU runs are changed.

    Yields
    ------
    None
    """
    hidden = int(getattr(model, "hidden_size", 0) or 0)
    serial = torch.device(device).type == "cpu" and 0 < n_batch * 4 * hidden * hidden < SERIAL_STEP_MACS
    before = torch.get_num_threads()
    if not serial or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _slice_time(v: Any, t0: int, t1: int, device, dtype) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v[:, t0:t1].to(device)
    try:
        import xarray as xr

        if isinstance(v, xr.DataArray):
            v = v.isel({v.dims[1]: slice(t0, t1)}).values
        else:
            v = v[:, t0:t1]
    except ImportError:  # pragma: no cover
        v = v[:, t0:t1]
    return torch.as_tensor(np.asarray(v), dtype=dtype, device=device)


def stream_predict(
    model: Callable,
    batch: dict,
    *,
    chunk: int = 365,
    time_keys: Sequence[str] = ("x_dynamic",),
    out: Any = None,
    on_chunk: Callable[[int, int, dict], None] | None = None,
    state: tuple | None = None,
    progress: bool | None = None,
) -> dict:
    """Run a stateful model over a long period in chunks of ``chunk`` time steps.

    Parameters
    ----------
    model : callable
        Stateful model (see the module docstring); put it in ``eval()`` mode first.
    batch : dict
        ``time_keys`` entries are ``[B, T, ...]`` (tensors or lazy arrays, read chunk by chunk); other entries
        (static attributes) are passed to every chunk unchanged.
    chunk : int
        Time steps per chunk.
    time_keys : sequence of str
        Entries sliced along time (dimension 1).
    out : array-like, optional
        Receives ``y_hat`` chunk by chunk (``out[:, t0:t1] = y``), shape ``[B, T, ...]``.
    on_chunk : callable, optional
        ``on_chunk(t0, t1, outputs)`` after every chunk.
    state : (h, c), optional
        Initial state (default: the model's, i.e. zeros).
    progress : bool, optional
        Progress bar.

    Small batches run on one intra-op thread (:func:`recurrent_threads`).

    Returns
    -------
    dict
        ``"h_n"``, ``"c_n"``, ``"state"`` after the last step, and ``"y_hat"`` ``[B, T, ...]`` (a tensor
        concatenated over chunks when neither ``out`` nor ``on_chunk`` is given; ``out`` when given;
        otherwise absent).
    """
    if chunk < 1:
        raise ConfigError(f"stream_predict: chunk must be >= 1, got {chunk}")
    missing = [k for k in time_keys if k not in batch]
    if missing:
        raise ConfigError(f"stream_predict: batch has no {missing} (keys: {sorted(batch)})")
    T = batch[time_keys[0]].shape[1]
    device, dtype = torch.device("cpu"), torch.float32
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            device, dtype = p.device, p.dtype
            break
    collect = out is None and on_chunk is None
    ys: list[torch.Tensor] = []
    h = c = None
    if state is not None:
        h, c = state
    n_batch = batch[time_keys[0]].shape[0]
    with torch.inference_mode(), recurrent_threads(model, n_batch, device):
        for t0 in tqdm(range(0, T, chunk), progress=progress, desc="time chunks"):
            t1 = min(T, t0 + chunk)
            sub = {
                k: (_slice_time(v, t0, t1, device, dtype) if k in time_keys else v)
                for k, v in batch.items()
                if k != "state"
            }
            if h is not None:
                sub["state"] = (h, c)
            res = model(sub)
            h, c = res["h_n"], res["c_n"]
            y = res["y_hat"]
            if out is not None:
                out[:, t0:t1] = y.cpu().numpy() if not isinstance(out, torch.Tensor) else y
            if on_chunk is not None:
                on_chunk(t0, t1, res)
            if collect:
                ys.append(y)
            del res, sub
    result: dict = {"h_n": h, "c_n": c, "state": (h, c)}
    if collect:
        result["y_hat"] = torch.cat(ys, dim=1)
    elif out is not None:
        result["y_hat"] = out
    return result
