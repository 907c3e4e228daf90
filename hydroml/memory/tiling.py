"""Exact tiled inference of fully convolutional models on grids larger than memory.

:func:`tiled_predict` cuts the output grid into tiles whose origins are multiples of the model's total stride
(so pooling windows fall where they fall untiled), reads each tile's input window -- the tile plus a halo of
``halo`` cells on every side, **clipped at the grid border** so the model's own border padding acts exactly
where it acts untiled -- runs the model under ``torch.inference_mode``, crops the halo off and writes the tile
into the output: an in-memory array, a NetCDF file or a zarr store written tile by tile (never the whole grid
in memory). The input is read tile by tile too: a numpy array, a torch tensor, a lazy ``xarray.DataArray``
(dask- or file-backed), an ``xarray.Dataset`` with ``variables=``, or any array with ``shape`` and slicing
(``netCDF4.Variable``, ``zarr`` and ``h5py`` arrays).

Exactness. With ``halo >= radius`` (the receptive-field radius) and stride-aligned tiles, each output cell
sees exactly the input cells it sees untiled, so the result equals untiled inference up to float round-off
(convolution kernels may sum in a different order on different sizes; the tests check max abs difference
<= 1e-5 in float32, including the cells next to tile seams). Models whose layers use statistics of the whole
map (group/instance/batch norm in training mode, global pooling, attention) are not tileable.

The halo comes from ``model.receptive_field()`` (``radius``, ``stride``, ``halo``) when the model has it, else
from :func:`probe_receptive_field`, which perturbs single input cells and watches how far the output changes
(a lower bound for unlucky weights: add a margin with ``halo=``).

Missing values. NaN inputs are replaced by ``fill_value`` before the model sees them (untiled prediction of
the same filled input gives the same numbers); output cells are set to NaN where ``mask`` says so: by default
where every input channel is NaN (land/ocean masks), or a boolean ``[H, W]`` array (True = valid).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hydroml._io import atomic_path
from hydroml._progress import tqdm
from hydroml.exceptions import ConfigError, DataError, require

log = logging.getLogger("hydroml.memory")

__all__ = ["ReceptiveField", "Tile", "tiles", "tiled_predict", "probe_receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a fully convolutional model.

    Attributes
    ----------
    radius : int
        Largest distance (cells) between an output cell and an input cell it depends on.
    stride : int
        Total stride of the down-sampling; tile origins are multiples of it.
    halo : int
        ``radius`` rounded up to a multiple of ``stride``.
    """

    radius: int
    stride: int
    halo: int


@dataclass(frozen=True)
class Tile:
    """One tile: output rows/columns ``[r0, r1) x [c0, c1)`` and input window ``[wr0, wr1) x [wc0, wc1)``."""

    r0: int
    r1: int
    c0: int
    c1: int
    wr0: int
    wr1: int
    wc0: int
    wc1: int


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def tiles(
    shape: tuple[int, int],
    tile: int | Sequence[int],
    halo: int | Sequence[int],
    stride: int = 1,
    *,
    equal: bool = False,
) -> list[Tile]:
    """Stride-aligned tiles covering an ``(H, W)`` grid, with their halo windows clipped at the border.

    Parameters
    ----------
    shape : (int, int)
        Grid size ``(H, W)``.
    tile : int or (int, int)
        Tile size; rounded up to a multiple of ``stride``.
    halo : int or (int, int)
        Halo on each side; rounded up to a multiple of ``stride``.
    stride : int
        Total stride of the model.
    equal : bool
        Give every window the same size ``tile + 2 * halo`` (where the grid allows): windows at the border are
        shifted inward (still stride-aligned, still clipped at the grid border) instead of cut. Border tiles
        then compute a little more, but every tile has one shape, so memory freed by one tile is reused
        exactly by the next (no allocator fragmentation across tile sizes, one set of kernel primitives).

    Returns
    -------
    list of Tile
    """
    H, W = shape
    th, tw = (max(stride, math.ceil(t / stride) * stride) for t in _pair(tile))
    hh, hw = (math.ceil(h / stride) * stride for h in _pair(halo))

    def window(a0: int, a1: int, size: int, h: int, n: int) -> tuple[int, int]:
        if not equal:
            return max(0, a0 - h), min(n, a1 + h)
        span = size + 2 * h
        if span >= n:
            return 0, n
        w0 = min(max(0, a0 - h), n - span)
        w0 -= w0 % stride  # aligned; the window then ends at the border (<= stride - 1 cells longer)
        return w0, (w0 + span if w0 + span < n and a1 + h <= w0 + span else n)

    out = []
    for r0 in range(0, H, th):
        for c0 in range(0, W, tw):
            r1, c1 = min(H, r0 + th), min(W, c0 + tw)
            wr0, wr1 = window(r0, r1, th, hh, H)
            wc0, wc1 = window(c0, c1, tw, hw, W)
            out.append(Tile(r0, r1, c0, c1, wr0, wr1, wc0, wc1))
    return out


