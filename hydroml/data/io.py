"""Open NetCDF and zarr files into standardised, lazily loaded :class:`xarray.Dataset` objects.

:func:`open_dataset` takes one file, a list, a folder or a glob pattern and

- decodes CF conventions, including non-standard calendars (``noleap``, ``360_day``... as cftime dates);
- standardises coordinate names: ``lat``/``latitude``/``nav_lat`` (or a ``y`` in degrees north) -> ``lat``,
  ``lon``/``longitude``/``nav_lon`` (or an ``x`` in degrees east) -> ``lon``, ``t``/``date``/``valid_time`` ->
  ``time``; 2-D (curvilinear) ``lat``/``lon`` keep the grid dimensions, renamed ``(y, x)``;
- honours ``_FillValue`` and ``missing_value`` (also when declared twice with different types, as in mHM's
  ``et.nc``), the non-standard ``fill_value``/``FillValue`` attributes, and explicit sentinels such as
  ``-1.2345``, ``-999`` or ``-9999``;
- combines many files along time (files holding other variables on the same grid are merged), refusing
  overlapping files that disagree, and grids that do not match;
- stays lazy (dask chunks) when dask is installed.

Every problem raises :class:`~hydroml.exceptions.DataError` naming the file, the variable and what was found:
non-monotonic or duplicated time steps, a missing variable (with the list of those available), an empty period,
a truncated or corrupt file.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")

__all__ = [
    "open_dataset",
    "standardise_coords",
    "check_time",
    "select_time",
    "mask_sentinels",
    "expand_paths",
    "check_coords",
    "check_sentinels",
    "calendar_of",
    "COMMON_SENTINELS",
]

#: Values that, found exactly in float data without a declaration, are taken for undeclared missing-value
#: sentinels (:func:`check_sentinels`).
COMMON_SENTINELS = (-999.0, -9999.0, -99999.0, -999.99, -9999.99)
#: Above this many elements a variable is not scanned for undeclared sentinels when opened (it stays lazy; the
#: canonical step's physical-range check still applies).
_SCAN_LIMIT = 50_000_000

PathLike = str | os.PathLike

_TIME_NAMES = ("time", "Time", "TIME", "t", "date", "valid_time", "datetime", "times")
_LAT_NAMES = ("lat", "latitude", "nav_lat", "Lat", "LAT", "Latitude", "LATITUDE", "lat2d", "XLAT")
_LON_NAMES = ("lon", "longitude", "nav_lon", "Lon", "LON", "Longitude", "LONGITUDE", "lon2d", "XLONG")
_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen"}
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese", "degreee"}


# --------------------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------------------
def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (
        path.is_dir() and any((path / m).exists() for m in (".zmetadata", ".zgroup", "zarr.json"))
    )


def expand_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Expand a path, a folder (its ``*.nc`` files), a glob pattern or a list of them into sorted files.

    Raises
    ------
    FileNotFoundError
        If a path does not exist or a pattern matches nothing.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if any(c in s for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(s)))
            if not found:
                raise FileNotFoundError(f"no file matches {s!r}")
            out.extend(found)
            continue
        p = Path(s).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
        if p.is_dir() and not _is_zarr(p):
            found = sorted(p.glob("*.nc")) + sorted(q for q in p.glob("*.zarr") if q.is_dir())
            if not found:
                raise FileNotFoundError(f"folder {p} holds no *.nc or *.zarr files")
            out.extend(found)
        else:
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------------------
def _default_chunks(chunks: Any) -> Any:
    if isinstance(chunks, str) and chunks == "default":
        return "auto" if importlib.util.find_spec("dask") is not None else None
    return chunks


def _check_classic_size(path: Path) -> None:
    """Classic (CDF-1/2) NetCDF files that were cut short still open; check their data fit in the file."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError:
        return
    if magic not in (b"CDF\x01", b"CDF\x02"):
        return
    from scipy.io import netcdf_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = netcdf_file(path, mmap=True)
            f.close()
    except (ValueError, TypeError, OSError) as err:
        raise DataError(
            f"{path}: NetCDF file is truncated or corrupt (its header describes more data than the file holds: "
            f"{err})"
        ) from None


