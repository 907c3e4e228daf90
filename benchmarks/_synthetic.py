"""CAMELS-shaped synthetic data for benchmarks (data layer, training), for hydroml and neuralhydrology alike.

:func:`make_camels_like` builds an :class:`xarray.Dataset` on ``(basin, time)`` with daily dynamic inputs, a
discharge target ``q_mm`` (mm/day, a linear reservoir of the precipitation, so models have something to learn) and
static attributes on ``(basin,)``. :func:`write_generic_dataset` writes the same data in the layout
neuralhydrology's ``GenericDataset`` reads (``time_series/<basin>.nc`` with a ``date`` coordinate,
``attributes/attributes.csv`` indexed by ``gauge_id``, and a basin list file). Values are float32 and cheap to
generate (Caravan scale, 6,800 basins x 30 years, in seconds).

Synthetic: not observations. Only the shape (and rough magnitudes) mimic CAMELS-US.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

DYNAMIC_NAMES = ["pr", "rsds", "tasmax", "tasmin", "vp"]
STATIC_NAMES = [
    "area_km2", "elev_mean", "slope_mean", "p_mean", "pet_mean", "aridity", "frac_snow", "high_prec_freq",
    "high_prec_dur", "low_prec_freq", "low_prec_dur", "frac_forest", "lai_max", "lai_diff", "gvf_max", "gvf_diff",
    "soil_depth_pelletier", "soil_porosity", "soil_conductivity", "max_water_content",
]  # fmt: skip
TARGET = "q_mm"


def dynamic_names(n_dynamic: int) -> list[str]:
    """Names of the first ``n_dynamic`` dynamic inputs (CAMELS-like, then ``dyn_5``, ``dyn_6``...)."""
    return (DYNAMIC_NAMES + [f"dyn_{i}" for i in range(len(DYNAMIC_NAMES), n_dynamic)])[:n_dynamic]


def static_names(n_static: int) -> list[str]:
    """Names of the first ``n_static`` static attributes (CAMELS-like, then ``static_20``...)."""
    return (STATIC_NAMES + [f"static_{i}" for i in range(len(STATIC_NAMES), n_static)])[:n_static]


def make_camels_like(
    n_basins: int,
    n_years: int,
    n_dynamic: int = 5,
    n_static: int = 20,
    seed: int = 0,
    start: str = "1990-01-01",
    target_nan_frac: float = 0.0,
    dtype: str = "float32",
) -> xr.Dataset:
    """Synthetic CAMELS-shaped lumped data.

    Parameters
    ----------
    n_basins, n_years : int
        Number of basins and of years (daily steps from ``start``).
    n_dynamic, n_static : int
        Number of dynamic inputs (``pr``, ``rsds``, ``tasmax``, ``tasmin``, ``vp``, then ``dyn_k``) and of static
        attributes.
    seed : int
        Random seed.
    start : str
        First day.
    target_nan_frac : float
        Fraction of target days set to NaN, in gaps of about 30 days (as gauges have).
    dtype : {"float32", "float64"}
        Storage type of the variables (CAMELS text files and Caravan NetCDF files are read as float64).

    Returns
    -------
    xarray.Dataset
        Dynamic inputs and ``q_mm`` (float32) on ``(basin, time)``, statics on ``(basin,)``; ``basin`` ids are
        8-digit strings.
    """
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    time = pd.date_range(t0, t0 + pd.DateOffset(years=n_years) - pd.Timedelta(days=1), freq="D")
    nt = len(time)
    doy = time.day_of_year.values.astype(np.float32)
    season = np.cos(2 * np.pi * (doy - 200) / 365.25).astype(np.float32)[None, :]
    f32 = np.float32
    basin_scale = rng.uniform(0.5, 1.5, (n_basins, 1)).astype(f32)
    wet = rng.random((n_basins, nt), dtype=f32) < 0.4
    pr = rng.standard_exponential((n_basins, nt), dtype=f32) * f32(7.0) * basin_scale
    pr *= wet
    data = {"pr": pr}
    names = dynamic_names(n_dynamic)
    for name in names[1:]:
        noise = rng.standard_normal((n_basins, nt), dtype=f32)
        if name == "rsds":
            data[name] = np.maximum(f32(180) + f32(90) * season - f32(40) * wet + f32(15) * noise, f32(0))
        elif name == "tasmax":
            data[name] = f32(16) + f32(10) * season * basin_scale + f32(3) * noise
        elif name == "tasmin":
            data[name] = f32(4) + f32(9) * season * basin_scale + f32(3) * noise
        elif name == "vp":
            data[name] = np.maximum(f32(1100) + f32(500) * season + f32(150) * noise, f32(50))
        else:
            data[name] = noise
    # discharge: linear reservoir of the precipitation with a basin-specific recession
    k = rng.uniform(0.03, 0.3, n_basins).astype(f32)
    q = np.empty((n_basins, nt), dtype=f32)
    store = np.full(n_basins, 50.0, dtype=f32)
    for t in range(nt):
        store += pr[:, t] * f32(0.5)
        q[:, t] = k * store
        store -= q[:, t]
    if target_nan_frac > 0:
        n_gaps = int(target_nan_frac * nt / 30) + 1
        for b in range(n_basins):
            for s in rng.integers(0, max(nt - 30, 1), n_gaps):
                q[b, s : s + 30] = np.nan
    data[TARGET] = q
    ds = xr.Dataset(
        {name: (("basin", "time"), arr.astype(dtype, copy=False)) for name, arr in data.items()},
        coords={"basin": [f"{i:08d}" for i in range(n_basins)], "time": time},
        attrs={
            "title": "synthetic CAMELS-shaped data (hydroml benchmarks)",
            "source": "SYNTHETIC",
            "seed": seed,
        },
    )
    for name in static_names(n_static):
        if name == "area_km2":
            v = rng.lognormal(6.0, 1.2, n_basins)
        elif name == "p_mean":
            v = pr.mean(axis=1)
        elif name == "elev_mean":
            v = rng.uniform(10, 3500, n_basins)
        else:
            v = rng.normal(0, 1, n_basins)
        ds[name] = ("basin", v.astype(dtype))
    for name in ds.data_vars:  # units, as real files carry them (hydroml's opener refuses variables without)
        ds[name].attrs["units"] = _UNITS.get(name, "1")
    return ds


_UNITS = {
    "pr": "mm/day",
    "rsds": "W m-2",
    "tasmax": "degC",
    "tasmin": "degC",
    "vp": "Pa",
    TARGET: "mm/day",
    "area_km2": "km2",
    "p_mean": "mm/day",
    "elev_mean": "m",
}


def write_generic_dataset(ds: xr.Dataset, root: str | os.PathLike, basin_file: str = "basins.txt") -> Path:
    """Write ``ds`` in neuralhydrology's GenericDataset layout under ``root``.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of :func:`make_camels_like` (or any lumped dataset with ``basin`` and ``time``).
    root : path-like
        Destination folder (created).
    basin_file : str
        Name of the basin list written in ``root``.

    Returns
    -------
    pathlib.Path
        The basin list file.
    """
    root = Path(root)
    (root / "time_series").mkdir(parents=True, exist_ok=True)
    (root / "attributes").mkdir(parents=True, exist_ok=True)
    dyn = [v for v in ds.data_vars if ds[v].dims == ("basin", "time")]
    sta = [v for v in ds.data_vars if ds[v].dims == ("basin",)]
    basins = [str(b) for b in ds["basin"].values]
    time = ds["time"].values
    for i, b in enumerate(basins):
        one = xr.Dataset(
            {v: ("date", ds[v].values[i]) for v in dyn},
            coords={"date": time},
        )
        one.to_netcdf(root / "time_series" / f"{b}.nc")
    attrs = pd.DataFrame({v: ds[v].values for v in sta}, index=pd.Index(basins, name="gauge_id"))
    attrs.to_csv(root / "attributes" / "attributes.csv")
    path = root / basin_file
    path.write_text("\n".join(basins) + "\n")
    return path
