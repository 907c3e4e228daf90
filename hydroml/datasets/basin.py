"""Sequence samples of lumped (basin) data for PyTorch, indexed compactly and gathered by whole batches.

Storage
    Normalised dynamic inputs live once in one contiguous float32 array ``[basin, time, feature]`` (in memory or
    memory-mapped from a ``.npy`` file), static inputs in ``[basin, feature]``, targets in
    ``[basin, time, target]`` (or ``[basin, month, target]`` for monthly targets). Overlapping windows are never
    copied until a batch is gathered.
Index
    A valid sample is one integer: ``basin * n_time + t`` with ``t`` the index of the window's last input step
    (int32 when it fits, else int64): 4 bytes per sample at CAMELS and Caravan scale.
Batches
    :meth:`BasinDataset.get_batch` gathers a whole batch with one vectorised fancy-index over a strided view in
    which every window is one contiguous row. :class:`BatchSampler` yields whole batches (shuffled, reseeded each
    epoch, split across ``world_size`` ranks); use it with ``DataLoader(ds, sampler=..., batch_size=None)`` or
    :meth:`BasinDataset.loader`.

Sample definition (daily targets)
    inputs ``x[t - seq_len + 1 .. t]``; targets at ``t + lead_time - predict_last_n + 1 .. t + lead_time``;
    ``y_step`` gives the window position whose output predicts each target (the last ``predict_last_n`` steps).
Monthly targets from daily inputs
    a sample ends on the last day of a month ``m``; its targets are the months ``m + lead_time - predict_last_n
    + 1 .. m + lead_time``; ``y_step`` points at the last day of each target month minus ``lead_time`` months
    (the window position whose output predicts it).
NaN policy
    a sample with a NaN input in its window is excluded (``nan_policy="exclude"``) or the NaN is replaced by the
    normalised ``fill_value`` (``nan_policy="fill"``); NaN targets are kept as NaN and flagged in ``mask`` (mask
    them in the loss); a sample whose targets are all NaN is excluded; a basin with no valid sample (all-NaN
    inputs or targets, or NaN statics) is dropped with a warning naming it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydroml._progress import tqdm
from hydroml.datasets._batched import BatchedDataset, BatchSampler  # noqa: F401 (BatchSampler re-exported)
from hydroml.datasets.normalise import Normaliser
from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.datasets")

_BASIN_CHUNK = 256


def _check_vars(ds, names: Sequence[str], role: str, dims: tuple[str, ...]) -> None:
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise DataError(
            f"{role} variable(s) {missing} not found in the dataset; available: {', '.join(map(str, ds.data_vars))}"
        )
    for n in names:
        if set(ds[n].dims) != set(dims):
            raise DataError(f"{role} variable {n!r}: expected dimensions {dims}, found {ds[n].dims}")


def _window_nan_free(flags: np.ndarray, width: int) -> np.ndarray:
    """For each (row, t): no flag in ``[t - width + 1, t]`` (False where the window starts before 0)."""
    cs = np.zeros((flags.shape[0], flags.shape[1] + 1), dtype=np.int32)
    np.cumsum(flags, axis=1, out=cs[:, 1:])
    ok = np.zeros(flags.shape, dtype=bool)
    if width <= flags.shape[1]:
        ok[:, width - 1 :] = (cs[:, width:] - cs[:, : cs.shape[1] - width]) == 0
    return ok


class BasinDataset(BatchedDataset):
    """Sequence samples over basins for LSTM-type models.

    Parameters
    ----------
    ds : xarray.Dataset
        Lumped data: dynamic variables on ``(basin, time)`` (daily), statics on ``(basin,)``.
    dynamic_inputs : sequence of str
        Time-varying input variables.
    static_inputs : sequence of str
        Static attributes (may be empty).
    targets : sequence of str
        Target variables on ``(basin, time)`` (daily; aggregated when ``target_freq="monthly"``).
    seq_len : int
        Length of the input window, in time steps.
    predict_last_n : int
        Number of targets per sample (the last ``predict_last_n`` steps or months).
    lead_time : int
        Forecast lead, in target steps (days, or months for monthly targets); 0 = simulation.
    target_freq : {"daily", "monthly"}
        Monthly targets are the month's mean (``monthly_agg="mean"``) or sum of the daily target (a month with
        any missing day is NaN), or come from ``monthly_targets``.
    monthly_agg : {"mean", "sum"}
        Aggregation of daily targets into months.
    monthly_targets : xarray.Dataset, optional
        Monthly target values on ``(basin, time)`` (any day of the month as label), used instead of aggregating.
    period : (str, str), optional
        Inclusive period of the **targets** of this dataset (inputs may start earlier: warm-up).
    basins : sequence of str, optional
        Basins to use (default: all).
    normaliser : Normaliser, optional
        Statistics to apply (validation/test/inference: pass the training dataset's). When ``None`` they are
        fitted here, on this dataset's period and basins (do that for the training dataset only).
    log_transform : sequence of str
        Variables fitted as ``log(x + eps)`` when the normaliser is fitted here (e.g. ``("q_mm",)``).
    eps : float
        Log offset (1: ``log1p``).
    nan_policy : {"exclude", "fill"}
        Inputs: exclude samples with any NaN in the window, or fill NaN with ``fill_value`` (normalised units).
    fill_value : float
        Fill for NaN inputs under ``nan_policy="fill"`` (0 = the training mean).
    memmap_dir : path-like, optional
        Store the dynamic array in ``memmap_dir/dynamic.npy`` and memory-map it (read-only) instead of RAM.
    progress : bool, optional
        Progress bar while building.

    Attributes
    ----------
    basins : list of str
        Basins kept (index ``i`` in batches refers to ``basins[i]``).
    time : pandas.DatetimeIndex
        Time axis of the stored arrays (``batch["time"]`` indexes it).
    normaliser : Normaliser
    target_std : numpy.ndarray
        ``[basin, target]`` standard deviation of the normalised targets over the period (for NSE losses).
    """

    def __init__(
        self,
        ds,
        dynamic_inputs: Sequence[str],
        static_inputs: Sequence[str] = (),
        targets: Sequence[str] = ("q_mm",),
        seq_len: int = 365,
        *,
        predict_last_n: int = 1,
        lead_time: int = 0,
        target_freq: str = "daily",
        monthly_agg: str = "mean",
        monthly_targets=None,
        period: tuple[str, str] | None = None,
        basins: Sequence[str] | None = None,
        normaliser: Normaliser | None = None,
        log_transform: Sequence[str] = (),
        eps: float = 1.0,
        nan_policy: str = "exclude",
        fill_value: float = 0.0,
        memmap_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
    ):
        self.dynamic_inputs = list(dynamic_inputs)
        self.static_inputs = list(static_inputs)
        self.targets = list(targets)
        self.seq_len = int(seq_len)
        self.predict_last_n = int(predict_last_n)
        self.lead_time = int(lead_time)
        self.target_freq = target_freq
        if target_freq not in ("daily", "monthly"):
            raise ConfigError(f"target_freq must be 'daily' or 'monthly', found {target_freq!r}")
        if monthly_agg not in ("mean", "sum"):
            raise ConfigError(f"monthly_agg must be 'mean' or 'sum', found {monthly_agg!r}")
        if nan_policy not in ("exclude", "fill"):
            raise ConfigError(f"nan_policy must be 'exclude' or 'fill', found {nan_policy!r}")
        if self.seq_len < 1 or self.predict_last_n < 1 or self.lead_time < 0:
            raise ConfigError(
                f"need seq_len >= 1, predict_last_n >= 1, lead_time >= 0; found {seq_len}, {predict_last_n}, "
                f"{lead_time}"
            )
        if target_freq == "daily" and self.predict_last_n > self.seq_len:
            raise ConfigError(f"predict_last_n ({predict_last_n}) is larger than seq_len ({seq_len})")
        if not self.dynamic_inputs or not self.targets:
            raise ConfigError("need at least one dynamic input and one target")
        self.nan_policy = nan_policy
        self.fill_value = float(fill_value)
        if "basin" not in ds.dims or "time" not in ds.dims:
            raise DataError(f"expected dimensions 'basin' and 'time', found {tuple(ds.dims)}")
        _check_vars(ds, self.dynamic_inputs, "dynamic input", ("basin", "time"))
        _check_vars(ds, self.static_inputs, "static input", ("basin",))
        if monthly_targets is None:
            _check_vars(ds, self.targets, "target", ("basin", "time"))

        # ---------------------------------------------------------------- basins and time axis
        all_basins = [str(b) for b in ds["basin"].values]
        if basins is not None:
            wanted = [str(b) for b in basins]
            unknown = sorted(set(wanted) - set(all_basins))
            if unknown:
                raise DataError(f"basin(s) {unknown[:10]} not in the dataset ({len(all_basins)} basins)")
            ds = ds.sel(basin=wanted)
        time = pd.DatetimeIndex(ds["time"].values)
        if not time.is_monotonic_increasing or time.has_duplicates:
            raise DataError("the time coordinate must be strictly increasing")
        if period is not None:
            start, end = pd.Timestamp(period[0]), pd.Timestamp(period[1])
        else:
            start, end = time[0], time[-1]
        if end < start:
            raise ConfigError(f"period {period!r}: end before start")
        # keep the warm-up before the period, nothing after it (+ lead)
        warm = (
            self.seq_len
            + self.lead_time
            + (31 * (self.predict_last_n + self.lead_time) if target_freq == "monthly" else 0)
        )
        i0 = max(int(time.searchsorted(start)) - warm, 0)
        i1 = int(time.searchsorted(end, side="right"))
        if i1 <= i0 or time[min(i1, len(time)) - 1] < start:
            raise DataError(
                f"period {start.date()}..{end.date()} has no data (data cover {time[0].date()}..{time[-1].date()})"
            )
        ds = ds.isel(time=slice(i0, i1))
        self.time = time[i0:i1]
        self.period = (start, end)
        nb, nt = ds.sizes["basin"], len(self.time)
        in_period = np.asarray((self.time >= start) & (self.time <= end))
        p0 = int(np.argmax(in_period)) if in_period.any() else 0
        period_cols = slice(p0, p0 + int(in_period.sum()))  # the period is one contiguous block of columns

        # ---------------------------------------------------------------- raw arrays -> normalised storage
        fit = normaliser is None
        self.normaliser = Normaliser() if fit else normaliser
        logs = set(log_transform)

        def raw(name: str) -> np.ndarray:
            return np.asarray(ds[name].transpose("basin", "time").values, dtype=np.float32)

        nf = len(self.dynamic_inputs)
        self._memmap_path = None
        if memmap_dir is not None:
            self._memmap_path = Path(memmap_dir) / "dynamic.npy"
            self._memmap_path.parent.mkdir(parents=True, exist_ok=True)
            dyn = np.lib.format.open_memmap(
                self._memmap_path, mode="w+", dtype=np.float32, shape=(nb, nt, nf)
            )
        else:
            dyn = np.empty((nb, nt, nf), dtype=np.float32)
        nan_in = np.zeros((nb, nt), dtype=bool)
        big = nb * nt * nf >= 10**8  # a bar only where building takes seconds
        bar = tqdm(
            self.dynamic_inputs, progress=progress if progress is not None else (None if big else False)
        )
        for f, name in enumerate(bar):
            a = raw(name)
            if fit:
                self.normaliser.fit_array(name, a[:, period_cols], log=name in logs, eps=eps)
            a = self.normaliser.transform(name, a)
            nan_a = ~np.isfinite(a)
            nan_in |= nan_a
            if nan_policy == "fill":
                a[nan_a] = self.fill_value
            dyn[:, :, f] = a
            del a, nan_a
        if memmap_dir is not None:
            dyn.flush()
            del dyn
            dyn = np.load(self._memmap_path, mmap_mode="r")

        stat = np.empty((nb, len(self.static_inputs)), dtype=np.float32)
        for f, name in enumerate(self.static_inputs):
            a = np.asarray(ds[name].values, dtype=np.float32)
            if fit:
                self.normaliser.fit_array(name, a, log=name in logs, eps=eps)
            stat[:, f] = self.normaliser.transform(name, a)
        bad_static = ~np.isfinite(stat).all(axis=1)
        if nan_policy == "fill":
            stat[~np.isfinite(stat)] = self.fill_value
            bad_static[:] = False

        # ---------------------------------------------------------------- targets
        if target_freq == "daily":
            y = np.empty((nb, nt, len(self.targets)), dtype=np.float32)
            for k, name in enumerate(self.targets):
                a = raw(name)
                if fit:
                    self.normaliser.fit_array(name, a[:, period_cols], log=name in logs, eps=eps)
                y[:, :, k] = self.normaliser.transform(name, a)
            self.month_end = None
        else:
            y = self._monthly_targets(ds, monthly_targets, monthly_agg, fit, logs, eps, start, end)

        # ---------------------------------------------------------------- valid samples
        n_t = len(self.targets)
        flat_dtype = np.int32 if nb * nt < np.iinfo(np.int32).max else np.int64
        index_parts = []
        basin_has = np.zeros(nb, dtype=bool)
        for b0 in range(0, nb, _BASIN_CHUNK):
            b1 = min(b0 + _BASIN_CHUNK, nb)
            if nan_policy == "exclude":
                ok = _window_nan_free(nan_in[b0:b1], self.seq_len)
            else:
                ok = np.zeros((b1 - b0, nt), dtype=bool)
                ok[:, self.seq_len - 1 :] = True
            ok &= self._target_ok(y[b0:b1], in_period, nt)
            ok[bad_static[b0:b1]] = False
            rows, cols = np.nonzero(ok)
            basin_has[b0:b1] = ok.any(axis=1)
            index_parts.append(((rows + b0).astype(np.int64) * nt + cols).astype(flat_dtype))
        index = np.concatenate(index_parts) if index_parts else np.zeros(0, flat_dtype)

        names = [str(b) for b in ds["basin"].values]
        dropped = [names[i] for i in np.flatnonzero(~basin_has)]
        if dropped:
            reasons = []
            for i in np.flatnonzero(~basin_has):
                if bad_static[i]:
                    reasons.append(f"{names[i]} (NaN static attribute)")
                elif nan_in[i].all():
                    reasons.append(f"{names[i]} (all inputs NaN)")
                elif not np.isfinite(y[i]).any():
                    reasons.append(f"{names[i]} (all targets NaN)")
                else:
                    reasons.append(f"{names[i]} (no valid window in the period)")
            log.warning(
                "%d basin(s) without any valid sample are excluded: %s", len(dropped), ", ".join(reasons)
            )
        if index.size == 0:
            raise DataError(
                f"no valid sample: {nb} basin(s), period {start.date()}..{end.date()}, seq_len {self.seq_len}"
            )
        # compact storage: drop basins without samples
        keep = np.flatnonzero(basin_has)
        # the dynamic array is not copied: dropped basins stay in it, unreferenced (see self._dyn_row)
        if len(keep) < nb:
            remap = np.full(nb, -1, dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            b_idx, t_idx = np.divmod(index.astype(np.int64), nt)
            index = (remap[b_idx] * nt + t_idx).astype(flat_dtype)
            stat, y = stat[keep], y[keep]
        self._dyn_row = keep.astype(np.int64)
        self.basins = [names[i] for i in keep]
        self._dyn = dyn
        self._stat = np.ascontiguousarray(stat)
        self._y = np.ascontiguousarray(y)
        self._index = index
        self._nt = nt
        self._target_offsets = self.lead_time + np.arange(-self.predict_last_n + 1, 1)
        self._daily_y_step = np.arange(self.seq_len - self.predict_last_n, self.seq_len)[None, :]
        self._make_views()
        with np.errstate(invalid="ignore"):
            yv = np.where(
                (in_period if target_freq == "daily" else self._month_in_period)[None, :, None],
                self._y,
                np.nan,
            )
            self.target_std = np.nanstd(yv, axis=1).astype(np.float32) if yv.size else yv
        self.target_std = np.where(np.isfinite(self.target_std), self.target_std, np.nan).astype(np.float32)
        log.info(
            "BasinDataset: %d samples, %d basins, %d time steps, %d dynamic / %d static inputs, %d target(s) (%s)",
            len(index),
            len(self.basins),
            nt,
            nf,
            len(self.static_inputs),
            n_t,
            target_freq,
        )

    def _make_views(self) -> None:
        """Each window as one contiguous row of ``seq_len * n_features`` float32 in the flat storage."""
        nf = len(self.dynamic_inputs)
        self._rows = np.lib.stride_tricks.sliding_window_view(
            np.asarray(self._dyn).reshape(-1), self.seq_len * nf
        )[::nf]

    def __getstate__(self) -> dict:
        # for DataLoader workers started by spawn: never pickle the overlapping-window view (it would be
        # materialised), and pickle a memory-mapped array as its path
        state = self.__dict__.copy()
        del state["_rows"]
        if self._memmap_path is not None:
            state["_dyn"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._dyn is None:
            self._dyn = np.load(self._memmap_path, mmap_mode="r")
        self._make_views()

    # ------------------------------------------------------------------ target helpers
    def _monthly_targets(self, ds, monthly_targets, agg, fit, logs, eps, start, end) -> np.ndarray:
        t = self.time
        months = t.year * 12 + t.month - 1
        m0 = int(months[0])
        self._month_of_day = (np.asarray(months) - m0).astype(np.int32)
        nm = int(self._month_of_day[-1]) + 1
        is_last = np.r_[self._month_of_day[1:] != self._month_of_day[:-1], True]
        # last day index of each month in the stored axis; -1 where the month's last day is missing
        self.month_end = np.full(nm, -1, dtype=np.int64)
        last_idx = np.flatnonzero(is_last)
        full_end = t[last_idx].is_month_end
        self.month_end[self._month_of_day[last_idx[full_end]]] = last_idx[full_end]
        month_start_ts = pd.to_datetime(
            {"year": (np.arange(nm) + m0) // 12, "month": (np.arange(nm) + m0) % 12 + 1, "day": 1}
        )
        month_start_ts = pd.DatetimeIndex(month_start_ts)
        self.months = month_start_ts
        self._month_in_period = np.asarray(
            (month_start_ts >= start.to_period("M").start_time) & (month_start_ts <= end)
        )
        nb = ds.sizes["basin"]
        y = np.full((nb, nm, len(self.targets)), np.nan, dtype=np.float32)
        for k, name in enumerate(self.targets):
            if monthly_targets is not None:
                if name not in monthly_targets:
                    raise DataError(
                        f"monthly target {name!r} not found; available: {', '.join(map(str, monthly_targets.data_vars))}"
                    )
                da = monthly_targets[name].sel(basin=ds["basin"].values).transpose("basin", "time")
                mt = pd.DatetimeIndex(da["time"].values)
                pos = (mt.year * 12 + mt.month - 1) - m0
                sel = (pos >= 0) & (pos < nm)
                y[:, np.asarray(pos[sel]), k] = np.asarray(da.values, dtype=np.float32)[:, np.asarray(sel)]
            else:
                a = np.asarray(ds[name].transpose("basin", "time").values, dtype=np.float64)
                starts = np.r_[0, np.flatnonzero(np.diff(self._month_of_day)) + 1]
                sums = np.add.reduceat(a, starts, axis=1)  # NaN propagates: a month with a gap is NaN
                counts = np.diff(np.r_[starts, len(t)])
                days_in = t[starts].days_in_month
                vals = sums / counts if agg == "mean" else sums
                vals[:, np.asarray(counts != days_in)] = np.nan
                y[:, self._month_of_day[starts], k] = vals
            if fit:
                self.normaliser.fit_array(name, y[:, self._month_in_period, k], log=name in logs, eps=eps)
            y[:, :, k] = self.normaliser.transform(name, y[:, :, k])
        return y

    def _target_ok(self, y: np.ndarray, in_period: np.ndarray, nt: int) -> np.ndarray:
        """Valid window ends: all targets inside data and period, at least one target finite."""
        n, lead = self.predict_last_n, self.lead_time
        fin = np.isfinite(y).any(axis=2)  # [b, steps]
        ok = np.zeros((y.shape[0], nt), dtype=bool)
        if self.target_freq == "daily":
            # target steps s = t + lead - n + 1 .. t + lead must be in the period and the window (s >= t-L+1)
            good = fin & in_period[None, :]
            cs = np.zeros((y.shape[0], nt + 1), dtype=np.int32)
            np.cumsum(fin, axis=1, out=cs[:, 1:])
            cp = np.r_[0, np.cumsum(in_period)]
            t = np.arange(nt)
            s_hi = t + lead
            s_lo = s_hi - n + 1
            inside = (s_lo >= 0) & (s_hi < nt)
            lo, hi = np.clip(s_lo, 0, nt), np.clip(s_hi + 1, 0, nt)
            all_in_period = (cp[hi] - cp[lo]) == n
            any_finite = (cs[:, hi] - cs[:, lo]) > 0
            ok[:] = inside & all_in_period
            ok &= any_finite
            del good
        else:
            nm = len(self.month_end)
            cs = np.zeros((y.shape[0], nm + 1), dtype=np.int32)
            np.cumsum(fin, axis=1, out=cs[:, 1:])
            cp = np.r_[0, np.cumsum(self._month_in_period)]
            m_of_t = self._month_of_day
            ends = self.month_end
            valid_t = ends[ends >= 0]
            m = m_of_t[valid_t]
            m_hi = m + lead
            m_lo = m_hi - n + 1
            src_lo = m_lo - lead  # the month whose end the earliest target is predicted from
            good = (m_lo >= 0) & (m_hi < nm) & (src_lo >= 0)
            hi = np.clip(m_hi + 1, 0, nm)
            lo = np.clip(m_lo, 0, nm)
            good &= (cp[hi] - cp[lo]) == n
            # the month end each target is predicted from must be inside the input window
            src_end = ends[np.clip(src_lo, 0, nm - 1)]
            good &= (src_end >= 0) & (src_end >= valid_t - self.seq_len + 1)
            sel = valid_t[good]
            ok[:, sel] = (cs[:, hi[good]] - cs[:, lo[good]]) > 0
        return ok

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return int(self._index.size)

    def __repr__(self) -> str:
        start, end = self.period
        return (
            f"BasinDataset({len(self)} samples, {len(self.basins)} basins, targets {start.date()}..{end.date()} "
            f"({self.target_freq}), seq_len {self.seq_len}, predict_last_n {self.predict_last_n}, "
            f"lead_time {self.lead_time}, dynamic {self.dynamic_inputs}, static {self.static_inputs}, "
            f"targets {self.targets}, dynamic array {self._dyn.nbytes / 2**20:.1f} MB float32, "
            f"index {self.index_bytes_per_sample:.0f} B/sample)"
        )

    def basin_target_std(self) -> np.ndarray:
        """:attr:`target_std` with NaN (basins without finite targets) replaced by 1, ``[basin, target]``."""
        return np.nan_to_num(self.target_std, nan=1.0)

    @property
    def n_dynamic(self) -> int:
        """Number of dynamic input features."""
        return len(self.dynamic_inputs)

    @property
    def n_static(self) -> int:
        """Number of static input features."""
        return len(self.static_inputs)

    @property
    def index_nbytes(self) -> int:
        """Bytes held by the sample index."""
        return int(self._index.nbytes)

    @property
    def index_bytes_per_sample(self) -> float:
        """Bytes of index per valid sample (4 or 8)."""
        return self.index_nbytes / max(len(self), 1)

    @property
    def dynamic(self) -> np.ndarray:
        """The normalised dynamic inputs ``[basin, time, feature]`` of :attr:`basins` (read-only)."""
        if len(self._dyn_row) == self._dyn.shape[0]:
            v = self._dyn.view()
            v.flags.writeable = False
            return v
        return self._dyn[self._dyn_row]

    @property
    def static(self) -> np.ndarray:
        """The normalised static inputs ``[basin, feature]``."""
        return self._stat

    @property
    def target_values(self) -> np.ndarray:
        """The normalised targets ``[basin, time or month, target]`` (NaN where missing)."""
        return self._y

    def sample_locations(self, idx=None) -> tuple[np.ndarray, np.ndarray]:
        """Basin index and last-input time index of samples ``idx`` (all when ``None``)."""
        flat = self._index if idx is None else self._index[np.asarray(idx)]
        b, t = np.divmod(flat.astype(np.int64), self._nt)
        return b, t

    # ------------------------------------------------------------------ batches
    def get_batch(self, idx) -> dict[str, torch.Tensor]:
        """Gather samples ``idx`` (positions in ``0 .. len - 1``) as one batch.

        Returns
        -------
        dict of torch.Tensor
            ``x_dynamic`` [B, seq_len, F] float32, ``x_static`` [B, S] float32, ``y`` [B, N, n_targets] float32
            (normalised, NaN where missing), ``mask`` [B, N, n_targets] bool (finite targets), ``y_step``
            [B, N] int64 (window position predicting each target), ``basin`` [B] int64 (index into
            :attr:`basins`), ``time`` [B] int64 (index into :attr:`time` of the last input step).
        """
        b, t = self.sample_locations(idx)
        nt = self._nt
        start = self._dyn_row[b] * nt + t - (self.seq_len - 1)
        x = self._rows[start].reshape(len(b), self.seq_len, self.n_dynamic)  # one gather of contiguous rows
        n = self.predict_last_n
        if self.target_freq == "daily":
            y = self._y[b[:, None], t[:, None] + self._target_offsets]
            y_step = np.repeat(self._daily_y_step, len(b), axis=0)
        else:
            m = self._month_of_day[t][:, None] + self.lead_time + np.arange(-n + 1, 1)
            y = self._y[b[:, None], m]
            src_end = self.month_end[m - self.lead_time]
            y_step = src_end - (t[:, None] - self.seq_len + 1)
        y = np.ascontiguousarray(y)
        return {
            "x_dynamic": torch.from_numpy(x),
            "x_static": torch.from_numpy(self._stat[b]),
            "y": torch.from_numpy(y),
            "mask": torch.from_numpy(np.isfinite(y)),
            "y_step": torch.from_numpy(np.ascontiguousarray(y_step, dtype=np.int64)),
            "basin": torch.from_numpy(b),
            "time": torch.from_numpy(t),
        }
