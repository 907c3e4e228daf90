"""Reader ``caravan``: the Caravan layout (Kratzert et al. 2023) and community extensions that follow it.

Layout under the dataset root::

    timeseries/csv/<source>/<gauge_id>.csv         (column ``date`` + one column per variable)
    timeseries/netcdf/<source>/<gauge_id>.nc       (dimension/coordinate ``date``)
    attributes/<source>/attributes_*.csv           (``gauge_id`` + attributes; caravan, hydroatlas, other)

Gauge ids are ``<source>_<id>`` (``camels_01022500``, ``camelsgb_28015``). Caravan stores ERA5-Land forcing in
mm/day (``total_precipitation_sum``, ``potential_evaporation_sum``), degC (``temperature_2m_*``), W m-2 and kPa,
and ``streamflow`` as a depth in mm/day; ``attributes_other_<source>.csv`` holds ``area`` in km2, which becomes
``area_km2``.

References
----------
Kratzert, F. et al. (2023): Caravan - A global community dataset for large-sample hydrology. Scientific Data 10,
61, doi:10.1038/s41597-023-01975-w.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import xarray as xr

from hydroml._progress import tqdm
from hydroml.data.readers import register_reader
from hydroml.data.readers._common import add_statics, join_attribute_tables, select_attributes, select_basins
from hydroml.data.readers.basin_netcdf import open_netcdf
from hydroml.data.readers.station import frames_to_dataset
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")

#: Units of Caravan's time series (Kratzert et al. 2023, Table 2), by name prefix / suffix.
CARAVAN_UNITS = {
    "total_precipitation_sum": "mm d-1",
    "potential_evaporation_sum": "mm d-1",
    "evaporation_sum": "mm d-1",
    "streamflow": "mm d-1",
    "snow_depth_water_equivalent": "mm",
    "temperature_2m": "degC",
    "dewpoint_temperature_2m": "degC",
    "surface_net_solar_radiation": "W m-2",
    "surface_net_thermal_radiation": "W m-2",
    "surface_pressure": "kPa",
    "u_component_of_wind_10m": "m s-1",
    "v_component_of_wind_10m": "m s-1",
    "volumetric_soil_water_layer": "m3 m-3",
}


def _unit(name: str) -> str | None:
    for prefix, unit in CARAVAN_UNITS.items():
        if name == prefix or name.startswith(prefix + "_"):
            return unit
    return None


def _basin_list(basins, root: Path) -> list[str] | None:
    if basins is None:
        return None
    if isinstance(basins, (str, Path)):
        p = Path(basins)
        p = p if p.is_file() else root / p
        if p.is_file():
            return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        return [str(basins)]
    return [str(b) for b in basins]


def read_caravan_attributes(
    root: str | Path, basins: Sequence[str] | None = None, sources: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read ``attributes/<source>/*.csv`` of a Caravan copy into one table indexed by ``gauge_id``.

    Parameters
    ----------
    root : str or Path
        Dataset root.
    basins : sequence of str, optional
        Keep these gauge ids, in this order (error naming those absent).
    sources : sequence of str, optional
        Sub-datasets to read (default those of ``basins``, or all).

    Returns
    -------
    pandas.DataFrame
    """
    root = Path(root)
    if sources is None:
        if basins is not None:
            sources = sorted({b.split("_")[0] for b in basins})
        else:
            sources = sorted(p.name for p in (root / "attributes").glob("*") if p.is_dir())
    tables = []
    for src in sources:
        folder = root / "attributes" / src
        files = sorted(folder.glob("*.csv"))
        if not files:
            raise DataError(f"caravan: no attribute file attributes/{src}/*.csv under {root}")
        parts = []
        for f in files:
            df = pd.read_csv(f, dtype={"gauge_id": str})
            if "gauge_id" not in df.columns:
                raise DataError(f"{f}: no 'gauge_id' column; columns are {list(df.columns)}")
            parts.append(df.set_index("gauge_id"))
        tables.append(join_attribute_tables(parts))
    table = pd.concat(tables, axis=0) if tables else pd.DataFrame()
    return select_basins(table, basins, "caravan", where=f"under {root / 'attributes'}")


