"""CF-1.8 encoding of the files hydroml writes (predictions, metrics, evaporation grids).

The variables table (``data_catalog/variables.yaml``) keeps hydrologists' units (``mm/day``, ``mm/month``) and
names the CF *quantity* of each variable (``runoff_flux``, ``water_evapotranspiration_flux``), which is how
input files are recognised. CF's mass fluxes are in ``kg m-2 s-1``, so ``mm/day`` with ``runoff_flux`` is not a
valid pair. On writing, :func:`cf_variable_attrs` keeps the units and picks a valid pair:

- a daily rate in mm/day: the liquid-water-equivalent rate name where CF has one (``lwe_precipitation_rate``,
  canonical ``m s-1``), else no ``standard_name`` and a ``comment`` naming the CF quantity;
- a monthly total in mm/month: an *amount*, units ``mm``, ``cell_methods: "time: sum"`` and a ``time_bnds``
  variable with each month's bounds (``lwe_thickness_of_..._amount`` where CF has one). The attribute
  ``hydroml_units: mm/month`` records the original units so hydroml compares it with mm/month observations.

``tests/test_cf.py`` checks every pair of the variables table with cf-units (UDUNITS) against the standard
name table and runs ``compliance-checker --test cf:1.8`` on every output kind.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: CF quantity (mass flux in kg m-2 s-1) -> (liquid-water-equivalent rate, liquid-water-equivalent amount).
#: ``None`` where the CF standard name table (v93) has no such name.
LWE_NAMES: dict[str, tuple[str | None, str | None]] = {
    "precipitation_flux": ("lwe_precipitation_rate", "lwe_thickness_of_precipitation_amount"),
    "snowfall_flux": ("lwe_snowfall_rate", "lwe_thickness_of_snowfall_amount"),
    "rainfall_flux": (None, None),
    "water_evapotranspiration_flux": (
        "lwe_water_evaporation_rate",
        "lwe_thickness_of_water_evaporation_amount",
    ),
    "water_potential_evaporation_flux": (None, None),
    "runoff_flux": (None, None),
}

#: CF mass amounts (kg m-2) -> the flux entry of :data:`LWE_NAMES` (totals declared as amounts in mm/month).
_FLUX_OF_AMOUNT = {flux.replace("_flux", "_amount"): flux for flux in LWE_NAMES}

#: Units that are a water depth per time (1 mm of liquid water over 1 m2 is 1 kg).
_DEPTH_RATE = {
    "mm/day": "day",
    "mm day-1": "day",
    "mm d-1": "day",
    "mm/month": "month",
    "mm month-1": "month",
}

#: Spellings of the same unit, for comparing observation and prediction files.
_SAME = {"mm day-1": "mm/day", "mm d-1": "mm/day", "mm month-1": "mm/month", "mm/d": "mm/day"}


def same_units(a: Any, b: Any) -> bool:
    """Whether two unit strings (or variable attribute mappings) mean the same units.

    Parameters
    ----------
    a, b : str or mapping
        Unit strings, or attribute mappings (``hydroml_units`` is preferred over ``units``).

    Returns
    -------
    bool
    """
    return _norm(a) == _norm(b)


def _norm(u: Any) -> str:
    if isinstance(u, dict) or hasattr(u, "get"):
        u = u.get("hydroml_units") or u.get("units") or ""
    u = " ".join(str(u).split())
    return _SAME.get(u, u)


def cf_variable_attrs(attrs: dict[str, Any], monthly: bool) -> dict[str, Any]:
    """CF-valid attributes of a data variable in depth-per-time units.

    Parameters
    ----------
    attrs : dict
        The variable's attributes (``units``, ``standard_name``, ...).
    monthly : bool
        Whether the time step is a calendar month (totals become amounts with ``cell_methods``).

    Returns
    -------
    dict
        New attributes; ``needs_bounds`` is ``True`` (a key of the result, removed by the writer) when the
        variable is a monthly amount and the file needs ``time_bnds``.
    """
    out = dict(attrs)
    units = " ".join(str(out.get("units", "")).split())
    std = std_in = out.get("standard_name")
    per = _DEPTH_RATE.get(units)
    std = _FLUX_OF_AMOUNT.get(std, std) if per == "month" else std
    if per is None or std not in LWE_NAMES:
        return out
    rate, amount = LWE_NAMES[std]
    if std_in in _FLUX_OF_AMOUNT:  # declared a monthly total already (hydroml.closure.to_cf)
        monthly = True
    if monthly and per == "month":
        out["units"] = "mm"
        out["hydroml_units"] = "mm/month"
        out["cell_methods"] = "time: sum"
        name = amount
        out["needs_bounds"] = True
    else:
        name = rate
    if name:
        out["standard_name"] = name
    else:
        out.pop("standard_name", None)
        out["comment"] = (
            f"CF quantity {std} (kg m-2 s-1) as a depth of liquid water ({units}; 1 mm of water is 1 kg m-2); "
            "CF has no liquid-water-equivalent standard name for it"
        )
    return out


def month_bounds(times: Any) -> np.ndarray:
    """``[start, end)`` bounds of the calendar months labelled by ``times``.

    Parameters
    ----------
    times : array-like of datetime64
        One label per month (any day of the month).

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` datetime64[ns]: first day of the month, first day of the next.
    """
    t = np.asarray(times).astype("datetime64[M]")
    return np.stack([t, t + 1], axis=1).astype("datetime64[ns]")


def encode_cf(ds: Any, input_data: str | None = None) -> Any:
    """Prepare a dataset for a CF-1.8 NetCDF file (a copy; ``ds`` is unchanged).

    Valid units/standard_name pairs (:func:`cf_variable_attrs`), ``time_bnds`` for monthly amounts, time as
    ``int32`` days since 1970-01-01 (or ``float64`` when the step is below a day), no ``_FillValue`` on
    coordinates, ``units`` on latitude/longitude, and ``Conventions: CF-1.8``.

    Parameters
    ----------
    ds : xarray.Dataset
        What will be written.
    input_data : str, optional
        The input data set by catalog name or file name (``input_data`` attribute), never a machine path.

    Returns
    -------
    xarray.Dataset
    """
    import pandas as pd

    out = ds.copy()
    monthly = False
    if (
        "time" in out.coords
        and out.sizes.get("time", 0) > 1
        and np.issubdtype(out["time"].dtype, np.datetime64)
    ):
        step = np.median(np.diff(out["time"].values).astype("timedelta64[D]").astype(float))
        monthly = 27 <= step <= 32
    bounds = False
    for name in out.data_vars:
        attrs = cf_variable_attrs(dict(out[name].attrs), monthly)
        bounds |= bool(attrs.pop("needs_bounds", False))
        out[name].attrs = attrs
    if "time" in out.coords and np.issubdtype(out["time"].dtype, np.datetime64):
        times = out["time"].values
        sub_daily = len(times) > 1 and np.any(np.diff(times) % np.timedelta64(1, "D") != np.timedelta64(0))
        enc = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
        enc["dtype"] = "float64" if sub_daily or (times.astype("datetime64[D]") != times).any() else "int32"
        out["time"].encoding.update(enc)
        out["time"].attrs.update({"standard_name": "time", "long_name": "time", "axis": "T"})
        if bounds:
            out["time_bnds"] = (("time", "nv"), month_bounds(times))
            out["time_bnds"].encoding.update(enc | {"dtype": "int32"})
            out["time"].attrs["bounds"] = "time_bnds"
            if "time_bnds" in out.data_vars:
                out = out.set_coords("time_bnds")
    for name, std, units in (("lat", "latitude", "degrees_north"), ("lon", "longitude", "degrees_east")):
        for cand in (name, f"gauge_{name}"):
            if cand in out.variables:
                out[cand].attrs.update({"standard_name": std, "units": units})
                out[cand].attrs.setdefault("long_name", std if cand == name else f"gauge {std}")
    for name in out.variables:  # CF-1.8 has no 64-bit integers
        if out[name].dtype == np.int64 and "dtype" not in out[name].encoding:
            values = out[name].values
            small = values.size == 0 or (values.min() >= -(2**31) and values.max() < 2**31)
            out[name].encoding["dtype"] = "int32" if small else "float64"
    for name in out.coords:
        out[name].encoding["_FillValue"] = None
    for name in out.data_vars:
        if out[name].dtype.kind in "fc" and "_FillValue" not in out[name].encoding:
            out[name].encoding["_FillValue"] = np.asarray(np.nan, dtype=out[name].dtype).item()
    out.attrs["Conventions"] = "CF-1.8"
    if input_data:
        out.attrs["input_data"] = input_data
    for key, value in list(out.attrs.items()):
        if isinstance(value, pd.Timestamp | np.datetime64):
            out.attrs[key] = str(pd.Timestamp(value).date())
    return out


def data_label(data: Any) -> str | None:
    """The input data set by catalog name (``demo:basins``) or file name, never a machine path.

    Parameters
    ----------
    data : str, path-like or xarray.Dataset
        What a forecast or evaluation read.

    Returns
    -------
    str or None
    """
    if isinstance(data, str | os.PathLike):
        text = os.fspath(data)
        if os.path.exists(text) or os.sep in text:
            return os.path.basename(os.path.normpath(text))
        return text
    attrs = getattr(data, "attrs", None) or {}
    for key in ("catalog_name", "input_data", "title"):
        if attrs.get(key):
            return str(attrs[key])
    encoding = getattr(data, "encoding", None) or {}
    if encoding.get("source"):
        return os.path.basename(str(encoding["source"]))
    return None
