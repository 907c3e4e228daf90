"""Reader ``netcdf``: generic gridded (or station) NetCDF / zarr files through :func:`hydroml.data.io.open_dataset`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import xarray as xr

from hydroml.data.readers import register_reader
from hydroml.exceptions import DataError


@register_reader("netcdf")
def read_netcdf(
    path: Path, files: list[str] | None = None, time_label: str | None = None, **options: Any
) -> xr.Dataset:
    """Open NetCDF / zarr data with :func:`hydroml.data.io.open_dataset`.

    Parameters
    ----------
    path : pathlib.Path
        A file, a folder (all its ``*.nc``), or a glob pattern.
    files : list of str, optional
        Files (or patterns) relative to ``path``, opened together (e.g. one file per variable).
    time_label : {"month_start"}, optional
        Relabel monthly time stamps (e.g. month ends at 23:00) to the first day of their month, as
        :func:`hydroml.data.time.to_monthly` labels months.
    **options
        Keywords of :func:`~hydroml.data.io.open_dataset` (``variables``, ``time``, ``sentinels``, ``rename``,
        ``latlon_file`` (relative to the folder of ``path``), ``chunks``...); ``missing_values`` is accepted
        as another name of ``sentinels``, as in the other readers.

    Returns
    -------
    xarray.Dataset
        Source variable names, standardised coordinates, missing values as NaN.
    """
    from hydroml.data.io import open_dataset

    path = Path(path)
    target: Any = [path / f for f in files] if files else path
    if "missing_values" in options:
        if options.get("sentinels") is not None:
            raise DataError(f"{path}: reader options 'sentinels' and 'missing_values' both given; use one")
        options["sentinels"] = options.pop("missing_values")
    latlon = options.pop("latlon_file", None)
    if latlon is not None:
        latlon = Path(latlon)
        base = path if path.is_dir() else path.parent
        options["latlon_file"] = latlon if latlon.is_absolute() else base / latlon
    ds = open_dataset(target, **options)
    if time_label is not None:
        ds = _relabel(ds, time_label, str(path))
    return ds


def _forwarded_options() -> list[str]:
    from hydroml.data.io import open_dataset

    return ["missing_values"] + [n for n in inspect.signature(open_dataset).parameters if n != "paths"]


read_netcdf.forwards = _forwarded_options  # options passed on to open_dataset (checked by hydroml.catalog)


def _relabel(ds: xr.Dataset, time_label: str, source: str) -> xr.Dataset:
    from hydroml.data.variables import infer_time_step

    if time_label != "month_start":
        raise DataError(f"netcdf reader: time_label must be 'month_start', got {time_label!r}")
    step = infer_time_step(ds)
    if step != "monthly":
        raise DataError(f"{source}: time_label='month_start' needs monthly data, found time step {step!r}")
    values = ds["time"].values
    if values.dtype.kind == "M":
        new = values.astype("datetime64[M]").astype("datetime64[ns]")
    else:  # cftime dates
        new = [type(t)(t.year, t.month, 1, calendar=t.calendar) for t in values]
    out = ds.assign_coords(time=("time", new, ds["time"].attrs))
    if out.indexes["time"].has_duplicates:
        raise DataError(f"{source}: two time stamps fall in the same month; cannot label by month start")
    return out
