"""Skill across basins: CDFs of a metric for several models, and skill maps with offline coastlines."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hydroml.exceptions import DataError, require
from hydroml.plot._common import get_ax, pyplot

log = logging.getLogger("hydroml.plot")

__all__ = ["metric_cdf", "skill_map", "offline_coastlines", "COASTLINE_FILES"]

#: Offline coastline shapefiles looked for, best first, relative to a cartopy data folder: Natural Earth (from
#: a previous cartopy download or a copy) and GSHHS (Debian's ``python-cartopy-data`` ships ``c`` and ``l``).
COASTLINE_FILES = (
    ("shapefiles", "natural_earth", "physical", "ne_110m_coastline.shp"),
    ("shapefiles", "natural_earth", "physical", "ne_50m_coastline.shp"),
    ("shapefiles", "natural_earth", "physical", "ne_10m_coastline.shp"),
    ("shapefiles", "gshhs", "c", "GSHHS_c_L1.shp"),
    ("shapefiles", "gshhs", "l", "GSHHS_l_L1.shp"),
)


def _models(scores: Any, metric: str | None) -> tuple[dict[str, np.ndarray], str | None]:
    """``{model: values}`` from a mapping, a Dataset (one variable per model) or a DataArray with ``model``."""
    out: dict[str, np.ndarray] = {}
    if hasattr(scores, "data_vars"):  # Dataset: one variable per model
        for k, v in scores.data_vars.items():
            out[str(k)] = np.asarray(v.values, dtype=float).ravel()
    elif hasattr(scores, "dims") and "model" in getattr(scores, "dims", ()):
        for m in scores["model"].values:
            out[str(m)] = np.asarray(scores.sel(model=m).values, dtype=float).ravel()
        metric = metric or getattr(scores, "name", None)
    elif isinstance(scores, Mapping):
        for k, v in scores.items():
            if hasattr(v, "data_vars"):
                if metric is None or metric not in v:
                    raise DataError(
                        f"metric_cdf: model {k!r} is a Dataset; say which variable with metric= "
                        f"(available: {sorted(map(str, v.data_vars))})"
                    )
                v = v[metric]
            out[str(k)] = np.asarray(getattr(v, "values", v), dtype=float).ravel()
    else:
        name = getattr(scores, "name", None)
        out[str(name or metric or "model")] = np.asarray(
            getattr(scores, "values", scores), dtype=float
        ).ravel()
        metric = metric or name
    if not out:
        raise DataError("metric_cdf: no scores given")
    return out, metric


def metric_cdf(
    scores: Any,
    *,
    metric: str | None = None,
    ax: Any = None,
    lower: float | None = -1.0,
    upper: float | None = 1.0,
    title: str | None = None,
) -> Any:
    """Empirical CDF of a metric across basins (or cells), one curve per model.

    The curve of a model steps up by ``1/n`` at each of its ``n`` finite scores; the legend gives its median and
    ``n``, and how many scores fall below ``lower`` (they are drawn at ``lower``, so that one very bad basin does
    not squeeze the axis).

    Parameters
    ----------
    scores : mapping, xarray.Dataset or xarray.DataArray
        ``{model: scores}`` (arrays or DataArrays over basins; or Datasets with ``metric`` as a variable), a
        Dataset with one variable per model, or a DataArray with a ``model`` dimension.
    metric : str, optional
        Name of the metric (axis label; the variable to take from Dataset values).
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    lower, upper : float, optional
        x-axis range (``None``: the data's).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
        One step line per model (x = the sorted scores, clipped at ``lower``; y = the fraction of basins).

    Examples
    --------
    >>> ax = metric_cdf({"lstm": [0.6, 0.8, 0.7], "climatology": [0.1, 0.3, -2.0]}, metric="NSE")
    >>> [line.get_label().split(" (")[0] for line in ax.get_lines()]
    ['lstm', 'climatology']
    """
    models, metric = _models(scores, metric)
    ax = get_ax(ax, (5.5, 4.0))
    for k, (name, a) in enumerate(models.items()):
        a = np.sort(a[np.isfinite(a)])
        if not a.size:
            log.warning("metric_cdf: model %r has no finite score; not drawn", name)
            continue
        below = int((a < lower).sum()) if lower is not None else 0
        x = np.clip(a, lower, None) if lower is not None else a
        y = np.arange(1, a.size + 1) / a.size
        label = (
            f"{name} (median {np.median(a):.2f}, n={a.size}"
            + (f", {below} < {lower:g}" if below else "")
            + ")"
        )
        ax.step(np.r_[x[0], x], np.r_[0.0, y], where="post", label=label, color=f"C{k}", lw=1.4)
    if lower is not None or upper is not None:
        ax.set_xlim(lower, upper)
    ax.set_ylim(0, 1)
    ax.set_xlabel(metric or "score")
    ax.set_ylabel("fraction of basins")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _data_dirs() -> list[Path]:
    cartopy = require("cartopy", "maps")
    try:
        from hydroml.evaluation.report import CARTOPY_DATA_DIRS
    except ImportError:  # pragma: no cover - report is part of hydroml
        CARTOPY_DATA_DIRS = ("/usr/share/cartopy/data",)
    dirs = [cartopy.config.get("pre_existing_data_dir"), *CARTOPY_DATA_DIRS, cartopy.config.get("data_dir")]
    out = []
    for d in dirs:
        if d and str(d) not in ("", ".") and Path(d) not in out:
            out.append(Path(d))
    return out


def offline_coastlines() -> Path | None:
    """The coastline shapefile available offline, or ``None``.

    Looks for :data:`COASTLINE_FILES` under cartopy's ``pre_existing_data_dir``, the folders where Debian's
    ``python-cartopy-data`` installs them (``/usr/share/cartopy/data``), and cartopy's own ``data_dir`` (files
    it downloaded earlier). Nothing is downloaded.

    Returns
    -------
    pathlib.Path or None
    """
    for d in _data_dirs():
        for parts in COASTLINE_FILES:
            path = d.joinpath(*parts)
            if path.is_file():
                return path
    return None


def _add_coastlines(ax: Any, extent: tuple[float, float, float, float]) -> bool:
    path = offline_coastlines()
    if path is None:
        warnings.warn(
            "no offline coastlines found (install Debian's python-cartopy-data, or put Natural Earth shapefiles "
            f"under cartopy.config['pre_existing_data_dir']; looked in {', '.join(map(str, _data_dirs()))}): "
            "drawing the map without coastlines (hydroml never downloads them)",
            UserWarning,
            stacklevel=3,
        )
        return False
    ccrs = require("cartopy.crs", "maps")
    shapereader = require("cartopy.io.shapereader", "maps")
    geometry = require("shapely.geometry", "maps")
    w, e, s, n = extent
    box = geometry.box(w - 5, s - 5, e + 5, n + 5)
    # read the file directly: cartopy's feature classes would download a missing file. pyshp logs a warning for
    # each GSHHS polygon made only of holes (harmless here): keep it quiet while reading.
    pyshp_log = logging.getLogger("shapefile")
    level = pyshp_log.level
    pyshp_log.setLevel(logging.ERROR)
    try:
        geoms = [g for g in shapereader.Reader(str(path)).geometries() if g.intersects(box)]
    finally:
        pyshp_log.setLevel(level)
    if geoms:
        ax.add_geometries(
            geoms, ccrs.PlateCarree(), facecolor="none", edgecolor="0.25", linewidth=0.7, zorder=3
        )
    log.debug("coastlines from %s (%d shapes near the map)", path, len(geoms))
    return True


def skill_map(
    score: Any,
    *,
    ax: Any = None,
    lat: Any = None,
    lon: Any = None,
    projection: Any = None,
    coastlines: bool = True,
    cmap: str = "RdYlBu",
    vmin: float = -1.0,
    vmax: float = 1.0,
    extent: tuple[float, float, float, float] | None = None,
    pad: float = 0.5,
    markersize: float = 60.0,
    label: str | None = None,
    title: str | None = None,
) -> Any:
    """Map a score per grid cell (a mesh) or per basin outlet (coloured points) on a map projection.

    Coastlines come from offline shapefiles only (:func:`offline_coastlines`); without them the map is drawn
    without coastlines and a :class:`UserWarning` says what to install. Nothing is ever downloaded.

    Parameters
    ----------
    score : xarray.DataArray
        Gridded: on ``(lat, lon)`` dimensions, or on ``(y, x)`` with 2-D ``lat``/``lon`` coordinates. Points: on
        one dimension (``basin``, ``station``) with ``lat``/``lon`` coordinates on it, or with ``lat=``/``lon=``.
    ax : cartopy.mpl.geoaxes.GeoAxes, optional
        Where to draw (default a new figure with ``projection``).
    lat, lon : array-like, optional
        Point coordinates when ``score`` has none (e.g. ``gauge_lat``/``gauge_lon``).
    projection : cartopy.crs.Projection, optional
        Projection of new axes (default ``PlateCarree``).
    coastlines : bool
        Draw offline coastlines.
    cmap : str
        Colour map.
    vmin, vmax : float
        Colour range (NSE-like scores: -1..1).
    extent : (west, east, south, north), optional
        Map extent in degrees (default the data's plus ``pad``).
    pad : float
        Degrees added around the data for the default extent.
    markersize : float
        Point size (basin outlets).
    label : str, optional
        Colour-bar label (default the score's name).
    title : str, optional
        Axes title.

    Returns
    -------
    cartopy.mpl.geoaxes.GeoAxes
        With the mesh (``QuadMesh``) or the points (``PathCollection``) and a colour bar (``ax.cbar``).
    """
    plt = pyplot()
    ccrs = require("cartopy.crs", "maps")
    geoaxes = require("cartopy.mpl.geoaxes", "maps")
    if not hasattr(score, "dims"):
        raise DataError(
            "skill_map: score must be an xarray.DataArray (with lat/lon coordinates, or pass lat=, lon=)"
        )
    la = np.asarray(
        lat if lat is not None else score["lat"].values if "lat" in score.coords else [], dtype=float
    )
    lo = np.asarray(
        lon if lon is not None else score["lon"].values if "lon" in score.coords else [], dtype=float
    )
    if la.size == 0 or lo.size == 0:
        raise DataError(
            f"skill_map: {score.name or 'score'} has no lat/lon coordinates (coordinates: {list(score.coords)}); "
            "pass lat= and lon="
        )
    if ax is None:
        fig = plt.figure(figsize=(7.0, 5.0), layout="constrained")
        ax = fig.add_subplot(1, 1, 1, projection=projection or ccrs.PlateCarree())
    elif not isinstance(ax, geoaxes.GeoAxes):
        raise DataError(
            "skill_map: ax must be a cartopy GeoAxes, e.g. plt.subplot(projection=cartopy.crs.PlateCarree())"
        )
    values = np.asarray(score.values, dtype=float)
    gridded = values.ndim == 2 and (la.ndim == 2 or (la.size, lo.size) in (values.shape, values.shape[::-1]))
    if gridded:
        if la.ndim == 1:
            ydim = score["lat"].dims[0] if "lat" in score.coords else score.dims[0]
            if score.dims[0] != ydim:
                values = values.T
            lon2, lat2 = np.meshgrid(lo, la)
        else:
            lon2, lat2 = lo, la
        art = ax.pcolormesh(
            lon2, lat2, values, cmap=cmap, vmin=vmin, vmax=vmax, transform=ccrs.PlateCarree(), shading="auto"
        )
    elif values.ndim == 1 and la.shape == values.shape == lo.shape:
        lon2, lat2 = lo, la
        art = ax.scatter(
            lo,
            la,
            c=values,
            s=markersize,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            edgecolors="k",
            linewidths=0.6,
            transform=ccrs.PlateCarree(),
            zorder=4,
        )
    else:
        raise DataError(
            f"skill_map: cannot place {score.name or 'score'} with dimensions {dict(score.sizes)} on lat "
            f"{la.shape} / lon {lo.shape}: expected a 2-D grid or one value per point"
        )
    if extent is None:
        extent = (
            float(np.nanmin(lon2)) - pad,
            float(np.nanmax(lon2)) + pad,
            float(np.nanmin(lat2)) - pad,
            float(np.nanmax(lat2)) + pad,
        )
    ax.set_extent(extent, crs=ccrs.PlateCarree())
    if coastlines:
        _add_coastlines(ax, extent)
    ax.cbar = plt.colorbar(art, ax=ax, shrink=0.8, label=label or str(score.name or "score"))
    gl = ax.gridlines(draw_labels=True, x_inline=False, y_inline=False, linewidth=0.3, color="0.5", alpha=0.5)
    gl.top_labels = gl.right_labels = False
    if title:
        ax.set_title(title, fontsize=10)
    return ax
