"""Data for training: open the source, fit the normaliser on the training period, build the sequence datasets.

Uses :mod:`hydroml.datasets` (``BasinDataset``, ``Normaliser``) when it provides them; until then (and as a
reference) a small built-in equivalent with the same contract: dynamics stored once as ``[basin, time, F]``
float32, valid samples as integer arrays, whole batches gathered at once by ``get_batch(idx)``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from hydroml._io import write_json_atomic
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.training")


def open_source(data_cfg) -> xr.Dataset:
    """Open ``data.source``: ``"demo"``, a catalog name, or a NetCDF/zarr path."""
    source = data_cfg.source
    if source == "demo":
        from hydroml.data.demo import load_demo

        return load_demo(data_cfg.product or "basins")
    path = Path(os.path.expanduser(source))
    if path.suffix in {".nc", ".nc4", ".zarr"} and path.exists():
        with xr.open_dataset(path) as ds:
            return ds.load()
    try:
        from hydroml import catalog  # type: ignore[attr-defined]
    except ImportError as err:
        raise DataError(
            f"data.source {source!r}: not 'demo', not an existing .nc/.zarr file, and hydroml.catalog is not "
            "available to resolve a catalog name"
        ) from err
    kwargs: dict[str, Any] = {}
    if data_cfg.root:
        kwargs["root"] = data_cfg.root
    if data_cfg.product:
        kwargs["product"] = data_cfg.product
    try:
        return catalog.open(source, **kwargs)
    except TypeError:
        kwargs.pop("product", None)
        return catalog.open(source, **kwargs)


# -- a minimal normaliser and basin dataset with the documented contract ------------------------------------


class SimpleNormaliser:
    """Mean/std per variable, fitted on the training period and basins; JSON round trip."""

    def __init__(self, stats: dict[str, tuple[float, float]], log_vars: list[str] | None = None) -> None:
        self.stats = {k: (float(m), float(s)) for k, (m, s) in stats.items()}
        self.log_vars = list(log_vars or [])

    @classmethod
    def fit(cls, ds: xr.Dataset, variables: list[str], log_vars: list[str] | None = None) -> SimpleNormaliser:
        stats = {}
        for v in variables:
            a = np.asarray(ds[v].values, dtype=np.float64)
            if v in (log_vars or []):
                a = np.log1p(np.clip(a, 0, None))
            m, s = np.nanmean(a), np.nanstd(a)
            if not np.isfinite(m):
                raise DataError(f"variable {v!r} has no valid value in the training period")
            stats[v] = (m, s if s > 0 else 1.0)
        return cls(stats, log_vars)

    def transform(self, name: str, a: np.ndarray) -> np.ndarray:
        m, s = self.stats[name]
        if name in self.log_vars:
            a = np.log1p(np.clip(a, 0, None))
        return ((a - m) / s).astype(np.float32)

    def inverse(self, name: str, a: np.ndarray) -> np.ndarray:
        m, s = self.stats[name]
        out = a * s + m
        if name in self.log_vars:
            out = np.expm1(out)
        return out

    def to_dict(self) -> dict:
        return {
            "kind": "mean_std",
            "variables": {k: {"mean": m, "std": s} for k, (m, s) in self.stats.items()},
            "log_transform": self.log_vars,
        }

    def save(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SimpleNormaliser:
        d = json.loads(Path(path).read_text())
        return cls({k: (v["mean"], v["std"]) for k, v in d["variables"].items()}, d.get("log_transform"))

    # forecast reads ``mean``/``std`` mappings
    @property
    def mean(self) -> dict[str, float]:
        return {k: m for k, (m, _) in self.stats.items()}

    @property
    def std(self) -> dict[str, float]:
        return {k: s for k, (_, s) in self.stats.items()}


class SimpleBasinDataset:
    """Windows over ``[basin, time, F]`` arrays; samples are (basin, end step) integer pairs."""

    def __init__(
        self,
        ds: xr.Dataset,
        dynamic_inputs: list[str],
        static_inputs: list[str],
        targets: list[str],
        seq_len: int,
        normaliser: SimpleNormaliser,
        period: tuple[str, str],
        predict_last_n: int = 1,
        lead_time: int = 0,
    ) -> None:
        start, end = pd.Timestamp(period[0]), pd.Timestamp(period[1])
        times = pd.DatetimeIndex(ds["time"].values)
        in_period = (times >= start) & (times <= end)
        if not in_period.any():
            raise DataError(
                f"period {period[0]}..{period[1]} has no time step in the data ({times[0]}..{times[-1]})"
            )
        first = int(np.argmax(in_period))
        last = int(len(times) - 1 - np.argmax(in_period[::-1]))
        lo = max(0, first - seq_len + 1 - lead_time)  # warm-up from before the period when available
        sub = ds.isel(time=slice(lo, last + 1))
        self.seq_len, self.predict_last_n, self.lead_time = seq_len, predict_last_n, lead_time
        self.basins = [str(b) for b in sub["basin"].values]
        self.times = pd.DatetimeIndex(sub["time"].values)
        self.x = np.stack(
            [normaliser.transform(v, sub[v].transpose("basin", "time").values) for v in dynamic_inputs], -1
        )
        self.y = np.stack(
            [normaliser.transform(v, sub[v].transpose("basin", "time").values) for v in targets], -1
        )
        if static_inputs:
            self.s = np.stack([normaliser.transform(v, sub[v].values) for v in static_inputs], -1)
        else:
            self.s = np.zeros((len(self.basins), 0), np.float32)
        nb, nt, _ = self.x.shape
        # a window ending at input step e predicts targets at steps e-N+1+lead .. e+lead
        bad = np.concatenate([np.zeros((nb, 1)), np.cumsum(~np.isfinite(self.x).all(-1), axis=1)], axis=1)
        ends = np.arange(seq_len - 1, nt - lead_time)
        ok = (bad[:, ends + 1] - bad[:, ends + 1 - seq_len]) == 0
        tgt_t = ends + lead_time
        ok &= (tgt_t >= first - lo) & (tgt_t <= last - lo)
        yvalid = np.isfinite(self.y).any(-1)
        ok &= yvalid[:, tgt_t]  # the last target must be observed (earlier ones may be NaN: masked)
        b_idx, e_idx = np.nonzero(ok)
        self.sample_basin = b_idx.astype(np.int32)
        self.sample_end = ends[e_idx].astype(np.int32)
        self._xt = torch.from_numpy(np.nan_to_num(self.x))
        self._yt = torch.from_numpy(self.y)
        self._st = torch.from_numpy(self.s)

    def __len__(self) -> int:
        return len(self.sample_basin)

    @property
    def n_basins(self) -> int:
        return len(self.basins)

    @property
    def n_time(self) -> int:
        return len(self.times)

    def get_batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        b = torch.from_numpy(self.sample_basin[idx].astype(np.int64))
        e = torch.from_numpy(self.sample_end[idx].astype(np.int64))
        steps = torch.arange(-self.seq_len + 1, 1)
        x = self._xt[b[:, None], e[:, None] + steps[None, :]]
        ysteps = torch.arange(-self.predict_last_n + 1, 1) + self.lead_time
        y = self._yt[b[:, None], e[:, None] + ysteps[None, :]]
        return {"x_dynamic": x, "x_static": self._st[b], "y": y, "basin": b, "time": e}

    def basin_target_std(self) -> np.ndarray:
        """Standard deviation of each basin's (normalised) targets over the dataset's steps, ``[basin, n]``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                sd = np.nanstd(self.y, axis=1)
        return np.nan_to_num(sd, nan=1.0)


