"""Basin windows of gridded forcings for CNN-LSTM discharge models, gathered without copying overlapping windows.

:class:`BasinGridDataset` stores the normalised gridded forcings **once**, as one float32 array
``[time, y, x, channel]`` (plus static maps ``[y, x, channel]``), and per basin only a window origin ``(r0, c0)``
on the grid and its cell weights ``[h, w]`` inside a common window size ``(h, w)`` (the largest bounding box of
the basins, clipped to the grid). A sample is two integers (basin, last time step); a batch ``[B, T, C, h, w]``
is assembled by one advanced-indexing gather from ``time = t - seq_len + 1 .. t``, ``rows = r0 .. r0 + h``,
``cols = c0 .. c0 + w``. Overlapping windows (consecutive days of one basin share ``seq_len - 1`` steps) are
never materialised outside a batch.

Batch contract (``get_batch(idx)``)::

    {"x_grid": [B, T, C, h, w]    normalised forcings (0 = the mean where missing or outside the grid),
     "x_static_grid": [B, S, h, w] normalised static maps (absent when there are none),
     "cell_weight": [B, h, w]      area x fraction of each cell inside the basin, summing to 1 per basin
                                   (0 outside the basin: the model masks with it),
     "y": [B, N, n_targets]        normalised targets of the last N = predict_last_n steps, NaN where missing,
     "mask": [B, N, n_targets]     bool, finite targets (mask the loss with it),
     "y_step": [B, N]              window positions of the targets,
     "basin": [B], "time": [B]}    int indices into ``ds.basins`` / ``ds.time`` (last input step)

Normalisation (per variable ``{"mean", "std"}``, fitted on the training period and the cells of the training
basins only; pass ``normaliser=train.normaliser`` to validation and test sets) uses the same JSON-able mapping as
:class:`hydroml.datasets.Normaliser`'s statistics. :meth:`BasinGridDataset.basin_average` gives the
basin-averaged forcings (the inputs of a lumped ``lstm`` on the same split).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from hydroml.datasets._batched import BatchedDataset
from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.datasets")

__all__ = ["BasinGridDataset"]


def _fit(values: np.ndarray, log_transform: bool = False) -> dict[str, Any]:
    v = values[np.isfinite(values)].astype(np.float64)
    if log_transform:
        v = np.log1p(np.clip(v, 0, None))
    if v.size == 0:
        raise DataError("cannot fit normalisation statistics: no finite value in the training data")
    std = float(v.std())
    return {"mean": float(v.mean()), "std": std if std > 0 else 1.0, "log": bool(log_transform), "eps": 1.0}


def _apply(stats: dict, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if stats.get("log"):
        x = np.log(np.clip(x, 0, None) + stats.get("eps", 1.0))
    return ((x - stats["mean"]) / stats["std"]).astype(np.float32)


def inverse(stats: dict, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Back from normalised to physical units (``exp(.) - eps`` when the variable is log-transformed)."""
    y = y * stats["std"] + stats["mean"]
    if stats.get("log"):
        y = (torch.exp(y) if isinstance(y, torch.Tensor) else np.exp(y)) - stats.get("eps", 1.0)
    return y