# ----------------------------------------------------------------------------------------------------------
# readers


class _Reader:
    """Reads ``[B, C, h, w]`` float windows from many kinds of arrays."""

    def __init__(self, data: Any, variables: Sequence[str] | None = None) -> None:
        self.coords: dict = {}
        self.dims = ("y", "x")
        self.batched = False
        xr = _xarray_or_none()
        if xr is not None and isinstance(data, xr.Dataset):
            if not variables:
                raise ConfigError(
                    "tiled_predict: pass variables=[...] to read channels from an xarray.Dataset"
                )
            missing = [v for v in variables if v not in data]
            if missing:
                raise DataError(
                    f"tiled_predict: variables {missing} not in the dataset ({list(data.data_vars)})"
                )
            arrays = [data[v] for v in variables]
            self.dims = tuple(arrays[0].dims[-2:])
            self.coords = {
                k: arrays[0][k] for k in arrays[0].coords if set(arrays[0][k].dims) <= set(self.dims)
            }
            self._parts = arrays
            self.shape_hw = tuple(arrays[0].shape[-2:])
            self.channels = sum(int(np.prod(a.shape[:-2], dtype=int)) for a in arrays)
            self._kind = "dataset"
            return
        if xr is not None and isinstance(data, xr.DataArray):
            self.dims = tuple(data.dims[-2:])
            self.coords = {k: data[k] for k in data.coords if set(data[k].dims) <= set(self.dims)}
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu()
        shape = tuple(data.shape)
        if len(shape) == 2:
            self._lead = 0
        elif len(shape) in (3, 4):
            self._lead = len(shape) - 2
        else:
            raise DataError(
                f"tiled_predict: input must be [H, W], [C, H, W] or [B, C, H, W], got shape {shape}"
            )
        self.batched = len(shape) == 4
        self.channels = shape[-3] if len(shape) >= 3 else 1
        self.shape_hw = shape[-2:]
        self._data = data
        self._kind = "array"

    def read(self, t: Tile, dtype: Any = np.float32) -> np.ndarray:
        ys, xs = slice(t.wr0, t.wr1), slice(t.wc0, t.wc1)
        if self._kind == "dataset":
            parts = []
            for a in self._parts:
                v = np.asarray(a.isel({self.dims[0]: ys, self.dims[1]: xs}).values, dtype=dtype)
                parts.append(v.reshape(-1, *v.shape[-2:]))
            return np.concatenate(parts, axis=0)[None]
        d = self._data
        xr = _xarray_or_none()
        if xr is not None and isinstance(d, xr.DataArray):
            v = d.isel({self.dims[0]: ys, self.dims[1]: xs}).values
        else:
            v = d[(Ellipsis, ys, xs)]
            if isinstance(v, torch.Tensor):
                v = v.numpy()
        v = np.asarray(v, dtype=dtype)
        if not v.flags.owndata:  # a view of the caller's array: copy (the window is then filled in place)
            v = v.copy()
        if v.ndim == 2:
            v = v[None]
        if v.ndim == 3:
            v = v[None]
        return v


def _xarray_or_none():
    try:
        import xarray as xr

        return xr
    except ImportError:  # pragma: no cover
        return None


# ----------------------------------------------------------------------------------------------------------
# writers


class _ArrayWriter:
    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, t: Tile, block: np.ndarray) -> None:
        self.target[..., t.r0 : t.r1, t.c0 : t.c1] = block

    def close(self, ok: bool) -> Any:
        return self.target


