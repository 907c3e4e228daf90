"""Hydrographs (discharge with precipitation on an inverted top axis) and flow-duration curves."""

from __future__ import annotations

from typing import Any

import numpy as np

from hydroml.exceptions import DataError
from hydroml.plot._common import as_mapping, get_ax, series, units_of

__all__ = ["hydrograph", "flow_duration_curve", "exceedance"]

_OBS_STYLE = {"color": "k", "lw": 1.0}
_SIM_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _to_num(t: np.ndarray) -> np.ndarray:
    """Times as matplotlib date numbers (days) when they are datetimes, else as floats."""
    if np.issubdtype(t.dtype, np.datetime64) or t.dtype == object:
        from matplotlib import dates as mdates

        return np.asarray(mdates.date2num(t), dtype=float)
    return t.astype(float)


def hydrograph(
    obs: Any = None,
    sim: Any = None,
    precip: Any = None,
    *,
    ax: Any = None,
    basin: Any = None,
    time: Any = None,
    obs_label: str = "observed",
    units: str | None = None,
    precip_units: str | None = None,
    precip_fraction: float = 0.3,
    log: bool = False,
    title: str | None = None,
) -> Any:
    """Observed and simulated discharge, with precipitation as bars hanging from an inverted top axis.

    Parameters
    ----------
    obs : xarray.DataArray, pandas.Series or array, optional
        Observed discharge over time (drawn in black).
    sim : series or mapping of str to series, optional
        One simulation, or several ``{label: series}`` (e.g. ``{"LSTM": ..., "climatology": ...}``).
    precip : series, optional
        Precipitation; only the period covered by ``obs``/``sim`` is drawn. Its bars hang from the top of a
        twin axis whose y axis is inverted and scaled so that they fill the top ``precip_fraction`` of the
        panel, above the discharge.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default a new figure).
    basin : str, optional
        Select this basin from inputs that have a ``basin`` dimension.
    time : array, optional
        Time axis for plain arrays.
    obs_label : str
        Legend label of ``obs``.
    units, precip_units : str, optional
        Axis units (default the ``units`` attributes).
    precip_fraction : float
        Share of the panel height for the precipitation bars, in ``]0, 1[``.
    log : bool
        Logarithmic discharge axis.
    title : str, optional
        Axes title (default the basin id, when given).

    Returns
    -------
    matplotlib.axes.Axes
        The discharge axes; the precipitation axes is ``ax.precip_ax`` (``None`` without precipitation).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.date_range("2001-01-01", periods=60)
    >>> q = xr.DataArray(np.linspace(1, 3, 60), coords={"time": t}, dims="time", attrs={"units": "mm/day"})
    >>> ax = hydrograph(q, {"model": q * 1.1}, precip=q * 2)
    >>> len(ax.get_lines()), len(ax.precip_ax.patches)
    (2, 60)
    """
    if not 0.0 < precip_fraction < 1.0:
        raise DataError(f"precip_fraction must be in ]0, 1[; found {precip_fraction!r}")
    sims = as_mapping(sim, default="simulated")
    if obs is None and not sims:
        raise DataError("hydrograph: give obs, sim or both")
    ax = get_ax(ax, (10.0, 3.5))
    qmax, tmin, tmax = 0.0, np.inf, -np.inf
    handles = []
    curves = ([(obs_label, obs, _OBS_STYLE)] if obs is not None else []) + [
        (label, s, {"color": _SIM_COLORS[k % len(_SIM_COLORS)], "lw": 0.9})
        for k, (label, s) in enumerate(sims.items())
    ]
    for label, s, style in curves:
        t, v = series(s, time=time, basin=basin, what=label)
        (line,) = ax.plot(t, v, label=label, **style)
        handles.append(line)
        if np.isfinite(v).any():
            qmax = max(qmax, float(np.nanmax(v)))
        tn = _to_num(t)
        tmin, tmax = min(tmin, float(tn.min())), max(tmax, float(tn.max()))
    units = units or units_of(obs) or next((units_of(s) for s in sims.values() if units_of(s)), None)
    ax.set_ylabel(f"discharge [{units}]" if units else "discharge")
    if log:
        ax.set_yscale("log")
    elif qmax > 0:
        # leave the top of the panel to the precipitation bars
        ax.set_ylim(0.0, qmax / (1.0 - precip_fraction) * 1.02 if precip is not None else qmax * 1.05)
    ax.precip_ax = None
    if precip is not None:
        t, p = series(precip, time=time, basin=basin, what="precip")
        tn = _to_num(t)
        keep = (tn >= tmin - 0.5) & (tn <= tmax + 0.5)
        tn, p = tn[keep], p[keep]
        pax = ax.twinx()
        step = float(np.median(np.diff(tn))) if tn.size > 1 else 1.0
        bars = pax.bar(
            tn, np.nan_to_num(p), width=0.85 * step, color="tab:cyan", alpha=0.7, label="precipitation"
        )
        handles.append(bars)
        pmax = float(np.nanmax(p)) if np.isfinite(p).any() and np.nanmax(p) > 0 else 1.0
        pax.set_ylim(pmax / precip_fraction, 0.0)  # inverted: bars hang from the top
        punits = precip_units or units_of(precip)
        pax.set_ylabel(f"precipitation [{punits}]" if punits else "precipitation")
        # discharge drawn above the bars
        ax.set_zorder(pax.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.precip_ax = pax
    if np.isfinite(tmin):
        ax.set_xlim(tmin, tmax)  # date numbers are what a date axis takes
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="center right", fontsize=8, framealpha=0.8)
    if title is None and basin is not None:
        title = str(basin)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return ax


