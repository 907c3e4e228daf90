r"""Skill of a simulation relative to a reference (benchmark) simulation.

.. math:: \mathrm{skill} = \frac{S - S_\mathrm{ref}}{S_\mathrm{perfect} - S_\mathrm{ref}}

for any metric S with a perfect value (1 for NSE/KGE, 0 for RMSE...): 1 is perfect, 0 is no better than the
reference, negative is worse. Built-in references:

- :func:`climatology`: the day-of-year (daily data) or month-of-year (monthly data) mean of the observations over a
  reference period, mapped back onto every time step;
- :func:`persistence`: the observation ``lag`` steps earlier;
- :func:`mean_flow`: the mean observation of the reference period (the benchmark of the NSE).

With the NSE as metric the skill is the *benchmark efficiency* of Schaefli and Gupta (2007),
:math:`1 - \sum (s-o)^2 / \sum (o - r)^2` (:func:`benchmark_efficiency`).

Score, reference score and skill are computed on the same pairs: a step counts only where obs, sim and the
reference are all valid (persistence loses the first ``lag`` steps, climatology nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hydroml.evaluation import metrics as _m
from hydroml.evaluation._core import METRICS
from hydroml.exceptions import ConfigError, DataError

__all__ = [
    "climatology",
    "persistence",
    "mean_flow",
    "skill_score",
    "benchmark_skill",
    "benchmark_efficiency",
    "REFERENCES",
]

REFERENCES = ("climatology", "persistence", "mean_flow")


def _is_xr(x: Any) -> bool:
    return type(x).__module__.startswith("xarray")


def _select_period(obs: Any, ref_period: tuple[Any, Any] | None, dim: str) -> Any:
    if ref_period is None:
        return obs
    start, end = ref_period
    sub = obs.sel({dim: slice(start, end)})
    if sub.sizes[dim] == 0:
        raise DataError(
            f"reference period {start}..{end} holds no {dim!r} values; the data cover "
            f"{obs[dim].values[0]}..{obs[dim].values[-1]}"
        )
    return sub


def _doy_key(time: Any) -> Any:
    """Day of year on a 365-day basis: 29 February shares 28 February's key, 31 December is always 365."""
    import xarray as xr

    doy = time.dt.dayofyear
    leap = time.dt.is_leap_year
    return xr.where(leap & (doy >= 60), doy - 1, doy)


def infer_freq(obs: Any, dim: str = "time") -> str:
    """``"month"`` when the median step is 28 days or more, else ``"dayofyear"``."""
    t = obs[dim].values
    if t.size < 2:
        return "dayofyear"
    step = np.median(np.diff(t).astype("timedelta64[s]").astype(np.float64)) / 86400.0
    return "month" if step >= 28 else "dayofyear"


def climatology(
    obs: Any,
    *,
    freq: str | None = None,
    ref_period: tuple[Any, Any] | None = None,
    dim: str = "time",
    smooth: int = 1,
) -> Any:
    """Climatological reference: the mean observation of each day (or month) of the year, on obs's time axis.

    Parameters
    ----------
    obs : xarray.DataArray
        Observations with a datetime coordinate ``dim``.
    freq : {"dayofyear", "month"}, optional
        Grouping; default inferred from the time step (monthly data -> ``"month"``).
    ref_period : (start, end), optional
        Period the means are taken from (e.g. the training period), default the whole record.
    dim : str
        Time dimension.
    smooth : int
        Width (odd, in days) of a circular moving mean applied to a day-of-year climatology; 1 = none.

    Returns
    -------
    xarray.DataArray
        The climatology on every time step of ``obs`` (same shape); NaN for a day or month never observed in
        the reference period.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.date_range("2000-01-01", "2003-12-31", freq="MS")
    >>> obs = xr.DataArray(np.tile(np.arange(12.0), 4), dims="time", coords={"time": t})
    >>> clim = climatology(obs.where(obs.time.dt.year < 2003), ref_period=("2000", "2002"))
    >>> bool((clim == obs).all())
    True
    """
    if not _is_xr(obs):
        raise DataError("climatology needs an xarray object with a datetime coordinate")
    if dim not in obs.dims:
        raise DataError(f"obs has no dimension {dim!r}; its dimensions are {tuple(obs.dims)}")
    freq = freq or infer_freq(obs, dim)
    ref = _select_period(obs, ref_period, dim)
    if freq == "month":
        key_ref, key_all = ref[dim].dt.month, obs[dim].dt.month
    elif freq == "dayofyear":
        key_ref, key_all = _doy_key(ref[dim]), _doy_key(obs[dim])
    else:
        raise ConfigError(f"climatology freq must be 'dayofyear' or 'month'; found {freq!r}")
    clim = ref.groupby(key_ref.rename("key")).mean(dim)
    if smooth > 1:
        if freq != "dayofyear" or smooth % 2 == 0:
            raise ConfigError(
                f"smooth must be an odd number of days for a day-of-year climatology; found {smooth}"
            )
        h = smooth // 2
        clim = clim.reindex(key=np.arange(1, 366))
        clim = clim.pad(key=(h, h), mode="wrap").rolling(key=smooth, center=True, min_periods=1).mean()
        clim = clim.isel(key=slice(h, -h))
    out = clim.reindex(key=np.unique(key_all.values)).sel(key=key_all.rename(None).values)
    out = out.rename({"key": dim}).assign_coords({dim: obs[dim].values}).transpose(*obs.dims)
    return out.rename(obs.name).assign_attrs(reference="climatology", freq=freq, **_period_attr(ref_period))


