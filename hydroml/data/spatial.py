"""Grid to basin: area-weighted basin averages with weights computed once as a sparse matrix.

A basin is described on the forcing grid by the fraction of each cell that lies inside it, given

(a) as a mask (boolean or fractional DataArray on the grid),
(b) as a GeoJSON polygon (each cell polygon is intersected with the basin polygon; fractions are area ratios), or
(c) as a gauge plus a D8 flow-direction raster: the upstream cells of the gauge are delineated on the raster,
    which may be finer than the forcing grid (the fraction of a coarse cell is then the area of the basin's fine
    cells inside it over the coarse cell's area).

:func:`basin_weights` turns these into a :class:`BasinWeights` holding a ``scipy.sparse`` matrix ``W[basin, cell] =
fraction x cell weight``, where the cell weight is the cell's true area (``method="area"``) or the cosine of its
latitude (``method="coslat"``). :meth:`BasinWeights.aggregate` then computes every variable at every time step with
one sparse product over the whole ``(time, cell)`` array (chunk by chunk for dask arrays):

.. math::

    \\bar{x}_{b,t} = \\frac{\\sum_c W_{bc}\\, x_{c,t}\\, v_{c,t}}{\\sum_c W_{bc}\\, v_{c,t}}

with :math:`v_{c,t} = 1` where :math:`x_{c,t}` is valid and 0 where it is NaN: missing cells are dropped and the
weights renormalised over the valid cells of each time step. A basin whose valid weight falls below
``min_valid_fraction`` of its total weight gets NaN for that step.

Cell areas. On a geographic grid the area of a cell with corners :math:`(\\lambda_k, \\varphi_k)` is the planar
area of its corners in the cylindrical equal-area projection :math:`(R\\lambda, R\\sin\\beta)` of the WGS84 ellipsoid,
where :math:`\\beta` is the authalic latitude and :math:`R` the authalic radius (:data:`EARTH_RADIUS_KM`); this is
exact on the ellipsoid for cells bounded by meridians and parallels
(:math:`R^2\\,\\Delta\\lambda\\,(\\sin\\beta_2 - \\sin\\beta_1)`, Snyder 1987) and accurate to well under 1 % for
small curvilinear cells. Corners come from 1-D cell bounds
(CF ``bounds`` attribute, else midpoints between centres) or, for curvilinear 2-D ``lat``/``lon``, from the mean of
the four surrounding centres (extrapolated at the edges). On a grid in an equal-area projection (``crs`` attribute,
e.g. EPSG:3035 of the mHM Moselle domain) the planar ``dx * dy`` is used, which is exact there.

References
----------
Snyder, J. P. (1987): Map projections - a working manual. USGS Professional Paper 1395, pp. 16 and 187
(authalic latitude). Jenson, S. K. and Domingue, J. O. (1988): Extracting topographic structure from digital
elevation data for geographic information system analysis. Photogramm. Eng. Remote Sens. 54, 1593-1600 (D8).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr

from hydroml.exceptions import DataError, require

log = logging.getLogger("hydroml.data")

#: Authalic (equal-area) radius of the WGS84 ellipsoid, km.
EARTH_RADIUS_KM = 6371.0072
_WGS84_E2 = 0.00669437999014
_WGS84_E = np.sqrt(_WGS84_E2)


def _q(sin_phi: np.ndarray) -> np.ndarray:
    e, e2 = _WGS84_E, _WGS84_E2
    return (1 - e2) * (
        sin_phi / (1 - e2 * sin_phi**2) - np.log((1 - e * sin_phi) / (1 + e * sin_phi)) / (2 * e)
    )


_Q_POLE = float(_q(np.array(1.0)))


def sin_authalic_latitude(lat_deg: np.ndarray) -> np.ndarray:
    """Sine of the authalic latitude of WGS84 geodetic latitudes (degrees).

    On the sphere of radius :data:`EARTH_RADIUS_KM`, a region bounded by meridians and parallels at authalic
    latitudes has exactly the area of the same region on the WGS84 ellipsoid (Snyder 1987, eq. 3-11, 3-12).
    """
    return np.clip(_q(np.sin(np.deg2rad(np.asarray(lat_deg, dtype="float64")))) / _Q_POLE, -1.0, 1.0)


#: D8 flow-direction codes -> (row step, column step) on a north-up raster (row 0 = north).
D8_ENCODINGS: dict[str, dict[int, tuple[int, int]]] = {
    # ESRI / ArcGIS (also mHM): powers of two clockwise from east
    "esri": {
        1: (0, 1),
        2: (1, 1),
        4: (1, 0),
        8: (1, -1),
        16: (0, -1),
        32: (-1, -1),
        64: (-1, 0),
        128: (-1, 1),
    },
    # TauDEM / GRASS r.watershed (positive codes): 1..8 counter-clockwise from east
    "taudem": {1: (0, 1), 2: (-1, 1), 3: (-1, 0), 4: (-1, -1), 5: (0, -1), 6: (1, -1), 7: (1, 0), 8: (1, 1)},
    # PCRaster local drain direction (numeric keypad), 5 = pit
    "ldd": {1: (1, -1), 2: (1, 0), 3: (1, 1), 4: (0, -1), 6: (0, 1), 7: (-1, -1), 8: (-1, 0), 9: (-1, 1)},
}

_EQUAL_AREA_METHODS = ("equal area", "equal earth", "mollweide", "sinusoidal", "eckert iv", "eckert vi")


# --------------------------------------------------------------------------------------------------- grid geometry
def grid_dims_of(obj: xr.Dataset | xr.DataArray, grid_dims: Sequence[str] | None = None) -> tuple[str, str]:
    """The two horizontal dimensions ``(y, x)`` of a gridded object.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        The grid.
    grid_dims : sequence of two str, optional
        Explicit ``(ydim, xdim)``; otherwise ``("lat", "lon")`` or ``("y", "x")``, whichever are dimensions.

    Returns
    -------
    tuple of str
    """
    if grid_dims is not None:
        ydim, xdim = grid_dims
        missing = [d for d in (ydim, xdim) if d not in obj.dims]
        if missing:
            raise DataError(
                f"grid dimensions {missing} not found; dimensions are {sorted(map(str, obj.dims))}"
            )
        return ydim, xdim
    for pair in (("lat", "lon"), ("y", "x"), ("latitude", "longitude"), ("rlat", "rlon")):
        if all(d in obj.dims for d in pair):
            return pair
    raise DataError(
        f"cannot find the grid dimensions (lat, lon) or (y, x); dimensions are {sorted(map(str, obj.dims))}; "
        "pass grid_dims=(ydim, xdim)"
    )


def _bounds_1d(c: np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(c, dtype="float64")
    if c.size < 2:
        raise DataError(
            f"coordinate {name!r} has {c.size} value(s); cell bounds need at least 2 or a bounds variable"
        )
    d = np.diff(c)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise DataError(f"coordinate {name!r} is not strictly monotonic; cannot derive cell bounds")
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - 0.5 * d[0]], mid, [c[-1] + 0.5 * d[-1]]])


def _cf_bounds(obj: xr.Dataset | xr.DataArray, name: str) -> np.ndarray | None:
    bname = obj[name].attrs.get("bounds")
    if isinstance(obj, xr.Dataset) and bname and bname in obj.variables:
        b = np.asarray(obj[bname].values, dtype="float64")
        if b.ndim == 2 and b.shape[1] == 2 and np.allclose(b[1:, 0], b[:-1, 1]):
            return np.concatenate([b[:, 0], b[-1:, 1]])
    return None


def _corners_2d(a: np.ndarray) -> np.ndarray:
    """Cell corners (ny+1, nx+1) of a curvilinear coordinate given at cell centres (ny, nx)."""
    ny, nx = a.shape
    ext = np.empty((ny + 2, nx + 2))
    ext[1:-1, 1:-1] = a
    if ny > 1:
        ext[0, 1:-1] = 2 * a[0] - a[1]
        ext[-1, 1:-1] = 2 * a[-1] - a[-2]
    else:
        ext[0, 1:-1] = ext[-1, 1:-1] = a[0]
    if nx > 1:
        ext[:, 0] = 2 * ext[:, 1] - ext[:, 2]
        ext[:, -1] = 2 * ext[:, -2] - ext[:, -3]
    else:
        ext[:, 0] = ext[:, -1] = ext[:, 1]
    return 0.25 * (ext[:-1, :-1] + ext[1:, :-1] + ext[:-1, 1:] + ext[1:, 1:])


def _crs_of(obj: Any, crs: str | None = None) -> str | None:
    if crs is not None:
        return crs
    attrs = getattr(obj, "attrs", {})
    value = attrs.get("crs") or attrs.get("projection")
    return str(value) if value else None


def _is_equal_area(crs: str) -> bool:
    CRS = require("pyproj", "geo").CRS

    c = CRS.from_user_input(crs)
    if c.is_geographic:
        return False
    method = (c.coordinate_operation.method_name if c.coordinate_operation else "").lower()
    return any(m in method for m in _EQUAL_AREA_METHODS)


def _has_latlon(obj, ydim: str, xdim: str) -> str | None:
    """'1d' when lat/lon are the grid's 1-D coordinates, '2d' when 2-D coordinates on (ydim, xdim), else None."""
    if (ydim, xdim) in (("lat", "lon"), ("latitude", "longitude")):
        return "1d"
    for la, lo in (("lat", "lon"), ("latitude", "longitude")):
        if la in obj.coords and lo in obj.coords and set(obj[la].dims) == {ydim, xdim}:
            return "2d"
    return None