def exceedance(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flow-duration curve: values sorted in decreasing order and their exceedance probability.

    The exceedance probability of the value of rank ``i`` (1 = largest) among ``n`` finite values is the Weibull
    plotting position :math:`p_i = i / (n + 1)`, in ``]0, 1[``. NaNs are dropped.

    Parameters
    ----------
    values : array-like
        Flows.

    Returns
    -------
    (p, q) : numpy.ndarray, numpy.ndarray
        Exceedance probabilities (increasing) and flows (decreasing).

    Examples
    --------
    >>> exceedance([1.0, 3.0, float("nan"), 2.0])
    (array([0.25, 0.5 , 0.75]), array([3., 2., 1.]))
    """
    v = np.asarray(values, dtype=float).ravel()
    v = np.sort(v[np.isfinite(v)])[::-1]
    p = np.arange(1, v.size + 1) / (v.size + 1.0)
    return p, v


def flow_duration_curve(
    q: Any,
    *,
    ax: Any = None,
    basin: Any = None,
    labels: str | None = None,
    log: bool = True,
    percent: bool = True,
    units: str | None = None,
    title: str | None = None,
) -> Any:
    """Flow-duration curves: flow against the probability that it is exceeded (see :func:`exceedance`).

    Parameters
    ----------
    q : series or mapping of str to series
        One discharge series, or ``{label: series}`` (observed, simulated...). The first one labelled
        ``observed``/``obs`` (if any) is drawn in black.
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    basin : str, optional
        Select this basin from inputs that have a ``basin`` dimension.
    labels : str, optional
        Label of a single series.
    log : bool
        Logarithmic flow axis (zeros are not drawn on it).
    percent : bool
        Exceedance in percent (else as a fraction).
    units : str, optional
        Flow units (default the ``units`` attribute).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
        One line per series, x = exceedance probability, y = flow.
    """
    curves = as_mapping(q, labels, default="discharge")
    if not curves:
        raise DataError("flow_duration_curve: no series given")
    ax = get_ax(ax, (5.5, 4.0))
    k = 0
    for label, s in curves.items():
        _, v = series(s, basin=basin, what=label)
        p, v = exceedance(v)
        if log:
            p, v = p[v > 0], v[v > 0]
        if label.lower() in ("observed", "obs", "observation", "observations"):
            style = _OBS_STYLE
        else:
            style = {"color": _SIM_COLORS[k % len(_SIM_COLORS)], "lw": 1.0}
            k += 1
        ax.plot(100.0 * p if percent else p, v, label=label, **style)
    if log:
        ax.set_yscale("log")
    ax.set_xlim(0, 100 if percent else 1)
    ax.set_xlabel("exceedance probability [%]" if percent else "exceedance probability")
    units = units or next((units_of(s) for s in curves.values() if units_of(s)), None)
    ax.set_ylabel(f"discharge [{units}]" if units else "discharge")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title is None and basin is not None:
        title = str(basin)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return ax