class BasinGridDataset(BatchedDataset):
    """Samples (basin, day) whose input is the window of gridded forcings around the basin.

    Parameters
    ----------
    ds : xarray.Dataset
        Gridded inputs on ``(time, ydim, xdim)`` (``inputs``), static maps on ``(ydim, xdim)`` (``static_maps``),
        and the targets on ``(basin, time)``, in canonical names and units.
    weights : hydroml.data.spatial.BasinWeights
        Grid-to-basin weights on the grid of ``ds`` (fractions x cell weights); its basins are the basins.
    inputs : sequence of str
        Gridded dynamic inputs.
    targets : sequence of str
        Targets on ``(basin, time)``, e.g. ``["q_mm"]``.
    seq_len : int
        Input window length in steps.
    static_maps : sequence of str
        Static maps on ``(ydim, xdim)``.
    predict_last_n : int
        Targets per sample (the last N steps of the window).
    period : (str, str), optional
        Bounds of the *target* steps (inputs may reach back ``seq_len - 1`` steps before it).
    basins : sequence of str, optional
        Subset of the weights' basins.
    normaliser : dict, optional
        ``{variable: {"mean", "std", "log", "eps"}}``; default: fitted on this dataset (training set only).
    log_transform : sequence of str
        Targets to log-transform before standardising (``log(x + 1)``).
    window : (int, int), optional
        Window size ``(h, w)``; default the largest basin bounding box.

    Attributes
    ----------
    basins : list of str
    time : pandas.DatetimeIndex
    window : (int, int)
    origins : numpy.ndarray
        ``[basin, 2]`` window origins (row, column).
    normaliser : dict
    """

    def __init__(
        self,
        ds: xr.Dataset,
        weights: Any,
        inputs: Sequence[str],
        targets: Sequence[str],
        seq_len: int,
        *,
        static_maps: Sequence[str] = (),
        predict_last_n: int = 1,
        period: tuple[str, str] | None = None,
        basins: Sequence[str] | None = None,
        normaliser: dict | None = None,
        log_transform: Sequence[str] = (),
        window: tuple[int, int] | None = None,
    ) -> None:
        if seq_len < 1 or not 1 <= predict_last_n <= seq_len:
            raise ConfigError(
                f"need seq_len >= 1 and 1 <= predict_last_n <= seq_len; got {seq_len}, {predict_last_n}"
            )
        missing = [v for v in (*inputs, *static_maps, *targets) if v not in ds]
        if missing:
            raise DataError(
                f"BasinGridDataset: variables {missing} not in the data; available: {sorted(ds.data_vars)}"
            )
        ydim, xdim = weights.grid_dims
        all_basins = [str(b) for b in weights.basins]
        self.basins = list(basins) if basins is not None else all_basins
        bad = [b for b in self.basins if b not in all_basins]
        if bad:
            raise DataError(f"BasinGridDataset: basins {bad} have no weights; weights cover {all_basins}")
        rows = [all_basins.index(b) for b in self.basins]
        H, W = weights.grid_shape
        wmat = weights.matrix.toarray()[rows].reshape(len(rows), H, W)
        wmat = np.nan_to_num(wmat)
        self.inputs, self.static_maps, self.targets = list(inputs), list(static_maps), list(targets)
        self.seq_len, self.predict_last_n = int(seq_len), int(predict_last_n)
        self.time = pd.DatetimeIndex(ds["time"].values)

        # --- windows: a common size, one origin per basin
        boxes = []
        for k, b in enumerate(self.basins):
            r, c = np.nonzero(wmat[k] > 0)
            if r.size == 0:
                raise DataError(f"basin {b!r} covers no cell of the grid")
            boxes.append((r.min(), r.max() + 1, c.min(), c.max() + 1))
        h = max(r1 - r0 for r0, r1, _, _ in boxes)
        w = max(c1 - c0 for _, _, c0, c1 in boxes)
        if window is not None:
            if window[0] < h or window[1] < w:
                raise ConfigError(f"window {window} is smaller than the largest basin box ({h}, {w})")
            h, w = min(window[0], H), min(window[1], W)
        self.window = (int(h), int(w))
        origins = []
        for r0, r1, c0, c1 in boxes:
            rr = int(np.clip((r0 + r1 - h) // 2, 0, H - h))
            cc = int(np.clip((c0 + c1 - w) // 2, 0, W - w))
            origins.append((rr, cc))
        self.origins = np.asarray(origins, dtype=np.int64)
        cw = np.stack([wmat[k, r : r + h, c : c + w] for k, (r, c) in enumerate(self.origins)])
        self.cell_weight = torch.from_numpy((cw / cw.sum(axis=(1, 2), keepdims=True)).astype(np.float32))

        # --- the period of targets and the samples
        t_idx = np.arange(len(self.time))
        ok_t = t_idx >= self.seq_len - 1
        if period is not None:
            start, end = pd.Timestamp(period[0]), pd.Timestamp(period[1])
            in_p = (self.time >= start) & (self.time <= end)
            ok_t &= np.asarray(in_p)
            if not in_p.any():
                raise DataError(f"period {period} has no step in the data ({self.time[0]}..{self.time[-1]})")
        yv = np.stack(
            [ds[v].sel(basin=self.basins).transpose("basin", "time").values for v in self.targets], axis=-1
        ).astype(np.float32)  # [basin, time, n_targets]

        # --- normalisation (training basins' cells and the target period only)
        if normaliser is None:
            first, last = np.flatnonzero(ok_t)[[0, -1]] if ok_t.any() else (0, len(t_idx) - 1)
            sel = slice(max(0, first - self.seq_len + 1), last + 1)  # the input steps of the target period
            inside = (wmat > 0).any(axis=0)
            stats: dict[str, dict] = {}
            for v in self.inputs:
                arr = ds[v].transpose("time", ydim, xdim).values
                stats[v] = _fit(arr[sel][:, inside])
            for v in self.static_maps:
                stats[v] = _fit(ds[v].transpose(ydim, xdim).values[inside])
            for j, v in enumerate(self.targets):
                stats[v] = _fit(yv[:, ok_t, j], log_transform=v in log_transform)
            normaliser = stats
        missing = [v for v in (*self.inputs, *self.static_maps, *self.targets) if v not in normaliser]
        if missing:
            raise DataError(f"normaliser has no statistics for {missing}")
        self.normaliser = {v: dict(normaliser[v]) for v in (*self.inputs, *self.static_maps, *self.targets)}

        # --- storage: the (time, y, x, channel) stack once
        x = np.stack(
            [_apply(self.normaliser[v], ds[v].transpose("time", ydim, xdim).values) for v in self.inputs],
            axis=-1,
        )
        self.x = torch.from_numpy(np.nan_to_num(x, nan=0.0))
        if self.static_maps:
            s = np.stack(
                [_apply(self.normaliser[v], ds[v].transpose(ydim, xdim).values) for v in self.static_maps],
                axis=0,
            )
            s = torch.from_numpy(np.nan_to_num(s, nan=0.0))
            self.x_static = torch.stack(
                [s[:, r : r + h, c : c + w] for r, c in self.origins]
            )  # [basin, S, h, w]
        else:
            self.x_static = None
        ynorm = np.stack(
            [_apply(self.normaliser[v], yv[..., j]) for j, v in enumerate(self.targets)], axis=-1
        )
        self.y = torch.from_numpy(ynorm)  # [basin, time, n_targets], NaN where missing

        # --- samples: (basin, last step) with at least one finite target among the last N steps
        fin = np.isfinite(yv).any(axis=-1)  # [basin, time]
        n = self.predict_last_n
        csum = np.concatenate([np.zeros((fin.shape[0], 1)), np.cumsum(fin, axis=1)], axis=1)
        any_last = (csum[:, n:] - csum[:, :-n]) > 0  # [basin, time - n + 1], window ending at t = n-1..
        any_last = np.concatenate([np.zeros((fin.shape[0], n - 1), dtype=bool), any_last], axis=1)
        ok = any_last & ok_t[None, :]
        b_i, t_i = np.nonzero(ok)
        self._basin = b_i.astype(np.int32)
        self._time = t_i.astype(np.int32)
        if len(self._basin) == 0:
            raise DataError("BasinGridDataset: no sample (no finite target in the period)")
        log.info(
            "BasinGridDataset: %d samples, %d basins, window %s, %d channels", len(self), len(self.basins),
            self.window, len(self.inputs),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self._basin)

    @property
    def index_bytes_per_sample(self) -> float:
        """Bytes of sample index per sample (two int32)."""
        return (self._basin.nbytes + self._time.nbytes) / len(self)

    def get_batch(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather a whole batch at once (see the module docstring for the keys)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        b = torch.from_numpy(self._basin[idx].astype(np.int64))
        t = torch.from_numpy(self._time[idx].astype(np.int64))
        h, w = self.window
        T = self.seq_len
        steps = t[:, None] - T + 1 + torch.arange(T)[None, :]  # [B, T]
        org = torch.from_numpy(self.origins)[b]  # [B, 2]
        rows = org[:, 0:1] + torch.arange(h)[None, :]  # [B, h]
        cols = org[:, 1:2] + torch.arange(w)[None, :]  # [B, w]
        x = self.x[steps[:, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]  # [B, T, h, w, C]
        n = self.predict_last_n
        tsteps = steps[:, T - n :]
        y = self.y[b[:, None], tsteps]  # [B, N, n_targets]
        batch = {
            "x_grid": x.permute(0, 1, 4, 2, 3).contiguous(),
            "cell_weight": self.cell_weight[b],
            "y": y,
            "mask": torch.isfinite(y),
            "y_step": torch.arange(T - n, T)[None, :].expand(len(idx), n).contiguous(),
            "basin": b,
            "time": t,
        }
        if self.x_static is not None:
            batch["x_static_grid"] = self.x_static[b]
        return batch

    def get_sequence(self, basin: str, start: Any, end: Any) -> dict[str, torch.Tensor]:
        """One basin's whole input sequence ``start..end`` (inclusive) as a batch of one, for stateful inference.

        The CNN-LSTM reads each step's frame independently, so one pass over a long sequence (after a warm-up)
        replaces one window per predicted day. Returns the keys of :meth:`get_batch` without targets, with
        ``x_grid`` ``[1, T, C, h, w]``.
        """
        k = self.basins.index(basin)
        i0, i1 = self.time.get_indexer([pd.Timestamp(start), pd.Timestamp(end)])
        if i0 < 0 or i1 < 0 or i1 < i0:
            raise DataError(
                f"sequence {start}..{end} is not inside the data ({self.time[0]}..{self.time[-1]})"
            )
        r, c = self.origins[k]
        h, w = self.window
        x = self.x[i0 : i1 + 1, r : r + h, c : c + w].permute(0, 3, 1, 2)[None].contiguous()
        batch = {"x_grid": x, "cell_weight": self.cell_weight[k : k + 1], "basin": torch.tensor([k])}
        if self.x_static is not None:
            batch["x_static_grid"] = self.x_static[k : k + 1]
        return batch

    def __getitem__(self, idx) -> dict[str, torch.Tensor]:
        """A batch for positions ``idx``; an int gives a batch of one (keeps the batch dimension)."""
        return self.get_batch(idx)

    def samples_of(self, basin: str) -> np.ndarray:
        """Sample positions of one basin, in time order."""
        k = self.basins.index(basin)
        return np.flatnonzero(self._basin == k)

    def sample_time(self, idx: Sequence[int] | np.ndarray) -> pd.DatetimeIndex:
        """Date of the last input step of samples ``idx``."""
        return self.time[self._time[np.asarray(idx)]]

    def inverse_target(self, y: np.ndarray | torch.Tensor, j: int = 0):
        """Normalised target ``j`` back to physical units."""
        return inverse(self.normaliser[self.targets[j]], y)

    def basin_average(
        self, ds: xr.Dataset, weights: Any, variables: Sequence[str] | None = None
    ) -> xr.Dataset:
        """Area-weighted basin averages of gridded variables (the lumped inputs of a comparison ``lstm``).

        Parameters
        ----------
        ds : xarray.Dataset
            The gridded data this dataset was built from.
        weights : hydroml.data.spatial.BasinWeights
            The same weights.
        variables : sequence of str, optional
            Default the dynamic inputs.
        """
        variables = list(variables or self.inputs)
        out = weights.aggregate(ds[variables])
        return out.sel(basin=self.basins)
