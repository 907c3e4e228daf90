"""mHM input layouts: gauge files (reader ``mhm_gauge``), meteo grids (reader ``mhm_grid``) and morphology rasters.

mHM (the mesoscale Hydrologic Model, UFZ) keeps its inputs as

- gauge files ``input/gauge/<id>.txt``: 5 header lines (``<id>:<name>``, ``nodata <value>``, ``n <steps per
  day>``, ``start YYYY MM DD HH MM``, ``end YYYY MM DD HH MM``), then rows ``YYYY MM DD HH MM value`` with discharge
  in m3 s-1;
- meteo grids ``input/meteo/<var>[/<var>].nc`` on the level-1 grid, whose ``lat``/``lon`` may be placeholders
  (the Moselle test domain's ``tmin``, ``ssrd``... files) or stored in the wrong row order (its ``pre``, ``pet``,
  ``tavg`` files carry the right values upside down with respect to their data and ``yc`` coordinate, which also
  gives cell corners, not centres). :func:`open_mhm_grid` therefore takes the coordinates from the lat/lon file
  ``input/latlon/latlon_1.nc`` (cell centres ``xc``/``yc`` in the projection and the matching 2-D ``lat``/``lon``);
- morphology rasters ``input/morph/{dem,fdir,facc,idgauges}.asc`` (ESRI ASCII grids, 500 m in the test domain;
  ``fdir`` in the ESRI D8 code, ``facc`` in upstream cells, excluding the cell itself).
"""

from __future__ import annotations

import glob
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hydroml.data.readers import register_reader
from hydroml.data.readers.basin_netcdf import open_netcdf
from hydroml.data.readers.station import frames_to_dataset
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")


def read_mhm_gauge_file(path: str | Path) -> tuple[str, pd.Series]:
    """Read one mHM gauge file.

    Parameters
    ----------
    path : str or Path
        The file (e.g. ``input/gauge/00398.txt``).

    Returns
    -------
    gauge_id : str
        The id before ``:`` in the first header line, without leading zeros (``"398"``), as mHM's namelist
        and ``idgauges`` raster write it.
    series : pandas.Series
        Discharge (m3 s-1) indexed by time, nodata as NaN.
    """
    path = Path(path)
    with open(path) as fh:
        head = [fh.readline() for _ in range(5)]
    try:
        gid = re.match(r"\s*([^\s:]+)", head[0]).group(1)
        nodata = float(head[1].split()[1])
        per_day = int(head[2].split()[1])
        start = pd.Timestamp(*map(int, head[3].split()[1:6]))
        end = pd.Timestamp(*map(int, head[4].split()[1:6]))
    except (IndexError, ValueError) as err:
        raise DataError(
            f"{path}: expected the 5 mHM gauge header lines (id, nodata, n, start, end), found {head!r}"
        ) from err
    df = pd.read_csv(path, sep=r"\s+", skiprows=5, header=None, names=["y", "m", "d", "H", "M", "value"])
    time = pd.to_datetime(
        {"year": df["y"], "month": df["m"], "day": df["d"], "hour": df["H"], "minute": df["M"]}
    )
    values = df["value"].astype("float64").where(df["value"] != nodata)
    series = pd.Series(values.to_numpy(), index=pd.DatetimeIndex(time, name="time"), name="q")
    if series.index.has_duplicates:
        raise DataError(f"{path}: duplicated time steps, first {series.index[series.index.duplicated()][0]}")
    if len(series) and (series.index[0] != start or series.index[-1] != end):
        raise DataError(f"{path}: header says {start}..{end}, rows run {series.index[0]}..{series.index[-1]}")
    expected = int(round((end - start) / pd.Timedelta(days=1) * per_day)) + 1
    if len(series) != expected:
        raise DataError(
            f"{path}: header implies {expected} steps ({per_day} per day), found {len(series)} rows"
        )
    return (str(int(gid)) if gid.isdigit() else gid), series