def _latlon_names(obj) -> tuple[str, str]:
    return ("lat", "lon") if "lat" in obj.coords else ("latitude", "longitude")


def cell_corners_lonlat(
    grid: xr.Dataset | xr.DataArray, grid_dims: Sequence[str] | None = None, crs: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of the cell corners, arrays of shape ``(ny + 1, nx + 1)``.

    Parameters
    ----------
    grid : xarray.Dataset or xarray.DataArray
        A grid with 1-D ``lat``/``lon`` dimensions, 2-D ``lat``/``lon`` coordinates, or projected 1-D ``x``/``y``
        with a ``crs`` (argument or attribute).
    grid_dims : sequence of str, optional
        ``(ydim, xdim)``.
    crs : str, optional
        CRS of projected ``x``/``y``.

    Returns
    -------
    lon, lat : numpy.ndarray
    """
    ydim, xdim = grid_dims_of(grid, grid_dims)
    kind = _has_latlon(grid, ydim, xdim)
    if kind == "1d":
        lat_b = _cf_bounds(grid, ydim)
        lon_b = _cf_bounds(grid, xdim)
        lat_b = _bounds_1d(grid[ydim].values, ydim) if lat_b is None else lat_b
        lon_b = _bounds_1d(grid[xdim].values, xdim) if lon_b is None else lon_b
        lat_b = np.clip(lat_b, -90.0, 90.0)
        lon, lat = np.meshgrid(lon_b, lat_b)
        return lon, lat
    if kind == "2d":
        la, lo = _latlon_names(grid)
        lat2 = grid[la].transpose(ydim, xdim).values.astype("float64")
        lon2 = grid[lo].transpose(ydim, xdim).values.astype("float64")
        lon2 = np.rad2deg(np.unwrap(np.deg2rad(lon2), axis=1))
        return _corners_2d(lon2), np.clip(_corners_2d(lat2), -90.0, 90.0)
    crs = _crs_of(grid, crs)
    if crs is None:
        raise DataError(
            f"grid on ({ydim}, {xdim}) has neither lat/lon coordinates nor a 'crs' attribute: cannot locate its cells"
        )
    Transformer = require("pyproj", "geo").Transformer

    yb = _bounds_1d(grid[ydim].values, ydim)
    xb = _bounds_1d(grid[xdim].values, xdim)
    xx, yy = np.meshgrid(xb, yb)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    return np.asarray(lon), np.asarray(lat)


def _quad_area_km2(lon_c: np.ndarray, lat_c: np.ndarray) -> np.ndarray:
    """Spherical areas of the cells whose corners are given, via the cylindrical equal-area shoelace."""
    x = np.deg2rad(lon_c)
    y = sin_authalic_latitude(lat_c)
    # corners in order (j, i), (j, i+1), (j+1, i+1), (j+1, i)
    xs = [x[:-1, :-1], x[:-1, 1:], x[1:, 1:], x[1:, :-1]]
    ys = [y[:-1, :-1], y[:-1, 1:], y[1:, 1:], y[1:, :-1]]
    s = np.zeros_like(xs[0])
    for k in range(4):
        s += xs[k] * ys[(k + 1) % 4] - xs[(k + 1) % 4] * ys[k]
    return 0.5 * np.abs(s) * EARTH_RADIUS_KM**2


def cell_area_km2(
    grid: xr.Dataset | xr.DataArray, grid_dims: Sequence[str] | None = None, crs: str | None = None
) -> xr.DataArray:
    """True area of every grid cell in km2.

    Parameters
    ----------
    grid : xarray.Dataset or xarray.DataArray
        The grid (see :func:`cell_corners_lonlat` for what is understood).
    grid_dims : sequence of str, optional
        ``(ydim, xdim)``.
    crs : str, optional
        CRS of projected ``x``/``y`` (else the ``crs`` attribute).

    Returns
    -------
    xarray.DataArray
        On ``(ydim, xdim)``. Planar ``|dx dy|`` for an equal-area projection with 1-D ``x``/``y``; else the
        area of the cell's corner quadrilateral on the WGS84 ellipsoid (authalic sphere, see the module notes),
        exact for a regular lat/lon grid: :math:`R^2 \\Delta\\lambda (\\sin\\beta_2 - \\sin\\beta_1)`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> g = xr.Dataset(coords={"lat": [0.5, 1.5], "lon": [0.5, 1.5]})
    >>> np.round(cell_area_km2(g).values, 1)
    array([[12308.5, 12308.5],
           [12304.8, 12304.8]])
    """
    ydim, xdim = grid_dims_of(grid, grid_dims)
    crs_ = _crs_of(grid, crs)
    coords = {d: grid[d] for d in (ydim, xdim) if d in grid.coords}
    if _has_latlon(grid, ydim, xdim) != "1d" and crs_ is not None and _is_equal_area(crs_) and coords:
        yb = _bounds_1d(grid[ydim].values, ydim)
        xb = _bounds_1d(grid[xdim].values, xdim)
        area = np.abs(np.outer(np.diff(yb), np.diff(xb))) / 1e6
    else:
        lon, lat = cell_corners_lonlat(grid, (ydim, xdim), crs)
        area = _quad_area_km2(lon, lat)
    return xr.DataArray(area, dims=(ydim, xdim), coords=coords, name="cell_area_km2", attrs={"units": "km2"})


def _cell_centres_lat(grid, ydim: str, xdim: str, crs: str | None) -> np.ndarray:
    kind = _has_latlon(grid, ydim, xdim)
    ny, nx = grid.sizes[ydim], grid.sizes[xdim]
    if kind == "1d":
        return np.broadcast_to(np.asarray(grid[ydim].values, dtype=float)[:, None], (ny, nx))
    if kind == "2d":
        la, _ = _latlon_names(grid)
        return grid[la].transpose(ydim, xdim).values.astype(float)
    lon_c, lat_c = cell_corners_lonlat(grid, (ydim, xdim), crs)
    return 0.25 * (lat_c[:-1, :-1] + lat_c[1:, :-1] + lat_c[:-1, 1:] + lat_c[1:, 1:])


# ------------------------------------------------------------------------------------------------------- masks
def _check_fraction_values(v: np.ndarray, what: str) -> None:
    if v.size and (np.nanmin(v) < 0 or np.nanmax(v) > 1 + 1e-9):
        raise DataError(f"{what}: fractions must lie in [0, 1], found {np.nanmin(v)}..{np.nanmax(v)}")


def _masks_to_fractions(masks, grid, ydim: str, xdim: str) -> tuple[list[str], sp.csr_matrix]:
    shape = (grid.sizes[ydim], grid.sizes[xdim])

    def check(m: xr.DataArray, what: str) -> xr.DataArray:
        missing = [d for d in (ydim, xdim) if d not in m.dims]
        if missing:
            raise DataError(f"{what}: expected dimensions ({ydim}, {xdim}), found {m.dims}")
        m = m.transpose(..., ydim, xdim)
        if m.shape[-2:] != shape:
            raise DataError(f"{what}: shape {m.shape[-2:]} does not match the grid {shape}")
        for d in (ydim, xdim):
            if d in m.coords and d in grid.coords and not np.allclose(m[d].values, grid[d].values):
                raise DataError(f"{what}: coordinate {d!r} differs from the grid's")
        return m

    def sparse_rows(v: np.ndarray) -> sp.csr_matrix:
        v = v.reshape(v.shape[0], -1)
        r, c = np.nonzero(np.isfinite(v) & (v != 0))
        vals = np.clip(np.asarray(v[r, c], dtype="float64"), 0.0, 1.0)
        return sp.csr_matrix((vals, (r, c)), shape=v.shape)

    if isinstance(masks, xr.DataArray) and "basin" in masks.dims:
        if masks.ndim != 3:
            raise DataError(f"masks: expected dimensions (basin, {ydim}, {xdim}), found {masks.dims}")
        m = check(masks, "masks").transpose("basin", ydim, xdim)
        _check_fraction_values(m.values, "masks")
        return [str(b) for b in m["basin"].values], sparse_rows(m.values)
    if isinstance(masks, xr.DataArray):
        items = [(str(masks.name or "0"), masks)]
    elif isinstance(masks, xr.Dataset):
        items = [(str(k), v) for k, v in masks.data_vars.items()]
    elif isinstance(masks, Mapping):
        items = [(str(k), v) for k, v in masks.items()]
    else:
        raise DataError(
            f"masks must be a DataArray, Dataset or mapping of basin id to DataArray, got {type(masks)}"
        )
    ids, rows = [], []
    for bid, m in items:
        if not isinstance(m, xr.DataArray):
            m = xr.DataArray(np.asarray(m), dims=(ydim, xdim))
        if m.ndim != 2:
            raise DataError(f"mask of basin {bid!r}: expected dimensions ({ydim}, {xdim}), found {m.dims}")
        m = check(m, f"mask of basin {bid!r}")
        _check_fraction_values(np.asarray(m.values, dtype="float64"), f"mask of basin {bid!r}")
        ids.append(bid)
        rows.append(sparse_rows(np.asarray(m.values)[None]))
    return ids, sp.csr_matrix(sp.vstack(rows))


# ----------------------------------------------------------------------------------------------------- GeoJSON
def _load_geometries(geojson, id_property: str | None) -> list[tuple[str, Any]]:
    shapely = require("shapely", "geo")
    shape = require("shapely.geometry", "geo").shape

    if isinstance(geojson, Mapping) and "type" not in geojson:
        out = []
        for k, g in geojson.items():
            geoms = _load_geometries(g, id_property)
            out.append((str(k), shapely.union_all([gm for _, gm in geoms])))
        return out
    if isinstance(geojson, (str, Path)):
        p = Path(geojson)
        try:
            obj = json.loads(p.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read GeoJSON file {str(p)!r}: {err}") from err
        default_id = p.stem
    elif isinstance(geojson, Mapping):
        obj, default_id = geojson, "0"
    elif hasattr(geojson, "geom_type"):
        return [("0", geojson)]
    else:
        raise DataError(
            f"geojson must be a file, a GeoJSON mapping or a shapely geometry, got {type(geojson)}"
        )
    if obj.get("type") == "FeatureCollection":
        feats = obj.get("features", [])
    elif obj.get("type") == "Feature":
        feats = [obj]
    else:
        feats = [{"type": "Feature", "geometry": obj, "properties": {}}]
    out = []
    for i, f in enumerate(feats):
        props = f.get("properties") or {}
        if id_property is not None:
            if id_property not in props:
                raise DataError(
                    f"GeoJSON feature {i}: property {id_property!r} not found; has {sorted(props)}"
                )
            bid = str(props[id_property])
        elif len(feats) == 1:
            bid = str(f.get("id", default_id))
        else:
            bid = str(f.get("id", i))
        geom = shape(f["geometry"])
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise DataError(
                f"GeoJSON feature {bid!r}: expected a Polygon or MultiPolygon, found {geom.geom_type}"
            )
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        out.append((bid, geom))
    return out


def _polygon_fractions(geoms, grid, ydim: str, xdim: str, crs: str | None) -> sp.csr_matrix:
    shapely = require("shapely", "geo")

    ny, nx = grid.sizes[ydim], grid.sizes[xdim]
    kind = _has_latlon(grid, ydim, xdim)
    crs_ = _crs_of(grid, crs)
    projected = kind != "1d" and crs_ is not None and _is_equal_area(crs_)
    if projected:
        Transformer = require("pyproj", "geo").Transformer

        yb = _bounds_1d(grid[ydim].values, ydim)
        xb = _bounds_1d(grid[xdim].values, xdim)
        cx, cy = np.meshgrid(xb, yb)
        tr = Transformer.from_crs("EPSG:4326", crs_, always_xy=True)

        def to_plane(g):
            return shapely.transform(g, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))

        seg = 0.25 * min(abs(xb[1] - xb[0]), abs(yb[1] - yb[0]))
        deg_seg = seg / 111_000.0
    else:
        cx, cy = cell_corners_lonlat(grid, (ydim, xdim), crs)
        cx, cy = np.deg2rad(cx), sin_authalic_latitude(cy)

        def to_plane(g):
            return shapely.transform(
                g, lambda c: np.column_stack([np.deg2rad(c[:, 0]), sin_authalic_latitude(c[:, 1])])
            )

        deg_seg = 0.25 * float(np.nanmin(np.abs(np.diff(np.rad2deg(cx), axis=1))))
    ring = np.stack(
        [
            np.stack([cx[:-1, :-1], cy[:-1, :-1]], -1),
            np.stack([cx[:-1, 1:], cy[:-1, 1:]], -1),
            np.stack([cx[1:, 1:], cy[1:, 1:]], -1),
            np.stack([cx[1:, :-1], cy[1:, :-1]], -1),
            np.stack([cx[:-1, :-1], cy[:-1, :-1]], -1),
        ],
        axis=2,
    ).reshape(ny * nx, 5, 2)
    cells = shapely.polygons(ring)
    cell_area = shapely.area(cells)
    tree = shapely.STRtree(cells)
    rk, rc, rv = [], [], []
    for k, (_bid, g) in enumerate(geoms):
        if deg_seg > 0:
            g = shapely.segmentize(g, deg_seg)  # edges stay close to the lon/lat lines they follow
        # on a geographic grid, copies shifted by 360 degrees catch grids in 0..360 and cells across the seam
        shifts = (0.0,) if projected else (-360.0, 0.0, 360.0)
        for dx in shifts:
            gp = to_plane(shapely.transform(g, lambda c, dx=dx: c + np.array([dx, 0.0])) if dx else g)
            cand = tree.query(gp, predicate="intersects")
            if cand.size:
                inter = shapely.area(shapely.intersection(cells[cand], gp))
                rk.append(np.full(cand.size, k))
                rc.append(cand)
                rv.append(inter / cell_area[cand])
    if not rk:
        return sp.csr_matrix((len(geoms), ny * nx))
    rows = sp.csr_matrix(
        (np.concatenate(rv), (np.concatenate(rk), np.concatenate(rc))), shape=(len(geoms), ny * nx)
    )  # duplicates (shifted copies) are summed
    rows.data = np.clip(rows.data, 0.0, 1.0)
    rows.eliminate_zeros()
    return rows


# ----------------------------------------------------------------------------------------- flow-direction rasters
def _raster_dims(r: xr.DataArray) -> tuple[str, str]:
    return grid_dims_of(r)


def _north_up(r: xr.DataArray, ydim: str) -> bool:
    if ydim in r.coords and r.sizes[ydim] > 1:
        yv = r[ydim].values
        return bool(yv[0] > yv[-1])
    return True


def _outlet_cells(
    gauges, raster: xr.DataArray, ydim: str, xdim: str, gauges_crs: str | None = None
) -> tuple[list[str], list[int]]:
    ny, nx = raster.sizes[ydim], raster.sizes[xdim]
    transformer = None
    if gauges_crs is not None:
        raster_crs = _crs_of(raster) or ("EPSG:4326" if _has_latlon(raster, ydim, xdim) == "1d" else None)
        if raster_crs is None:
            raise DataError("gauges_crs given but the flow-direction raster has no 'crs' attribute")
        Transformer = require("pyproj", "geo").Transformer

        transformer = Transformer.from_crs(gauges_crs, raster_crs, always_xy=True)
    ids, flat = [], []
    if isinstance(gauges, xr.DataArray):
        g = gauges.transpose(ydim, xdim).values
        if g.shape != (ny, nx):
            raise DataError(
                f"gauge raster shape {g.shape} does not match the flow-direction raster {(ny, nx)}"
            )
        for r, c in np.argwhere(np.isfinite(g) & (g != 0) if np.issubdtype(g.dtype, np.floating) else g != 0):
            v = g[r, c]
            ids.append(str(int(v)) if float(v).is_integer() else str(v))
            flat.append(int(r * nx + c))
        order = np.argsort(ids)
        return [ids[i] for i in order], [flat[i] for i in order]
    if not isinstance(gauges, Mapping):
        raise DataError(
            f"gauges must be a mapping of basin id to location or a gauge raster, got {type(gauges)}"
        )
    for bid, loc in gauges.items():
        if isinstance(loc, Mapping) and {"row", "col"} <= set(loc):
            r, c = int(loc["row"]), int(loc["col"])
        else:
            try:
                yv, xv = (float(v) for v in loc)
            except (TypeError, ValueError) as err:
                raise DataError(
                    f"gauge {bid!r}: expected ({ydim}, {xdim}) coordinates or {{row, col}}"
                ) from err
            if transformer is not None:
                xv, yv = (float(v) for v in transformer.transform(xv, yv))
            ys, xs = raster[ydim].values, raster[xdim].values
            r, c = int(np.argmin(np.abs(ys - yv))), int(np.argmin(np.abs(xs - xv)))
            half_y = 0.5 * abs(ys[1] - ys[0]) if ys.size > 1 else np.inf
            half_x = 0.5 * abs(xs[1] - xs[0]) if xs.size > 1 else np.inf
            if abs(ys[r] - yv) > half_y * 1.000001 or abs(xs[c] - xv) > half_x * 1.000001:
                raise DataError(f"gauge {bid!r} at ({yv}, {xv}) lies outside the flow-direction raster")
        if not (0 <= r < ny and 0 <= c < nx):
            raise DataError(f"gauge {bid!r}: cell ({r}, {c}) outside the raster of {ny} x {nx} cells")
        ids.append(str(bid))
        flat.append(r * nx + c)
    return ids, flat


def _snap(cells: list[int], facc: xr.DataArray, ydim: str, xdim: str, radius: int) -> list[int]:
    """Move each outlet to the cell of largest flow accumulation within ``radius`` cells."""
    acc = np.where(np.isfinite(facc.values), facc.values, -np.inf)
    ny, nx = acc.shape
    out = []
    for cell in cells:
        r, c = divmod(cell, nx)
        r0, r1, c0, c1 = (
            max(r - radius, 0),
            min(r + radius + 1, ny),
            max(c - radius, 0),
            min(c + radius + 1, nx),
        )
        win = acc[r0:r1, c0:c1]
        dr, dc = np.unravel_index(int(np.argmax(win)), win.shape)
        out.append(int((r0 + dr) * nx + c0 + dc))
    return out


def downstream_index(
    flowdir: xr.DataArray | np.ndarray, encoding: str = "esri", north_up: bool = True
) -> np.ndarray:
    """Flat index of the downstream neighbour of every cell (-1 for pits, outlets and nodata).

    Parameters
    ----------
    flowdir : xarray.DataArray or numpy.ndarray
        D8 codes on a 2-D raster; NaN, 0 and unknown codes are sinks.
    encoding : {"esri", "taudem", "ldd"} or mapping
        Code table (:data:`D8_ENCODINGS`) or a mapping ``{code: (row step, col step)}`` for a north-up raster.
    north_up : bool
        Whether row 0 is the northern edge (a DataArray's ``y``/``lat`` order decides by itself).

    Returns
    -------
    numpy.ndarray
        ``int64`` of length ``ny * nx``.
    """
    if isinstance(flowdir, xr.DataArray):
        ydim, xdim = _raster_dims(flowdir)
        north_up = _north_up(flowdir, ydim)
        fd = flowdir.transpose(ydim, xdim).values
    else:
        fd = np.asarray(flowdir)
    table = D8_ENCODINGS.get(encoding) if isinstance(encoding, str) else dict(encoding)
    if table is None:
        raise DataError(f"unknown flow-direction encoding {encoding!r}; known: {sorted(D8_ENCODINGS)}")
    ny, nx = fd.shape
    codes = np.where(np.isfinite(fd), fd, -9999).astype("int64")
    dr = np.zeros_like(codes)
    dc = np.zeros_like(codes)
    known = np.zeros(codes.shape, dtype=bool)
    for code, (r, c) in table.items():
        sel = codes == code
        dr[sel], dc[sel] = (r if north_up else -r), c
        known |= sel
    unknown = np.unique(codes[~known & (codes != -9999) & (codes != 0)])
    if unknown.size:
        log.info("flow direction: codes %s are not in the %s table; treated as sinks", unknown[:10], encoding)
    rows, cols = np.indices((ny, nx))
    rr, cc = rows + dr, cols + dc
    ok = known & (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
    down = np.where(ok, rr * nx + cc, -1).ravel()
    # flowing into a nodata cell ends the path
    valid = np.isfinite(fd).ravel()
    down[(down >= 0) & ~valid[np.clip(down, 0, None)]] = -1
    return down


def delineate(
    flowdir: xr.DataArray,
    gauges: Mapping[str, Any] | xr.DataArray,
    *,
    encoding: str | Mapping[int, tuple[int, int]] = "esri",
    gauges_crs: str | None = None,
    facc: xr.DataArray | None = None,
    snap_radius: int = 0,
) -> xr.DataArray:
    """Delineate the upstream area of each gauge on a D8 flow-direction raster.

    Parameters
    ----------
    flowdir : xarray.DataArray
        D8 codes on ``(y, x)`` or ``(lat, lon)``; north up or south up (read from the coordinate order).
    gauges : mapping or xarray.DataArray
        ``{basin_id: (y, x)}`` coordinates of the outlets in the raster's coordinates (the cell containing the
        point), ``{basin_id: {"row": r, "col": c}}``, or a raster of gauge ids (non-zero, non-NaN cells, like
        mHM's ``idgauges.asc``).
    encoding : {"esri", "taudem", "ldd"} or mapping
        The D8 code table (ESRI: 1 E, 2 SE, 4 S, 8 SW, 16 W, 32 NW, 64 N, 128 NE).
    gauges_crs : str, optional
        CRS of the gauge coordinates when it is not the raster's (e.g. ``"EPSG:4326"`` for ``(lat, lon)`` on a
        projected raster with a ``crs`` attribute).
    facc : xarray.DataArray, optional
        Flow accumulation on the same raster, to snap each gauge to the cell of largest accumulation within
        ``snap_radius`` cells (gauge coordinates rarely fall exactly on the raster's river).
    snap_radius : int
        Search half-width in cells (0: no snapping).

    Returns
    -------
    xarray.DataArray
        Boolean masks on ``(basin, y, x)``: the outlet cell and every cell draining to it (nested basins each
        keep their full upstream area).
    """
    from scipy.sparse.csgraph import breadth_first_order

    ydim, xdim = _raster_dims(flowdir)
    fd = flowdir.transpose(ydim, xdim)
    ids, outlets = _outlet_cells(gauges, fd, ydim, xdim, gauges_crs)
    if not ids:
        raise DataError("no gauge given to delineate")
    if snap_radius:
        if facc is None:
            raise DataError("snap_radius needs facc= (the flow accumulation raster)")
        fa = facc.transpose(ydim, xdim)
        if fa.shape != fd.shape:
            raise DataError(f"facc shape {fa.shape} does not match the flow-direction raster {fd.shape}")
        outlets = _snap(outlets, fa, ydim, xdim, int(snap_radius))
    down = downstream_index(fd, encoding)
    n = down.size
    donors = np.flatnonzero(down >= 0)
    # edges receiver -> donor: a breadth-first walk from the outlet visits its upstream cells
    graph = sp.csr_matrix((np.ones(donors.size, dtype=np.int8), (down[donors], donors)), shape=(n, n))
    masks = np.zeros((len(ids), n), dtype=bool)
    for k, o in enumerate(outlets):
        if not np.isfinite(fd.values.ravel()[o]):
            raise DataError(f"gauge {ids[k]!r} lies on a nodata cell of the flow-direction raster")
        nodes = breadth_first_order(graph, o, directed=True, return_predecessors=False)
        masks[k, nodes] = True
    shape = (fd.sizes[ydim], fd.sizes[xdim])
    return xr.DataArray(
        masks.reshape(len(ids), *shape),
        dims=("basin", ydim, xdim),
        coords={"basin": np.array(ids, dtype=str), **{d: fd[d] for d in (ydim, xdim) if d in fd.coords}},
        name="basin_mask",
        attrs={k: v for k, v in flowdir.attrs.items() if k == "crs"},
    )


def raster_cell_area_km2(raster: xr.DataArray, crs: str | None = None) -> np.ndarray:
    """Area (km2) of every cell of a raster on ``(y, x)`` or ``(lat, lon)`` (see :func:`cell_area_km2`)."""
    return cell_area_km2(raster, crs=_crs_of(raster, crs)).values


def _locate(points_lon, points_lat, px, py, grid, ydim, xdim, crs_grid, crs_points) -> np.ndarray:
    """Flat index of the grid cell containing each point (-1 outside)."""
    nx = grid.sizes[xdim]
    kind = _has_latlon(grid, ydim, xdim)
    if kind != "1d" and crs_grid is not None and crs_points is not None and ydim in grid.coords:
        CRS = require("pyproj", "geo").CRS

        if CRS.from_user_input(crs_grid) == CRS.from_user_input(crs_points):
            qx, qy = px, py
        else:
            Transformer = require("pyproj", "geo").Transformer

            qx, qy = Transformer.from_crs(crs_points, crs_grid, always_xy=True).transform(px, py)
        kind = "proj"
    if kind in ("1d", "proj"):
        yb = _bounds_1d(grid[ydim].values, ydim)
        xb = _bounds_1d(grid[xdim].values, xdim)
        if kind == "1d":
            qx, qy = points_lon, points_lat
            # bring longitudes into the grid's range
            lo = min(xb[0], xb[-1])
            qx = (qx - lo) % 360.0 + lo
        r = _search(yb, qy)
        c = _search(xb, qx)
        ok = (r >= 0) & (c >= 0)
        return np.where(ok, r * nx + c, -1)
    # curvilinear: nearest centre on the unit sphere, then reject points farther than a cell diagonal
    from scipy.spatial import cKDTree

    la, lo = _latlon_names(grid)
    glat = np.deg2rad(grid[la].transpose(ydim, xdim).values.ravel())
    glon = np.deg2rad(grid[lo].transpose(ydim, xdim).values.ravel())
    xyz = np.column_stack([np.cos(glat) * np.cos(glon), np.cos(glat) * np.sin(glon), np.sin(glat)])
    plat, plon = np.deg2rad(points_lat), np.deg2rad(points_lon)
    q = np.column_stack([np.cos(plat) * np.cos(plon), np.cos(plat) * np.sin(plon), np.sin(plat)])
    dist, idx = cKDTree(xyz).query(q)
    area = cell_area_km2(grid, (ydim, xdim)).values.ravel()
    max_d = np.sqrt(2 * area[idx]) / EARTH_RADIUS_KM
    return np.where(dist <= max_d, idx, -1)


def _search(bounds: np.ndarray, q: np.ndarray) -> np.ndarray:
    asc = bounds[-1] > bounds[0]
    b = bounds if asc else bounds[::-1]
    i = np.searchsorted(b, q, side="right") - 1
    ok = (i >= 0) & (i < b.size - 1)
    n = b.size - 1
    i = np.where(ok, i if asc else n - 1 - i, -1)
    return i


def fine_mask_to_fractions(
    mask: xr.DataArray,
    grid: xr.Dataset | xr.DataArray,
    *,
    grid_dims: Sequence[str] | None = None,
    crs: str | None = None,
    mask_crs: str | None = None,
) -> np.ndarray:
    """Fraction of each coarse grid cell covered by basins given as masks on a finer raster.

    Parameters
    ----------
    mask : xarray.DataArray
        Boolean masks on ``(basin, y, x)`` (or ``(y, x)``) of the fine raster, e.g. from :func:`delineate`.
    grid : xarray.Dataset or xarray.DataArray
        The coarse grid.
    grid_dims : sequence of str, optional
        Coarse ``(ydim, xdim)``.
    crs, mask_crs : str, optional
        CRS of the coarse grid's and of the fine raster's ``x``/``y`` (else their ``crs`` attributes; lat/lon
        grids need none).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``[basin, coarse cell]`` fractions: the area of the fine basin cells whose centre lies in the coarse cell
        over the coarse cell's area (clipped to 1).
    """
    if "basin" not in mask.dims:
        mask = mask.expand_dims(basin=[str(mask.name or "0")])
    fdims = [d for d in mask.dims if d != "basin"]
    fy, fx = grid_dims_of(mask.isel(basin=0), None) if len(fdims) == 2 else (None, None)
    mask = mask.transpose("basin", fy, fx)
    ydim, xdim = grid_dims_of(grid, grid_dims)
    crs_g, crs_m = _crs_of(grid, crs), _crs_of(mask, mask_crs)
    fine_area = raster_cell_area_km2(mask.isel(basin=0), crs_m).ravel()
    any_cell = np.flatnonzero(mask.values.reshape(mask.sizes["basin"], -1).any(axis=0))
    if _has_latlon(mask.isel(basin=0), fy, fx) == "1d":
        yy, xx = np.meshgrid(mask[fy].values, mask[fx].values, indexing="ij")
        plat, plon = yy.ravel()[any_cell], xx.ravel()[any_cell]
        crs_m = "EPSG:4326"
        px, py = plon, plat
    else:
        if crs_m is None:
            raise DataError("the fine raster has no lat/lon and no 'crs': pass mask_crs=")
        yy, xx = np.meshgrid(mask[fy].values, mask[fx].values, indexing="ij")
        px, py = xx.ravel()[any_cell], yy.ravel()[any_cell]
        Transformer = require("pyproj", "geo").Transformer

        plon, plat = Transformer.from_crs(crs_m, "EPSG:4326", always_xy=True).transform(px, py)
    target = _locate(np.asarray(plon), np.asarray(plat), px, py, grid, ydim, xdim, crs_g, crs_m)
    coarse_area = cell_area_km2(grid, (ydim, xdim), crs).values.ravel()
    nb = mask.sizes["basin"]
    flat = mask.values.reshape(nb, -1)[:, any_cell]
    outside = target < 0
    if outside.any():
        log.info(
            "%d fine basin cells lie outside the coarse grid and are ignored", int(flat[:, outside].sum())
        )
    rk, rc, rv = [], [], []
    area_any = fine_area[any_cell]
    for k in range(nb):
        sel = flat[k] & ~outside
        rk.append(np.full(int(sel.sum()), k))
        rc.append(target[sel])
        rv.append(area_any[sel] / coarse_area[target[sel]])
    rows = sp.csr_matrix(
        (np.concatenate(rv), (np.concatenate(rk), np.concatenate(rc))), shape=(nb, coarse_area.size)
    )  # one entry per fine cell, summed per coarse cell
    rows.data = np.clip(rows.data, 0.0, 1.0)
    return rows


def basin_area_from_facc(
    facc: xr.DataArray,
    gauges: Mapping[str, Any] | xr.DataArray,
    *,
    units: str = "cells",
    includes_self: bool = False,
    crs: str | None = None,
) -> xr.DataArray:
    """Basin area at each gauge read from a flow-accumulation raster.

    Parameters
    ----------
    facc : xarray.DataArray
        Flow accumulation on ``(y, x)`` or ``(lat, lon)``.
    gauges : mapping or xarray.DataArray
        Gauge locations, as in :func:`delineate`.
    units : {"cells", "km2", "m2"}
        What ``facc`` counts: upstream cells (ESRI, mHM; multiplied by the gauge cell's area) or area.
    includes_self : bool
        Whether a cell count includes the cell itself (ESRI and mHM do not: ``area = (facc + 1) * cell area``).
    crs : str, optional
        CRS of ``x``/``y`` (else the ``crs`` attribute), for the cell area.

    Returns
    -------
    xarray.DataArray
        ``area_km2`` on ``(basin,)``. With ``units="cells"`` on a lat/lon raster the cells upstream are assumed
        to have the gauge cell's area.
    """
    ydim, xdim = _raster_dims(facc)
    fa = facc.transpose(ydim, xdim)
    ids, cells = _outlet_cells(gauges, fa, ydim, xdim)
    vals = fa.values.ravel()[cells].astype("float64")
    if units == "cells":
        area = raster_cell_area_km2(fa, crs).ravel()[cells]
        out = (vals + (0 if includes_self else 1)) * area
    elif units == "km2":
        out = vals
    elif units == "m2":
        out = vals / 1e6
    else:
        raise DataError(f"facc units must be 'cells', 'km2' or 'm2', got {units!r}")
    return xr.DataArray(
        out, dims="basin", coords={"basin": np.array(ids, dtype=str)}, name="area_km2", attrs={"units": "km2"}
    )


# --------------------------------------------------------------------------------------------------- weights
@dataclass
class BasinWeights:
    """Sparse grid-to-basin weights, computed once and applied to any number of variables and time steps.

    Attributes
    ----------
    basins : numpy.ndarray
        Basin ids (strings), the rows of the matrices.
    fractions : scipy.sparse.csr_matrix
        ``[basin, cell]`` fraction of each cell inside each basin (cells in C order over ``grid_dims``).
    cell_weight : numpy.ndarray
        Weight of each cell: area in km2 (``method="area"``) or cos(latitude) (``method="coslat"``).
    cell_area_km2 : numpy.ndarray
        True area of each cell (NaN where it cannot be computed).
    grid_dims : tuple of str
        ``(ydim, xdim)`` of the grid.
    grid_shape : tuple of int
        ``(ny, nx)``.
    grid_coords : dict
        The 1-D grid coordinates, checked against the data at :meth:`aggregate`.
    method : str
        ``"area"`` or ``"coslat"``.
    """

    basins: np.ndarray
    fractions: sp.csr_matrix
    cell_weight: np.ndarray
    cell_area_km2: np.ndarray
    grid_dims: tuple[str, str]
    grid_shape: tuple[int, int]
    grid_coords: dict = field(default_factory=dict)
    method: str = "area"

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """``W[basin, cell] = fraction x cell weight`` (CSR)."""
        return sp.csr_matrix(self.fractions.multiply(self.cell_weight[None, :]))

    @property
    def area_km2(self) -> xr.DataArray:
        """Basin area covered on the grid, :math:`\\sum_c f_{bc} A_c`, in km2, on ``(basin,)``."""
        area = np.asarray(self.fractions @ np.nan_to_num(self.cell_area_km2)).ravel()
        return xr.DataArray(
            area, dims="basin", coords={"basin": self.basins}, name="area_km2", attrs={"units": "km2"}
        )

    def to_dataarray(self) -> xr.DataArray:
        """Dense fractions on ``(basin, ydim, xdim)``, for plots and checks."""
        dense = self.fractions.toarray().reshape(len(self.basins), *self.grid_shape)
        coords = {"basin": self.basins, **{d: v for d, v in self.grid_coords.items()}}
        return xr.DataArray(dense, dims=("basin", *self.grid_dims), coords=coords, name="fraction")

    def _check_grid(self, ds: xr.Dataset | xr.DataArray) -> None:
        ydim, xdim = self.grid_dims
        for d, n in zip(self.grid_dims, self.grid_shape):
            if d not in ds.dims:
                raise DataError(
                    f"data has no grid dimension {d!r}; dimensions are {sorted(map(str, ds.dims))}"
                )
            if ds.sizes[d] != n:
                raise DataError(f"grid dimension {d!r}: the weights have {n} cells, the data {ds.sizes[d]}")
            if d in self.grid_coords and d in ds.coords:
                if not np.allclose(
                    ds[d].values.astype(float),
                    self.grid_coords[d],
                    rtol=0,
                    atol=1e-6 * max(1.0, float(np.nanmax(np.abs(self.grid_coords[d])))),
                ):
                    raise DataError(
                        f"grid coordinate {d!r} of the data differs from the one the weights were built on"
                    )

    @cached_property
    def _used(self) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
        """Cells with a non-zero weight, the weight matrix restricted to them (transposed), row totals."""
        w = self.matrix
        cols = np.unique(w.indices)
        wt = sp.csr_matrix(w[:, cols].T)  # [used cell, basin]
        return cols, wt, np.asarray(w.sum(axis=1)).ravel()

    def _apply(self, arr: np.ndarray, min_valid_fraction: float) -> np.ndarray:
        lead = arr.shape[:-2]
        cols, wt, total = self._used
        # only the cells inside some basin are read: one gather, then one sparse product per array
        x = np.asarray(arr).reshape(-1, arr.shape[-2] * arr.shape[-1])[:, cols].astype("float64", copy=False)
        valid = np.isfinite(x)
        if valid.all():
            num = np.asarray(wt.T @ x.T).T
            den = np.broadcast_to(total, num.shape)
        else:
            num = np.asarray(wt.T @ np.where(valid, x, 0.0).T).T
            den = np.asarray(wt.T @ valid.T.astype("float64")).T
        with np.errstate(invalid="ignore", divide="ignore"):
            out = num / den
        bad = (den <= 0) | (den < min_valid_fraction * total - 1e-12 * total)
        out = np.where(bad, np.nan, out)
        return out.reshape(*lead, len(self.basins))

    def aggregate(
        self, ds: xr.Dataset | xr.DataArray, *, min_valid_fraction: float = 0.0, keep_attrs: bool = True
    ) -> xr.Dataset | xr.DataArray:
        """Basin averages of every gridded variable.

        Parameters
        ----------
        ds : xarray.Dataset or xarray.DataArray
            Data on the grid the weights were built on (any other dimensions, e.g. ``time``, are kept); numpy or
            dask backed (dask: one sparse product per chunk, the grid dimensions merged into one chunk).
        min_valid_fraction : float
            In [0, 1]: a basin-step whose valid cells carry less than this share of the basin's weight is NaN.
            The default 0 gives a value as soon as one cell of the basin is valid, renormalised over the valid
            cells (NaN cells are dropped, not read as zero).
        keep_attrs : bool
            Keep the variables' attributes (units...).

        Returns
        -------
        xarray.Dataset or xarray.DataArray
            Variables on ``(basin, ...)`` (e.g. ``(basin, time)``); a Dataset also gets ``area_km2``. Variables
            without both grid dimensions are dropped (logged).
        """
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise DataError(f"min_valid_fraction must lie in [0, 1], got {min_valid_fraction}")
        self._check_grid(ds)
        if isinstance(ds, xr.DataArray):
            return self._aggregate_da(ds, min_valid_fraction, keep_attrs)
        out = {}
        for name, var in ds.data_vars.items():
            if not all(d in var.dims for d in self.grid_dims):
                log.debug("aggregate: %s has no grid dimensions %s; dropped", name, self.grid_dims)
                continue
            if not (np.issubdtype(var.dtype, np.number) or np.issubdtype(var.dtype, np.bool_)):
                continue
            out[name] = self._aggregate_da(var, min_valid_fraction, keep_attrs)
        res = xr.Dataset(out, attrs=dict(ds.attrs) if keep_attrs else {})
        res["area_km2"] = self.area_km2
        return res

    def _aggregate_da(self, da: xr.DataArray, min_valid_fraction: float, keep_attrs: bool) -> xr.DataArray:
        ydim, xdim = self.grid_dims
        drop = [c for c in da.coords if set(da[c].dims) & {ydim, xdim}]
        da = da.drop_vars(drop)
        res = xr.apply_ufunc(
            self._apply,
            da,
            input_core_dims=[[ydim, xdim]],
            output_core_dims=[["basin"]],
            kwargs={"min_valid_fraction": min_valid_fraction},
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"basin": len(self.basins)}, "allow_rechunk": True},
            keep_attrs=keep_attrs,
        )
        res = res.assign_coords(basin=self.basins)
        return res.transpose("basin", ...)

    def to_dataset(self) -> xr.Dataset:
        """The weights as a Dataset for NetCDF: sparse entries (basin index, cell index, fraction), cell weights.

        Returns
        -------
        xarray.Dataset
            ``fraction``, ``basin_index`` and ``cell_index`` on ``entry`` (cells numbered in C order over
            ``grid_dims``), ``cell_weight`` and ``cell_area_km2`` on the grid; write it with
            :func:`hydroml._io.write_netcdf_atomic` and read it back with :meth:`from_dataset`.
        """
        coo = self.fractions.tocoo()
        ds = xr.Dataset(
            {
                "fraction": ("entry", coo.data.astype("float64")),
                "basin_index": ("entry", coo.row.astype("int32")),
                "cell_index": ("entry", coo.col.astype("int64")),
                "cell_weight": (self.grid_dims, self.cell_weight.reshape(self.grid_shape)),
                "cell_area_km2": (
                    self.grid_dims,
                    self.cell_area_km2.reshape(self.grid_shape),
                    {"units": "km2"},
                ),
            },
            coords={"basin": self.basins, **self.grid_coords},
        )
        ds.attrs.update(method=self.method, grid_dims=" ".join(self.grid_dims))
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> BasinWeights:
        """Rebuild weights saved with :meth:`to_dataset`.

        Parameters
        ----------
        ds : xarray.Dataset
            As written by :meth:`to_dataset`.

        Returns
        -------
        BasinWeights
        """
        missing = [
            v for v in ("fraction", "basin_index", "cell_index", "cell_weight") if v not in ds.variables
        ]
        if missing or "grid_dims" not in ds.attrs:
            raise DataError(f"not a BasinWeights dataset: lacks {missing or ['grid_dims attribute']}")
        ydim, xdim = ds.attrs["grid_dims"].split()
        shape = (ds.sizes[ydim], ds.sizes[xdim])
        nb = ds.sizes["basin"]
        fractions = sp.csr_matrix(
            (ds["fraction"].values, (ds["basin_index"].values, ds["cell_index"].values)),
            shape=(nb, shape[0] * shape[1]),
        )
        return cls(
            basins=ds["basin"].values.astype(str),
            fractions=fractions,
            cell_weight=ds["cell_weight"].transpose(ydim, xdim).values.ravel(),
            cell_area_km2=ds["cell_area_km2"].transpose(ydim, xdim).values.ravel(),
            grid_dims=(ydim, xdim),
            grid_shape=shape,
            grid_coords={d: np.asarray(ds[d].values, dtype=float) for d in (ydim, xdim) if d in ds.coords},
            method=ds.attrs.get("method", "area"),
        )


def basin_weights(
    grid: xr.Dataset | xr.DataArray,
    *,
    masks: xr.DataArray | xr.Dataset | Mapping[str, xr.DataArray] | None = None,
    geojson: str | Path | Mapping | Any | None = None,
    gauges: Mapping[str, Any] | xr.DataArray | None = None,
    flowdir: xr.DataArray | None = None,
    flowdir_encoding: str | Mapping[int, tuple[int, int]] = "esri",
    method: str = "area",
    grid_dims: Sequence[str] | None = None,
    crs: str | None = None,
    id_property: str | None = None,
    gauges_crs: str | None = None,
    facc: xr.DataArray | None = None,
    snap_radius: int = 0,
) -> BasinWeights:
    """Compute sparse grid-to-basin weights.

    Exactly one way of describing the basins is used per call: ``masks``, ``geojson`` or ``gauges`` +
    ``flowdir``.

    Parameters
    ----------
    grid : xarray.Dataset or xarray.DataArray
        The forcing grid: 1-D ``lat``/``lon`` dimensions, ``(y, x)`` with 2-D ``lat``/``lon`` coordinates, or
        projected ``x``/``y`` with a ``crs`` (argument or attribute).
    masks : DataArray, Dataset or mapping, optional
        Boolean or fractional masks on the grid: a DataArray (with a ``basin`` dimension for several), a Dataset
        (one variable per basin) or ``{basin_id: DataArray}``.
    geojson : path, mapping, shapely geometry or mapping of id to those, optional
        Basin polygons in lon/lat (WGS84, as GeoJSON requires). A FeatureCollection gives one basin per feature,
        named by ``id_property``, else the feature ``id``.
    gauges : mapping or DataArray, optional
        Outlet locations for :func:`delineate` on ``flowdir``.
    flowdir : xarray.DataArray, optional
        D8 flow directions, on the forcing grid or a finer raster (with a ``crs`` attribute when projected).
    flowdir_encoding : str or mapping
        ``"esri"`` (default), ``"taudem"``, ``"ldd"`` or a custom table.
    method : {"area", "coslat"}
        Cell weights: true cell area or the cosine of the cell-centre latitude.
    grid_dims : sequence of str, optional
        ``(ydim, xdim)`` of the grid.
    crs : str, optional
        CRS of the grid's projected ``x``/``y`` (else ``grid.attrs["crs"]``).
    id_property : str, optional
        GeoJSON feature property holding the basin id.
    gauges_crs, facc, snap_radius
        Passed to :func:`delineate`: CRS of gauge coordinates, and snapping to the largest flow accumulation.

    Returns
    -------
    BasinWeights

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> grid = xr.Dataset(coords={"lat": [0.5, 1.5], "lon": [0.5, 1.5]})
    >>> mask = xr.DataArray([[1, 1], [0, 0]], dims=("lat", "lon"), coords=grid.coords)
    >>> w = basin_weights(grid, masks={"b": mask})
    >>> pr = xr.DataArray(np.array([[[1.0, 3.0], [9.0, 9.0]]]), dims=("time", "lat", "lon"))
    >>> float(w.aggregate(pr).squeeze())
    2.0
    """
    ydim, xdim = grid_dims_of(grid, grid_dims)
    given = [n for n, v in (("masks", masks), ("geojson", geojson), ("gauges", gauges)) if v is not None]
    if len(given) != 1:
        raise DataError(
            f"give exactly one of masks=, geojson= or gauges= (+ flowdir=); got {given or 'none'}"
        )
    if (gauges is None) != (flowdir is None):
        raise DataError("gauges= and flowdir= go together")
    if method not in ("area", "coslat"):
        raise DataError(f"method must be 'area' or 'coslat', got {method!r}")
    ny, nx = grid.sizes[ydim], grid.sizes[xdim]
    try:
        area = cell_area_km2(grid, (ydim, xdim), crs).values.ravel()
    except DataError:
        if method == "area":
            raise
        area = np.full(ny * nx, np.nan)
    if masks is not None:
        ids, rows = _masks_to_fractions(masks, grid, ydim, xdim)
    elif geojson is not None:
        geoms = _load_geometries(geojson, id_property)
        ids = [g[0] for g in geoms]
        rows = _polygon_fractions(geoms, grid, ydim, xdim, crs)
    else:
        basin_masks = delineate(
            flowdir,
            gauges,
            encoding=flowdir_encoding,
            gauges_crs=gauges_crs,
            facc=facc,
            snap_radius=snap_radius,
        )
        ids = list(basin_masks["basin"].values)
        fy, fx = _raster_dims(flowdir)
        same = (
            flowdir.sizes[fy] == ny
            and flowdir.sizes[fx] == nx
            and all(
                d in flowdir.coords and g in grid.coords and np.allclose(flowdir[d].values, grid[g].values)
                for d, g in ((fy, ydim), (fx, xdim))
            )
        )
        if same:
            rows = sp.csr_matrix(basin_masks.values.reshape(len(ids), -1).astype("float64"))
        else:
            rows = fine_mask_to_fractions(basin_masks, grid, grid_dims=(ydim, xdim), crs=crs)
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicated basin ids {sorted({i for i in ids if ids.count(i) > 1})}")
    rows = sp.csr_matrix(rows)
    rows.eliminate_zeros()
    empty = [b for b, n in zip(ids, np.diff(rows.indptr)) if n == 0]
    if empty:
        raise DataError(f"basins {empty} cover no cell of the grid ({ny} x {nx} cells on {ydim}, {xdim})")
    if method == "area":
        weight = area
    else:
        weight = np.cos(np.deg2rad(_cell_centres_lat(grid, ydim, xdim, _crs_of(grid, crs)))).ravel()
    return BasinWeights(
        basins=np.array(ids, dtype=str),
        fractions=rows,
        cell_weight=np.asarray(weight, dtype="float64"),
        cell_area_km2=area,
        grid_dims=(ydim, xdim),
        grid_shape=(ny, nx),
        grid_coords={d: np.asarray(grid[d].values, dtype=float) for d in (ydim, xdim) if d in grid.coords},
        method=method,
    )
