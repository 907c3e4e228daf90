r"""Hydrological signatures of one discharge series (names and definitions of CAMELS, Addor et al. 2017).

Each function takes a discharge series ``q`` (NumPy, reduced over ``axis=-1``, or xarray, reduced over
``dim="time"``, keeping other dimensions), ignores NaN steps, and returns NaN with fewer valid steps than
the minimum of :func:`hydroml.evaluation.set_options`. Signatures of observed and simulated flows are compared
with :func:`signature_errors`. Units: discharge in mm/day (``q_mm``) for CAMELS-comparable values; ratios and
frequencies are unit-free.

References
----------
Addor, N., Newman, A. J., Mizukami, N. and Clark, M. P. (2017). The CAMELS data set: catchment attributes and
meteorology for large-sample studies. HESS 21, 5293-5313. doi:10.5194/hess-21-5293-2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hydroml.evaluation._core import _OPTIONS, _quantile_sorted
from hydroml.exceptions import ConfigError, DataError

__all__ = [
    "q_mean",
    "q5",
    "q95",
    "baseflow_index",
    "runoff_ratio",
    "high_q_freq",
    "high_q_dur",
    "low_q_freq",
    "low_q_dur",
    "zero_q_freq",
    "slope_fdc",
    "stream_elas",
    "hfd_mean",
    "compute_signatures",
    "signature_errors",
    "SIGNATURES",
]


def _is_xr(x: Any) -> bool:
    return type(x).__module__.startswith("xarray")


def _ok(n: np.ndarray) -> np.ndarray:
    return n >= _OPTIONS["min_pairs"]


def _apply(
    core: Callable[..., np.ndarray], q: Any, *others: Any, dim: str | None, axis: int | None, **kw: Any
) -> Any:
    """Run a NumPy core ``core(q, *others, **kw)`` (reducing the last axis) on NumPy or xarray inputs."""
    if _is_xr(q):
        import xarray as xr

        if axis is not None:
            raise ConfigError("axis= is for NumPy inputs; xarray inputs take dim=")
        d = dim or "time"
        if d not in q.dims:
            raise DataError(f"q has no dimension {d!r}; its dimensions are {tuple(q.dims)}")
        args = [q, *others]
        if others:
            args = list(xr.align(*args, join="inner"))
        if kw.pop("_needs_time", False):
            kw["time"] = args[0][d].values
        args = [a.chunk({d: -1}) if a.chunks else a for a in args]
        return xr.apply_ufunc(
            lambda *a: core(*a, **kw),
            *args,
            input_core_dims=[[d]] * len(args),
            output_core_dims=[[]],
            dask="parallelized",
            output_dtypes=[np.float64],
        ).rename(core.__name__.lstrip("_"))
    if dim is not None:
        raise ConfigError("dim= is for xarray inputs; NumPy inputs take axis=")
    ax = -1 if axis is None else axis
    kw.pop("_needs_time", None)
    arrays = [np.moveaxis(np.asarray(a, dtype=np.float64), ax, -1) for a in (q, *others)]
    return core(*arrays, **kw)


# ------------------------------------------------------------------------------------------------------------
# numpy cores (last axis)
def _q_mean(q: np.ndarray) -> np.ndarray:
    n = np.isfinite(q).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.isfinite(q), q, 0.0).sum(-1) / n
    return np.where(_ok(n), out, np.nan)


def _quantile(q: np.ndarray, p: float) -> np.ndarray:
    v = np.where(np.isfinite(q), q, np.nan)
    n = np.isfinite(v).sum(-1)
    shape = v.shape[:-1]
    srt = np.sort(v.reshape(-1, v.shape[-1]), axis=-1)
    out = _quantile_sorted(srt, n.reshape(-1), p).reshape(shape)
    return np.where(_ok(n), out, np.nan)


def _q5(q: np.ndarray) -> np.ndarray:
    return _quantile(q, 5.0)


def _q95(q: np.ndarray) -> np.ndarray:
    return _quantile(q, 95.0)


def _fill_gaps(q: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN gaps (constant extrapolation at the ends), row by row where needed."""
    out = q.copy()
    flat = out.reshape(-1, q.shape[-1])
    t = np.arange(q.shape[-1])
    for row in np.flatnonzero(~np.isfinite(flat).all(-1)):
        ok = np.isfinite(flat[row])
        if ok.any():
            flat[row] = np.interp(t, t[ok], flat[row, ok])
    return out


