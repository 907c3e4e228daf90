"""Reader ``fluxnet_csv``: site time series in a long CSV with ``lon``, ``lat``, ``date`` and value columns.

This is the layout of the FLUXNET2015 monthly evaporation table distributed with evapoRe
(``et_fluxnet_global_monthly_total.csv``: ``lon,lat,date,et_mm_month``), where sites are identified only by their
coordinates. Each distinct (lat, lon) pair becomes one site with the string id ``"<lat>_<lon>"`` (as written in
the file, e.g. ``"38.05_-121.77"``); ``lat`` and ``lon`` become coordinates on the site dimension.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hydroml.data.readers import register_reader
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")

#: Units of the known value columns.
FLUXNET_UNITS = {"et_mm_month": "mm month-1"}


@register_reader("fluxnet_csv")
def read_fluxnet_csv(
    path: str | Path,
    *,
    lon_column: str = "lon",
    lat_column: str = "lat",
    date_column: str = "date",
    id_column: str | None = None,
    columns: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    dim: str = "station",
    **options,
) -> xr.Dataset:
    """Read flux-tower site series from a long CSV table.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    lon_column, lat_column, date_column : str
        Column names of the site coordinates and of the dates.
    id_column : str, optional
        Column with site ids; by default sites are identified by their coordinates.
    columns : sequence of str, optional
        Value columns to keep (default all numeric ones).
    units : mapping, optional
        ``units`` per column (default: ``et_mm_month`` in ``mm month-1``).
    dim : str
        Name of the site dimension (``station``).
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Values on ``(dim, time)`` with ``lat``/``lon`` coordinates on ``dim``; time at the dates of the file
        (month starts for monthly totals).
    """
    if options:
        raise DataError(f"fluxnet_csv: unknown reader options {sorted(options)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"fluxnet_csv: file {str(path)!r} not found")
    df = pd.read_csv(path, dtype={lon_column: str, lat_column: str})
    need = [lon_column, lat_column, date_column] + ([id_column] if id_column else []) + list(columns or [])
    absent = [c for c in need if c not in df.columns]
    if absent:
        raise DataError(f"{path}: columns {absent} not found; columns are {list(df.columns)}")
    df["_id"] = (
        df[id_column].astype(str)
        if id_column
        else df[lat_column].str.strip() + "_" + df[lon_column].str.strip()
    )
    df["time"] = pd.to_datetime(df[date_column])
    value_cols = (
        list(columns)
        if columns
        else [c for c in df.select_dtypes("number").columns if c not in (lon_column, lat_column)]
    )
    if df.duplicated(["_id", "time"]).any():
        first = df.loc[df.duplicated(["_id", "time"]), ["_id", "time"]].iloc[0]
        raise DataError(f"{path}: site {first['_id']} has duplicated dates, first {first['time'].date()}")
    sites = pd.unique(df["_id"])
    coords = df.groupby("_id")[[lat_column, lon_column]].agg(lambda s: s.astype(float).unique())
    multi = [s for s in sites if len(coords.loc[s, lat_column]) > 1 or len(coords.loc[s, lon_column]) > 1]
    if multi:
        raise DataError(f"{path}: sites {multi[:5]} have more than one coordinate pair")
    wide = df.set_index(["_id", "time"])[value_cols]
    times = np.sort(df["time"].unique())
    full = pd.MultiIndex.from_product([sites, times], names=["_id", "time"])
    wide = wide.reindex(full)
    units = {**FLUXNET_UNITS, **(units or {})}
    data_vars = {
        c: ((dim, "time"), wide[c].to_numpy(dtype="float64").reshape(len(sites), len(times)), {})
        for c in value_cols
    }
    for c in value_cols:
        if c in units:
            data_vars[c][2]["units"] = units[c]
    lat = np.array([coords.loc[s, lat_column][0] for s in sites], dtype=float)
    lon = np.array([coords.loc[s, lon_column][0] for s in sites], dtype=float)
    ds = xr.Dataset(
        data_vars,
        coords={
            dim: np.array(sites, dtype=str),
            "time": pd.DatetimeIndex(times).values.astype("datetime64[ns]"),
            "lat": (dim, lat, {"units": "degrees_north"}),
            "lon": (dim, lon, {"units": "degrees_east"}),
        },
    )
    ds.attrs.update(source_path=str(path))
    log.info("fluxnet_csv: %d sites, %d time steps from %s", len(sites), len(times), path.name)
    return ds