def _period_attr(ref_period: tuple[Any, Any] | None) -> dict[str, str]:
    return {} if ref_period is None else {"reference_period": f"{ref_period[0]}..{ref_period[1]}"}


def persistence(obs: Any, *, lag: int = 1, dim: str | None = None, axis: int | None = None) -> Any:
    """Persistence reference: the observation ``lag`` steps earlier (NaN for the first ``lag`` steps).

    Parameters
    ----------
    obs : array_like or xarray.DataArray
        Observations.
    lag : int
        Lead of the forecast in steps (>= 1).
    dim, axis
        Time dimension (xarray, default ``"time"``) or axis (NumPy, default -1).

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    Examples
    --------
    >>> persistence(np.array([1.0, 2.0, 3.0]))
    array([nan,  1.,  2.])
    """
    if lag < 1:
        raise ConfigError(f"persistence lag must be >= 1; found {lag}")
    if _is_xr(obs):
        return obs.shift({dim or "time": lag}).assign_attrs(reference=f"persistence (lag {lag})")
    a = np.moveaxis(np.asarray(obs, dtype=np.float64), -1 if axis is None else axis, -1)
    out = np.full_like(a, np.nan)
    out[..., lag:] = a[..., :-lag]
    return np.moveaxis(out, -1, -1 if axis is None else axis)


def mean_flow(
    obs: Any,
    *,
    ref_period: tuple[Any, Any] | None = None,
    dim: str | None = None,
    axis: int | None = None,
) -> Any:
    """Mean-flow reference: the mean observation of the reference period on every step.

    Parameters
    ----------
    obs : array_like or xarray.DataArray
        Observations.
    ref_period : (start, end), optional
        xarray only: period of the mean (default the whole record).
    dim, axis
        Time dimension (xarray) or axis (NumPy).

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    Examples
    --------
    >>> mean_flow(np.array([1.0, np.nan, 3.0]))
    array([2., 2., 2.])
    """
    if _is_xr(obs):
        d = dim or "time"
        m = _select_period(obs, ref_period, d).mean(d)
        return (m.broadcast_like(obs).transpose(*obs.dims)).assign_attrs(reference="mean_flow")
    if ref_period is not None:
        raise ConfigError("ref_period needs an xarray object with a time coordinate")
    a = np.asarray(obs, dtype=np.float64)
    ax = -1 if axis is None else axis
    return np.broadcast_to(np.nanmean(a, axis=ax, keepdims=True), a.shape).copy()


def _metric(metric: str | Callable[..., Any]) -> tuple[Callable[..., Any], float, str]:
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; available: {sorted(METRICS)}")
        return getattr(_m, metric), METRICS[metric].perfect, metric
    perfect = getattr(metric, "perfect", None)
    return metric, (np.nan if perfect is None else perfect), getattr(metric, "__name__", "metric")


def skill_score(
    metric: str | Callable[..., Any],
    obs: Any,
    sim: Any,
    ref: Any,
    *,
    perfect: float | None = None,
    dim: str | None = None,
    axis: int | None = None,
    **kwargs: Any,
) -> Any:
    r"""Skill of ``sim`` over the reference ``ref`` for any metric.

    .. math:: \mathrm{skill} = \frac{S(o, s) - S(o, r)}{S_\mathrm{perfect} - S(o, r)}

    **Perfect value:** 1. **Range:** (-inf, 1]; 0 = as good as the reference. NaN where the reference is
    itself perfect.

    Parameters
    ----------
    metric : str or callable
        A metric name (``"nse"``, ``"rmse"``...) or a function ``f(obs, sim, dim=/axis=)`` with a ``perfect``
        attribute (or pass ``perfect=``).
    obs, sim, ref : array_like or xarray.DataArray
        Observations, simulation and reference simulation, evaluated on their common valid steps.
    perfect : float, optional
        The metric's perfect value (default: the metric's own).
    dim, axis
        Reduction dimension (xarray) or axis (NumPy).
    **kwargs
        Passed to the metric.

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    References
    ----------
    Murphy, A. H. (1988). Skill scores based on the mean square error and their relationships to the
    correlation coefficient. Monthly Weather Review 116, 2417-2424.

    Examples
    --------
    >>> obs = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    >>> float(skill_score("rmse", obs, obs, mean_flow(obs)))
    1.0
    """
    f, p, name = _metric(metric)
    if perfect is not None:
        p = perfect
    if not np.isfinite(p):
        raise ConfigError(f"the perfect value of {name!r} is unknown: pass perfect=")
    if _is_xr(obs) or _is_xr(sim) or _is_xr(ref):
        import xarray as xr

        obs, sim, ref = xr.align(obs, sim, ref, join="inner")
        valid = sim.notnull() & ref.notnull()
        o = obs.where(valid)
        kw = {"dim": dim or "time", **kwargs}
    else:
        o, s_, r_ = np.broadcast_arrays(
            np.asarray(obs, dtype=float), np.asarray(sim, dtype=float), np.asarray(ref, dtype=float)
        )
        o = np.where(np.isnan(s_) | np.isnan(r_), np.nan, o)
        sim, ref = s_, r_
        kw = {"axis": -1 if axis is None else axis, **kwargs}
    s_sim = f(o, sim, **kw)
    s_ref = f(o, ref, **kw)
    den = p - s_ref
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s_sim - s_ref) / den
    if _is_xr(out):
        out = out.where(den != 0).rename(f"{name}_skill")
    else:
        out = np.where(den != 0, out, np.nan)
    return out


