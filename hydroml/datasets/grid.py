"""Samples of gridded data for CNNs: (time step with its lags, spatial tile) over ``(time, lat, lon)`` stacks.

Storage
    Normalised inputs once as float32 ``[time, variable, lat, lon]``, static maps as ``[static, lat, lon]``,
    targets as ``[time, target, lat, lon]`` (NaN where missing). Tiles and lag windows are strided views of these
    arrays; a batch is gathered with one fancy-index per array.
Index
    One integer per valid sample, ``t * n_tiles + tile`` (int32 when it fits).
Channels
    ``inputs x lags`` (variable-major: ``pr``, ``pr_lag1``, ..., ``tas``, ...) then the static maps; see
    :attr:`GridDataset.channel_names`.
Masks
    ``mask`` is true where the target is finite *and* the cell is valid (``valid_mask``, e.g. the land mask). Inputs
    that are NaN outside the valid cells are filled with ``fill_value``; inside valid cells a NaN input excludes the
    sample (``nan_policy="exclude"``) or is filled (``"fill"``). A sample without any finite target in its tile is
    excluded.

The time axis is whatever the dataset has: a monthly dataset gives monthly samples and targets (e.g. monthly
evaporation from monthly forcings, :func:`hydroml.data.demo.load_demo` ``"monthly"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from hydroml.datasets._batched import BatchedDataset
from hydroml.datasets.normalise import Normaliser
from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.datasets")


def _spatial_dims(da) -> tuple[str, str]:
    for pair in (("lat", "lon"), ("y", "x")):
        if set(pair) <= set(da.dims):
            return pair
    raise DataError(
        f"variable {da.name!r}: expected spatial dimensions (lat, lon) or (y, x), found {da.dims}"
    )


def _origins(n: int, size: int, stride: int) -> np.ndarray:
    o = list(range(0, n - size + 1, stride))
    if o[-1] != n - size:
        o.append(n - size)
    return np.asarray(o, dtype=np.int64)


class GridDataset(BatchedDataset):
    """Gridded samples for fully convolutional models.

    Parameters
    ----------
    ds : xarray.Dataset
        Variables on ``(time, lat, lon)`` (or ``(time, y, x)``); static maps on ``(lat, lon)``.
    inputs : sequence of str
        Time-varying input variables.
    targets : sequence of str
        Per-cell target variables on ``(time, lat, lon)``.
    static_inputs : sequence of str
        Static maps added as channels.
    lags : int
        Time steps per input variable: the current step and ``lags - 1`` previous ones.
    lead_time : int
        Targets at ``t + lead_time`` for inputs ending at ``t``.
    tile : int or (int, int), optional
        Tile height and width in cells (default: the whole grid).
    stride : int or (int, int), optional
        Distance between tile origins (default: the tile size; the last tile is aligned on the grid's edge).
    period : (str, str), optional
        Inclusive period of the targets.
    valid_mask : str or array-like, optional
        Name of a static map (non-zero = valid, e.g. ``"land_mask"``) or a boolean ``(lat, lon)`` array; default:
        all cells.
    normaliser : Normaliser, optional
        Statistics to apply; fitted here on the period and valid cells when ``None`` (training set only).
    log_transform : sequence of str
        Variables fitted as ``log(x + eps)``.
    eps : float
        Log offset.
    nan_policy : {"exclude", "fill"}
        NaN inputs inside valid cells: exclude the sample, or fill.
    fill_value : float
        Fill for NaN inputs (normalised units; 0 = the training mean).
    """

    def __init__(
        self,
        ds,
        inputs: Sequence[str],
        targets: Sequence[str],
        *,
        static_inputs: Sequence[str] = (),
        lags: int = 1,
        lead_time: int = 0,
        tile: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        period: tuple[str, str] | None = None,
        valid_mask=None,
        normaliser: Normaliser | None = None,
        log_transform: Sequence[str] = (),
        eps: float = 1.0,
        nan_policy: str = "exclude",
        fill_value: float = 0.0,
    ):
        self.inputs, self.targets, self.static_inputs = list(inputs), list(targets), list(static_inputs)
        self.lags, self.lead_time = int(lags), int(lead_time)
        if self.lags < 1 or self.lead_time < 0:
            raise ConfigError(f"need lags >= 1 and lead_time >= 0, found {lags}, {lead_time}")
        if nan_policy not in ("exclude", "fill"):
            raise ConfigError(f"nan_policy must be 'exclude' or 'fill', found {nan_policy!r}")
        if not self.inputs or not self.targets:
            raise ConfigError("need at least one input and one target")
        missing = [v for v in self.inputs + self.targets + self.static_inputs if v not in ds.data_vars]
        if missing:
            raise DataError(
                f"variable(s) {missing} not found; available: {', '.join(map(str, ds.data_vars))}"
            )
        ydim, xdim = _spatial_dims(ds[self.inputs[0]])
        for v in self.inputs + self.targets:
            if set(ds[v].dims) != {"time", ydim, xdim}:
                raise DataError(
                    f"variable {v!r}: expected dimensions (time, {ydim}, {xdim}), found {ds[v].dims}"
                )
        for v in self.static_inputs:
            if set(ds[v].dims) != {ydim, xdim}:
                raise DataError(f"static map {v!r}: expected dimensions ({ydim}, {xdim}), found {ds[v].dims}")
        ny, nx = ds.sizes[ydim], ds.sizes[xdim]
        th, tw = (tile, tile) if isinstance(tile, int) else (tile or (ny, nx))
        if th > ny or tw > nx:
            raise ConfigError(f"tile ({th}, {tw}) is larger than the grid ({ydim}={ny}, {xdim}={nx})")
        sh, sw = (stride, stride) if isinstance(stride, int) else (stride or (th, tw))
        self.tile = (int(th), int(tw))
        oy, ox = _origins(ny, th, sh), _origins(nx, tw, sw)
        self.origins = np.stack(np.meshgrid(oy, ox, indexing="ij"), -1).reshape(-1, 2)
        n_tiles = len(self.origins)

        time = pd.DatetimeIndex(ds["time"].values)
        start, end = (pd.Timestamp(p) for p in period) if period else (time[0], time[-1])
        i0 = max(int(time.searchsorted(start)) - self.lags + 1 - self.lead_time, 0)
        i1 = int(time.searchsorted(end, side="right"))
        if i1 <= i0:
            raise DataError(
                f"period {start.date()}..{end.date()} has no data (data cover {time[0].date()}..{time[-1].date()})"
            )
        ds = ds.isel(time=slice(i0, i1))
        self.time = time[i0:i1]
        nt = len(self.time)
        in_period = np.asarray((self.time >= start) & (self.time <= end))

        if valid_mask is None:
            valid = np.ones((ny, nx), dtype=bool)
        elif isinstance(valid_mask, str):
            valid = np.asarray(ds[valid_mask].transpose(ydim, xdim).values) != 0
        else:
            valid = np.asarray(valid_mask, dtype=bool)
        if valid.shape != (ny, nx):
            raise DataError(f"valid_mask: expected shape ({ny}, {nx}), found {valid.shape}")
        self.valid = valid

        fit = normaliser is None
        self.normaliser = Normaliser() if fit else normaliser
        logs = set(log_transform)

        def arr(v: str) -> np.ndarray:
            return np.asarray(ds[v].transpose("time", ydim, xdim).values, dtype=np.float32)

        x = np.empty((nt, len(self.inputs), ny, nx), dtype=np.float32)
        nan_in = np.zeros((nt, n_tiles), dtype=bool)
        for f, v in enumerate(self.inputs):
            a = arr(v)
            if fit:
                self.normaliser.fit_array(v, a[in_period][:, valid], log=v in logs, eps=eps)
            a = self.normaliser.transform(v, a)
            bad = ~np.isfinite(a)
            if nan_policy == "exclude":
                bad_valid = bad & valid[None]
                for k, (iy, ix) in enumerate(self.origins):
                    nan_in[:, k] |= bad_valid[:, iy : iy + th, ix : ix + tw].any(axis=(1, 2))
            a[bad] = fill_value
            x[:, f] = a
        s = np.empty((len(self.static_inputs), ny, nx), dtype=np.float32)
        for f, v in enumerate(self.static_inputs):
            a = np.asarray(ds[v].transpose(ydim, xdim).values, dtype=np.float32)
            if fit:
                self.normaliser.fit_array(v, a[valid], log=v in logs, eps=eps)
            a = self.normaliser.transform(v, a)
            a[~np.isfinite(a)] = fill_value
            s[f] = a
        y = np.empty((nt, len(self.targets), ny, nx), dtype=np.float32)
        for k, v in enumerate(self.targets):
            a = arr(v)
            if fit:
                self.normaliser.fit_array(v, a[in_period][:, valid], log=v in logs, eps=eps)
            a = self.normaliser.transform(v, a)
            a[:, ~valid] = np.nan
            y[:, k] = a

        # valid samples (t = last input step)
        has_target = np.zeros((nt, n_tiles), dtype=bool)
        finite = np.isfinite(y).any(axis=1)
        for k, (iy, ix) in enumerate(self.origins):
            has_target[:, k] = finite[:, iy : iy + th, ix : ix + tw].any(axis=(1, 2))
        ok = np.zeros((nt, n_tiles), dtype=bool)
        t = np.arange(nt)
        s_t = t + self.lead_time
        inside = (t >= self.lags - 1) & (s_t < nt)
        ok[inside] = has_target[s_t[inside]] & in_period[s_t[inside], None]
        if nan_policy == "exclude" and self.lags >= 1:
            cs = np.zeros((nt + 1, n_tiles), dtype=np.int32)
            np.cumsum(nan_in, axis=0, out=cs[1:])
            lo = np.clip(t - self.lags + 1, 0, nt)
            ok &= (cs[t + 1] - cs[lo]) == 0
        tt, kk = np.nonzero(ok)
        dtype = np.int32 if nt * n_tiles < np.iinfo(np.int32).max else np.int64
        self._index = (tt.astype(np.int64) * n_tiles + kk).astype(dtype)
        if self._index.size == 0:
            raise DataError(f"no valid gridded sample in {start.date()}..{end.date()} (lags {self.lags})")
        self._n_tiles = n_tiles
        self._x, self._s, self._y = x, s, y
        self._make_views()
        self.channel_names = [
            v if lag == 0 else f"{v}_lag{lag}" for v in self.inputs for lag in range(self.lags)
        ] + self.static_inputs
        log.info(
            "GridDataset: %d samples (%d steps x %d tiles of %s), %d channels",
            len(self),
            nt,
            n_tiles,
            self.tile,
            self.n_channels,
        )

    def _make_views(self) -> None:
        """Tiles as strided views of the stored arrays (nothing copied)."""
        swv = np.lib.stride_tricks.sliding_window_view
        self._xv = swv(self._x, self.tile, axis=(2, 3))
        self._sv = swv(self._s, self.tile, axis=(1, 2))
        self._yv = swv(self._y, self.tile, axis=(2, 3))

    def __getstate__(self) -> dict:
        # never pickle the overlapping tile views (they would be materialised): rebuilt on unpickling
        state = self.__dict__.copy()
        for k in ("_xv", "_sv", "_yv"):
            del state[k]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_views()

    def __len__(self) -> int:
        return int(self._index.size)

    def __repr__(self) -> str:
        return (
            f"GridDataset({len(self)} samples, {len(self.time)} time steps x {len(self.origins)} tiles of "
            f"{self.tile}, {self.n_channels} channels {self.channel_names}, targets {self.targets}, "
            f"lead_time {self.lead_time})"
        )

    @property
    def n_channels(self) -> int:
        """Input channels: ``len(inputs) * lags + len(static_inputs)``."""
        return len(self.inputs) * self.lags + len(self.static_inputs)

    @property
    def index_bytes_per_sample(self) -> float:
        """Bytes of index per sample."""
        return self._index.nbytes / max(len(self), 1)

    def sample_locations(self, idx=None) -> tuple[np.ndarray, np.ndarray]:
        """Time index (last input step) and tile number of samples ``idx`` (all when ``None``)."""
        flat = self._index if idx is None else self._index[np.asarray(idx)]
        return np.divmod(flat.astype(np.int64), self._n_tiles)

    def get_batch(self, idx) -> dict[str, torch.Tensor]:
        """Gather samples ``idx`` as one batch.

        Returns
        -------
        dict of torch.Tensor
            ``x`` [B, C, H, W] float32, ``y`` [B, n_targets, H, W] float32 (NaN where missing), ``mask``
            [B, n_targets, H, W] bool, ``time`` [B] (index into :attr:`time` of the last input step),
            ``tile`` [B], ``origin`` [B, 2] (row, column of the tile's first cell).
        """
        t, k = self.sample_locations(idx)
        iy, ix = self.origins[k, 0], self.origins[k, 1]
        lag_t = t[:, None] - np.arange(self.lags)[None, :]  # [B, L]: t, t-1, ...
        xb = self._xv[lag_t, :, iy[:, None], ix[:, None]]  # [B, L, V, H, W]
        b = len(t)
        xb = xb.transpose(0, 2, 1, 3, 4).reshape(b, len(self.inputs) * self.lags, *self.tile)
        if self.static_inputs:
            sb = np.moveaxis(self._sv[:, iy, ix], 0, 1)  # [B, S, H, W]
            xb = np.concatenate([xb, sb], axis=1)
        yb = np.ascontiguousarray(self._yv[t + self.lead_time, :, iy, ix])  # [B, n_targets, H, W]
        y_t = torch.from_numpy(yb)
        return {
            "x": torch.from_numpy(np.ascontiguousarray(xb)),
            "y": y_t,
            "mask": torch.isfinite(y_t),
            "time": torch.from_numpy(t),
            "tile": torch.from_numpy(k),
            "origin": torch.from_numpy(np.stack([iy, ix], -1)),
        }