class _NetCDFWriter:
    def __init__(
        self, path: Path, name: str, shape: tuple, dims: tuple, coords: dict, chunk: tuple, attrs: dict
    ):
        nc4 = require("netCDF4", "netcdf")
        self.path = path
        self._ctx = atomic_path(path, suffix=".nc")
        self.tmp = self._ctx.__enter__()
        self.ds = nc4.Dataset(self.tmp, "w")
        for d, n in zip(dims, shape):
            self.ds.createDimension(d, n)
        for k, c in coords.items():
            if c.ndim == 1 and c.dims[0] in dims and c.dtype.kind in "fiu":
                v = self.ds.createVariable(k, c.dtype, c.dims)
                v[:] = c.values
                v.setncatts({a: b for a, b in c.attrs.items() if isinstance(b, str | int | float)})
        chunks = tuple(min(s, c) for s, c in zip(shape, (1,) * (len(shape) - 2) + chunk))
        self.var = self.ds.createVariable(
            name, "f4", dims, zlib=False, chunksizes=chunks, fill_value=np.float32(np.nan)
        )
        self.var.setncatts(attrs)

    def write(self, t: Tile, block: np.ndarray) -> None:
        self.var[..., t.r0 : t.r1, t.c0 : t.c1] = block

    def close(self, ok: bool) -> Any:
        self.ds.close()
        if ok:
            self._ctx.__exit__(None, None, None)
            xr = require("xarray", "netcdf")
            return xr.open_dataset(self.path)[self.var.name]
        self._ctx.__exit__(RuntimeError, RuntimeError("tiled_predict failed"), None)
        return None


class _ZarrWriter:
    def __init__(
        self, path: Path, name: str, shape: tuple, dims: tuple, coords: dict, chunk: tuple, attrs: dict
    ):
        xr = require("xarray", "dask")
        da = require("dask.array", "dask")
        self.path, self.name, self.dims = path, name, dims
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        chunks = tuple(min(s, c) for s, c in zip(shape, (1,) * (len(shape) - 2) + chunk))
        template = da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
        keep = {k: c for k, c in coords.items() if set(c.dims) <= set(dims)}
        ds = xr.Dataset({name: (dims, template, attrs)}, coords=keep)
        ds.to_zarr(self.tmp, mode="w", compute=False, consolidated=False)
        self._xr = xr

    def write(self, t: Tile, block: np.ndarray) -> None:
        ds = self._xr.Dataset({self.name: (self.dims, block)})
        region = {self.dims[-2]: slice(t.r0, t.r1), self.dims[-1]: slice(t.c0, t.c1)}
        ds.to_zarr(self.tmp, region=region, consolidated=False)

    def close(self, ok: bool) -> Any:
        if not ok:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return None
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self._xr.open_zarr(self.path, consolidated=False)[self.name]


# ----------------------------------------------------------------------------------------------------------


def _call(model: Callable, x: torch.Tensor, key: str) -> torch.Tensor:
    out = model({key: x}) if key else model(x)
    if isinstance(out, dict):
        out = out["y_hat"]
    return out


def _model_device_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _receptive_field_of(model: Any) -> ReceptiveField | None:
    fn = getattr(model, "receptive_field", None)
    if callable(fn):
        rf = fn()
        return ReceptiveField(int(rf.radius), int(rf.stride), int(rf.halo))
    return None


