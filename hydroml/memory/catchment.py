"""Exact tiled training for losses on catchment sums (water-cycle closure on global grids).

A gridded model predicts ``y`` ``[B, O, H, W]`` (e.g. monthly evaporation per cell); the loss only sees
catchment aggregates

.. math::

    s_{b,o,k} = \\sum_{cells\\ c} w_{k,c}\\, y_{b,o,c}, \\qquad L = \\ell(s)

with sparse weights :math:`w` ``[n_catchments, H*W]`` (cell areas or fractions inside catchment ``k``, the
grid-to-basin weights of ``hydroml.data``). Since :math:`\\partial L/\\partial y_{b,o,c} = \\sum_k
(\\partial \\ell/\\partial s_{b,o,k})\\, w_{k,c}`, the gradient can be pushed into the grid tile by tile:

1. **pass one**: run every tile (with its halo, as in :func:`hydroml.memory.tiled_predict`) without gradients
   and accumulate the catchment sums;
2. compute the loss and its gradient :math:`g = \\partial \\ell / \\partial s` (small);
3. **pass two**: re-run each tile with gradients and call ``y_tile.backward(g @ w[:, tile cells])``; parameter
   gradients accumulate over tiles.

The result equals whole-grid training (the tests check it in float64), while peak memory is that of one tile
plus the halo: the whole grid never exists, neither its activations nor its output. The cost is one extra
forward pass (pass one). Exactness needs the same conditions as tiled inference (stride-aligned tiles, halo
>= receptive field, no whole-map statistics: ``unet(norm="none")`` or batch norm in ``eval()`` mode) and the
same dropout masks in both passes (each tile's RNG is seeded identically in both passes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hydroml._progress import tqdm
from hydroml.exceptions import ConfigError, DataError
from hydroml.memory.tiling import Tile, _call, _model_device_dtype, _Reader, _receptive_field_of, tiles

__all__ = ["CatchmentStep", "catchment_sums", "catchment_backward", "as_sparse_weights"]


@dataclass
class CatchmentStep:
    """Result of :func:`catchment_backward`.

    Attributes
    ----------
    loss : float
        The loss value.
    sums : torch.Tensor
        Catchment sums ``[B, O, n_catchments]`` (detached).
    grad_sums : torch.Tensor
        :math:`\\partial L / \\partial s`, same shape.
    """

    loss: float
    sums: torch.Tensor
    grad_sums: torch.Tensor


def as_sparse_weights(weights: Any, shape: tuple[int, int]):
    """Catchment weights as a ``scipy.sparse.csc_matrix`` ``[n_catchments, H*W]`` (cells in row-major order).

    Parameters
    ----------
    weights : scipy sparse matrix, numpy array or torch tensor
        ``[K, H*W]`` or ``[K, H, W]``.
    shape : (int, int)
        Grid ``(H, W)``.
    """
    import scipy.sparse as sp

    H, W = shape
    if sp.issparse(weights):
        w = weights.tocsc()
    else:
        if isinstance(weights, torch.Tensor):
            weights = weights.detach().cpu().numpy()
        arr = np.asarray(weights, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr.reshape(arr.shape[0], -1)
        w = sp.csc_matrix(arr)
    if w.shape[1] != H * W:
        raise DataError(
            f"catchment weights have {w.shape[1]} cells per catchment, the grid has {H}x{W}={H * W}"
        )
    return w


def _check_model(model: Any) -> None:
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
                raise ConfigError(
                    "catchment training is exact only without whole-tile statistics: batch norm layers are in "
                    "training mode (use norm='none' or put them in eval() mode)"
                )
            if isinstance(m, nn.GroupNorm | nn.InstanceNorm2d | nn.LayerNorm):
                raise ConfigError(
                    f"catchment training cannot be exact with {type(m).__name__} (statistics over the map)"
                )


def _tile_cells(t: Tile, W: int) -> np.ndarray:
    rows = np.arange(t.r0, t.r1)
    cols = np.arange(t.c0, t.c1)
    return (rows[:, None] * W + cols[None, :]).ravel()


def _run_block(model, x: np.ndarray, t: Tile, key, device, dtype, seed):
    """The model on one window ``x`` ``[b, C, h, w]`` (NaN already filled), cropped to the tile."""
    xt = torch.from_numpy(x).to(device, dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        y = _call(model, xt, key)
    return y[..., t.r0 - t.wr0 : t.r1 - t.wr0, t.c0 - t.wc0 : t.c1 - t.wc0]


def _blocks(reader, t: Tile, fill_value: float, dtype, batch_tile: int | None):
    """``(b0, window, n_samples)`` for each chunk of ``batch_tile`` samples of the tile's input window."""
    block = reader.read(t, dtype=np.float64 if dtype == torch.float64 else np.float32)  # owns its data
    np.nan_to_num(block, copy=False, nan=fill_value)
    step = block.shape[0] if not batch_tile else max(1, int(batch_tile))
    for b0 in range(0, block.shape[0], step):
        yield b0, block[b0 : b0 + step], block.shape[0]


def _setup(model, data, weights, tile, halo, stride, variables):
    reader = _Reader(data, variables)
    H, W = reader.shape_hw
    if halo is None or stride is None:
        rf = _receptive_field_of(model)
        if rf is None:
            raise ConfigError(
                "catchment training needs halo= and stride= for models without receptive_field()"
            )
        halo = rf.halo if halo is None else halo
        stride = rf.stride if stride is None else stride
    w = as_sparse_weights(weights, (H, W))
    # equal windows: one tile shape, so every tile reuses the memory (and kernel primitives) of the previous
    return reader, H, W, w, tiles((H, W), tile, halo, stride, equal=True)