@register_reader("mhm_gauge")
def read_mhm_gauge(path: str | Path, *, dim: str = "basin", **options) -> xr.Dataset:
    """Read mHM gauge files into a ``(basin, time)`` Dataset.

    Parameters
    ----------
    path : str or Path
        A gauge file, a folder of them, or a glob (``input/gauge/*.txt``).
    dim : str
        Name of the gauge dimension (``basin``).
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        ``q`` (m3 s-1) on ``(basin, time)``, basin ids without leading zeros, ``-9999`` (the file's nodata) NaN.
    """
    if options:
        raise DataError(f"mhm_gauge: unknown reader options {sorted(options)}")
    p = Path(path)
    files = (
        sorted(p.glob("*.txt"))
        if p.is_dir()
        else ([p] if p.is_file() else sorted(map(Path, glob.glob(str(p)))))
    )
    if not files:
        raise DataError(f"mhm_gauge: no gauge file at {str(path)!r}")
    frames = {}
    for f in files:
        gid, series = read_mhm_gauge_file(f)
        if gid in frames:
            raise DataError(f"mhm_gauge: gauge {gid} appears twice (second time in {f})")
        frames[gid] = series.to_frame()
    ds = frames_to_dataset(frames, dim=dim, units={"q": "m3 s-1"})
    ds["q"].attrs["long_name"] = "observed discharge"
    ds.attrs["source_path"] = str(path)
    return ds


def read_esri_ascii(path: str | Path, *, crs: str | None = None, name: str | None = None) -> xr.DataArray:
    """Read an ESRI ASCII grid (``ncols``, ``nrows``, ``xllcorner``/``xllcenter``, ``yll...``, ``cellsize``).

    Parameters
    ----------
    path : str or Path
        The ``.asc`` file.
    crs : str, optional
        Coordinate reference system of ``x``/``y`` (stored in ``attrs["crs"]``), e.g. ``"EPSG:3035"``.
    name : str, optional
        Name of the DataArray (default: the file stem).

    Returns
    -------
    xarray.DataArray
        Values on ``(y, x)`` (north up, ``y`` decreasing) with cell-centre coordinates, ``NODATA_value`` as NaN.
    """
    path = Path(path)
    header = {}
    with open(path) as fh:
        for _ in range(6):
            pos = fh.tell()
            parts = fh.readline().split()
            if len(parts) != 2 or parts[0][0].isdigit() or parts[0][0] == "-":
                fh.seek(pos)
                break
            header[parts[0].lower()] = float(parts[1])
        values = pd.read_csv(fh, sep=r"\s+", header=None, dtype="float64").to_numpy()
    try:
        ncols, nrows, size = int(header["ncols"]), int(header["nrows"]), header["cellsize"]
    except KeyError as err:
        raise DataError(f"{path}: ESRI ASCII header lacks {err.args[0]!r}; found {sorted(header)}") from err
    if values.shape != (nrows, ncols):
        raise DataError(
            f"{path}: header says {nrows} x {ncols} cells, found {values.shape[0]} x {values.shape[1]}"
        )
    x0 = header["xllcorner"] + size / 2 if "xllcorner" in header else header["xllcenter"]
    y0 = header["yllcorner"] + size / 2 if "yllcorner" in header else header["yllcenter"]
    if "nodata_value" in header:
        values[values == header["nodata_value"]] = np.nan
    x = x0 + size * np.arange(ncols)
    y = y0 + size * np.arange(nrows)[::-1]
    attrs = {"cellsize": size, "source_file": str(path)}
    if crs:
        attrs["crs"] = crs
    return xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name=name or path.stem, attrs=attrs)


def _mhm_root(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / "input" / "latlon").is_dir():
            return parent
    return None


def _crs_of(latlon: xr.Dataset) -> str | None:
    proj = latlon.attrs.get("projection")
    return str(proj).upper() if proj else None


def open_mhm_morph(root: str | Path, *, crs: str | None = None) -> xr.Dataset:
    """Open the mHM morphology rasters (``input/morph/*.asc``) as one Dataset on ``(y, x)``.

    Parameters
    ----------
    root : str or Path
        The mHM project folder (holding ``input/morph``) or the morph folder itself.
    crs : str, optional
        CRS of the rasters; default from the ``projection`` attribute of ``input/latlon/latlon_1.nc``.

    Returns
    -------
    xarray.Dataset
        One variable per ``.asc`` file (``dem``, ``fdir``, ``facc``, ``idgauges``...), NaN outside the domain.
    """
    root = Path(root)
    morph = root if list(root.glob("*.asc")) else root / "input" / "morph"
    files = sorted(morph.glob("*.asc"))
    if not files:
        raise DataError(f"no ESRI ASCII (*.asc) raster in {morph}")
    if crs is None:
        project = _mhm_root(morph)
        ll = project / "input" / "latlon" / "latlon_1.nc" if project else None
        if ll is not None and ll.is_file():
            with xr.open_dataset(ll) as d:
                crs = _crs_of(d)
    arrays = [read_esri_ascii(f, crs=crs) for f in files]
    for a in arrays[1:]:
        if a.shape != arrays[0].shape or not (
            np.allclose(a.x, arrays[0].x) and np.allclose(a.y, arrays[0].y)
        ):
            raise DataError(
                f"{a.attrs['source_file']}: raster does not match {arrays[0].attrs['source_file']}"
            )
    ds = xr.Dataset({a.name: a for a in arrays})
    for a in arrays:
        ds[a.name].attrs = dict(a.attrs)
    if crs:
        ds.attrs["crs"] = crs
    return ds