@register_reader("caravan")
def read_caravan(
    path: str | Path,
    *,
    basins: str | Path | Sequence[str] | None = None,
    sources: Sequence[str] | str | None = None,
    file_format: str = "auto",
    variables: Sequence[str] | None = None,
    attributes: Sequence[str] | bool | None = None,
    progress: bool | None = None,
    **options,
) -> xr.Dataset:
    """Read Caravan time series and attributes into one ``(basin, time)`` Dataset.

    Parameters
    ----------
    path : str or Path
        Root of the Caravan copy.
    basins : list of str, str or Path, optional
        Gauge ids (``camels_01022500``...) or a text file of them; default all basins of ``sources`` that have a
        time-series file.
    sources : str or list of str, optional
        Sub-datasets (``camels``, ``camelsgb``, ``hysets``...) when ``basins`` is not given (default all).
    file_format : {"auto", "csv", "netcdf"}
        Which time-series files to read; ``auto`` prefers NetCDF when present.
    variables : sequence of str, optional
        Time-series variables to keep (error naming unknown ones; default all).
    attributes : list of str, bool or None
        Statics on ``(basin,)``: ``None``/``True`` all numeric attributes, ``False`` none, or a list.
    progress : bool, optional
        Progress bar over basins (``None``: the ``HYDROML_PROGRESS`` setting).
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Dynamic variables on ``(basin, time)`` with ``units`` attributes, statics on ``(basin,)``, ``area_km2``
        from the ``area`` attribute, ``lat``/``lon`` coordinates from ``gauge_lat``/``gauge_lon`` when present.
    """
    if options:
        raise DataError(f"caravan: unknown reader options {sorted(options)}")
    if file_format not in ("auto", "csv", "netcdf"):
        raise DataError(f"caravan: file_format must be 'auto', 'csv' or 'netcdf', got {file_format!r}")
    root = Path(path)
    ts_root = root / "timeseries"
    if not ts_root.is_dir():
        raise DataError(f"caravan: no timeseries/ folder under {root}")
    fmts = ["netcdf", "csv"] if file_format == "auto" else [file_format]
    ids = _basin_list(basins, root)
    if isinstance(sources, str):
        sources = [sources]
    if ids is None:
        found = set()
        for fmt in fmts:
            base = ts_root / fmt
            for src_dir in sorted(p for p in base.glob("*") if p.is_dir()):
                if sources is None or src_dir.name in sources:
                    found |= {f.stem for f in src_dir.glob("*.nc" if fmt == "netcdf" else "*.csv")}
        ids = sorted(found)
        if not ids:
            raise DataError(f"caravan: no time-series files under {ts_root} for sources {sources or 'any'}")
    frames: dict[str, pd.DataFrame] = {}
    for b in tqdm(ids, progress=progress, desc="Caravan basins", leave=False):
        src = b.split("_")[0]
        for fmt in fmts:
            f = ts_root / fmt / src / (f"{b}.nc" if fmt == "netcdf" else f"{b}.csv")
            if f.is_file():
                break
        else:
            raise DataError(
                f"caravan: no time-series file for basin {b!r} under {ts_root}/{{{','.join(fmts)}}}/{src}"
            )
        if f.suffix == ".nc":
            ds1 = open_netcdf(f)
            tdim = "date" if "date" in ds1.dims else "time"
            if tdim not in ds1.dims:
                raise DataError(
                    f"{f}: no 'date' or 'time' dimension; dimensions are {sorted(map(str, ds1.dims))}"
                )
            df = ds1.to_dataframe()
            df.index = pd.DatetimeIndex(df.index, name="time")
        else:
            df = pd.read_csv(f)
            if "date" not in df.columns:
                raise DataError(f"{f}: no 'date' column; columns are {list(df.columns)}")
            df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("date")), name="time")
        if df.index.has_duplicates:
            raise DataError(f"{f}: duplicated dates, first {df.index[df.index.duplicated()][0].date()}")
        if variables is not None:
            absent = [v for v in variables if v not in df.columns]
            if absent:
                raise DataError(f"{f}: variables {absent} not found; available: {list(df.columns)}")
            df = df[list(variables)]
        frames[b] = df.select_dtypes("number")
    units = {c: _unit(c) for f in frames.values() for c in f.columns if _unit(c)}
    ds = frames_to_dataset(frames, dim="basin", units=units)
    if attributes is not False:
        table = read_caravan_attributes(root, ids)
        statics = select_attributes(table, None if attributes in (None, True) else attributes, "caravan")
        if "area" in table.columns:
            ds["area_km2"] = ("basin", table["area"].to_numpy(dtype="float64"), {"units": "km2"})
        for name, coord in (("gauge_lat", "lat"), ("gauge_lon", "lon")):
            if name in table.columns:
                ds = ds.assign_coords({coord: ("basin", table[name].to_numpy(dtype="float64"))})
        add_statics(ds, statics, skip=("area", "gauge_lat", "gauge_lon"))
    ds.attrs.update(source="Caravan", source_path=str(root))
    log.info("caravan: read %d basins, %d days", ds.sizes["basin"], ds.sizes["time"])
    return ds
