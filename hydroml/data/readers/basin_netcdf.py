"""Reader ``basin_netcdf``: per-basin (lumped) time series stored in NetCDF.

Files of this kind come in many shapes: a CF ``timeSeries`` file with an ``nstations`` (or ``nbasins``,
``region``...) dimension and a ``cf_role: timeseries_id`` variable holding the ids (Raven, WSC, HYDAT extracts),
variables on ``(time,)`` only although the file declares a station dimension of size 1, or a single series with no
station dimension at all (HYSETS, Matapedia discharge). This reader turns each into the layout of
``docs/DEVELOPING.md``: dynamic variables on ``(basin, time)``, static ones on ``(basin,)``, ``basin`` holding string
ids, ``lat``/``lon`` as coordinates on ``basin`` when the file has them, and missing values as NaN.

Missing values: ``_FillValue``/``missing_value`` are decoded by xarray; the non-standard attributes ``fill_value``
and ``FillValue`` (seen in WSC and Matapedia files) and the sentinels in ``missing_values`` are masked here. The
default sentinels are Raven's blank-data value ``-1.2345`` and ``-9999``.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hydroml.data.readers import register_reader
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")

#: Dimension names recognised as the basin/station dimension, in order of preference.
BASIN_DIM_NAMES = (
    "basin",
    "basins",
    "nbasins",
    "n_basins",
    "station",
    "stations",
    "nstations",
    "n_stations",
    "region",
    "gauge",
    "gauges",
    "gauge_id",
    "site",
    "id",
)
#: Variable names tried, in order, for the basin ids when no variable has ``cf_role: timeseries_id``.
ID_VAR_NAMES = (
    "basin",
    "basin_id",
    "station_id",
    "gauge_id",
    "station_name",
    "basin_name",
    "stations",
    "station",
    "id",
    "name",
)
#: Raven's blank-data value and the common -9999 code.
DEFAULT_SENTINELS = (-1.2345, -9999.0)
_NONSTANDARD_FILL_ATTRS = ("fill_value", "FillValue", "missing_value")


def _resolve_paths(path: str | Path) -> list[Path]:
    """Expand a file, a folder (all ``*.nc`` inside) or a glob pattern into a sorted list of files."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(p.glob("*.nc"))
    else:
        files = sorted(Path(f) for f in glob.glob(str(p)))
    if not files:
        raise DataError(
            f"no NetCDF file found at {str(path)!r} (expected a file, a folder of *.nc or a glob)"
        )
    return files


def open_netcdf(path: str | Path, chunks: Any = None, sentinels: Any = None) -> xr.Dataset:
    """Open one NetCDF file with CF decoding, standardised coordinates and non-CF fill values masked.

    Goes through :func:`hydroml.data.io.open_dataset`, so calendars, fill values and coordinate names are
    handled the same way everywhere.

    Parameters
    ----------
    path : str or Path
        The file.
    chunks : dict, "auto" or None
        ``None`` (default) loads the file into memory; otherwise dask chunks, and the data stay lazy.
    sentinels : float, sequence or mapping, optional
        Declared missing-value sentinels (masked to NaN); an undeclared ``-999``/``-9999`` is an error
        (:func:`hydroml.data.io.check_sentinels`).

    Returns
    -------
    xarray.Dataset
    """
    from hydroml.data.io import open_dataset

    if sentinels is not None and not isinstance(sentinels, Mapping | list | tuple):
        sentinels = [sentinels]
    ds = open_dataset(path, chunks=chunks, sentinels=sentinels)
    return ds.load() if chunks is None else ds