def _lyne_hollick(q: np.ndarray, alpha: float, passes: int, pad: int) -> np.ndarray:
    """Baseflow of the Lyne-Hollick filter as in Ladson et al. (2013): reflected ends, alternating passes."""
    from scipy.signal import lfilter

    p = min(pad, q.shape[-1] - 1)
    x = (
        np.concatenate([q[..., 1 : p + 1][..., ::-1], q, q[..., -p - 1 : -1][..., ::-1]], axis=-1)
        if p > 0
        else q
    )
    b = x
    for i in range(passes):
        y = b if i % 2 == 0 else b[..., ::-1]
        dq = np.diff(y, axis=-1, prepend=y[..., :1])
        qf = lfilter([(1.0 + alpha) / 2.0], [1.0, -alpha], dq, axis=-1)
        base = np.clip(y - np.maximum(qf, 0.0), 0.0, y)
        b = base if i % 2 == 0 else base[..., ::-1]
    return b[..., p : p + q.shape[-1]] if p > 0 else b


def _baseflow_index(q: np.ndarray, alpha: float = 0.925, passes: int = 3, pad: int = 30) -> np.ndarray:
    valid = np.isfinite(q)
    n = valid.sum(-1)
    base = _lyne_hollick(_fill_gaps(q), alpha, passes, pad)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(valid, base, 0.0).sum(-1) / np.where(valid, q, 0.0).sum(-1)
    return np.where(_ok(n), out, np.nan)


def _runoff_ratio(q: np.ndarray, pr: np.ndarray) -> np.ndarray:
    valid = np.isfinite(q) & np.isfinite(pr)
    n = valid.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(valid, q, 0.0).sum(-1) / np.where(valid, pr, 0.0).sum(-1)
    return np.where(_ok(n), out, np.nan)


def _runs(flag: np.ndarray) -> np.ndarray:
    prev = np.zeros_like(flag)
    prev[..., 1:] = flag[..., :-1]
    return (flag & ~prev).sum(-1)


def _freq_dur(q: np.ndarray, high: bool, what: str, factor: float, steps_per_year: float) -> np.ndarray:
    valid = np.isfinite(q)
    n = valid.sum(-1)
    if high:
        thr = factor * _quantile(q, 50.0)
        flag = valid & (q > thr[..., None])
    else:
        thr = factor * _q_mean(q)
        flag = valid & (q < thr[..., None])
    days = flag.sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = days / (n / steps_per_year) if what == "freq" else days / _runs(flag)
    return np.where(_ok(n), out, np.nan)


def _zero_q_freq(q: np.ndarray) -> np.ndarray:
    valid = np.isfinite(q)
    n = valid.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (valid & (q == 0)).sum(-1) / n
    return np.where(_ok(n), out, np.nan)


def _slope_fdc(q: np.ndarray) -> np.ndarray:
    q33 = _quantile(q, 67.0)  # exceeded 33 % of the time
    q66 = _quantile(q, 34.0)  # exceeded 66 % of the time
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.log(q33) - np.log(q66)) / (0.66 - 0.33)
    return np.where((q66 > 0) & np.isfinite(out), out, np.nan)


def _water_years(time: np.ndarray, start_month: int) -> np.ndarray:
    t = np.asarray(time).astype("datetime64[D]")
    year = t.astype("datetime64[Y]").astype(np.int64) + 1970
    month = (t.astype("datetime64[M]").astype(np.int64) % 12) + 1
    return year + (month >= start_month) if start_month > 1 else year


