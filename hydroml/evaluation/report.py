"""Evaluation reports: metrics per basin or grid cell to NetCDF and CSV, a summary across basins, figures.

:func:`evaluate_datasets` pairs observed and predicted variables and scores them (all deterministic metrics,
the KGE components, and the NSE skill over a benchmark, climatology by default: a monthly-evaporation NSE means
little without it); :func:`summarize` gives median and quartiles across basins/cells; :func:`write_report`
writes ``metrics_<var>.nc``, ``metrics_<var>.csv``, ``summary.csv`` and, with the ``maps`` extra, figures:
the CDF of NSE/KGE across basins, hydrographs of the best, median and worst basins, and for gridded outputs a
skill map (cartopy; coastlines from Debian's ``python-cartopy-data`` when installed, otherwise none and a
warning). Plot functions take ``ax=`` and return it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hydroml._cf import encode_cf, same_units
from hydroml._io import atomic_path, write_netcdf_atomic
from hydroml.exceptions import DataError, UnitError, require

log = logging.getLogger("hydroml.evaluation")

__all__ = [
    "find_pairs",
    "evaluate_datasets",
    "summarize",
    "write_report",
    "plot_cdf",
    "plot_hydrographs",
    "plot_skill_map",
    "CARTOPY_DATA_DIRS",
]

#: where Debian's python-cartopy-data puts Natural Earth shapefiles (``pre_existing_data_dir`` of cartopy)
CARTOPY_DATA_DIRS = ("/usr/share/cartopy/data", "/usr/share/cartopy", "/usr/local/share/cartopy/data")

_UNIT_METRICS = ("rmse", "mae", "mean_error", "crps", "crps_fair", "interval_width")
_PERCENT_METRICS = ("pbias", "fhv", "fms", "flv", "peak_mape")
_OBS_SUFFIXES = ("_obs", "_observed")
_SIM_SUFFIXES = ("_sim", "_pred", "_hat", "")


def find_pairs(pred: Any, obs: Any = None) -> dict[str, tuple[str, str]]:
    """Pair observed and predicted variables.

    With ``obs`` (a Dataset), every prediction variable also in ``obs`` is paired with it. Without, the
    prediction file must hold the observations: ``X_obs`` is paired with ``X_sim``, ``X_pred``, ``X_hat`` or
    ``X``.

    Parameters
    ----------
    pred : xarray.Dataset
        Predictions.
    obs : xarray.Dataset, optional
        Observations.

    Returns
    -------
    dict
        ``{name: (obs_variable, sim_variable)}``.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"q_obs": ("time", [1.0, 2.0]), "q_sim": ("time", [1.0, 2.5])})
    >>> find_pairs(ds)
    {'q': ('q_obs', 'q_sim')}
    """
    if obs is not None:
        pairs = {v: (v, v) for v in pred.data_vars if v in obs.data_vars}
        if not pairs:
            raise DataError(
                f"no variable is in both the predictions {sorted(pred.data_vars)} and the observations "
                f"{sorted(obs.data_vars)}; pass pairs explicitly (--pair OBS_VAR:SIM_VAR)"
            )
        return pairs
    pairs = {}
    for v in pred.data_vars:
        for suf in _OBS_SUFFIXES:
            if str(v).endswith(suf):
                base = str(v)[: -len(suf)]
                for s in _SIM_SUFFIXES:
                    if base + s in pred.data_vars and base + s != v:
                        pairs[base] = (str(v), base + s)
                        break
    if not pairs:
        raise DataError(
            f"no observation variable (X_obs with X_sim, X_pred or X) among {sorted(pred.data_vars)}; "
            "pass --obs OBS.nc or --pair OBS_VAR:SIM_VAR"
        )
    return pairs


def _label(value: Any) -> str:
    """A coordinate value for a text attribute: dates as YYYY-MM-DD (no nanoseconds)."""
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[D]"))
    return str(value)


def _attrs(metric: str, units: str | None) -> dict[str, Any]:
    from hydroml.evaluation._core import METRICS

    a: dict[str, Any] = {"long_name": metric.replace("_", " ")}
    if metric in METRICS:
        a["perfect_value"] = METRICS[metric].perfect
        a["range"] = METRICS[metric].bounds
    if metric in _UNIT_METRICS and units:
        a["units"] = units
    elif metric in _PERCENT_METRICS:
        a["units"] = "%"
    else:
        a["units"] = "1"
    return a


def evaluate_datasets(
    obs: Any,
    pred: Any,
    *,
    pairs: Mapping[str, tuple[str, str]] | None = None,
    metrics: Sequence[str] | None = None,
    dim: str = "time",
    reference: str | None = "climatology",
    ref_period: tuple[Any, Any] | None = None,
    period: tuple[Any, Any] | None = None,
    member_dim: str = "member",
    min_pairs: int | None = None,
) -> dict[str, Any]:
    """Score every observed/predicted pair of variables.

    Parameters
    ----------
    obs : xarray.Dataset or None
        Observations (``None``: they are in ``pred``).
    pred : xarray.Dataset
        Predictions on ``dim`` and any other dimensions (basin, lat/lon...); an ensemble on ``member_dim`` is
        scored with CRPS (standard and fair) and 90 % interval coverage/width, its mean with the rest.
    pairs : dict, optional
        ``{name: (obs_variable, sim_variable)}``; default :func:`find_pairs`.
    metrics : sequence of str, optional
        Deterministic metrics (default all).
    dim : str
        Time dimension.
    reference : {"climatology", "persistence", "mean_flow"} or None
        Benchmark for the NSE skill (``nse_skill_<reference>``); the climatology is taken from the whole
        observed record (or ``ref_period``), which may extend beyond the predictions.
    ref_period, period : (start, end), optional
        Reference period of the benchmark; evaluation period.
    member_dim : str
        Ensemble dimension of the predictions, if any.
    min_pairs : int, optional
        Minimum number of valid pairs.

    Returns
    -------
    dict of str to xarray.Dataset
        Scores per variable, on the non-time dimensions.
    """
    import xarray as xr

    from hydroml.evaluation import metrics as m
    from hydroml.evaluation import probabilistic as p
    from hydroml.evaluation import skill as sk

    src = pred if obs is None else obs
    pairs = dict(pairs) if pairs else find_pairs(pred, obs)
    out: dict[str, Any] = {}
    for name, (ov, sv) in pairs.items():
        if ov not in src.data_vars:
            raise DataError(f"observation variable {ov!r} not found; available: {sorted(src.data_vars)}")
        if sv not in pred.data_vars:
            raise DataError(f"prediction variable {sv!r} not found; available: {sorted(pred.data_vars)}")
        o_full, s = src[ov], pred[sv]
        uo, us = o_full.attrs.get("units"), s.attrs.get("units")
        if uo and us and not same_units(o_full.attrs, s.attrs):
            raise UnitError(
                f"observations {ov!r} are in {uo!r} but predictions {sv!r} in {us!r}; convert one of them first "
                "(hydroml.data converts to canonical units)"
            )
        if dim not in s.dims:
            raise DataError(f"prediction {sv!r} has no dimension {dim!r}; its dimensions are {tuple(s.dims)}")
        ens = member_dim in s.dims and member_dim not in o_full.dims
        s_det = s.mean(member_dim) if ens else s
        o, s_al = xr.align(o_full, s_det, join="inner")
        if period is not None:
            o, s_al = (sk._select_period(x, period, dim) for x in (o, s_al))
        if o.sizes[dim] == 0:
            raise DataError(f"observations {ov!r} and predictions {sv!r} share no {dim!r} values")
        res = m.evaluate(o, s_al, metrics, dim=dim, min_pairs=min_pairs)
        if reference:
            if reference not in sk.REFERENCES:
                raise DataError(f"unknown reference {reference!r}; available: {list(sk.REFERENCES)}")
            if reference == "climatology" and not np.issubdtype(o_full[dim].dtype, np.datetime64):
                log.warning(
                    "%s: no climatology skill, the %r coordinate is not datetime64 (found %s)",
                    name,
                    dim,
                    o_full[dim].dtype,
                )
                ref = None
            elif reference == "climatology":
                ref = sk.climatology(o_full, ref_period=ref_period, dim=dim)
            elif reference == "persistence":
                ref = sk.persistence(o_full, dim=dim)
            elif reference == "mean_flow":
                ref = sk.mean_flow(o_full, ref_period=ref_period, dim=dim)
            if ref is not None:
                ref = ref.sel({dim: o[dim]})
                valid = s_al.notnull() & ref.notnull()
                res[f"nse_{reference}"] = m.nse(o.where(valid), ref, dim=dim, min_pairs=min_pairs)
                res[f"nse_skill_{reference}"] = sk.skill_score(
                    "nse", o, s_al, ref, dim=dim, min_pairs=min_pairs
                )
        if ens:
            oe, se = xr.align(o, s, join="inner")
            res["crps"] = p.crps_ensemble(oe, se, member_dim=member_dim, dim=dim, min_pairs=min_pairs)
            res["crps_fair"] = p.crps_ensemble(
                oe, se, member_dim=member_dim, dim=dim, fair=True, min_pairs=min_pairs
            )
            res["interval_coverage"] = p.interval_coverage(oe, se, member_dim=member_dim, dim=dim)
            res["interval_width"] = p.interval_width(oe, se, member_dim=member_dim, dim=dim)
        res["n_pairs"] = (o.notnull() & s_al.notnull()).sum(dim).astype(np.int64)
        units = o_full.attrs.get("units") or s.attrs.get("units")
        for k in res.data_vars:
            res[k].attrs = _attrs(str(k), units) if k != "n_pairs" else {"long_name": "number of valid pairs"}
        res.attrs = {
            "title": f"hydroml evaluation of {sv} against {ov}",
            "observed_variable": ov,
            "simulated_variable": sv,
            "time_period": f"{_label(o[dim].values[0])}..{_label(o[dim].values[-1])}",
            "conventions_doc": "docs/metrics.md (pairwise NaN dropping, min valid pairs, constant obs -> NaN)",
        }
        out[name] = res
    return out


def summarize(scores: Any) -> Any:
    """Median and quartiles of every score across basins/cells (NaN ignored).

    Parameters
    ----------
    scores : xarray.Dataset
        Scores on non-time dimensions (e.g. from :func:`evaluate_datasets`).

    Returns
    -------
    pandas.DataFrame
        One row per score: ``n`` (finite values), ``median``, ``q25``, ``q75``, ``mean``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> s = xr.Dataset({"nse": ("basin", [0.2, 0.5, 0.8, np.nan])})
    >>> summarize(s).loc["nse", ["n", "median"]].tolist()
    [3.0, 0.5]
    """
    import pandas as pd

    rows = {}
    for k, v in scores.data_vars.items():
        a = np.asarray(v.values, dtype=np.float64).ravel()
        a = a[np.isfinite(a)]
        if a.size:
            q25, med, q75 = np.quantile(a, [0.25, 0.5, 0.75])
            rows[k] = {"n": float(a.size), "median": med, "q25": q25, "q75": q75, "mean": a.mean()}
        else:
            rows[k] = {"n": 0.0, "median": np.nan, "q25": np.nan, "q75": np.nan, "mean": np.nan}
    return pd.DataFrame.from_dict(rows, orient="index")


# ------------------------------------------------------------------------------------------------------------
# figures
def plot_cdf(
    scores: Any, metrics: Sequence[str] = ("nse", "kge"), ax: Any = None, lower: float = -1.0
) -> Any:
    """Empirical CDF of scores across basins/cells (x clipped at ``lower``; the legend counts those below).

    Parameters
    ----------
    scores : xarray.Dataset
        Scores.
    metrics : sequence of str
        Which scores.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    lower : float
        Left end of the x axis.

    Returns
    -------
    matplotlib.axes.Axes
    """
    plt = require("matplotlib.pyplot", "maps")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for k in metrics:
        if k not in scores:
            continue
        a = np.sort(np.asarray(scores[k].values, dtype=float).ravel())
        a = a[np.isfinite(a)]
        if not a.size:
            continue
        below = int((a < lower).sum())
        y = np.arange(1, a.size + 1) / a.size
        label = (
            f"{k.upper()} (median {np.median(a):.2f}, n={a.size}"
            + (f", {below} < {lower}" if below else "")
            + ")"
        )
        xs = np.concatenate([[lower], np.clip(a, lower, None), [max(1.0, a[-1])]])
        ys = np.concatenate([[0.0], y, [1.0]])
        ax.step(xs, ys, where="post", label=label)
    ax.set_xlim(lower, 1.0)
    ax.set_ylim(0, 1)
    ax.set_xlabel("score")
    ax.set_ylabel("fraction of basins / cells")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def _stack_sites(da: Any, dim: str) -> Any:
    other = [d for d in da.dims if d != dim]
    if not other:
        return da.expand_dims(site=[0])
    return da.stack(site=other).transpose("site", ...)


def plot_hydrographs(obs: Any, sim: Any, score: Any, dim: str = "time", axes: Any = None) -> Any:
    """Observed and simulated series of the best, median and worst basin (or cell) by ``score``.

    Parameters
    ----------
    obs, sim : xarray.DataArray
        Observed and simulated series on ``dim`` and the basin/cell dimensions.
    score : xarray.DataArray
        Score on the basin/cell dimensions (e.g. the NSE).
    dim : str
        Time dimension.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw.

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
    """
    import xarray as xr

    plt = require("matplotlib.pyplot", "maps")
    obs, sim = xr.align(obs, sim, join="inner")
    so, ss = _stack_sites(obs, dim), _stack_sites(sim, dim)
    sc = score.stack(site=[d for d in score.dims]) if score.dims else score.expand_dims(site=[0])
    vals = np.asarray(sc.values, dtype=float)
    finite = np.flatnonzero(np.isfinite(vals))
    if axes is None:
        _, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    if not finite.size:
        axes[0].set_title("no finite score")
        return np.asarray(axes)
    order = finite[np.argsort(vals[finite])]
    picks: dict[str, int] = {}
    for label, i in (("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])):
        if i not in picks.values():
            picks[label] = int(i)
    name = getattr(score, "name", None) or "score"
    for ax in list(axes)[len(picks) :]:
        ax.set_visible(False)
    for ax, (label, i) in zip(axes, picks.items()):
        site = sc["site"].values[i]
        site = site[0] if isinstance(site, tuple) and len(site) == 1 else site
        ax.plot(so[dim].values, so.values[i], color="k", lw=0.8, label="observed")
        ax.plot(ss[dim].values, ss.values[i], color="C0", lw=0.8, label="simulated")
        ax.set_title(f"{label}: {site} ({name} = {vals[i]:.3f})", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    return np.asarray(axes)


_NE_COAST = ("shapefiles", "natural_earth", "physical", "ne_110m_coastline.shp")
_GSHHS_COAST = ("shapefiles", "gshhs", "c", "GSHHS_c_L1.shp")


def _cartopy_offline() -> tuple[Any, str | None]:
    """Import cartopy and point it at offline coastlines; return (cartopy, "natural_earth" | "gshhs" | None).

    Debian's ``python-cartopy-data`` installs GSHHS coastlines under ``/usr/share/cartopy/data``; a
    Natural Earth copy is used when one is found. Nothing is ever downloaded.
    """
    cartopy = require("cartopy", "maps")
    dirs = [str(cartopy.config.get("pre_existing_data_dir") or ""), *CARTOPY_DATA_DIRS]
    for kind, parts in (("natural_earth", _NE_COAST), ("gshhs", _GSHHS_COAST)):
        for d in dirs:
            if d and Path(d, *parts).is_file():
                cartopy.config["pre_existing_data_dir"] = d
                return cartopy, kind
    return cartopy, None


def plot_skill_map(
    score: Any, ax: Any = None, coastlines: bool = True, vmin: float = -1.0, vmax: float = 1.0
) -> Any:
    """Map of a score on a lat/lon grid (cartopy, PlateCarree), with offline coastlines when available.

    Parameters
    ----------
    score : xarray.DataArray
        Score with ``lat`` and ``lon`` coordinates (1-D dimensions or 2-D curvilinear coordinates).
    ax : cartopy GeoAxes, optional
        Axes to draw on (created with a PlateCarree projection otherwise).
    coastlines : bool
        Draw coastlines when Natural Earth data are installed (``apt-get install python-cartopy-data``);
        without them the map has no coastlines and a warning says so (nothing is downloaded).
    vmin, vmax : float
        Colour range.

    Returns
    -------
    matplotlib.axes.Axes
    """
    plt = require("matplotlib.pyplot", "maps")
    _, coast = _cartopy_offline()
    ccrs = require("cartopy.crs", "maps")
    if "lat" not in score.coords or "lon" not in score.coords:
        raise DataError(f"a skill map needs lat and lon coordinates; found {list(score.coords)}")
    if ax is None:
        fig = plt.figure(figsize=(7, 5))
        ax = fig.add_subplot(1, 1, 1, projection=ccrs.PlateCarree())
    lat, lon = score["lat"], score["lon"]
    if lat.ndim == 1 and lon.ndim == 1:
        val = score.transpose(lat.dims[0], lon.dims[0]).values
        lon2, lat2 = np.meshgrid(lon.values, lat.values)
    else:
        val, lon2, lat2 = score.values, lon.values, lat.values
    mesh = ax.pcolormesh(
        lon2, lat2, val, vmin=vmin, vmax=vmax, cmap="RdYlBu", transform=ccrs.PlateCarree(), shading="auto"
    )
    plt.colorbar(mesh, ax=ax, shrink=0.8, label=str(score.name or "score"))
    if coastlines:
        if coast == "natural_earth":
            ax.coastlines(resolution="110m", linewidth=0.6)
        elif coast == "gshhs":
            cfeature = require("cartopy.feature", "maps")
            ax.add_feature(
                cfeature.GSHHSFeature(scale="c", levels=[1], facecolor="none", edgecolor="k", linewidth=0.6)
            )
        else:
            warnings.warn(
                "no offline Natural Earth coastlines found (install Debian's python-cartopy-data, looked in "
                f"{', '.join(CARTOPY_DATA_DIRS)}); drawing the map without coastlines",
                UserWarning,
                stacklevel=2,
            )
    gl = ax.gridlines(draw_labels=True, linewidth=0.3, alpha=0.5)
    gl.top_labels = gl.right_labels = False
    pad = 0.5
    ax.set_extent(
        [np.nanmin(lon2) - pad, np.nanmax(lon2) + pad, np.nanmin(lat2) - pad, np.nanmax(lat2) + pad],
        crs=ccrs.PlateCarree(),
    )
    return ax


def _is_gridded(da: Any, dim: str) -> bool:
    return (
        "lat" in da.coords
        and "lon" in da.coords
        and any(d != dim for d in da.dims)
        and (
            da["lat"].ndim == 2
            or ({da["lat"].dims[0], da["lon"].dims[0]} <= set(da.dims) and da["lat"].dims != da["lon"].dims)
        )
    )


def _write_csv(df: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp)
    return path


def write_report(
    results: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    obs: Any = None,
    pred: Any = None,
    pairs: Mapping[str, tuple[str, str]] | None = None,
    dim: str = "time",
    figures: bool = True,
    input_data: str | None = None,
) -> list[Path]:
    """Write scores (CF-1.8 NetCDF + CSV), the summary and figures into ``out_dir``.

    Parameters
    ----------
    results : dict of str to xarray.Dataset
        From :func:`evaluate_datasets`.
    out_dir : path-like
        Output directory (created).
    obs, pred : xarray.Dataset, optional
        The data, for hydrographs (``obs`` None: observations inside ``pred``).
    pairs : dict, optional
        The pairs used (for hydrographs); default :func:`find_pairs`.
    dim : str
        Time dimension.
    figures : bool
        Draw figures (needs matplotlib, and cartopy for maps: the ``maps`` extra). Missing packages are logged
        and skipped, never fatal.
    input_data : str, optional
        The scored files or catalog names (recorded as ``input_data``; file names, never machine paths).

    Returns
    -------
    list of pathlib.Path
        Files written.
    """
    import pandas as pd

    import hydroml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summaries = []
    for name, res in results.items():
        res = res.assign_attrs(history=f"hydroml {hydroml.__version__} evaluate", source="hydroml.evaluation")
        written.append(write_netcdf_atomic(encode_cf(res, input_data), out / f"metrics_{name}.nc"))
        df = (
            res.to_dataframe()
            if res.dims
            else pd.DataFrame([{k: float(v) for k, v in res.data_vars.items()}])
        )
        written.append(_write_csv(df, out / f"metrics_{name}.csv"))
        sm = summarize(res)
        sm.insert(0, "variable", name)
        summaries.append(sm.rename_axis("metric").reset_index())
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    written.append(_write_csv(summary.set_index(["variable", "metric"]), out / "summary.csv"))
    if figures:
        try:
            written += _figures(results, out, obs, pred, pairs, dim)
        except ImportError as err:
            log.warning("figures skipped: %s", err)
    return written


def _figures(results: Mapping[str, Any], out: Path, obs: Any, pred: Any, pairs: Any, dim: str) -> list[Path]:
    plt = require("matplotlib.pyplot", "maps")
    written = []
    pairs = dict(pairs) if pairs else (find_pairs(pred, obs) if pred is not None else {})
    for name, res in results.items():
        fig, ax = plt.subplots(figsize=(5.5, 4))
        plot_cdf(res, ("nse", "kge"), ax=ax)
        ax.set_title(f"{name}: NSE and KGE across basins/cells", fontsize=10)
        written.append(_savefig(fig, out / f"cdf_{name}.png"))
        if pred is not None and name in pairs and "nse" in res:
            ov, sv = pairs[name]
            o = (pred if obs is None else obs)[ov]
            s = pred[sv]
            if "member" in s.dims and "member" not in o.dims:
                s = s.mean("member")
            fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
            plot_hydrographs(o, s, res["nse"], dim=dim, axes=axes)
            written.append(_savefig(fig, out / f"hydrographs_{name}.png"))
            if _is_gridded(s, dim):
                score = res.get(next((k for k in res.data_vars if str(k).startswith("nse_skill_")), "nse"))
                if "lat" not in score.coords:
                    score = score.assign_coords(lat=s["lat"], lon=s["lon"])
                try:
                    ax = plot_skill_map(score)
                    ax.set_title(f"{name}: {score.name}", fontsize=10)
                    written.append(_savefig(ax.figure, out / f"skill_map_{name}.png"))
                except ImportError as err:
                    log.warning("skill map skipped: %s", err)
    return written


def _savefig(fig: Any, path: Path) -> Path:
    plt = require("matplotlib.pyplot", "maps")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