def probe_receptive_field(
    model: Callable,
    in_channels: int,
    *,
    stride: int | None = None,
    size: int = 96,
    max_size: int = 1024,
    key: str = "x",
    trials: int = 4,
    seed: int = 0,
) -> ReceptiveField:
    """Measure a model's receptive field by perturbing input cells.

    For ``trials`` positions (covering different phases modulo the stride) one input cell is perturbed and the
    largest distance at which the output changes is recorded; the input grows until the change no longer
    reaches its border. The total stride, unless given, is the smallest power of two by which shifting the
    input shifts the output (in the interior).

    Parameters
    ----------
    model : callable
        ``model({key: x})["y_hat"]`` (or ``model(x)`` with ``key=""``), in eval mode.
    in_channels : int
        Input channels.
    stride : int, optional
        Total stride; probed when ``None``.
    size, max_size : int
        First and largest probe size.
    key : str
        Batch key of the input.
    trials : int
        Perturbed positions.
    seed : int
        Seed of the random probe input.

    Returns
    -------
    ReceptiveField
        A lower bound of the true one (a perturbation can be masked by dead ReLUs); add a margin if unsure.
        ``nn.Module`` models are probed on a float64 copy in eval mode.
    """
    if isinstance(model, nn.Module):
        # float64 copy: far-reaching but small influences must stand out from round-off
        model = copy.deepcopy(model).double().eval()
    device, dtype = _model_device_dtype(model)
    gen = torch.Generator().manual_seed(seed)
    phase = stride or 64
    offsets = sorted({0, 1, phase // 2 - 1, phase - 1, phase // 4, 3 * phase // 4 + 1})[: max(1, trials)]
    n = math.ceil(max(size, 2 * phase) / phase) * phase
    radius = None
    with torch.inference_mode():
        while n <= max_size:
            x = torch.randn(1, in_channels, n, n, generator=gen).to(device, dtype)
            y0 = _call(model, x, key)
            radius, touched = 0, False
            tol = (1e-12 if dtype == torch.float64 else 1e-6) * max(1.0, float(y0.abs().max()))
            for off in offsets:
                pos = n // 2 - phase + off
                x1 = x.clone()
                x1[..., pos, pos] += 10.0
                diff = (_call(model, x1, key) - y0).abs().amax(dim=(0, 1))
                rows, cols = torch.nonzero(diff > tol, as_tuple=True)
                if rows.numel() == 0:
                    continue
                radius = max(radius, int((rows - pos).abs().max()), int((cols - pos).abs().max()))
                if rows.min() == 0 or cols.min() == 0 or rows.max() == n - 1 or cols.max() == n - 1:
                    touched = True
            if not touched:
                break
            n *= 2
        else:
            raise DataError(
                f"probe_receptive_field: the receptive field reaches the border of a {max_size} x {max_size} "
                "probe; the model is not local (global pooling, attention, whole-map normalisation?) or needs "
                "max_size larger"
            )
    if stride is None:
        stride = _probe_stride(model, in_channels, key, dtype, device, gen, radius)
    return ReceptiveField(radius, stride, int(math.ceil(radius / stride) * stride))


def _probe_stride(model, in_channels, key, dtype, device, gen, radius: int) -> int:
    m, L = radius + 2, 32
    n = 2 * m + L + 64
    x = torch.randn(1, in_channels, n, n, generator=gen).to(device, dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    with torch.inference_mode():
        y = _call(model, x, key)
        for s in (1, 2, 4, 8, 16, 32, 64):
            ys = _call(model, x[..., s:, s:], key)
            a = y[..., s + m : s + m + L, s + m : s + m + L]
            b = ys[..., m : m + L, m : m + L]
            if torch.allclose(a, b, rtol=tol, atol=tol * max(1.0, float(a.abs().max()))):
                return s
    raise DataError("probe_receptive_field: no total stride <= 64 found; pass stride= explicitly")


def tiled_predict(
    model: Callable,
    data: Any,
    *,
    tile: int | Sequence[int] = 512,
    halo: int | None = None,
    stride: int | None = None,
    out: Any = None,
    name: str = "y_hat",
    variables: Sequence[str] | None = None,
    fill_value: float = 0.0,
    mask: Any = "auto",
    key: str = "x",
    attrs: dict | None = None,
    progress: bool | None = None,
) -> Any:
    """Predict a grid tile by tile, exactly (see the module docstring).

    Parameters
    ----------
    model : callable
        ``model({key: x})`` -> ``{"y_hat": ...}`` (or a tensor), fully convolutional, e.g. the ``unet`` in eval
        mode; ``x`` is ``[B, C, h, w]``.
    data : array-like
        ``[C, H, W]`` or ``[B, C, H, W]`` (or ``[H, W]``): numpy, torch, xarray (lazy), netCDF4/zarr/h5py arrays;
        or an ``xarray.Dataset`` with ``variables``.
    tile : int or (int, int)
        Output tile size (rounded up to a multiple of the stride).
    halo, stride : int, optional
        Halo half-width and total stride; default from ``model.receptive_field()`` or probed.
    out : None, str, Path or array-like
        ``None``: return a numpy array (or ``xarray.DataArray`` for xarray input). A path ending in ``.nc``
        (NetCDF) or ``.zarr``: written tile by tile (atomically) and returned opened lazily. An array-like with
        slicing assignment (``np.memmap``, zarr array, netCDF4 variable) of shape ``[(B,) n_out, H, W]``.
    name : str
        Output variable name.
    variables : list of str, optional
        Channels of an ``xarray.Dataset`` input, in order.
    fill_value : float
        Replaces NaN inputs.
    mask : "auto", array-like of bool or None
        ``"auto"``: NaN where all input channels are NaN; an ``[H, W]`` boolean array (True = valid); ``None``:
        no masking.
    key : str
        Batch key of the model input (``""`` to call ``model(x)``).
    attrs : dict, optional
        Attributes of the output variable (units, long_name...).
    progress : bool, optional
        Progress bar.

    Returns
    -------
    numpy.ndarray, xarray.DataArray or the array-like
        Output ``[(B,) n_out, H, W]``.
    """
    reader = _Reader(data, variables)
    H, W = reader.shape_hw
    device, dtype = _model_device_dtype(model)
    if halo is None or stride is None:
        rf = _receptive_field_of(model) or probe_receptive_field(
            model, reader.channels, stride=stride, key=key
        )
        halo = rf.halo if halo is None else halo
        stride = rf.stride if stride is None else stride
    plan = tiles((H, W), tile, halo, stride)
    log.info(
        "tiled_predict: %d tiles of %s cells, halo %d, stride %d on a %dx%d grid",
        len(plan),
        tile,
        halo,
        stride,
        H,
        W,
    )
    writer = None
    ok = False
    try:
        for t in tqdm(plan, progress=progress, desc="tiles"):
            block_in = reader.read(t)
            nan_all = np.isnan(block_in).all(axis=1) if isinstance(mask, str) and mask == "auto" else None
            # in place: the window is a fresh array (no second copy of the input tile)
            xin = torch.from_numpy(np.nan_to_num(block_in, copy=False, nan=fill_value)).to(device, dtype)
            del block_in
            with torch.inference_mode():
                y = _call(model, xin, key)
            y = y[..., t.r0 - t.wr0 : t.r1 - t.wr0, t.c0 - t.wc0 : t.c1 - t.wc0].float().cpu().numpy()
            if nan_all is not None:
                inner = nan_all[:, t.r0 - t.wr0 : t.r1 - t.wr0, t.c0 - t.wc0 : t.c1 - t.wc0]
                y = np.where(inner[:, None], np.float32(np.nan), y)
            elif mask is not None and not isinstance(mask, str):
                valid = np.asarray(mask[t.r0 : t.r1, t.c0 : t.c1], dtype=bool)
                y = np.where(valid[None, None], y, np.float32(np.nan))
            if not reader.batched:
                y = y[0]
            if writer is None:
                shape = y.shape[:-2] + (H, W)
                writer = _make_writer(out, name, shape, reader, _pair(tile), attrs or {})
            writer.write(t, y)
        ok = True
    finally:
        result = writer.close(ok) if writer is not None else None
    return result


def _make_writer(out: Any, name: str, shape: tuple, reader: _Reader, tile: tuple, attrs: dict):
    lead = ("sample", "output")[-(len(shape) - 2) :] if len(shape) > 2 else ()
    dims = tuple(lead) + tuple(reader.dims)
    if out is None:
        arr = np.full(shape, np.nan, dtype=np.float32)
        if reader.coords:
            xr = _xarray_or_none()
            da = xr.DataArray(arr, dims=dims, coords=reader.coords, name=name, attrs=attrs)
            return _DataArrayWriter(da)
        return _ArrayWriter(arr)
    if isinstance(out, str | os.PathLike):
        path = Path(out)
        if path.suffix == ".nc":
            return _NetCDFWriter(path, name, shape, dims, reader.coords, tile, attrs)
        if path.suffix == ".zarr":
            return _ZarrWriter(path, name, shape, dims, reader.coords, tile, attrs)
        raise ConfigError(f"tiled_predict: out path {str(path)!r} must end in .nc or .zarr")
    if tuple(out.shape) != tuple(shape):
        raise DataError(f"tiled_predict: out has shape {tuple(out.shape)}, expected {tuple(shape)}")
    return _ArrayWriter(out)


class _DataArrayWriter(_ArrayWriter):
    def write(self, t: Tile, block: np.ndarray) -> None:
        self.target.values[..., t.r0 : t.r1, t.c0 : t.c1] = block