def _annual(
    x: np.ndarray, time: np.ndarray, start_month: int, min_valid: float
) -> tuple[np.ndarray, np.ndarray]:
    """Annual means per water year [..., Y] (NaN for years with less than ``min_valid`` of their steps)."""
    wy = _water_years(time, start_month)
    years = np.unique(wy)
    t = np.asarray(time).astype("datetime64[D]").astype(np.int64)
    monthly = t.size > 1 and np.median(np.diff(t)) >= 28
    out = np.full(x.shape[:-1] + (years.size,), np.nan)
    for i, y in enumerate(years):
        sel = x[..., wy == y]
        v = np.isfinite(sel)
        full = sel.shape[-1] >= (12 if monthly else 360)  # a whole water year
        ok = full & (v.mean(-1) >= min_valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(v, sel, 0.0).sum(-1) / v.sum(-1)
        out[..., i] = np.where(ok, m, np.nan)
    return out, years


def _stream_elas(
    q: np.ndarray, pr: np.ndarray, time: np.ndarray, start_month: int = 10, min_valid: float = 0.9
) -> np.ndarray:
    valid = np.isfinite(q) & np.isfinite(pr)
    qa, _ = _annual(np.where(valid, q, np.nan), time, start_month, min_valid)
    pa, _ = _annual(np.where(valid, pr, np.nan), time, start_month, min_valid)
    ok = np.isfinite(qa) & np.isfinite(pa)
    qm = np.nanmean(np.where(ok, qa, np.nan), axis=-1, keepdims=True)
    pm = np.nanmean(np.where(ok, pa, np.nan), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = ((qa - qm) / qm) / ((pa - pm) / pm)
    e = np.where(ok & np.isfinite(e), e, np.nan)
    out = np.nanmedian(e, axis=-1) if e.shape[-1] else np.full(e.shape[:-1], np.nan)
    return np.where(ok.sum(-1) >= 2, out, np.nan)


def _hfd_mean(q: np.ndarray, time: np.ndarray, start_month: int = 10) -> np.ndarray:
    wy = _water_years(time, start_month)
    dates = []
    for y in np.unique(wy):
        sel = q[..., wy == y]
        if sel.shape[-1] < 360:  # only whole water years
            continue
        complete = np.isfinite(sel).all(-1)
        cs = np.cumsum(np.where(np.isfinite(sel), sel, 0.0), axis=-1)
        half = cs[..., -1:] / 2.0
        day = (cs < half).sum(-1) + 1.0  # 1-based day of the water year when half the volume has passed
        dates.append(np.where(complete & (cs[..., -1] > 0), day, np.nan))
    if not dates:
        return np.full(q.shape[:-1], np.nan)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(dates, -1), axis=-1)


# ------------------------------------------------------------------------------------------------------------
# public functions
def q_mean(q: Any, *, dim: str | None = None, axis: int | None = None) -> Any:
    r"""Mean flow, :math:`\overline{q}` over the valid steps (CAMELS ``q_mean``).

    Examples
    --------
    >>> float(q_mean(np.array([1.0, np.nan, 3.0])))
    2.0
    """
    return _apply(_q_mean, q, dim=dim, axis=axis)


def q5(q: Any, *, dim: str | None = None, axis: int | None = None) -> Any:
    """Low flow: the 5 % quantile of the flows (exceeded 95 % of the time; CAMELS ``q5``), linear interpolation.

    Examples
    --------
    >>> float(q5(np.arange(101.0)))
    5.0
    """
    return _apply(_q5, q, dim=dim, axis=axis)


def q95(q: Any, *, dim: str | None = None, axis: int | None = None) -> Any:
    """High flow: the 95 % quantile of the flows (CAMELS ``q95``), linear interpolation.

    Examples
    --------
    >>> float(q95(np.arange(101.0)))
    95.0
    """
    return _apply(_q95, q, dim=dim, axis=axis)


def baseflow_index(
    q: Any,
    *,
    alpha: float = 0.925,
    passes: int = 3,
    pad: int = 30,
    dim: str | None = None,
    axis: int | None = None,
) -> Any:
    r"""Baseflow index: mean baseflow over mean flow, baseflow from the Lyne-Hollick digital filter.

    .. math::

        f_t = \alpha f_{t-1} + \tfrac{1+\alpha}{2}(q_t - q_{t-1}),\qquad b_t = \min(\max(q_t - \max(f_t,0), 0), q_t)

    applied in alternating directions (forward, backward, forward for ``passes=3``) to the previous pass's
    baseflow, with ``pad`` steps reflected at both ends (Ladson et al. 2013). NaN gaps are interpolated for the
    filter and left out of both sums.

    References
    ----------
    Ladson, A. R., Brown, R., Neal, B. and Nathan, R. (2013). A standard approach to baseflow separation using the
    Lyne and Hollick filter. Australasian Journal of Water Resources 17(1), 25-34.

    Examples
    --------
    >>> float(baseflow_index(np.full(100, 2.0)))  # constant flow is all baseflow
    1.0
    """
    if not 0 < alpha < 1 or passes < 1:
        raise ConfigError(f"baseflow filter: alpha in ]0, 1[ and passes >= 1; found {alpha!r}, {passes!r}")
    return _apply(_baseflow_index, q, dim=dim, axis=axis, alpha=alpha, passes=passes, pad=pad)


def runoff_ratio(q: Any, pr: Any, *, dim: str | None = None, axis: int | None = None) -> Any:
    r"""Runoff ratio :math:`\overline{q}/\overline{P}` over the steps where both are valid (same units, e.g. mm/day).

    Examples
    --------
    >>> float(runoff_ratio(np.array([1.0, 2.0]), np.array([4.0, 2.0])))
    0.5
    """
    return _apply(_runoff_ratio, q, pr, dim=dim, axis=axis)


def high_q_freq(
    q: Any,
    *,
    factor: float = 9.0,
    steps_per_year: float = 365.25,
    dim: str | None = None,
    axis: int | None = None,
) -> Any:
    """Frequency of high-flow days, q > ``factor`` x median flow, in days per year (CAMELS ``high_q_freq``).

    Examples
    --------
    >>> q = np.ones(365); q[[10, 11, 200]] = 20.0
    >>> round(float(high_q_freq(q)), 3)
    3.002
    """
    return _apply(
        _freq_dur, q, dim=dim, axis=axis, high=True, what="freq", factor=factor, steps_per_year=steps_per_year
    )


def high_q_dur(q: Any, *, factor: float = 9.0, dim: str | None = None, axis: int | None = None) -> Any:
    """Mean duration (steps) of high-flow events, runs of q > ``factor`` x median (CAMELS ``high_q_dur``).

    No event gives NaN.

    Examples
    --------
    >>> q = np.ones(365); q[[10, 11, 200]] = 20.0
    >>> float(high_q_dur(q))
    1.5
    """
    return _apply(
        _freq_dur, q, dim=dim, axis=axis, high=True, what="dur", factor=factor, steps_per_year=365.25
    )


def low_q_freq(
    q: Any,
    *,
    factor: float = 0.2,
    steps_per_year: float = 365.25,
    dim: str | None = None,
    axis: int | None = None,
) -> Any:
    """Frequency of low-flow days, q < ``factor`` x mean flow, in days per year (CAMELS ``low_q_freq``).

    Examples
    --------
    >>> q = np.ones(365); q[:5] = 0.01
    >>> round(float(low_q_freq(q)), 3)
    5.003
    """
    return _apply(
        _freq_dur,
        q,
        dim=dim,
        axis=axis,
        high=False,
        what="freq",
        factor=factor,
        steps_per_year=steps_per_year,
    )


def low_q_dur(q: Any, *, factor: float = 0.2, dim: str | None = None, axis: int | None = None) -> Any:
    """Mean duration (steps) of low-flow events, runs of q < ``factor`` x mean (CAMELS ``low_q_dur``).

    Examples
    --------
    >>> q = np.ones(365); q[:5] = 0.01
    >>> float(low_q_dur(q))
    5.0
    """
    return _apply(
        _freq_dur, q, dim=dim, axis=axis, high=False, what="dur", factor=factor, steps_per_year=365.25
    )


def zero_q_freq(q: Any, *, dim: str | None = None, axis: int | None = None) -> Any:
    """Fraction (0..1) of valid steps with zero flow (CAMELS ``zero_q_freq``).

    Examples
    --------
    >>> float(zero_q_freq(np.array([0.0, 1.0, 0.0, 2.0])))
    0.5
    """
    return _apply(_zero_q_freq, q, dim=dim, axis=axis)


def slope_fdc(q: Any, *, dim: str | None = None, axis: int | None = None) -> Any:
    r"""Slope of the flow-duration curve between its 33 % and 66 % exceedance flows, in log space (Sawicz 2011).

    .. math:: \mathrm{SFDC} = \frac{\ln Q_{33} - \ln Q_{66}}{0.66 - 0.33}

    with :math:`Q_{33}` the flow exceeded 33 % of the time (the 67 % quantile). NaN when :math:`Q_{66} \le 0`.

    References
    ----------
    Sawicz, K., Wagener, T., Sivapalan, M., Troch, P. A. and Carrillo, G. (2011). Catchment classification:
    empirical analysis of hydrologic similarity based on catchment function in the eastern USA. HESS 15, 2895-2911.

    Examples
    --------
    >>> round(float(slope_fdc(np.exp(np.linspace(0, 1, 101)))), 6)
    1.0
    """
    return _apply(_slope_fdc, q, dim=dim, axis=axis)


def stream_elas(
    q: Any,
    pr: Any,
    *,
    time: Any = None,
    start_month: int = 10,
    dim: str | None = None,
    axis: int | None = None,
) -> Any:
    r"""Streamflow elasticity to precipitation (Sankarasubramanian et al. 2001), median over water years.

    .. math:: \varepsilon_P = \mathrm{median}_y\left(\frac{(Q_y - \overline{Q})/\overline{Q}}{(P_y - \overline{P})/\overline{P}}\right)

    with annual means :math:`Q_y, P_y` of water years starting in ``start_month`` (October, as CAMELS); years
    with less than 90 % valid steps are left out; fewer than 2 years gives NaN.

    References
    ----------
    Sankarasubramanian, A., Vogel, R. M. and Limbrunner, J. F. (2001). Climate elasticity of streamflow in the
    United States. Water Resources Research 37(6), 1771-1781.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.date_range("2000-10-01", "2004-09-30").values
    >>> years = (t.astype("datetime64[Y]").astype(int) + (pd.DatetimeIndex(t).month >= 10)).astype(float)
    >>> pr = 1.0 + 0.1 * (years - years.mean())
    >>> round(float(stream_elas(2 * pr - 1.0, pr, time=t)), 3)  # dQ/Q = 2 dP/P at the means (Q=1, P=1)
    2.0
    """
    if _is_xr(q):
        return _apply(_stream_elas, q, pr, dim=dim, axis=axis, start_month=start_month, _needs_time=True)
    if time is None:
        raise ConfigError("stream_elas needs time= (datetime64 values of the time axis) for NumPy inputs")
    return _apply(_stream_elas, q, pr, dim=dim, axis=axis, time=np.asarray(time), start_month=start_month)


def hfd_mean(
    q: Any, *, time: Any = None, start_month: int = 10, dim: str | None = None, axis: int | None = None
) -> Any:
    """Mean half-flow date: the day of the water year (1-based, from ``start_month`` 1st) by which half of
    the year's flow has passed, averaged over complete water years (CAMELS ``hfd_mean``).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.date_range("2000-10-01", "2001-09-30").values
    >>> float(hfd_mean(np.ones(t.size), time=t))  # uniform flow: half after 182.5 days
    183.0
    """
    if _is_xr(q):
        return _apply(_hfd_mean, q, dim=dim, axis=axis, start_month=start_month, _needs_time=True)
    if time is None:
        raise ConfigError("hfd_mean needs time= (datetime64 values of the time axis) for NumPy inputs")
    return _apply(_hfd_mean, q, dim=dim, axis=axis, time=np.asarray(time), start_month=start_month)


SIGNATURES: dict[str, Callable[..., Any]] = {
    "q_mean": q_mean,
    "q5": q5,
    "q95": q95,
    "baseflow_index": baseflow_index,
    "high_q_freq": high_q_freq,
    "high_q_dur": high_q_dur,
    "low_q_freq": low_q_freq,
    "low_q_dur": low_q_dur,
    "zero_q_freq": zero_q_freq,
    "slope_fdc": slope_fdc,
    "hfd_mean": hfd_mean,
}


def compute_signatures(q: Any, pr: Any = None, *, dim: str = "time") -> Any:
    """All signatures of an xarray discharge series (plus runoff ratio and elasticity when ``pr`` is given).

    Parameters
    ----------
    q : xarray.DataArray
        Discharge with a datetime dimension ``dim``.
    pr : xarray.DataArray, optional
        Precipitation in the same units (e.g. mm/day).
    dim : str
        Time dimension.

    Returns
    -------
    xarray.Dataset
        One variable per signature.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> t = pd.date_range("2000-10-01", "2002-09-30")
    >>> q = xr.DataArray(1 + np.sin(np.arange(t.size) / 58.0) ** 2, dims="time", coords={"time": t})
    >>> sorted(compute_signatures(q))[:3]
    ['baseflow_index', 'hfd_mean', 'high_q_dur']
    """
    import xarray as xr

    if not _is_xr(q):
        raise DataError("signatures() needs an xarray object with a time coordinate")
    out = {name: f(q, dim=dim) for name, f in SIGNATURES.items()}
    if pr is not None:
        out["runoff_ratio"] = runoff_ratio(q, pr, dim=dim)
        out["stream_elas"] = stream_elas(q, pr, dim=dim)
    return xr.Dataset(out)


def signature_errors(obs: Any, sim: Any, *, dim: str = "time", relative: bool = True) -> Any:
    """Errors of the simulated signatures: (sim - obs) / |obs| (``relative``) or sim - obs.

    Parameters
    ----------
    obs, sim : xarray.DataArray
        Observed and simulated discharge; signatures are computed on the steps where both are valid.
    dim : str
        Time dimension.
    relative : bool
        Relative errors (default) or differences.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> t = pd.date_range("2000-10-01", "2002-09-30")
    >>> q = xr.DataArray(1 + np.sin(np.arange(t.size) / 58.0) ** 2, dims="time", coords={"time": t})
    >>> round(float(signature_errors(q, 1.1 * q)["q_mean"]), 12)
    0.1
    """
    import xarray as xr

    obs, sim = xr.align(obs, sim, join="inner")
    valid = obs.notnull() & sim.notnull()
    so = compute_signatures(obs.where(valid), dim=dim)
    ss = compute_signatures(sim.where(valid), dim=dim)
    return (ss - so) / abs(so) if relative else ss - so