@dataclass
class TrainingData:
    """The datasets and normaliser of a run."""

    train: Any
    validation: Any | None
    normaliser: Any
    basin_std: torch.Tensor  # [n_basins, n_targets] of the training targets (normalised units)


def _select(ds: xr.Dataset, data_cfg) -> xr.Dataset:
    needed = list(dict.fromkeys(data_cfg.dynamic_inputs + data_cfg.static_inputs + data_cfg.targets))
    missing = [v for v in needed if v not in ds]
    if missing:
        raise DataError(
            f"data.source {data_cfg.source!r}: variable(s) {', '.join(missing)} not found; available: "
            f"{', '.join(sorted(map(str, ds.data_vars)))}"
        )
    ds = ds[needed]
    if data_cfg.basins is not None:
        have = [str(b) for b in ds["basin"].values]
        unknown = [b for b in data_cfg.basins if b not in have]
        if unknown:
            raise DataError(f"data.basins: {unknown} not in the data; available: {have}")
        ds = ds.sel(basin=list(data_cfg.basins))
    return ds


def prepare_data(cfg, normaliser=None) -> TrainingData:
    """Open the data, fit (or reuse) the normaliser on the training period, build train/validation datasets."""
    d = cfg.data
    ds = _select(open_source(d), d)
    log_vars = list(d.targets) if d.log_targets else []
    if normaliser is None:
        train_ds = ds.sel(time=slice(*d.train_period))
        if train_ds.sizes.get("time", 0) == 0:
            raise DataError(f"data.train_period {d.train_period} selects no time step")
        normaliser = SimpleNormaliser.fit(
            train_ds, list(dict.fromkeys(d.dynamic_inputs + d.static_inputs + d.targets)), log_vars
        )
    common = dict(
        dynamic_inputs=d.dynamic_inputs,
        static_inputs=d.static_inputs,
        targets=d.targets,
        seq_len=d.seq_len,
        normaliser=normaliser,
        predict_last_n=d.predict_last_n,
        lead_time=d.lead_time,
    )
    train = SimpleBasinDataset(ds, period=tuple(d.train_period), **common)
    if len(train) == 0:
        raise DataError(f"data.train_period {d.train_period}: no valid sample of seq_len {d.seq_len}")
    val = None
    if d.validation_period:
        val = SimpleBasinDataset(ds, period=tuple(d.validation_period), **{**common, "predict_last_n": 1})
    return TrainingData(train, val, normaliser, torch.from_numpy(train.basin_target_std().astype(np.float32)))


def load_normaliser(path: str | os.PathLike):
    """Read ``normalisation.json``."""
    return SimpleNormaliser.load(path)
