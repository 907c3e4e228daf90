"""Forecast with a trained model: sliding windows, one stateful pass, or whole grids, into CF NetCDF.

Three ways to run a trained model over a period, none of which needs observations:

``mode="sliding"`` (basin models)
    Each day is predicted from its own window of the ``seq_len`` days that end on it, exactly as
    neuralhydrology evaluates (so scores are comparable). Windows are views of one stored array, gathered a
    batch at a time; the model runs on every window of ``seq_len`` steps, so the cost is ``seq_len`` times the
    number of days.
``mode="stateful"`` (basin models)
    One pass over the period carrying the recurrent state from day to day, after a warm-up of ``warmup`` days
    (default ``seq_len``) before ``start`` from a zero state. The period is processed in time chunks of
    ``chunk_size`` days and the state is handed from one chunk to the next, so activation memory does not
    depend on the period's length, and chunked results equal a single pass. The prediction differs from
    ``sliding`` by design: the state carries information from further back than ``seq_len`` days.
gridded (``unet``)
    Every month's field is predicted from its forcing channels, lags and static maps, a batch of months at a
    time.

The result is an :class:`xarray.Dataset` with CF attributes (``units``, ``standard_name``, ``long_name``) and
provenance (``history``, ``source``, model name and version, ``config_hash``: the sha256 of the resolved
config); :func:`write_forecast` writes it atomically to NetCDF.

Example
-------
>>> from hydroml.forecast import forecast, write_forecast            # doctest: +SKIP
>>> pred = forecast("runs/demo_20260101_120000", ds, "2000-01-01", "2000-12-31", mode="stateful")  # doctest: +SKIP
>>> write_forecast(pred, "pred.nc")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from hydroml import __version__
from hydroml._io import write_netcdf_atomic
from hydroml._progress import tqdm
from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.forecast")

MODES = ("sliding", "stateful")
#: Architectures whose forward maps ``{"x": [B, C, H, W]}`` to ``y_hat`` ``[B, n, H, W]`` (gridded forecasts).
GRIDDED_ARCHITECTURES = {"unet", "closure"}

#: CF attributes used when the variables table (``data_catalog/variables.yaml``) does not describe a target.
_FALLBACK_ATTRS: dict[str, dict[str, str]] = {
    "q": {
        "standard_name": "water_volume_transport_in_river_channel",
        "long_name": "river discharge",
        "units": "m3 s-1",
    },
    "q_mm": {"long_name": "river discharge as depth over the basin area", "units": "mm day-1"},
    "evspsbl": {
        "standard_name": "water_evapotranspiration_flux",
        "long_name": "actual evaporation (evapotranspiration)",
        "units": "mm month-1",
    },
}


# --------------------------------------------------------------------------------------------------------------
# What a forecast needs to know about a trained model
# --------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ForecastModel:
    """A trained model with everything needed to forecast: inputs, targets, normalisation and provenance.

    Built by :func:`from_run` (a run directory) or by :func:`hydroml.zoo.load_forecast_model` (a zoo name), or
    by hand for a model trained elsewhere.

    Parameters
    ----------
    model : torch.nn.Module
        The network; ``forward(batch) -> {"y_hat": ...}`` (the model contract of :mod:`hydroml.models`).
    architecture : str
        Registry name (``"lstm"``, ``"ealstm"``, ``"unet"``).
    inputs : list of str
        Dynamic input variables in the model's order (canonical names).
    targets : list of str
        Predicted variables (canonical names).
    normaliser : object
        The fitted normaliser (:class:`hydroml.datasets.Normaliser`) or a mapping
        ``{variable: (mean, std)}``.
    static_inputs : list of str
        Static attributes (basin models) or static maps (gridded models), in the model's order.
    seq_len : int
        Input window length in time steps (basin models).
    config : dict
        The resolved configuration; its sha256 is recorded as ``config_hash``.
    model_id : str
        Name of the run directory or the zoo tag.
    model_version : str
        Version of the weights (zoo card version, or the run's timestamp).
    source : str
        Where the weights came from (run directory or ``hydroml.zoo:<name>``).
    lags : int
        Gridded models: time steps per input channel, the current one and ``lags - 1`` previous ones
        (as :class:`hydroml.datasets.GridDataset`; channels are variable-major, then static maps).
    valid_mask : str, optional
        Gridded models: a static map (non-zero = valid, e.g. ``"land_mask"``); other cells are NaN.
    lead_time : int
        Time steps between the last input and the predicted target (the training config's ``lead_time``); the
        output is labelled with the target's time.
    """

    model: torch.nn.Module
    architecture: str
    inputs: list[str]
    targets: list[str]
    normaliser: Any
    static_inputs: list[str] = dataclasses.field(default_factory=list)
    seq_len: int = 365
    config: dict = dataclasses.field(default_factory=dict)
    model_id: str = ""
    model_version: str = ""
    source: str = ""
    lags: int = 1
    valid_mask: str | None = None
    lead_time: int = 0

    @property
    def gridded(self) -> bool:
        """Whether the model maps whole grids rather than basin sequences.

        True for the architectures in :data:`GRIDDED_ARCHITECTURES` or a network with ``gridded = True``.
        """
        flag = getattr(self.model, "gridded", None)
        return bool(flag) if isinstance(flag, bool) else self.architecture in GRIDDED_ARCHITECTURES

    @property
    def config_hash(self) -> str:
        """``sha256:<hex>`` of the resolved config as canonical JSON (sorted keys)."""
        return config_hash(self.config)


def config_hash(config: Any) -> str:
    """sha256 of a resolved configuration, serialised as canonical JSON (sorted keys, no spaces).

    Parameters
    ----------
    config : dict or dataclass
        The resolved configuration.

    Returns
    -------
    str
        ``"sha256:" + hexdigest``.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _cfg_get(cfg: Any, *keys: str, default: Any = None) -> Any:
    """First present key of a (possibly nested) config, dict or dataclass; ``a.b`` walks sections."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    for key in keys:
        node: Any = cfg
        ok = True
        for part in key.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                ok = False
                break
        if ok and node is not None:
            return node
    return default


def from_config(
    model: torch.nn.Module, config: Any, normaliser: Any, *, model_id: str = "", source: str = ""
) -> ForecastModel:
    """Build a :class:`ForecastModel` from a model, its resolved training config and its normaliser.

    Parameters
    ----------
    model : torch.nn.Module
        The trained network.
    config : dict or dataclass
        The resolved training config (``hydroml.training``): model name, inputs, targets, ``seq_len``.
    normaliser : object
        The fitted normaliser.
    model_id, source : str
        Provenance recorded in the output.

    Returns
    -------
    ForecastModel
    """
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    arch = _cfg_get(cfg, "model.name", "model", "architecture", default="lstm")
    if isinstance(arch, Mapping):
        arch = arch.get("name", "lstm")
    inputs = _cfg_get(cfg, "data.dynamic_inputs", "dynamic_inputs", "data.inputs", "inputs", default=[])
    static = _cfg_get(cfg, "data.static_inputs", "static_inputs", "data.static", default=[])
    targets = _cfg_get(cfg, "data.targets", "targets", "target_variables", default=[])
    seq_len = _cfg_get(cfg, "data.seq_len", "seq_len", "model.seq_len", default=365)
    lags = _cfg_get(cfg, "data.lags", "lags", default=1)
    if not inputs or not targets:
        raise ConfigError(
            f"config of {model_id or 'the model'} names no inputs or no targets "
            f"(found inputs={inputs!r}, targets={targets!r})"
        )
    return ForecastModel(
        model=model,
        architecture=str(arch),
        inputs=list(inputs),
        static_inputs=list(static or []),
        targets=list(targets),
        normaliser=normaliser,
        seq_len=int(seq_len),
        config=cfg,
        model_id=model_id,
        model_version=m.group(1) if (m := re.search(r"_(\d{8}_\d{6})$", model_id)) else "",
        source=source,
        lags=int(lags or 1),
        valid_mask=_cfg_get(cfg, "data.valid_mask", "valid_mask"),
        lead_time=int(_cfg_get(cfg, "data.lead_time", "lead_time", default=0) or 0),
    )


def from_run(run_dir: str | os.PathLike) -> ForecastModel:
    """Load a run directory (``runs/<name>_<YYYYmmdd_HHMMSS>/``) for forecasting.

    Parameters
    ----------
    run_dir : path-like
        A run written by :func:`hydroml.training.train`.

    Returns
    -------
    ForecastModel
    """
    from hydroml.training import load_run

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    model, config, normaliser = load_run(run_dir)
    return from_config(model, config, normaliser, model_id=run_dir.name, source=str(run_dir.resolve()))


def _resolve_model(run_or_model: Any) -> ForecastModel:
    if isinstance(run_or_model, ForecastModel):
        return run_or_model
    fm = getattr(run_or_model, "forecast_model", None)
    if isinstance(fm, ForecastModel):
        return fm
    if isinstance(run_or_model, (str, os.PathLike)):
        path = Path(run_or_model)
        if path.is_dir():
            return from_run(path)
        raise FileNotFoundError(
            f"{run_or_model!s} is not a run directory; for a zoo model use "
            f"hydroml.zoo.load({str(run_or_model)!r}) and pass the result"
        )
    raise TypeError(
        "forecast() takes a run directory, a ForecastModel, or a model loaded by hydroml.zoo.load; "
        f"got {type(run_or_model).__name__}"
    )


# --------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------
class _Scaler:
    """A uniform view of a fitted normaliser: ``(f(x) - mean) / std``, ``f(x) = log(x + eps)`` or ``x``.

    Accepts a :class:`hydroml.datasets.Normaliser` (or any object with ``to_dict()`` returning
    ``{"variables": {name: {"mean": m, "std": s}}, "log_transform": [...]}``), that dict itself, an object with a
    ``stats`` mapping ``{name: (mean, std)}``, or a plain mapping ``{name: (mean, std)}``.
    """

    def __init__(self, normaliser: Any) -> None:
        raw: Any = normaliser
        if not isinstance(raw, Mapping) and hasattr(raw, "to_dict"):
            raw = raw.to_dict()
        log_vars: Sequence[str] = ()
        if isinstance(raw, Mapping) and isinstance(raw.get("variables"), Mapping):
            log_vars = raw.get("log_transform") or ()
            raw = raw["variables"]
        elif not isinstance(raw, Mapping) and isinstance(getattr(raw, "stats", None), Mapping):
            log_vars = getattr(raw, "log_vars", ()) or ()
            raw = raw.stats
        if not isinstance(raw, Mapping):
            raise DataError(f"cannot read normalisation statistics from a {type(normaliser).__name__}")
        self.stats: dict[str, tuple[float, float]] = {}
        self.log_eps: dict[str, float] = {str(n): 1.0 for n in log_vars}  # log(x + eps); eps 1 = log1p
        for name, entry in raw.items():
            if isinstance(entry, Mapping):
                mean, std = entry.get("mean", entry.get("centre")), entry.get("std", entry.get("scale"))
                if entry.get("log"):
                    self.log_eps[str(name)] = float(entry.get("eps", 1.0))
            else:
                mean, std = entry
            std = float(np.asarray(std))
            self.stats[str(name)] = (float(np.asarray(mean)), std if std > 0 else 1.0)

    def arrays(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [n for n in names if n not in self.stats]
        if missing:
            raise DataError(f"normaliser has no statistics for {missing}; it knows {sorted(self.stats)}")
        mean = np.asarray([self.stats[n][0] for n in names], dtype=np.float32)
        std = np.asarray([self.stats[n][1] for n in names], dtype=np.float32)
        return mean, std

    def transform(self, names: Sequence[str], x: np.ndarray, axis: int = -1) -> np.ndarray:
        """Normalise ``x`` whose ``axis`` runs over ``names``."""
        mean, std = self.arrays(names)
        x = np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)
        for k, n in enumerate(names):
            if n in self.log_eps:
                with np.errstate(invalid="ignore", divide="ignore"):
                    x[..., k] = np.log(x[..., k] + self.log_eps[n])
        return np.moveaxis((x - mean) / std, -1, axis).astype(np.float32)

    def inverse(self, names: Sequence[str], y: np.ndarray, axis: int = -1) -> np.ndarray:
        """Back to physical units; ``axis`` runs over ``names``."""
        mean, std = self.arrays(names)
        y = np.moveaxis(y, axis, -1) * std + mean
        for k, n in enumerate(names):
            if n in self.log_eps:
                y[..., k] = np.exp(y[..., k]) - self.log_eps[n]
        return np.moveaxis(y, -1, axis).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# Data access
# --------------------------------------------------------------------------------------------------------------
def open_data(data: Any) -> xr.Dataset:
    """Open forecast input data: a Dataset, a NetCDF/zarr path, or a catalog name.

    Parameters
    ----------
    data : xarray.Dataset, path-like or str
        An open dataset; a path to a NetCDF file or zarr store; or a data catalog name
        (:func:`hydroml.catalog.open`), optionally ``name:product``.

    Returns
    -------
    xarray.Dataset
    """
    if isinstance(data, xr.Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.exists():
            if path.suffix == ".zarr" or (path.is_dir() and (path / ".zgroup").exists()):
                return xr.open_zarr(path)
            return xr.open_dataset(path)
        from hydroml import catalog

        name, _, product = str(data).partition(":")
        return catalog.open(name, product=product or None)
    raise TypeError(f"data must be an xarray.Dataset, a path or a catalog name; got {type(data).__name__}")


def _check_vars(ds: xr.Dataset, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise DataError(
            f"forecast data lacks the {what} {missing} that the model needs; it has {sorted(ds.data_vars)}"
        )


def _time_index(ds: xr.Dataset) -> pd.DatetimeIndex:
    if "time" not in ds.dims:
        raise DataError(f"forecast data has no 'time' dimension (dims: {dict(ds.sizes)})")
    return pd.DatetimeIndex(ds.indexes["time"])


def _period(times: pd.DatetimeIndex, start: Any, end: Any, history: int, what: str) -> tuple[int, int, int]:
    """Indices (first input step, first predicted step, one past the last predicted step)."""
    t0 = times[0] if start is None else pd.Timestamp(start)
    t1 = times[-1] if end is None else pd.Timestamp(end)
    if t1 < t0:
        raise DataError(f"forecast end {t1.date()} is before start {t0.date()}")
    i_start = int(times.searchsorted(t0, side="left"))
    i_end = int(times.searchsorted(t1, side="right"))
    if i_start >= len(times) or i_end <= i_start:
        raise DataError(
            f"forecast period {t0.date()}..{t1.date()} is outside the data ({times[0].date()}..{times[-1].date()})"
        )
    if start is None:
        i_start = min(history, i_end - 1)
    i_first = i_start - history
    if i_first < 0:
        need = times[i_start] - pd.Timedelta(days=history) if len(times) > 1 else times[0]
        raise DataError(
            f"{what} needs {history} time steps of input before {times[i_start].date()} (from about "
            f"{need.date()}), but the data start on {times[0].date()}: start the forecast later or supply "
            "earlier forcing"
        )
    return i_first, i_start, i_end


def _dynamic_arrays(ds: xr.Dataset, fm: ForecastModel, i0: int, i1: int, scaler: _Scaler) -> np.ndarray:
    """Normalised dynamic inputs ``[basin, time, F]`` for steps ``i0:i1`` (one read per variable)."""
    sub = ds[fm.inputs].isel(time=slice(i0, i1))
    x = np.stack([sub[v].transpose("basin", "time").values for v in fm.inputs], axis=-1)
    return scaler.transform(fm.inputs, x)


def _static_arrays(ds: xr.Dataset, fm: ForecastModel, scaler: _Scaler) -> np.ndarray | None:
    """Normalised static inputs ``[basin, S]``, or ``None`` for a model without statics."""
    if not fm.static_inputs:
        return None
    xs = np.stack([ds[v].transpose("basin").values for v in fm.static_inputs], axis=-1)
    return scaler.transform(fm.static_inputs, xs)


# Floats of input read at once in a stateful forecast (per basin batch): 16 M floats = 64 MB. The model still
# runs chunk by chunk; reading a longer block first saves one NetCDF read per variable and chunk.
_READ_BLOCK_FLOATS = 1 << 24


def _next_state(out: Mapping[str, Any]) -> Any:
    """The state to pass as ``batch["state"]`` to continue the sequence."""
    if "state" in out and out["state"] is not None:
        return out["state"]
    if "h_n" in out and "c_n" in out:
        return (out["h_n"], out["c_n"])
    raise DataError("stateful forecasting needs a recurrent model whose forward returns 'h_n' and 'c_n'")


# --------------------------------------------------------------------------------------------------------------
# Basin forecasts
# --------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def _sliding(
    fm: ForecastModel, x: np.ndarray, xs: np.ndarray | None, n_out: int, batch_size: int, device, progress
) -> np.ndarray:
    """Predict each of the last ``n_out`` steps of ``x`` from its own ``seq_len`` window."""
    seq_len = fm.seq_len
    n_basin, n_time, n_feat = x.shape
    valid_step = ~np.isnan(x).any(axis=-1)  # [basin, time]
    # a window is valid if none of its seq_len steps has a missing input: count with a cumulative sum
    bad = np.concatenate([np.zeros((n_basin, 1)), np.cumsum(~valid_step, axis=1)], axis=1)
    ends = np.arange(n_time - n_out, n_time)  # last step of each predicted window
    n_bad = bad[:, ends + 1] - bad[:, ends + 1 - seq_len]
    ok = n_bad == 0
    if xs is not None:
        ok &= ~np.isnan(xs).any(axis=-1)[:, None]
    xt = torch.from_numpy(np.nan_to_num(x))
    windows = xt.unfold(1, seq_len, 1).permute(0, 1, 3, 2)  # view: [basin, n_windows, seq_len, F]
    offset = n_time - seq_len + 1 - n_out  # window index of the first predicted step
    xst = torch.from_numpy(np.nan_to_num(xs)) if xs is not None else None
    b_idx, w_idx = np.nonzero(ok)
    y = np.full((n_basin, n_out, len(fm.targets)), np.nan, dtype=np.float32)
    starts = range(0, len(b_idx), batch_size)
    for s in tqdm(starts, progress=progress, desc="forecast (sliding)", total=len(starts)):
        bi = torch.from_numpy(b_idx[s : s + batch_size])
        wi = torch.from_numpy(w_idx[s : s + batch_size] + offset)
        batch = {"x_dynamic": windows[bi, wi].to(device)}
        if xst is not None:
            batch["x_static"] = xst[bi].to(device)
        out = fm.model(batch)
        y[b_idx[s : s + batch_size], w_idx[s : s + batch_size]] = out["y_hat"][:, -1, :].float().cpu().numpy()
    return y


@torch.no_grad()
def _stateful(
    fm: ForecastModel,
    ds: xr.Dataset,
    i0: int,
    i_start: int,
    i_end: int,
    chunk_size: int,
    batch_size: int,
    device,
    progress,
    scaler: _Scaler,
) -> np.ndarray:
    """One pass from step ``i0`` carrying the state; returns predictions for steps ``i_start:i_end``.

    Inputs are read in blocks of at most ``_READ_BLOCK_FLOATS`` floats per basin batch (never the whole period
    unless it is that small) and the model runs ``chunk_size`` steps at a time, so memory does not grow with the
    period. Small recurrent batches run on one intra-op thread (:func:`hydroml.memory.streaming.recurrent_threads`).
    """
    from hydroml.memory.streaming import recurrent_threads  # not at import time: hydroml.memory is ~75 ms

    n_basin = ds.sizes["basin"]
    n_out = i_end - i_start
    y = np.full((n_basin, n_out, len(fm.targets)), np.nan, dtype=np.float32)
    chunks = list(range(i0, i_end, chunk_size))
    basin_batches = list(range(0, n_basin, batch_size))
    bar = tqdm(total=len(chunks) * len(basin_batches), progress=progress, desc="forecast (stateful)")
    for b0 in basin_batches:
        sub = ds.isel(basin=slice(b0, b0 + batch_size))
        nb = sub.sizes["basin"]
        xs = _static_arrays(sub, fm, scaler)
        xs_t = torch.from_numpy(xs).to(device) if xs is not None else None
        block = max(chunk_size, _READ_BLOCK_FLOATS // max(1, nb * len(fm.inputs)) // chunk_size * chunk_size)
        state, x_block, r0 = None, None, i0
        with recurrent_threads(fm.model, nb, device):
            for c0 in chunks:
                c1 = min(c0 + chunk_size, i_end)
                if x_block is None or c1 > r0 + x_block.shape[1]:
                    r0 = c0
                    x_block = _dynamic_arrays(sub, fm, r0, min(r0 + block, i_end), scaler)
                x = x_block[:, c0 - r0 : c1 - r0]
                if np.isnan(x).any():
                    b, t, f = np.argwhere(np.isnan(x))[0]
                    raise DataError(
                        f"input {fm.inputs[f]!r} is missing for basin {sub['basin'].values[b]} on "
                        f"{pd.Timestamp(sub['time'].values[c0 + t]).date()}: a stateful forecast cannot carry "
                        "its state across a gap; fill the input or use mode='sliding'"
                    )
                batch = {"x_dynamic": torch.from_numpy(np.ascontiguousarray(x)).to(device)}
                if xs_t is not None:
                    batch["x_static"] = xs_t
                if state is not None:
                    batch["state"] = state
                out = fm.model(batch)
                state = _next_state(out)
                keep0 = max(i_start, c0)
                if c1 > keep0:
                    y[b0 : b0 + nb, keep0 - i_start : c1 - i_start] = (
                        out["y_hat"][:, keep0 - c0 :, :].float().cpu().numpy()
                    )
                bar.update(1)
    bar.close()
    return y


# --------------------------------------------------------------------------------------------------------------
# Gridded forecasts
# --------------------------------------------------------------------------------------------------------------
def _grid_dims(ds: xr.Dataset, var: str) -> tuple[str, str]:
    dims = [d for d in ds[var].dims if d != "time"]
    if len(dims) != 2:
        raise DataError(
            f"gridded variable {var!r} must have dims (time, lat, lon) or (time, y, x); got {dims}"
        )
    return dims[0], dims[1]


@torch.no_grad()
def _gridded(
    fm: ForecastModel, ds: xr.Dataset, i_start: int, i_end: int, batch_size: int, device, progress
) -> np.ndarray:
    """Predict every cell of every step ``i_start:i_end``; returns ``[time, target, H, W]``."""
    ydim, xdim = _grid_dims(ds, fm.inputs[0])
    scaler = _Scaler(fm.normaliser)
    dyn = np.stack([ds[v].transpose("time", ydim, xdim).values for v in fm.inputs], axis=1)
    dyn = scaler.transform(fm.inputs, dyn, axis=1)  # [time, C, H, W]
    static = None
    if fm.static_inputs:
        static = np.stack([ds[v].transpose(ydim, xdim).values for v in fm.static_inputs], axis=0)
        static = scaler.transform(fm.static_inputs, static, axis=0)
    mask = np.isfinite(dyn).all(axis=1)  # [time, H, W]
    if fm.valid_mask is not None:
        mask &= np.asarray(ds[fm.valid_mask].transpose(ydim, xdim).values != 0)[None]
    dyn = np.nan_to_num(dyn)
    if static is not None:
        mask &= np.isfinite(static).all(axis=0)[None]
        static = np.nan_to_num(static)
    n_t, _, h, w = dyn.shape
    out = np.full((i_end - i_start, len(fm.targets), h, w), np.nan, dtype=np.float32)
    steps = range(i_start, i_end, batch_size)
    for s in tqdm(steps, progress=progress, desc="forecast (grid)", total=len(steps)):
        idx = np.arange(s, min(s + batch_size, i_end))
        # channels as GridDataset: for each input, steps t, t-1, ..., t-lags+1; then the static maps
        x = np.stack([dyn[idx - lag] for lag in range(fm.lags)], axis=2)  # [B, C, L, H, W]
        x = x.reshape(len(idx), -1, h, w)
        if static is not None:
            x = np.concatenate([x, np.broadcast_to(static, (len(idx), *static.shape))], axis=1)
        y_hat = fm.model({"x": torch.from_numpy(np.ascontiguousarray(x)).to(device)})["y_hat"]
        y_hat = y_hat.float().cpu().numpy()
        m = mask[idx]
        for lag in range(1, fm.lags):
            m = m & mask[idx - lag]
        y_hat = np.where(m[:, None], y_hat, np.nan)
        out[idx - i_start] = y_hat
    return out


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------
def forecast(
    run_or_model: Any,
    data: Any,
    start: Any = None,
    end: Any = None,
    mode: str = "sliding",
    *,
    batch_size: int = 256,
    chunk_size: int = 1000,
    warmup: int | None = None,
    basins: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    compile: bool | str = False,
    engine: str = "torch",
) -> xr.Dataset:
    """Run a trained model over a period and return its predictions with CF metadata.

    No observations are needed: only the model's inputs are read.

    Parameters
    ----------
    run_or_model : path-like, ForecastModel or torch.nn.Module
        A run directory (``runs/<name>_<YYYYmmdd_HHMMSS>``), a :class:`ForecastModel`, or a model returned by
        :func:`hydroml.zoo.load`.
    data : xarray.Dataset, path-like or str
        Input data in canonical names and units (see :func:`open_data`).
    start, end : str or datetime-like, optional
        First and last predicted day (inclusive). ``start`` defaults to the first day that has enough history.
        Input before ``start`` is used for the window (``sliding``) or the warm-up (``stateful``).
    mode : {"sliding", "stateful"}
        Basin models only, see the module docstring; ignored for gridded models (which also accept
        ``"gridded"``).
    batch_size : int
        Windows per batch (``sliding``), basins per batch (``stateful``), time steps per batch (gridded).
    chunk_size : int
        ``stateful``: time steps per chunk; memory grows with ``batch_size * chunk_size``, not the period.
    warmup : int, optional
        ``stateful``: steps run before ``start`` from a zero state (default ``seq_len``).
    basins : sequence of str, optional
        Forecast only these basins.
    device : str or torch.device
        Where to run the model.
    progress : bool, optional
        Progress bar; ``None`` defers to ``HYDROML_PROGRESS``.
    compile : bool or str
        ``torch.compile`` the model (a ``torch.compile`` mode, or ``True``); falls back to eager execution with
        a log line where it cannot compile (:func:`hydroml.export.compile_model`).
    engine : {"torch", "onnxruntime", "torchscript"}
        ``"onnxruntime"`` exports the model to ONNX in memory and runs it with ONNX Runtime (``lstm``,
        ``unet``, ``closure``; :func:`hydroml.export.with_engine`).

    Returns
    -------
    xarray.Dataset
        One variable per target on ``(basin, time)`` (basin models) or ``(time, lat, lon)`` (gridded), in the
        target's canonical units, with CF attributes and provenance.

    Raises
    ------
    DataError
        If an input is missing from ``data``, or the data do not reach back far enough before ``start``.
    ConfigError
        If ``mode`` is unknown.
    """
    fm = _resolve_model(run_or_model)
    if compile or engine != "torch":
        from hydroml.export import with_engine

        fm = with_engine(fm, engine, compile)
    if mode not in MODES and not (fm.gridded and mode == "gridded"):
        raise ConfigError(f"unknown forecast mode {mode!r}; valid modes: {', '.join(MODES)}")
    from hydroml._cf import data_label

    label = data_label(data)
    ds = open_data(data)
    _check_vars(ds, fm.inputs, "dynamic inputs")
    _check_vars(ds, fm.static_inputs, "static inputs")
    times = _time_index(ds)
    scaler = _Scaler(fm.normaliser)
    scaler.arrays(fm.targets)  # fail early if the targets have no statistics
    model = fm.model.to(device)
    was_training = model.training
    model.eval()
    try:
        if fm.gridded:
            _, i_start, i_end = _period(times, start, end, fm.lags - 1, "a gridded forecast with lags")
            y = _gridded(fm, ds, i_start, i_end, batch_size, device, progress)
            y = scaler.inverse(fm.targets, y, axis=1)
            ydim, xdim = _grid_dims(ds, fm.inputs[0])
            coords = {"time": _target_times(times, i_start, i_end, fm.lead_time)}
            for dim in (ydim, xdim):
                if dim in ds.coords:
                    coords[dim] = ds[dim].values
            data_vars = {t: (("time", ydim, xdim), y[:, k]) for k, t in enumerate(fm.targets)}
            out = xr.Dataset(data_vars, coords=coords)
            for name in ("lat", "lon"):  # 2-D coordinates of curvilinear grids
                if name in ds.coords and name not in out.coords:
                    out = out.assign_coords({name: ds[name]})
            mode_used = "gridded"
        else:
            if "basin" not in ds.dims:
                raise DataError(f"basin forecast data need a 'basin' dimension; found dims {dict(ds.sizes)}")
            if basins is not None:
                known = {str(b) for b in ds["basin"].values}
                missing = [str(b) for b in basins if str(b) not in known]
                if missing:
                    some = sorted(known)[:5]
                    raise DataError(
                        f"basins {missing} are not in the forecast data; it has {len(known)} basins "
                        f"({', '.join(some)}{', ...' if len(known) > 5 else ''})"
                    )
                lookup = {str(b): b for b in ds["basin"].values}
                ds = ds.sel(basin=[lookup[str(b)] for b in basins])
            if mode == "sliding":
                i0, i_start, i_end = _period(times, start, end, fm.seq_len - 1, "a sliding-window forecast")
                x, xs = _dynamic_arrays(ds, fm, i0, i_end, scaler), _static_arrays(ds, fm, scaler)
                y = _sliding(fm, x, xs, i_end - i_start, batch_size, device, progress)
            else:
                history = fm.seq_len if warmup is None else int(warmup)
                i0, i_start, i_end = _period(times, start, end, history, "a stateful forecast (warm-up)")
                y = _stateful(fm, ds, i0, i_start, i_end, chunk_size, batch_size, device, progress, scaler)
            y = scaler.inverse(fm.targets, y)
            out = xr.Dataset(
                {t: (("basin", "time"), y[..., k]) for k, t in enumerate(fm.targets)},
                coords={
                    "basin": ds["basin"].values,
                    "time": _target_times(times, i_start, i_end, fm.lead_time),
                },
            )
            for name in ("gauge_lat", "gauge_lon", "lat", "lon"):  # gauge coordinates (CF timeSeries)
                if name in ds.coords and ds[name].dims == ("basin",):
                    out = out.assign_coords({name: ("basin", ds[name].values, dict(ds[name].attrs))})
            mode_used = mode
    finally:
        model.train(was_training)
    out = _add_cf_attrs(out, fm, mode_used)
    if label:
        out.attrs["input_data"] = label
    return out


def _target_times(times: pd.DatetimeIndex, i_start: int, i_end: int, lead_time: int) -> np.ndarray:
    """Time labels of the predicted targets: the last input step plus ``lead_time`` steps."""
    labels = times[i_start:i_end]
    if lead_time:
        step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(days=1)
        if 27 <= step.days <= 31:  # monthly data: shift by calendar months
            return (labels + pd.DateOffset(months=lead_time)).values
        labels = labels + lead_time * step
    return labels.values


def _variable_attrs(name: str, monthly: bool = False) -> dict[str, str]:
    """CF attributes of a target from the variables table (``data_catalog/variables.yaml``)."""
    attrs: dict[str, str] = dict(_FALLBACK_ATTRS.get(name, {"long_name": name}))
    try:
        from hydroml.data.variables import get_variable

        var = get_variable(name)
    except Exception:  # noqa: BLE001 - not a canonical variable or table unavailable: built-in attributes
        return attrs
    attrs.update({"standard_name": var.standard_name, "long_name": var.long_name})
    attrs["units"] = var.monthly_units if monthly else var.units
    return {k: str(v) for k, v in attrs.items() if v}


def _add_cf_attrs(out: xr.Dataset, fm: ForecastModel, mode: str) -> xr.Dataset:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    monthly = False
    if out.sizes.get("time", 0) > 1:
        step = np.median(np.diff(out["time"].values).astype("timedelta64[D]").astype(float))
        monthly = 27 <= step <= 32
    for t in fm.targets:
        attrs = _variable_attrs(t, monthly)
        attrs["long_name"] = f"{attrs.get('long_name', t)} predicted by {fm.architecture} ({mode})"
        attrs["coverage_content_type"] = "modelResult"
        out[t].attrs.update(attrs)
        out[t].encoding.update({"dtype": "float32", "_FillValue": np.float32(np.nan), "zlib": True})
    out["time"].attrs.update({"standard_name": "time", "long_name": "time", "axis": "T"})
    if "basin" in out.dims:
        out["basin"] = out["basin"].astype(str)
        out["basin"].attrs.update({"long_name": "basin identifier", "cf_role": "timeseries_id"})
    for name, std in (("lat", "latitude"), ("lon", "longitude")):
        if name in out.coords:
            out[name].attrs.update(
                {
                    "standard_name": std,
                    "long_name": std,
                    "units": "degrees_north" if name == "lat" else "degrees_east",
                }
            )
    out.attrs.update(
        {
            "Conventions": "CF-1.8",
            "title": f"{', '.join(fm.targets)} predicted by hydroml {fm.architecture} ({mode})",
            "source": f"hydroml {__version__}, model {fm.architecture} {fm.model_id}".strip()
            + (f" from run directory {Path(fm.source).name}" if fm.source else ""),
            "history": f"{now}: predicted by hydroml {__version__} hydroml.forecast (mode={mode})",
            "model_name": fm.architecture,
            "model_id": fm.model_id,
            "model_version": fm.model_version or __version__,
            "hydroml_version": __version__,
            "config_hash": fm.config_hash,
            "forecast_mode": mode,
        }
    )
    if mode in MODES:
        out.attrs["featureType"] = "timeSeries"
        out.attrs["seq_len"] = int(fm.seq_len)
    return out


def write_forecast(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a forecast to CF-1.8 NetCDF atomically (a temporary file renamed into place).

    The file passes ``compliance-checker --test cf:1.8`` (:func:`hydroml._cf.encode_cf`): depth units with a
    valid standard name (or none), monthly totals as amounts with ``cell_methods`` and ``time_bnds``, int32
    time, gauge latitude/longitude, and the input data named by catalog or file name (``input_data``).

    Parameters
    ----------
    ds : xarray.Dataset
        The result of :func:`forecast`.
    path : path-like
        Destination ``.nc`` file.

    Returns
    -------
    pathlib.Path
    """
    from hydroml._cf import encode_cf

    path = Path(path)
    log.info("writing forecast to %s", path)
    return write_netcdf_atomic(encode_cf(ds), path)


__all__ = [
    "ForecastModel",
    "config_hash",
    "forecast",
    "from_config",
    "from_run",
    "open_data",
    "write_forecast",
]
