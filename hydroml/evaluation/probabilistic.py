r"""Probabilistic scores for ensembles: CRPS (standard and fair estimators), interval coverage and width.

Conventions: ``obs`` has no member dimension; ``sim`` has one (``member_dim="member"`` for xarray,
``member_axis=0`` for NumPy, counted on ``sim``). A time step is valid when ``obs`` and *every* member are
finite; scores are averaged over the valid steps (``dim="time"`` / ``axis=-1`` of ``obs``), with the minimum of
valid steps of :func:`hydroml.evaluation.set_options`. ``reduce=False`` keeps the score of every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hydroml.evaluation._core import _OPTIONS
from hydroml.exceptions import ConfigError, DataError

__all__ = ["crps_ensemble", "interval_coverage", "interval_width"]


def _is_xr(x: Any) -> bool:
    return type(x).__module__.startswith("xarray")


def _np_prepare(obs: Any, sim: Any, member_axis: int) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(obs, dtype=np.float64)
    s = np.moveaxis(np.asarray(sim, dtype=np.float64), member_axis, -1)  # [..., T, M]
    if s.shape[-1] < 1:
        raise DataError("the ensemble has no member")
    try:
        o = np.broadcast_to(o, s.shape[:-1])
    except ValueError as err:
        raise DataError(
            f"obs {o.shape} does not match sim {np.asarray(sim).shape} without its member axis {member_axis}"
        ) from err
    return o, s


def _np_layout(obs: Any, sim: Any, member_axis: int, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """obs -> [..., T]; sim -> [..., T, M]: ``axis`` counts on obs, ``member_axis`` on sim."""
    o = np.asarray(obs, dtype=np.float64)
    s = np.moveaxis(np.asarray(sim, dtype=np.float64), member_axis, -1)
    if s.ndim - 1 != o.ndim:
        raise DataError(
            f"sim {np.asarray(sim).shape} must have obs's dimensions {o.shape} plus a member axis"
        )
    ax = (-1 if axis is None else axis) % o.ndim
    return np.moveaxis(o, ax, -1), np.moveaxis(s, ax, -2)


def _reduce(per_step: np.ndarray, valid: np.ndarray, reduce: bool, min_pairs: int | None) -> np.ndarray:
    per_step = np.where(valid, per_step, np.nan)
    if not reduce:
        return per_step
    n = valid.sum(-1)
    mp = _OPTIONS["min_pairs"] if min_pairs is None else min_pairs
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(valid, per_step, 0.0).sum(-1) / n
    return np.where(n >= mp, out, np.nan)


def _crps_np(
    obs: Any, sim: Any, member_axis: int, fair: bool, reduce: bool, min_pairs: int | None
) -> np.ndarray:
    o, s = _np_prepare(obs, sim, member_axis)
    m = s.shape[-1]
    if fair and m < 2:
        raise ConfigError("the fair CRPS needs at least 2 members")
    valid = np.isfinite(o) & np.isfinite(s).all(-1)
    srt = np.sort(s, axis=-1)
    term1 = np.abs(srt - o[..., None]).mean(-1)
    # sum_ij |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i) with 1-based ranks of the sorted members
    w = 2.0 * np.arange(1, m + 1) - m - 1
    pair = 2.0 * (srt * w).sum(-1)
    term2 = pair / (2.0 * m * (m - 1)) if fair else pair / (2.0 * m * m)
    return _reduce(term1 - term2, valid, reduce, min_pairs)


def crps_ensemble(
    obs: Any,
    sim: Any,
    *,
    fair: bool = False,
    member_dim: str = "member",
    member_axis: int = 0,
    dim: str | None = None,
    axis: int | None = None,
    reduce: bool = True,
    min_pairs: int | None = None,
) -> Any:
    r"""Continuous ranked probability score of an ensemble, standard or fair estimator.

    .. math::

        \mathrm{CRPS} = \frac1M\sum_{i}|x_i - o| - \frac{1}{2M^2}\sum_{i,j}|x_i - x_j|,\qquad
        \mathrm{CRPS}_\mathrm{fair} = \frac1M\sum_{i}|x_i - o| - \frac{1}{2M(M-1)}\sum_{i,j}|x_i - x_j|

    The standard estimator is the CRPS of the ensemble's empirical distribution; the fair one (Ferro 2014) is
    unbiased for the CRPS of the distribution the members are drawn from, so ensembles of different sizes
    compare fairly. For one member the standard CRPS is the absolute error.

    **Perfect value:** 0. **Range:** [0, inf) for the standard estimator (the fair one can be slightly
    negative), units of the data.

    Parameters
    ----------
    obs : array_like or xarray.DataArray
        Observations (no member dimension).
    sim : array_like or xarray.DataArray
        Ensemble with members along ``member_dim`` / ``member_axis``.
    fair : bool
        Use the fair estimator.
    member_dim, member_axis
        Member dimension (xarray) or axis of ``sim`` (NumPy).
    dim, axis
        Time dimension (xarray, default ``"time"``) or axis of ``obs`` (NumPy, default -1) averaged over.
    reduce : bool
        Average over time (default) or return the score of every step.
    min_pairs : int, optional
        Minimum number of valid steps.

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    References
    ----------
    Hersbach, H. (2000). Decomposition of the continuous ranked probability score for ensemble prediction
    systems. Weather and Forecasting 15, 559-570.
    Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. Q. J. R. Meteorol. Soc. 140, 1917-1923.

    Examples
    --------
    >>> import numpy as np
    >>> from hydroml.evaluation import crps_ensemble
    >>> ens = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # 3 members (axis 0), 2 steps
    >>> round(float(crps_ensemble(np.array([2.0, 2.0]), ens)), 6)
    0.222222
    >>> float(crps_ensemble(np.array([2.0, 2.0]), ens, fair=True))
    0.0
    """
    if _is_xr(obs) or _is_xr(sim):
        import xarray as xr

        d = dim or "time"
        if axis is not None:
            raise ConfigError("axis= is for NumPy inputs; xarray inputs take dim=")
        if member_dim not in sim.dims:
            raise DataError(
                f"sim has no member dimension {member_dim!r}; its dimensions are {tuple(sim.dims)}"
            )
        obs, sim = xr.align(obs, sim, join="inner")
        core_o = [d] if reduce else []
        out = xr.apply_ufunc(
            lambda o, s: _crps_np(o, s, -1, fair, reduce, min_pairs),
            obs,
            sim,
            input_core_dims=[core_o, [*core_o, member_dim]],
            output_core_dims=[[]],
            dask="parallelized",
            output_dtypes=[np.float64],
        )
        return out.rename("crps_fair" if fair else "crps")
    if dim is not None:
        raise ConfigError("dim= is for xarray inputs; NumPy inputs take axis=")
    o, s = _np_layout(obs, sim, member_axis, axis)
    return _crps_np(o, s, -1, fair, reduce, min_pairs)


def _interval_np(
    obs: np.ndarray, sim: np.ndarray, coverage: float, what: str, reduce: bool, min_pairs: int | None
) -> np.ndarray:
    o, s = _np_prepare(obs, sim, -1)
    valid = np.isfinite(o) & np.isfinite(s).all(-1)
    a = (1.0 - coverage) / 2.0
    lo, hi = np.quantile(np.where(valid[..., None], s, 0.0), [a, 1.0 - a], axis=-1)
    if what == "coverage":
        per = ((o >= lo) & (o <= hi)).astype(np.float64)
    else:
        per = hi - lo
    return _reduce(per, valid, reduce, min_pairs)


def _interval(
    what: str,
    obs: Any,
    sim: Any,
    coverage: float,
    member_dim: str,
    member_axis: int,
    dim: str | None,
    axis: int | None,
    reduce: bool,
    min_pairs: int | None,
) -> Any:
    if not 0.0 < coverage < 1.0:
        raise ConfigError(f"coverage must be in ]0, 1[; found {coverage!r}")
    if _is_xr(obs) or _is_xr(sim):
        import xarray as xr

        d = dim or "time"
        if member_dim not in sim.dims:
            raise DataError(
                f"sim has no member dimension {member_dim!r}; its dimensions are {tuple(sim.dims)}"
            )
        obs, sim = xr.align(obs, sim, join="inner")
        core_o = [d] if reduce else []
        out = xr.apply_ufunc(
            lambda o, s: _interval_np(o, s, coverage, what, reduce, min_pairs),
            obs,
            sim,
            input_core_dims=[core_o, [*core_o, member_dim]],
            output_core_dims=[[]],
            dask="parallelized",
            output_dtypes=[np.float64],
        )
        return out.rename(f"interval_{what}")
    if dim is not None:
        raise ConfigError("dim= is for xarray inputs; NumPy inputs take axis=")
    o, s = _np_layout(obs, sim, member_axis, axis)
    return _interval_np(o, s, coverage, what, reduce, min_pairs)


def interval_coverage(
    obs: Any,
    sim: Any,
    *,
    coverage: float = 0.9,
    member_dim: str = "member",
    member_axis: int = 0,
    dim: str | None = None,
    axis: int | None = None,
    reduce: bool = True,
    min_pairs: int | None = None,
) -> Any:
    r"""Fraction of observations inside the central ensemble interval of nominal ``coverage``.

    .. math:: C = \frac1n\sum_t \mathbf{1}\{q_{(1-c)/2,t} \le o_t \le q_{(1+c)/2,t}\}

    with :math:`q_{p,t}` the member quantiles (linear interpolation, NumPy's default).

    **Perfect value:** the nominal ``coverage`` (reliable interval). **Range:** [0, 1].

    Parameters
    ----------
    obs, sim, member_dim, member_axis, dim, axis, reduce, min_pairs
        As for :func:`crps_ensemble`.
    coverage : float
        Nominal coverage of the central interval, in ]0, 1[.

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    References
    ----------
    Gneiting, T. and Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and estimation.
    JASA 102, 359-378.

    Examples
    --------
    >>> import numpy as np
    >>> from hydroml.evaluation import interval_coverage
    >>> ens = np.tile(np.arange(11.0)[:, None], (1, 4))       # members 0..10 at 4 steps
    >>> float(interval_coverage(np.array([5.0, 0.2, 9.9, 20.0]), ens, coverage=0.8))  # only 5 in [1, 9]
    0.25
    """
    return _interval("coverage", obs, sim, coverage, member_dim, member_axis, dim, axis, reduce, min_pairs)


def interval_width(
    obs: Any,
    sim: Any,
    *,
    coverage: float = 0.9,
    member_dim: str = "member",
    member_axis: int = 0,
    dim: str | None = None,
    axis: int | None = None,
    reduce: bool = True,
    min_pairs: int | None = None,
) -> Any:
    r"""Mean width of the central ensemble interval of nominal ``coverage`` (sharpness).

    .. math:: W = \frac1n\sum_t \big(q_{(1+c)/2,t} - q_{(1-c)/2,t}\big)

    Only steps where the observation is valid count, so width and coverage refer to the same steps.

    **Perfect value:** 0 (for a given coverage, narrower is sharper). **Range:** [0, inf), units of the data.

    Parameters
    ----------
    obs, sim, member_dim, member_axis, dim, axis, reduce, min_pairs
        As for :func:`crps_ensemble`.
    coverage : float
        Nominal coverage of the central interval, in ]0, 1[.

    Returns
    -------
    numpy.ndarray or xarray.DataArray

    References
    ----------
    Gneiting, T., Balabdaoui, F. and Raftery, A. E. (2007). Probabilistic forecasts, calibration and sharpness.
    J. R. Stat. Soc. B 69, 243-268.

    Examples
    --------
    >>> import numpy as np
    >>> from hydroml.evaluation import interval_width
    >>> ens = np.tile(np.arange(11.0)[:, None], (1, 4))
    >>> float(interval_width(np.ones(4), ens, coverage=0.8))
    8.0
    """
    return _interval("width", obs, sim, coverage, member_dim, member_axis, dim, axis, reduce, min_pairs)