def _open_one(path: Path, chunks: Any, engine: str | None, decode_times: bool) -> xr.Dataset:
    kwargs: dict[str, Any] = {"chunks": chunks, "decode_times": decode_times}
    if engine:
        kwargs["engine"] = engine
    if _is_zarr(path):
        kwargs["engine"] = "zarr"
    else:
        _check_classic_size(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = xr.open_dataset(path, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError) as err:
            msg = str(err).splitlines()[0][:300]
            if "decode" in msg.lower() and "time" in msg.lower():
                raise DataError(f"{path}: cannot decode its time axis: {msg}") from err
            raise DataError(
                f"{path}: cannot be read as NetCDF or zarr (truncated or corrupt file?): {type(err).__name__}: {msg}"
            ) from err
    for w in caught:
        log.info("%s: %s", path.name, w.message)
    return ds


def mask_sentinels(
    ds: xr.Dataset, sentinels: Sequence[float] | Mapping[str, Sequence[float]] | None = None
) -> xr.Dataset:
    """Replace explicit missing-value sentinels by NaN in the data variables.

    Besides ``sentinels``, the non-CF attributes ``fill_value`` and ``FillValue`` (which the CF decoder ignores)
    are honoured.

    Parameters
    ----------
    ds : xarray.Dataset
    sentinels : list of float, or mapping of variable name to list of float, optional
        Values meaning "missing", e.g. ``[-1.2345]`` or ``{"qobs": [-1.2345]}``. A value is compared in the
        variable's own dtype, so float32 data match ``-1.2345`` exactly as stored.

    Returns
    -------
    xarray.Dataset
    """
    out = ds.copy()
    for name, da in ds.data_vars.items():
        if da.dtype.kind != "f":
            continue
        values: list[float] = []
        if isinstance(sentinels, Mapping):
            v = sentinels.get(str(name))
            values += list(v) if isinstance(v, list | tuple) else ([v] if v is not None else [])
        elif sentinels is not None:
            values += list(sentinels) if isinstance(sentinels, list | tuple) else [sentinels]
        for key in ("fill_value", "FillValue"):
            v = da.attrs.get(key)
            if isinstance(v, int | float | np.number) and np.isfinite(v):
                values.append(float(v))
        if not values:
            continue
        mask = None
        for v in dict.fromkeys(values):
            m = da == np.asarray(v).astype(da.dtype)
            mask = m if mask is None else (mask | m)
        if da.size <= _SCAN_LIMIT:
            n = int(mask.sum())
            if n:
                log.info("%s: %d value(s) equal to the declared sentinel(s) %s set to NaN", name, n, values)
        out[name] = da.where(~mask).assign_attrs(da.attrs)
        out[name].encoding = dict(da.encoding)
    return out


def _first_label(da: xr.DataArray, mask: np.ndarray) -> str:
    pos = np.argwhere(mask)[0]
    parts = []
    for dim, i in zip(da.dims, pos):
        if dim in da.coords and da[dim].ndim == 1:
            parts.append(f"{dim} {_fmt(da[dim].values[int(i)])}")
        else:
            parts.append(f"{dim} index {int(i)}")
    return ", ".join(parts)


def check_sentinels(
    ds: xr.Dataset, source: str = "", declared: Sequence[float] | Mapping[str, Sequence[float]] | None = None
) -> None:
    """Refuse float data holding an undeclared missing-value sentinel (``-999``, ``-9999``...).

    A value of :data:`COMMON_SENTINELS` found exactly in a data variable means a missing-value marker that no
    ``_FillValue`` / ``missing_value`` attribute (decoded to NaN before this runs) and no ``sentinels`` argument
    declares: read as a number it would train as a real value. Variables larger than 5e7 elements are not
    scanned (they stay lazy).

    Parameters
    ----------
    ds : xarray.Dataset
    source : str
        File name for the message.
    declared : list of float or mapping of variable to list, optional
        Sentinels already declared (masked), which are not reported.

    Raises
    ------
    DataError
        Naming the file, the variable, the value, the count, the first time stamp and how to declare it.
    """
    for name, da in ds.data_vars.items():
        if da.dtype.kind != "f" or da.size == 0 or da.size > _SCAN_LIMIT:
            continue
        if isinstance(declared, Mapping):
            dec = declared.get(str(name)) or []
        else:
            dec = declared or []
        dec = [float(v) for v in (dec if isinstance(dec, list | tuple) else [dec])]
        values = np.asarray(da.values)
        for v in COMMON_SENTINELS:
            if any(np.isclose(v, d) for d in dec):
                continue
            m = values == np.asarray(v).astype(da.dtype)
            n = int(m.sum())
            if n:
                raise DataError(
                    f"{source}: variable {name!r} holds {n} value(s) equal to {v:g} (first at "
                    f"{_first_label(da, m)}), a missing-value sentinel that no _FillValue / missing_value "
                    f"attribute declares; expected missing data as NaN or a declared sentinel: pass "
                    f"sentinels=[{v:g}] (catalog: reader_options sentinels / missing_values) to read it as NaN"
                )


def check_coords(ds: xr.Dataset, source: str = "") -> None:
    """Refuse latitudes outside [-90, 90] and longitudes outside [-360, 360] (NaN allowed).

    Raises
    ------
    DataError
        Naming the file, the coordinate, the count, the range found and the first bad position.
    """
    for name, lo, hi in (("lat", -90.0, 90.0), ("lon", -360.0, 360.0)):
        if name not in ds.variables or ds[name].dtype.kind not in "fiu":
            continue
        values = np.asarray(ds[name].values, dtype="float64")
        with np.errstate(invalid="ignore"):
            bad = (values < lo) | (values > hi) | np.isinf(values)
        n = int(bad.sum())
        if n:
            raise DataError(
                f"{source}: coordinate {name!r} has {n} value(s) outside [{lo:g}, {hi:g}] degrees (found "
                f"{np.nanmin(values[bad]):g}..{np.nanmax(values[bad]):g}, first at "
                f"{_first_label(ds[name], bad) if ds[name].ndim else 'its only value'})"
            )


def calendar_of(ds: xr.Dataset) -> str | None:
    """The calendar of ``ds.time``: ``"standard"`` for numpy datetimes, the cftime calendar otherwise."""
    if "time" not in ds.variables or ds["time"].size == 0:
        return None
    t = ds["time"]
    if t.dtype.kind == "M":
        return "standard"
    if t.dtype.kind == "O":
        cal = getattr(t.values.flat[0], "calendar", None)
        if cal in ("gregorian", "proleptic_gregorian"):
            return "standard"
        return str(cal) if cal else None
    return None


def _is_time_like(var: xr.DataArray) -> bool:
    if var.dtype.kind == "M":
        return True
    if var.dtype.kind == "O" and var.size:
        import cftime

        return isinstance(var.values.flat[0], cftime.datetime)
    return False


def _units_of(var: xr.DataArray) -> str:
    return str(var.attrs.get("units", "")).strip().lower().replace(" ", "")


def _find_coord(ds: xr.Dataset, names: Sequence[str], units: set[str], std: str, fallback: str) -> str | None:
    for n in names:
        if n in ds.variables:
            return n
    for n, v in ds.variables.items():
        if v.attrs.get("standard_name") == std or _units_of(v) in units:
            return str(n)
    if fallback in ds.variables and _units_of(ds[fallback]) in units:
        return fallback
    return None


def standardise_coords(ds: xr.Dataset, source: str = "") -> xr.Dataset:
    """Rename time and latitude/longitude coordinates to ``time``, ``lat``, ``lon``.

    1-D latitude/longitude dimension coordinates become the dimensions ``lat``/``lon``; 2-D (curvilinear)
    ones become coordinates ``lat(y, x)``/``lon(y, x)`` with their grid dimensions renamed ``y``, ``x`` (a 1-D
    projected coordinate on those dimensions is renamed with them). Station coordinates (``lat(station)``) are
    made coordinates named ``lat``/``lon``.

    Parameters
    ----------
    ds : xarray.Dataset
    source : str
        File name for messages.

    Returns
    -------
    xarray.Dataset
    """
    # time
    if "time" not in ds.variables:
        for n in _TIME_NAMES[1:]:
            if n in ds.variables and _is_time_like(ds[n]):
                ds = ds.rename({n: "time"})
                break
    lat = _find_coord(ds, _LAT_NAMES, _LAT_UNITS, "latitude", "y")
    lon = _find_coord(ds, _LON_NAMES, _LON_UNITS, "longitude", "x")
    if lat is None or lon is None:
        return ds
    if ds[lat].ndim != ds[lon].ndim:
        raise DataError(
            f"{source}: latitude {lat!r} has dimensions {ds[lat].dims} but longitude {lon!r} has {ds[lon].dims}"
        )
    renames: dict[str, str] = {}
    if ds[lat].ndim == 1 and ds[lat].dims == (lat,) and ds[lon].dims == (lon,):
        # regular grid: dimension coordinates
        renames.update({lat: "lat", lon: "lon"})
        ds = _safe_rename(ds, renames, source)
    elif ds[lat].ndim == 2:
        ydim, xdim = ds[lat].dims
        if ds[lon].dims != (ydim, xdim):
            raise DataError(
                f"{source}: 2-D latitude {lat!r} has dimensions {ds[lat].dims} but longitude {lon!r} has "
                f"{ds[lon].dims}"
            )
        renames.update({lat: "lat", lon: "lon"})
        for old, new in ((ydim, "y"), (xdim, "x")):
            if old != new:
                renames[old] = new
        ds = _safe_rename(ds, renames, source)
    else:
        ds = _safe_rename(ds, {lat: "lat", lon: "lon"}, source)
    return ds.set_coords([c for c in ("lat", "lon") if c in ds.data_vars])


def _safe_rename(ds: xr.Dataset, renames: dict[str, str], source: str) -> xr.Dataset:
    names = set(map(str, ds.variables)) | set(map(str, ds.dims))
    todo = {}
    for old, new in renames.items():
        if old == new:
            continue
        if new in names and new not in renames:
            log.debug("%s: cannot rename %r to %r, which exists; left as is", source, old, new)
            continue
        todo[old] = new
    if not todo:
        return ds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = ds.rename(todo)
    # a renamed 1-D variable along its renamed dimension becomes the dimension coordinate
    for new in todo.values():
        if new in out.dims and new in out.variables and out[new].dims == (new,) and new not in out.indexes:
            out = out.set_coords(new).set_xindex(new)
    return out


def check_time(ds: xr.Dataset, source: str = "") -> None:
    """Raise :class:`DataError` if the ``time`` axis has duplicated or decreasing steps.

    Parameters
    ----------
    ds : xarray.Dataset
    source : str
        File name for the message.
    """
    if "time" not in ds.dims or ds.sizes["time"] < 2:
        return
    values = ds["time"].values
    where = f"{source}: " if source else ""
    idx = ds.indexes.get("time")
    if idx is not None and idx.has_duplicates:
        pos = int(np.flatnonzero(idx.duplicated())[0])
        first = int(np.flatnonzero(idx == idx[pos])[0])
        raise DataError(
            f"{where}duplicated time step {_fmt(values[pos])} (at positions {first} and {pos}); time steps must be "
            "unique"
        )
    bad = np.flatnonzero(np.asarray(values[1:] < values[:-1]))
    if bad.size:
        i = int(bad[0]) + 1
        raise DataError(
            f"{where}time is not monotonically increasing: step {i} is {_fmt(values[i])}, after "
            f"{_fmt(values[i - 1])} ({bad.size} decrease(s) in all)"
        )


def _val(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _fmt(t: Any) -> str:
    if isinstance(t, np.datetime64):
        return str(np.datetime_as_string(t, unit="s")).replace("T00:00:00", "")
    s = str(t)
    return s.replace(" 00:00:00", "")


def select_time(ds: xr.Dataset, time: Any, source: str = "") -> xr.Dataset:
    """Select a period; raise :class:`DataError` if nothing is left.

    Parameters
    ----------
    ds : xarray.Dataset
    time : slice or (start, end) or None
        Inclusive bounds as strings (``"1990-01-01"``) or dates.
    source : str
        Name for the message.

    Returns
    -------
    xarray.Dataset
    """
    if time is None:
        return ds
    if "time" not in ds.dims:
        raise DataError(f"{source}: a period was requested but the data have no time dimension")
    sl = time if isinstance(time, slice) else slice(*time)
    out = ds.sel(time=sl)
    if out.sizes["time"] == 0:
        have = (
            f"{_fmt(ds.time.values[0])}..{_fmt(ds.time.values[-1])}" if ds.sizes["time"] else "no time steps"
        )
        raise DataError(f"{source}: empty period: requested {sl.start}..{sl.stop}, but the data cover {have}")
    return out


# --------------------------------------------------------------------------------------------------------
# many files
# --------------------------------------------------------------------------------------------------------
def _grid_signature(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    return {str(k): v for k, v in ds.coords.items() if "time" not in v.dims and k != "time"}


def _check_same_grid(a: xr.Dataset, b: xr.Dataset, fa: str, fb: str) -> None:
    ga, gb = _grid_signature(a), _grid_signature(b)
    for dim in set(a.dims) & set(b.dims):
        if dim != "time" and a.sizes[dim] != b.sizes[dim]:
            raise DataError(
                f"grids do not match: dimension {dim!r} has size {a.sizes[dim]} in {fa} but {b.sizes[dim]} in {fb}"
            )
    for name in sorted(set(ga) & set(gb)):
        va, vb = ga[name], gb[name]
        if va.shape != vb.shape:
            raise DataError(
                f"grids do not match: coordinate {name!r} has shape {va.shape} in {fa} but {vb.shape} in {fb}"
            )
        x, y = np.asarray(va.values), np.asarray(vb.values)
        if x.dtype.kind in "fiu" and y.dtype.kind in "fiu":
            same = np.allclose(
                x,
                y,
                rtol=0,
                atol=1e-6 * max(1.0, float(np.nanmax(np.abs(x))) if x.size else 1.0),
                equal_nan=True,
            )
        else:
            same = np.array_equal(x, y)
        if not same:
            diff = np.flatnonzero(~np.isclose(x, y, equal_nan=True)) if x.dtype.kind in "fiu" else [0]
            i = int(diff[0]) if len(diff) else 0
            raise DataError(
                f"grids do not match: coordinate {name!r} differs between {fa} and {fb} "
                f"(first at flat index {i}: {_val(x.ravel()[i])!r} vs {_val(y.ravel()[i])!r})"
            )


def _compare_overlap(
    prev: xr.Dataset, ds: xr.Dataset, overlap: np.ndarray, prev_name: str, name_b: str
) -> None:
    for name in ds.data_vars:
        if name not in prev.data_vars or "time" not in ds[name].dims:
            continue
        a = np.asarray(prev[name].sel(time=overlap).values)
        b = np.asarray(ds[name].sel(time=overlap).values)
        eq = np.isclose(a, b, rtol=1e-6, atol=0, equal_nan=True) if a.dtype.kind in "fc" else a == b
        if not np.all(eq):
            pos = np.argwhere(~eq)[0]
            t = overlap[pos[ds[name].dims.index("time")]]
            raise DataError(
                f"overlapping files disagree: {prev_name} and {name_b} both hold variable {name!r} at {_fmt(t)} "
                f"but with different values ({_val(a[tuple(pos)])!r} vs {_val(b[tuple(pos)])!r}); "
                f"{overlap.size} overlapping time step(s)"
            )


def _combine_time(parts: list[tuple[Path, xr.Dataset]]) -> xr.Dataset:
    """Concatenate datasets holding the same variables along time.

    Time steps present in several files must hold the same values (NaN equals NaN); the duplicates are dropped.
    Files may come in any order and interleave; the result is sorted by time.
    """
    if len(parts) == 1:
        return parts[0][1]
    no_time = [p.name for p, d in parts if "time" not in d.dims or d.sizes["time"] == 0]
    if no_time:
        raise DataError(
            f"files {no_time} hold the same variables as other files but no time steps to join them along"
        )
    parts = sorted(parts, key=lambda p: p[1]["time"].values[0])
    first_path, first = parts[0]
    for path, ds in parts[1:]:
        _check_same_grid(first, ds, first_path.name, path.name)
    keep: list[tuple[Path, xr.Dataset]] = []
    for path, ds in parts:
        times = ds["time"].values
        for prev_path, prev in keep:
            pt = prev["time"].values
            if times[0] > pt[-1] or times[-1] < pt[0]:
                continue
            overlap = np.intersect1d(pt, times)
            if overlap.size == 0:
                continue
            _compare_overlap(prev, ds, overlap, prev_path.name, path.name)
            log.info(
                "%s overlaps %s on %d time step(s) with identical values; the duplicates are dropped",
                path.name,
                prev_path.name,
                overlap.size,
            )
            ds = ds.isel(time=np.flatnonzero(~np.isin(ds["time"].values, overlap)))
            times = ds["time"].values
            if times.size == 0:
                break
        if ds.sizes["time"]:
            keep.append((path, ds))
    out = xr.concat(
        [d for _, d in keep],
        dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
    )
    if not out.indexes["time"].is_monotonic_increasing:
        log.info("files interleave in time; the joined data are sorted by time")
        out = out.sortby("time")
    return out


def open_dataset(
    paths: PathLike | Iterable[PathLike],
    *,
    variables: Sequence[str] | None = None,
    time: slice | tuple | None = None,
    chunks: Any = "default",
    sentinels: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    rename: Mapping[str, str] | None = None,
    latlon_file: PathLike | None = None,
    engine: str | None = None,
    decode_times: bool = True,
    progress: bool | None = None,
    check: bool = True,
) -> xr.Dataset:
    """Open one or many NetCDF / zarr files as one standardised dataset.

    Parameters
    ----------
    paths : path, glob pattern, folder, or list of them
        Files with the same variables are concatenated along ``time`` (after sorting by their first time
        step); files with other variables on the same grid are merged.
    variables : list of str, optional
        Variables to keep (source names). A missing one raises :class:`DataError` listing those available.
    time : slice or (start, end), optional
        Period to select (inclusive). An empty selection raises :class:`DataError`.
    chunks : dict, int, "auto", None or "default"
        Dask chunks; ``"default"`` is ``"auto"`` (dask-sized multiples of the files' own chunks) when dask is
        installed, and eager loading (None) otherwise.
    sentinels : list of float or mapping of variable to list, optional
        Explicit missing-value markers (e.g. ``[-1.2345]``, ``[-999, -9999]``), replaced by NaN.
    rename : mapping, optional
        Extra renames of variables or dimensions (e.g. ``{"location": "basin"}``), applied after the
        standard ones.
    latlon_file : path, optional
        A file whose 2-D ``lat``/``lon`` replace those of the data (for files with placeholder coordinates,
        such as mHM's meteo grids). Its grid must have the same shape.
    engine : str, optional
        xarray backend, if it cannot be guessed.
    decode_times : bool
        Decode CF times (cftime for non-standard calendars).
    progress : bool, optional
        Progress bar over the files when there are more than 10 (default: ``HYDROML_PROGRESS``).
    check : bool
        Refuse latitudes/longitudes out of range (:func:`check_coords`) and undeclared missing-value sentinels
        such as ``-999`` in the data (:func:`check_sentinels`; declare them with ``sentinels``).

    Returns
    -------
    xarray.Dataset
        With ``time``, ``lat``, ``lon`` (1-D, or 2-D on ``(y, x)``) and missing values as NaN.

    Raises
    ------
    FileNotFoundError
        A path does not exist.
    DataError
        Corrupt or truncated file, bad time axis, overlapping files that disagree, grids that do not match,
        files with different calendars, missing variable, empty period, latitudes out of range, undeclared
        sentinels.

    Examples
    --------
    >>> ds = open_dataset("data/era5_*.nc", variables=["tp"], time=("2000-01-01", "2000-12-31"))  # doctest: +SKIP
    """
    files = expand_paths(paths)
    chunks = _default_chunks(chunks)
    opened: list[tuple[Path, xr.Dataset]] = []
    available: set[str] = set()
    from hydroml._progress import tqdm

    bar = tqdm(files, progress=progress if len(files) > 10 else False, desc="opening files", unit="file")
    for f in bar:
        ds = _open_one(f, chunks, engine, decode_times)
        ds = standardise_coords(ds, source=str(f))
        # small non-time coordinates are loaded eagerly: they are compared and indexed often
        small = [str(c) for c, v in ds.coords.items() if "time" not in v.dims and v.size <= 10_000_000]
        if small:
            ds = ds.assign_coords({c: ds[c].compute() for c in small})
        if rename:
            ds = _safe_rename(
                ds, {k: v for k, v in rename.items() if k in ds.variables or k in ds.dims}, str(f)
            )
        check_time(ds, source=str(f))
        if latlon_file is not None:
            ds = _replace_latlon(ds, Path(latlon_file), source=str(f))
        if check:
            check_coords(ds, source=str(f))
        available |= set(map(str, ds.data_vars))
        if variables is not None:
            keep = [v for v in variables if v in ds.data_vars]
            if not keep:
                log.debug("%s holds none of %s; skipped", f, list(variables))
                continue
            ds = ds[keep]
        opened.append((f, ds))
    where = str(files[0]) if len(files) == 1 else f"{len(files)} files ({files[0].name}, ...)"
    calendars = {f.name: calendar_of(d) for f, d in opened}
    if len({c for c in calendars.values() if c is not None}) > 1:
        raise DataError(
            "files with different calendars cannot be opened together: "
            + ", ".join(f"{k}: {v}" for k, v in calendars.items())
            + "; expected one calendar (convert with Dataset.convert_calendar first)"
        )
    if variables is not None:
        missing = [v for v in variables if v not in available]
        if missing:
            raise DataError(
                f"{where}: variable(s) {missing} not found; available: {', '.join(sorted(available)) or 'none'}"
            )
    # group files by the variables they hold; concatenate each group along time, then merge the groups
    groups: dict[frozenset, list[tuple[Path, xr.Dataset]]] = {}
    for f, ds in opened:
        groups.setdefault(frozenset(map(str, ds.data_vars)), []).append((f, ds))
    combined = [(parts[0][0], _combine_time(parts)) for parts in groups.values()]
    if len(combined) == 1:
        out = combined[0][1]
    else:
        ref_path, ref = combined[0]
        from hydroml.data.variables import infer_time_step

        steps = {p.name: infer_time_step(d) for p, d in combined}
        if len({v for v in steps.values() if v is not None}) > 1:
            raise DataError(
                "files with different variables have different time steps and cannot be merged: "
                + ", ".join(f"{k}: {v}" for k, v in steps.items())
            )
        grid = _grid_signature(ref)
        parts = [ref]
        for path, ds in combined[1:]:
            _check_same_grid(ref, ds, ref_path.name, path.name)
            parts.append(ds.assign_coords({k: v for k, v in grid.items() if k in ds.coords}))
        names = [set(map(str, d.data_vars)) for d in parts]
        shared = set().union(*[a & b for i, a in enumerate(names) for b in names[i + 1 :]])
        try:
            out = xr.merge(
                parts,
                join="outer",
                compat="no_conflicts" if shared else "override",
                combine_attrs="drop_conflicts",
            )
        except xr.MergeError as err:
            raise DataError(
                f"overlapping files disagree: variable(s) {sorted(shared)} appear in several files with "
                f"different values on common time steps ({', '.join(p.name for p, _ in combined)}): "
                f"{str(err).splitlines()[0][:200]}"
            ) from None
    if sentinels is not None or any(
        k in v.attrs for v in out.data_vars.values() for k in ("fill_value", "FillValue")
    ):
        out = mask_sentinels(out, sentinels)
    if check:
        check_sentinels(out, source=where, declared=sentinels)
    out = select_time(out, time, source=where)
    out.attrs.setdefault("source_files", ", ".join(str(f) for f in files[:20]))
    return out


def _replace_latlon(ds: xr.Dataset, path: Path, source: str = "") -> xr.Dataset:
    """Replace a grid's 2-D lat/lon (and its 1-D projected y/x) by those of the lat/lon file ``path``."""
    ll = standardise_coords(_open_one(path, None, None, False), source=str(path))
    if "lat" not in ll.variables or "lon" not in ll.variables:
        raise DataError(
            f"{path}: no latitude/longitude found; variables: {', '.join(map(str, ll.variables))}"
        )
    lat, lon = ll["lat"], ll["lon"]
    if lat.ndim != 2:
        raise DataError(f"{path}: expected 2-D lat/lon, found dimensions {lat.dims}")
    if "y" not in ds.dims or "x" not in ds.dims:
        raise DataError(
            f"grids do not match: {path} has 2-D lat/lon but {source} has dimensions {dict(ds.sizes)}"
        )
    if (ds.sizes["y"], ds.sizes["x"]) != lat.shape:
        raise DataError(
            f"grids do not match: {path} has lat/lon of shape {lat.shape} but the grid (y, x) of {source} is "
            f"{(ds.sizes['y'], ds.sizes['x'])}"
        )
    out = ds.drop_vars([c for c in ("lat", "lon", "y", "x") if c in ds.variables])
    coords = {
        "lat": (("y", "x"), np.asarray(lat.values, dtype="float64"), dict(lat.attrs)),
        "lon": (("y", "x"), np.asarray(lon.values, dtype="float64"), dict(lon.attrs)),
    }
    for dim in ("y", "x"):
        if dim in ll.variables and ll[dim].dims == (dim,):
            coords[dim] = (dim, np.asarray(ll[dim].values, dtype="float64"), dict(ll[dim].attrs))
    out = out.assign_coords(coords)
    out.attrs["coordinates_from"] = str(path)
    return out