def _sums(model, reader, W, w, plan, fill_value, key, seed, progress, batch_tile) -> torch.Tensor:
    device, dtype = _model_device_dtype(model)
    sums = None
    n_out = 1
    with torch.inference_mode():
        for k, t in enumerate(tqdm(plan, progress=progress, desc="catchment pass 1")):
            sub = w[:, _tile_cells(t, W)]  # [K, cells]
            for j, (b0, x, n) in enumerate(_blocks(reader, t, fill_value, dtype, batch_tile)):
                y = _run_block(model, x, t, key, device, dtype, seed + k + j * len(plan))
                b, n_out = y.shape[0], y.shape[1]
                if sums is None:
                    sums = np.zeros((n * n_out, w.shape[0]))
                flat = y.reshape(b * n_out, -1).cpu().double().numpy()
                sums[b0 * n_out : (b0 + b) * n_out] += np.asarray((sub @ flat.T).T)  # [b*O, K]
                del y, flat
    return torch.from_numpy(sums.reshape(-1, n_out, w.shape[0])).to(device, dtype)


def catchment_sums(
    model: Callable,
    data: Any,
    weights: Any,
    *,
    tile: int | Sequence[int] = 256,
    halo: int | None = None,
    stride: int | None = None,
    variables: Sequence[str] | None = None,
    fill_value: float = 0.0,
    key: str = "x",
    seed: int = 0,
    progress: bool | None = None,
    batch_tile: int | None = None,
) -> torch.Tensor:
    """Catchment sums of a model's gridded output, computed tile by tile without gradients (pass one).

    Parameters
    ----------
    model : callable
        Fully convolutional model, as for :func:`hydroml.memory.tiled_predict`.
    data : array-like
        Input ``[C, H, W]`` or ``[B, C, H, W]`` (any reader of ``tiled_predict``).
    weights : sparse or dense array
        ``[n_catchments, H*W]`` or ``[n_catchments, H, W]``.
    tile, halo, stride, variables, fill_value, key
        As :func:`hydroml.memory.tiled_predict`.
    seed : int
        Base seed of the per-tile RNG (dropout masks), identical in both passes.
    progress : bool, optional
        Progress bar.
    batch_tile : int, optional
        Run the samples of a tile (e.g. the months of a step) in chunks of this many (default all at once):
        samples are independent, so the result is the same. The model's activations are bounded by
        ``batch_tile`` samples of one tile; the tile's input window is still read for all samples at once.

    Returns
    -------
    torch.Tensor
        ``[B, O, n_catchments]`` in the model's dtype.
    """
    reader, H, W, w, plan = _setup(model, data, weights, tile, halo, stride, variables)
    return _sums(model, reader, W, w, plan, fill_value, key, seed, progress, batch_tile)


def catchment_backward(
    model: Callable,
    data: Any,
    weights: Any,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    tile: int | Sequence[int] = 256,
    halo: int | None = None,
    stride: int | None = None,
    variables: Sequence[str] | None = None,
    fill_value: float = 0.0,
    key: str = "x",
    seed: int = 0,
    progress: bool | None = None,
    batch_tile: int | None = None,
) -> CatchmentStep:
    """One exact tiled training step for a loss on catchment sums: accumulates parameter gradients.

    Call ``optimizer.zero_grad()`` before and ``optimizer.step()`` after, as around ``loss.backward()``.

    Parameters
    ----------
    model : nn.Module
        Fully convolutional model without whole-map statistics (see the module docstring).
    data : array-like
        Input ``[C, H, W]`` or ``[B, C, H, W]``.
    weights : sparse or dense array
        ``[n_catchments, H*W]`` or ``[n_catchments, H, W]``.
    loss_fn : callable
        ``sums [B, O, n_catchments] -> scalar tensor`` (targets closed over).
    tile, halo, stride, variables, fill_value, key, seed, progress, batch_tile
        As :func:`catchment_sums`.

    Returns
    -------
    CatchmentStep
        Loss, sums and their gradient.
    """
    _check_model(model)
    reader, H, W, w, plan = _setup(model, data, weights, tile, halo, stride, variables)
    sums = _sums(model, reader, W, w, plan, fill_value, key, seed, progress, batch_tile)
    s = sums.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(s)
        (g,) = torch.autograd.grad(loss, s)
    device, dtype = _model_device_dtype(model)
    B, n_out, K = g.shape
    gflat = g.reshape(B * n_out, K).detach().cpu().double().numpy()
    for k, t in enumerate(tqdm(plan, progress=progress, desc="catchment pass 2")):
        sub = w[:, _tile_cells(t, W)]
        if sub.nnz == 0:
            continue  # no catchment touches this tile: its gradient is zero
        subt = sub.T.tocsr()
        for j, (b0, x, _) in enumerate(_blocks(reader, t, fill_value, dtype, batch_tile)):
            b = x.shape[0]
            gy = np.asarray((subt @ gflat[b0 * n_out : (b0 + b) * n_out].T).T)  # [b*O, cells]
            with torch.enable_grad():
                y = _run_block(model, x, t, key, device, dtype, seed + k + j * len(plan))
                y.backward(torch.from_numpy(gy).to(device, y.dtype).reshape(y.shape))
            del y, gy
    return CatchmentStep(float(loss.detach()), sums.detach(), g.detach())