def mask_sentinels(
    ds: xr.Dataset, missing_values: float | Sequence[float] | Mapping[str, float | Sequence[float]] | None
) -> xr.Dataset:
    """Replace sentinel values by NaN in every floating-point variable.

    Parameters
    ----------
    ds : xarray.Dataset
        The data; also masks values named by the non-standard attributes ``fill_value``/``FillValue`` (and a
        ``missing_value`` left undecoded).
    missing_values : float, sequence of float, mapping or None
        Sentinels for every variable, or a mapping ``{variable: sentinel(s)}``.

    Returns
    -------
    xarray.Dataset
        A copy with the sentinels replaced by NaN; the count is logged per variable.
    """
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if not np.issubdtype(var.dtype, np.floating):
            continue
        if isinstance(missing_values, Mapping):
            sentinels = missing_values.get(name, ())
        else:
            sentinels = missing_values if missing_values is not None else ()
        sentinels = [sentinels] if np.isscalar(sentinels) else list(sentinels)
        for attr in _NONSTANDARD_FILL_ATTRS:
            if attr in var.attrs:
                try:
                    sentinels.append(float(var.attrs[attr]))
                except (TypeError, ValueError):
                    pass
        if not sentinels:
            continue
        # compare in the variable's own precision, so float32 copies of -1.2345 match too
        bad = var.isin(np.asarray(sentinels, dtype=var.dtype))
        if var.chunks is None:  # eager: count and skip when there is nothing to mask
            n = int(bad.sum())
            if not n:
                continue
            log.info("%s: %d values equal to a missing-value sentinel %s set to NaN", name, n, sentinels)
        out[name] = var.where(~bad)
        out[name].attrs = dict(var.attrs)
        for attr in _NONSTANDARD_FILL_ATTRS:
            out[name].attrs.pop(attr, None)
    return out


def _find_basin_dim(ds: xr.Dataset, basin_dim: str | None, source: str) -> str | None:
    if basin_dim is not None:
        if basin_dim not in ds.dims:
            raise DataError(
                f"{source}: basin dimension {basin_dim!r} not found; dimensions are {sorted(map(str, ds.dims))}"
            )
        return basin_dim
    found = [d for d in BASIN_DIM_NAMES if d in ds.dims]
    return found[0] if found else None


def _string_ids(values: Iterable) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, (float, np.floating)):
            out.append(str(int(v)) if float(v).is_integer() else str(v))
        else:
            out.append(str(v).strip())
    return out


def _find_ids(ds: xr.Dataset, dim: str, id_var: str | None, source: str) -> tuple[list[str], str | None]:
    if id_var is not None:
        if id_var not in ds.variables:
            raise DataError(
                f"{source}: id variable {id_var!r} not found; variables are {sorted(ds.variables)}"
            )
        return _string_ids(ds[id_var].values), id_var
    candidates = [
        n for n, v in ds.variables.items() if v.attrs.get("cf_role") == "timeseries_id" and v.dims == (dim,)
    ]
    candidates += [
        n for n in ID_VAR_NAMES if n in ds.variables and ds[n].dims == (dim,) and n not in candidates
    ]
    for name in candidates:
        ids = _string_ids(ds[name].values)
        if len(set(ids)) == len(ids):
            return ids, name
    return [str(i) for i in range(ds.sizes[dim])], None


def standardise_basin_dataset(
    ds: xr.Dataset,
    *,
    basin_dim: str | None = None,
    id_var: str | None = None,
    basin_id: str | None = None,
    source: str = "dataset",
) -> xr.Dataset:
    """Bring a per-basin dataset into the ``(basin, time)`` / ``(basin,)`` layout with string ids.

    Parameters
    ----------
    ds : xarray.Dataset
        Decoded data with a ``time`` dimension.
    basin_dim : str, optional
        Name of the basin/station dimension; found among :data:`BASIN_DIM_NAMES` when omitted. A file without
        one holds a single basin.
    id_var : str, optional
        Variable holding the ids; by default the one with ``cf_role: timeseries_id``, then the names in
        :data:`ID_VAR_NAMES`, else ``"0", "1", ...``.
    basin_id : str, optional
        Id of the single basin of a file without a basin dimension (default: ``source``'s file stem).
    source : str
        Name used in messages (usually the file).

    Returns
    -------
    xarray.Dataset
    """
    if "time" not in ds.dims:
        raise DataError(f"{source}: no 'time' dimension; dimensions are {sorted(map(str, ds.dims))}")
    dim = _find_basin_dim(ds, basin_dim, source)
    if dim is None:
        bid = basin_id if basin_id is not None else Path(source).stem
        ds = ds.expand_dims(basin=[str(bid)])
        dim = "basin"
        ids, used = [str(bid)], None
    else:
        ids, used = _find_ids(ds, dim, id_var, source)
        if basin_id is not None:
            if ds.sizes[dim] != 1:
                raise DataError(
                    f"{source}: basin_id given but the file holds {ds.sizes[dim]} basins along {dim!r}"
                )
            ids = [str(basin_id)]
    nb = len(ids)
    # variables on (time,) only in a file whose basin dimension has size 1 belong to that basin
    for name, var in list(ds.data_vars.items()):
        if dim not in var.dims and "time" in var.dims:
            if nb == 1:
                ds[name] = var.expand_dims({dim: 1})
            else:
                log.info("%s: %s has no %r dimension; kept as a time-only variable", source, name, dim)
    if used is not None:
        ds = ds.drop_vars(used)
    if dim != "basin":
        if "basin" in ds.variables:
            ds = ds.drop_vars("basin")
        ds = ds.rename({dim: "basin"})
    ds = ds.assign_coords(basin=np.array(ids, dtype=str))
    for short, names in (("lat", ("lat", "latitude")), ("lon", ("lon", "longitude"))):
        for n in names:
            if n in ds.variables and ds[n].dims == ("basin",):
                if n != short and short in ds.variables:
                    continue
                ds = ds.set_coords(n)
                if n != short:
                    ds = ds.rename({n: short})
                break
    order = [d for d in ("basin", "time") if d in ds.dims]
    ds = ds.transpose(*order, ...)
    return ds