@register_reader("mhm_grid")
def open_mhm_grid(
    path: str | Path, *, latlon: str | Path | None = None, level: str = "1", **options
) -> xr.Dataset:
    """Open an mHM gridded input (meteo or optional data) with the true cell coordinates.

    Parameters
    ----------
    path : str or Path
        A NetCDF file on the mHM level-1 grid (``pre.nc``, ``tmin.nc``, ``et.nc``...).
    latlon : str or Path, optional
        The mHM lat/lon file; default ``input/latlon/latlon_1.nc`` of the project holding ``path``.
    level : {"1", "11", "0"}
        Grid level of the file: ``"1"`` uses ``xc``/``yc``/``lat``/``lon`` of the lat/lon file, ``"11"`` the
        ``*_l11`` variables, ``"0"`` the ``*_l0`` ones.
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Data on ``(time, y, x)``; ``x``/``y`` are the projected cell centres, ``lat``/``lon`` 2-D coordinates
        from the lat/lon file (the file's own ``lat``/``lon``, ``xc``/``yc`` are replaced), ``attrs["crs"]`` the
        projection. The file's rows must be north first (as in the Moselle domain); a grid whose shape differs
        from the lat/lon file's raises :class:`~hydroml.exceptions.DataError`.
    """
    if options:
        raise DataError(f"mhm_grid: unknown reader options {sorted(options)}")
    path = Path(path)
    if latlon is None:
        project = _mhm_root(path.parent)
        if project is None:
            raise DataError(
                f"{path}: no input/latlon/ folder above it; pass latlon= (the mHM latlon_1.nc file)"
            )
        latlon = project / "input" / "latlon" / "latlon_1.nc"
    with xr.open_dataset(latlon) as ll:
        ll = ll.load()
    suffix = {"1": "", "11": "_l11", "0": "_l0"}.get(str(level))
    if suffix is None:
        raise DataError(f"mhm_grid: level must be '1', '11' or '0', got {level!r}")
    lat, lon = ll[f"lat{suffix}"], ll[f"lon{suffix}"]
    ydim, xdim = lat.dims
    ds = open_netcdf(path)
    spatial = [d for d in ds.dims if d != "time" and d not in ("nv", "bnds")]
    grid_vars = [v for v in ds.data_vars if len(ds[v].dims) >= 2]
    shape = (ll.sizes[ydim], ll.sizes[xdim])
    candidates = [v for v in grid_vars if tuple(ds.sizes[d] for d in ds[v].dims[-2:]) == shape]
    candidates.sort(key=lambda v: "time" not in ds[v].dims)
    if not candidates:
        raise DataError(
            f"{path}: no variable on a grid of {shape[0]} x {shape[1]} cells like {latlon}; dimensions are "
            f"{ {d: ds.sizes[d] for d in spatial} }"
        )
    rename = dict(zip(ds[candidates[0]].dims[-2:], ("y", "x")))
    drop = [n for n in ("lat", "lon", "latitude", "longitude", *rename) if n in ds.variables]
    ds = ds.drop_vars(drop)
    # other spatial duplicates (e.g. sm.nc's lat_2/lon_2 on northing/easting) are dropped with their dims
    extra = [v for v in ds.data_vars if any(d in spatial and d not in rename for d in ds[v].dims)]
    if extra:
        log.info("%s: dropping %s (on dimensions other than the grid's)", path.name, extra)
        ds = ds.drop_vars(extra)
    leftover = [d for d in spatial if d not in rename and d in ds.dims]
    if leftover:
        ds = ds.drop_dims(leftover)
    ds = ds.rename_dims({k: v for k, v in rename.items() if k != v})
    ds = ds.assign_coords(
        y=("y", ll[ydim].values.astype("float64")),
        x=("x", ll[xdim].values.astype("float64")),
        lat=(("y", "x"), lat.values, {"units": "degrees_north", "standard_name": "latitude"}),
        lon=(("y", "x"), lon.values, {"units": "degrees_east", "standard_name": "longitude"}),
    )
    crs = _crs_of(ll)
    if crs:
        ds.attrs["crs"] = crs
    ds.attrs["coordinates_from"] = str(latlon)
    return ds