def benchmark_efficiency(
    obs: Any, sim: Any, ref: Any, *, dim: str | None = None, axis: int | None = None
) -> Any:
    r"""Benchmark efficiency (Schaefli and Gupta 2007): the NSE with a benchmark instead of the mean.

    .. math:: \mathrm{BE} = 1 - \frac{\sum_t (s_t - o_t)^2}{\sum_t (r_t - o_t)^2}

    **Perfect value:** 1. **Range:** (-inf, 1]; 0 = as good as the benchmark. Equal to
    ``skill_score("nse", obs, sim, ref)`` and to ``skill_score("mse", ...)``.

    Parameters
    ----------
    obs, sim, ref : array_like or xarray.DataArray
        Observations, simulation, benchmark simulation.
    dim, axis
        Reduction dimension (xarray) or axis (NumPy).

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    References
    ----------
    Schaefli, B. and Gupta, H. V. (2007). Do Nash values have value? Hydrological Processes 21, 2075-2080.
    doi:10.1002/hyp.6825.

    Examples
    --------
    >>> obs = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> float(benchmark_efficiency(obs, obs + 0.5, np.full(5, obs.mean())))
    0.875
    """
    return skill_score("mse", obs, sim, ref, dim=dim, axis=axis)


def benchmark_skill(
    obs: Any,
    sim: Any,
    metric: str = "nse",
    reference: str = "climatology",
    *,
    ref_period: tuple[Any, Any] | None = None,
    period: tuple[Any, Any] | None = None,
    freq: str | None = None,
    lag: int = 1,
    dim: str = "time",
    **kwargs: Any,
) -> Any:
    """Score, reference score and skill of ``sim`` against a built-in reference, as one Dataset.

    Parameters
    ----------
    obs, sim : xarray.DataArray
        Observations and simulation with a datetime ``dim``.
    metric : str
        Metric name.
    reference : {"climatology", "persistence", "mean_flow"}
        The benchmark.
    ref_period : (start, end), optional
        Period for the climatology / mean flow (e.g. the training period).
    period : (start, end), optional
        Evaluation period (e.g. the test period); default the whole common record.
    freq : {"dayofyear", "month"}, optional
        Climatology grouping (default from the time step).
    lag : int
        Persistence lag.
    dim : str
        Time dimension.
    **kwargs
        Passed to the metric.

    Returns
    -------
    xarray.Dataset
        ``<metric>``, ``<metric>_<reference>`` (score of the reference) and ``<metric>_skill_<reference>``.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> t = pd.date_range("2000-01-01", periods=730)
    >>> seas = np.sin(2 * np.pi * np.arange(730) / 365.25)
    >>> obs = xr.DataArray(5 + 3 * seas + np.cos(np.arange(730)), dims="time", coords={"time": t})
    >>> out = benchmark_skill(obs, obs + 0.1, "nse", "climatology")
    >>> sorted(out)
    ['nse', 'nse_climatology', 'nse_skill_climatology']
    """
    if not _is_xr(obs):
        raise DataError("benchmark_skill needs xarray objects with a time coordinate")
    import xarray as xr

    if reference == "climatology":
        ref = climatology(obs, freq=freq, ref_period=ref_period, dim=dim)
    elif reference == "persistence":
        ref = persistence(obs, lag=lag, dim=dim)
    elif reference == "mean_flow":
        ref = mean_flow(obs, ref_period=ref_period, dim=dim)
    else:
        raise ConfigError(f"unknown reference {reference!r}; available: {list(REFERENCES)}")
    f, _, _ = _metric(metric)
    obs, sim, ref = xr.align(obs, sim, ref, join="inner")
    if period is not None:
        obs, sim, ref = (_select_period(x, period, dim) for x in (obs, sim, ref))
    o = obs.where(sim.notnull() & ref.notnull())
    s_sim = f(o, sim, dim=dim, **kwargs)
    s_ref = f(o, ref, dim=dim, **kwargs)
    sk = skill_score(metric, o, sim, ref, dim=dim, **kwargs)
    return xr.Dataset(
        {metric: s_sim, f"{metric}_{reference}": s_ref, f"{metric}_skill_{reference}": sk},
        attrs={
            "reference": reference,
            **_period_attr(ref_period),
            **({} if period is None else {"evaluation_period": f"{period[0]}..{period[1]}"}),
        },
    )