@register_reader("basin_netcdf")
def read_basin_netcdf(
    path: str | Path,
    *,
    basin_dim: str | None = None,
    id_var: str | None = None,
    basin_id: str | None = None,
    variables: Sequence[str] | None = None,
    missing_values: float
    | Sequence[float]
    | Mapping[str, float | Sequence[float]]
    | None = DEFAULT_SENTINELS,
    chunks: Any = None,
    **options,
) -> xr.Dataset:
    """Read per-basin time series from one or many NetCDF files.

    Parameters
    ----------
    path : str or Path
        A file, a folder of ``*.nc`` files or a glob pattern; several files are joined along ``basin`` (outer
        join in time).
    basin_dim : str, optional
        Name of the basin/station dimension (found automatically among ``nstations``, ``nbasins``, ``region``,
        ``station``... when omitted; a file without one holds one basin).
    id_var : str, optional
        Variable with the basin ids (default: ``cf_role: timeseries_id``, then usual names).
    basin_id : str, optional
        Id for a file holding a single basin (default: the file stem). Only with a single file.
    variables : sequence of str, optional
        Keep only these data variables (error naming the missing ones, with those available).
    missing_values : float, sequence or mapping, optional
        Sentinels to mask as NaN (default ``(-1.2345, -9999.0)``; ``None`` or ``()`` for none).
    chunks : dict, "auto" or None
        ``None`` (default) reads the files into memory; dask chunks (e.g. ``{"time": 3650}``) keep them lazy,
        for many or long files.
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Dynamic variables on ``(basin, time)``, statics on ``(basin,)``, ``basin`` string ids.

    Examples
    --------
    >>> ds = read_basin_netcdf("canada_basins/salmon_river/Salmon-River-Near-Prince-George_meteo_daily.nc")
    ... # doctest: +SKIP
    >>> int(ds.qobs.isnull().sum())  # doctest: +SKIP
    1697
    """
    if options:
        raise DataError(f"basin_netcdf: unknown reader options {sorted(options)}")
    files = _resolve_paths(path)
    if basin_id is not None and len(files) > 1:
        raise DataError(
            f"basin_netcdf: basin_id={basin_id!r} given but {len(files)} files match {str(path)!r}"
        )
    parts = []
    for f in files:
        ds = open_netcdf(f, chunks=chunks, sentinels=missing_values)
        if variables is not None:
            missing = [v for v in variables if v not in ds.data_vars]
            if missing:
                raise DataError(
                    f"{f}: variables {missing} not found; available: {sorted(map(str, ds.data_vars))}"
                )
        ds = mask_sentinels(ds, missing_values)
        ds = standardise_basin_dataset(
            ds, basin_dim=basin_dim, id_var=id_var, basin_id=basin_id, source=str(f)
        )
        if variables is not None:
            ds = ds[list(variables)]
        ds.attrs.setdefault("source_file", str(f))
        parts.append(ds)
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p.basin.values for p in parts])
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise DataError(
            f"basin_netcdf: basin ids {sorted(set(dup))} appear in more than one file under {path}"
        )
    return xr.concat(
        parts, dim="basin", join="outer", data_vars="minimal", coords="minimal", compat="override"
    )
