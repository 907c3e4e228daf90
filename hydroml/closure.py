"""Water-cycle closure supervision: learn gridded evaporation (corrections) from catchment water budgets.

After Hascoet, Pellet, Aires and Takiguchi, "Learning Global Evapotranspiration Dataset Corrections from a
Water Cycle Closure Supervision", Remote Sensing 16(1):170, 2024, doi:10.3390/rs16010170.

The method
----------
A gridded model (:class:`hydroml.models.closure.ClosureNet`, or the ``unet`` in ``mode="direct"``) maps
monthly channels (an evaporation product, forcings, static maps) to monthly evaporation ``E`` per cell
[mm/month]. No cell is ever compared with an evaporation "truth": the supervision is the water balance of
gauged catchments. With sparse grid-to-basin weights ``w[k, c]`` (cell area x fraction of the cell inside unit
``k``, from :func:`hydroml.data.spatial.basin_weights`) and unit areas ``A_k = sum_c w[k, c]``:

.. math::

    \\hat E_{k,t} = \\frac{1}{A_k} \\sum_c w_{k,c} E_{c,t}, \\qquad
    E^{budget}_{k,t} = P_{k,t} - Q_{k,t} - \\Delta S_{k,t}

    L = \\operatorname{mean}_{k \\in train,\\ \\tau}
        \\left(\\frac{\\bar{\\hat E}_{k,\\tau} - \\bar E^{budget}_{k,\\tau}}{\\sigma}\\right)^2
        + \\lambda \\operatorname{mean}_{c,t} \\left(\\frac{E_{c,t} - p_{c,t}}{\\sigma}\\right)^2

where the bars are means over the months of an aggregation window ``tau`` and ``p`` is the product (the second
term keeps the correction small, ``penalty=lambda``; 0 by default).

Storage change and aggregation windows
--------------------------------------
``dS`` is used when it is given (terrestrial water storage change, or, in the demo, the model's true storage);
the loss then compares every month (``aggregation="month"``). Without ``dS`` it is neglected, which is only
defensible over windows whose net storage change is small compared to the fluxes: whole (calendar or
hydrological) years (``aggregation="year"``, the default when ``dS`` is missing) or the whole period
(``"period"``). The residual reported by :func:`score` uses the same windows as the loss.

Nested catchments: independent units
------------------------------------
Nested gauged basins share cells, so holding out a basin whose cells are inside a training basin would leak the
training signal. :func:`incremental_units` turns nested basins into disjoint **incremental (between-gauge)
units**: a basin minus the basins directly nested in it. Water volumes are linear, so the unit budget is exact:
``Q_unit A_unit = Q_i A_i - sum_children Q_j A_j`` (same for ``P`` and ``dS``). Cross-validation
(:func:`kfold`) splits these units, never the nested basins, and scores a unit only with a model that never saw
its budget. Routing delays between gauges are not modelled: they matter for monthly windows when travel times
approach a month, not for annual ones.

Large grids
-----------
``train(..., tile=256)`` runs every step with the exact two-pass tiled catchment-sum training of
:func:`hydroml.memory.catchment_backward` (peak memory of one tile plus halo, gradients equal to whole-grid
training); the small-correction penalty, a sum over cells, is accumulated tile by tile too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import xarray as xr

from hydroml._progress import tqdm
from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.closure")

__all__ = [
    "ClosureProblem",
    "ClosureResult",
    "build_problem",
    "demo_problem",
    "incremental_units",
    "kfold",
    "make_biased_product",
    "predict",
    "score",
    "to_cf",
    "train",
    "window_matrix",
]

AGGREGATIONS = ("month", "year", "hydro_year", "period")


# --------------------------------------------------------------------------------------------------- units
def incremental_units(
    fractions: np.ndarray | sp.spmatrix, ids: Sequence[str], tol: float = 1e-6
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Disjoint incremental (between-gauge) units from nested basins.

    Parameters
    ----------
    fractions : array or sparse matrix
        ``[basin, cell]`` fraction of each cell inside each basin.
    ids : sequence of str
        Basin ids.
    tol : float
        Tolerance of the nesting test ``f_j <= f_i`` and of the overlap check.

    Returns
    -------
    unit_fractions : numpy.ndarray
        ``[basin, cell]``: basin ``i`` minus the basins directly nested in it (its children).
    children : dict
        ``{basin: [children]}``.

    Raises
    ------
    DataError
        If two children of a basin overlap (the units would not be disjoint).
    """
    f = fractions.toarray() if sp.issparse(fractions) else np.asarray(fractions, dtype=float)
    ids = [str(i) for i in ids]
    k = len(ids)
    size = f.sum(axis=1)
    inside = np.zeros((k, k), dtype=bool)  # inside[j, i]: j nested in i
    for i in range(k):
        for j in range(k):
            if i != j and size[j] < size[i] and np.all(f[j] <= f[i] + tol) and np.any(f[j] > 0):
                inside[j, i] = True
    children: dict[str, list[str]] = {}
    units = f.copy()
    for i in range(k):
        nested = np.flatnonzero(inside[:, i])
        direct = [j for j in nested if not any(inside[j, m] for m in nested if m != j)]
        children[ids[i]] = [ids[j] for j in direct]
        for j in direct:
            units[i] -= f[j]
        if units[i].min() < -tol:
            raise DataError(
                f"basins {[ids[j] for j in direct]} nested in {ids[i]!r} overlap: the incremental unit would be "
                "negative"
            )
    return np.clip(units, 0.0, 1.0), children


def _window_sums(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``a [k, T] -> [k, window]`` sums over the months of each window, NaN when any of them is missing."""
    fin = np.isfinite(a)
    out = np.nan_to_num(a) @ m.T
    out[(~fin).astype(float) @ m.T > 0] = np.nan
    return out


def window_matrix(time: Sequence[Any], aggregation: str) -> tuple[np.ndarray, list[str]]:
    """Sum matrix ``[window, month]`` of the aggregation windows of the loss and the residual.

    Parameters
    ----------
    time : sequence of datetime-like
        Monthly time labels.
    aggregation : {"month", "year", "hydro_year", "period"}
        One window per month, calendar year, hydrological year (October-September, labelled by the year it
        ends) or the whole period.

    Returns
    -------
    matrix : numpy.ndarray
        0/1 ``[n_windows, n_months]``.
    labels : list of str
    """
    t = pd.DatetimeIndex(time)
    if aggregation == "month":
        keys = [d.strftime("%Y-%m") for d in t]
    elif aggregation == "year":
        keys = [str(d.year) for d in t]
    elif aggregation == "hydro_year":
        keys = [f"hy{d.year + (d.month >= 10)}" for d in t]
    elif aggregation == "period":
        keys = ["period"] * len(t)
    else:
        raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    labels = list(dict.fromkeys(keys))
    m = np.zeros((len(labels), len(t)))
    for j, key in enumerate(keys):
        m[labels.index(key), j] = 1.0
    return m, labels


# --------------------------------------------------------------------------------------------------- problem
@dataclasses.dataclass
class ClosureProblem:
    """A monthly closure problem on a grid (everything :func:`train` and :func:`score` need).

    Attributes
    ----------
    x : numpy.ndarray
        ``[T, C, H, W]`` float32 normalised input channels (NaN where missing).
    channels : list of str
        Channel names (dynamic inputs first, then static maps).
    product : numpy.ndarray or None
        ``[T, H, W]`` the evaporation product to correct, mm/month.
    valid : numpy.ndarray
        ``[H, W]`` cells where the inputs and the product are finite at every step.
    weights : scipy.sparse.csr_matrix
        ``[unit, H*W]`` cell area (km2) x fraction of the cell in the unit.
    units : list of str
        Unit ids.
    budget : numpy.ndarray
        ``[unit, T]`` ``P - Q - dS`` per unit, mm/month (NaN where ``Q`` is missing).
    precip : numpy.ndarray
        ``[unit, T]`` unit precipitation, mm/month.
    time : pandas.DatetimeIndex
        Month labels.
    aggregation : str
        Windows of the loss and residual (:func:`window_matrix`).
    stats : dict
        ``{channel: {"mean": m, "std": s}}`` of the normalisation (the product's name also for the output).
    product_name : str or None
        Name of the product channel.
    truth : numpy.ndarray or None
        ``[T, H, W]`` true evaporation (synthetic demo only), for scoring.
    has_storage : bool
        Whether ``dS`` entered the budget.
    grid_coords : dict
        ``{"dims": (ydim, xdim), ydim: values, xdim: values, ...}`` to write grids back.
    """

    x: np.ndarray
    channels: list[str]
    product: np.ndarray | None
    valid: np.ndarray
    weights: sp.csr_matrix
    units: list[str]
    budget: np.ndarray
    precip: np.ndarray
    time: pd.DatetimeIndex
    aggregation: str
    stats: dict
    product_name: str | None = None
    truth: np.ndarray | None = None
    has_storage: bool = False
    grid_coords: dict = dataclasses.field(default_factory=dict)

    @property
    def unit_area(self) -> np.ndarray:
        """Area of each unit, km2."""
        return np.asarray(self.weights.sum(axis=1)).ravel()

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.x.shape[-2], self.x.shape[-1]

    def unit_means(self, e: np.ndarray) -> np.ndarray:
        """Area-weighted unit means ``[unit, T]`` of a grid ``[T, H, W]`` (NaN cells count as 0)."""
        flat = np.nan_to_num(e.reshape(e.shape[0], -1)).astype(np.float64)
        return np.asarray(self.weights @ flat.T) / self.unit_area[:, None]

    def cell_unit(self) -> np.ndarray:
        """``[H*W]`` index of the unit holding most of each cell (-1 outside every unit)."""
        w = self.weights.toarray()
        out = np.where(w.max(axis=0) > 0, w.argmax(axis=0), -1)
        return out


def _stats(arr: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    v = arr[..., valid] if arr.ndim == 3 else arr[valid]
    v = v[np.isfinite(v)]
    std = float(v.std()) if v.size else 1.0
    return {"mean": float(v.mean()) if v.size else 0.0, "std": std if std > 0 else 1.0}


def build_problem(
    ds: xr.Dataset,
    weights: Any,
    q_mm: xr.DataArray,
    *,
    inputs: Sequence[str],
    statics: Sequence[str] = (),
    product: str | None = "evspsbl",
    pr: str = "pr",
    dtws: xr.DataArray | None = None,
    area_km2: xr.DataArray | None = None,
    incremental: bool = True,
    aggregation: str | None = None,
    truth: xr.DataArray | None = None,
    stats: dict | None = None,
) -> ClosureProblem:
    """Assemble a closure problem from monthly grids, catchment weights and discharge.

    Parameters
    ----------
    ds : xarray.Dataset
        Monthly grids on ``(time, y, x)`` (or ``lat``, ``lon``): ``pr`` and the ``inputs`` in mm/month (fluxes)
        or their units, the ``statics`` on ``(y, x)``.
    weights : hydroml.data.spatial.BasinWeights
        Grid-to-basin weights on the grid of ``ds`` (``fractions``, ``cell_area_km2``, ``basins``).
    q_mm : xarray.DataArray
        Discharge as depth over each basin, mm/month, on ``(basin, time)``.
    inputs : sequence of str
        Dynamic channels; must contain ``product`` unless it is None.
    statics : sequence of str
        Static maps.
    product : str or None
        The evaporation product (a name in ``inputs``) to correct; None for direct prediction.
    pr : str
        Precipitation variable (mm/month).
    dtws : xarray.DataArray, optional
        Storage change per basin, mm/month, on ``(basin, time)``; neglected when None.
    area_km2 : xarray.DataArray, optional
        Basin areas that convert ``q_mm`` (and ``dtws``) to volumes; default the weights' areas.
    incremental : bool
        Use disjoint incremental units (:func:`incremental_units`) instead of the (possibly nested) basins.
    aggregation : str, optional
        Loss windows; default ``"month"`` with ``dtws``, ``"year"`` without.
    truth : xarray.DataArray, optional
        True evaporation on ``(time, y, x)`` (synthetic data), for scoring.
    stats : dict, optional
        Normalisation ``{channel: {"mean", "std"}}``; default fitted on the valid cells of ``ds`` (inputs only:
        no target enters it).

    Returns
    -------
    ClosureProblem
    """
    missing = [v for v in (*inputs, *statics, pr) if v not in ds]
    if missing:
        raise DataError(f"closure: variables {missing} not in the data; available: {sorted(ds.data_vars)}")
    if product is not None and product not in inputs:
        raise ConfigError(f"closure: the product {product!r} must be one of the inputs {list(inputs)}")
    ydim, xdim = weights.grid_dims
    basins = [str(b) for b in weights.basins]
    qb = q_mm.sel(basin=basins).transpose("basin", "time")
    time = pd.DatetimeIndex(ds["time"].values)
    qb = qb.reindex(time=time)
    dyn = np.stack([ds[v].transpose("time", ydim, xdim).values for v in inputs], axis=1).astype(np.float32)
    st = [ds[v].transpose(ydim, xdim).values.astype(np.float32) for v in statics]
    valid = np.isfinite(dyn).all(axis=(0, 1))
    for s in st:
        valid &= np.isfinite(s)
    if stats is None:
        stats = {v: _stats(dyn[:, i], valid) for i, v in enumerate(inputs)}
        stats.update({v: _stats(s, valid) for v, s in zip(statics, st)})
    chans = [(dyn[:, i] - stats[v]["mean"]) / stats[v]["std"] for i, v in enumerate(inputs)]
    chans += [
        np.broadcast_to((s - stats[v]["mean"]) / stats[v]["std"], dyn[:, 0].shape)
        for v, s in zip(statics, st)
    ]
    x = np.stack(chans, axis=1).astype(np.float32)
    # NaN stay where the data have them (the model fills them), as hydroml.forecast does at inference

    frac = weights.fractions.toarray()
    cell_area = np.nan_to_num(np.asarray(weights.cell_area_km2, dtype=float))
    area = frac @ cell_area
    if area_km2 is not None:
        area = area_km2.sel(basin=basins).values.astype(float)
    qv = qb.values * area[:, None]  # mm km2
    dsv = None
    if dtws is not None:
        dsv = dtws.sel(basin=basins).transpose("basin", "time").reindex(time=time).values * area[:, None]
    if incremental:
        ufrac, children = incremental_units(frac, basins)
        for i, b in enumerate(basins):
            for c in children[b]:
                j = basins.index(c)
                qv[i] = qv[i] - qv[j]
                if dsv is not None:
                    dsv[i] = dsv[i] - dsv[j]
        units = [f"{b}_incr" if children[b] else b for b in basins]
    else:
        ufrac, units = frac, basins
    w = sp.csr_matrix(ufrac * cell_area[None, :])
    w.eliminate_zeros()
    ua = np.asarray(w.sum(axis=1)).ravel()
    prv = ds[pr].transpose("time", ydim, xdim).values
    flat = np.nan_to_num(prv.reshape(len(time), -1)).astype(np.float64)
    precip = np.asarray(w @ flat.T) / ua[:, None]
    budget = precip - qv / ua[:, None]
    if dsv is not None:
        budget = budget - dsv / ua[:, None]
    outside = np.asarray((w > 0).multiply(sp.csr_matrix(~valid.ravel()[None, :])).sum(axis=1)).ravel()
    if outside.any():
        log.warning("closure: units %s touch cells without valid inputs (counted as 0)",
                    [u for u, o in zip(units, outside) if o])  # fmt: skip
    coords = {"dims": (ydim, xdim)}
    for d in (ydim, xdim):
        if d in ds.coords:
            coords[d] = ds[d].values
    for name in ("lat", "lon"):
        if name in ds.coords and ds[name].dims == (ydim, xdim):
            coords[name] = ds[name].values
    return ClosureProblem(
        x=x,
        channels=[*inputs, *statics],
        product=None
        if product is None
        else ds[product].transpose("time", ydim, xdim).values.astype(np.float32),
        valid=valid,
        weights=w,
        units=units,
        budget=budget,
        precip=precip,
        time=time,
        aggregation=aggregation or ("month" if dtws is not None else "year"),
        stats=stats,
        product_name=product,
        truth=None if truth is None else truth.transpose("time", ydim, xdim).values.astype(np.float32),
        has_storage=dtws is not None,
        grid_coords=coords,
    )


# --------------------------------------------------------------------------------------------------- demo
def make_biased_product(monthly: xr.Dataset, seed: int = 0, noise: float = 0.08) -> xr.DataArray:
    """Corrupt the demo's true monthly evaporation into a biased "product".

    ``product = truth * exp(b(c, t) + noise * N(0, 1))`` with a smooth log-bias

    .. math::

        b = 0.25\\, z_{forest} - 0.20\\, z_{elev} + 0.15 \\tanh\\left(\\frac{T_{air} - 10}{8}\\right)
            + 0.05\\, g(c)

    (``z`` standardised over land, ``g`` a smooth random field of unit variance): a product that overestimates
    evaporation over forests and in warm months and underestimates it in mountains, plus an unexplained smooth
    field and independent multiplicative noise per cell and month. The bias depends on inputs the closure model
    sees (forest, elevation, temperature), as real product errors depend on land cover and climate; the random
    field and the noise cannot be learnt.

    Parameters
    ----------
    monthly : xarray.Dataset
        ``load_demo("monthly")``.
    seed : int
        Seed of the random field and the noise.
    noise : float
        Standard deviation of the multiplicative log-noise.

    Returns
    -------
    xarray.DataArray
        ``evspsbl`` product on ``(time, lat, lon)``, mm/month.
    """
    rng = np.random.default_rng(seed)
    land = monthly["land_mask"].values.astype(bool)

    def z(a: np.ndarray) -> np.ndarray:
        return (a - a[land].mean()) / a[land].std()

    ny, nx = land.shape
    g = rng.standard_normal((ny, nx))
    ky, kx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    g = np.real(np.fft.ifft2(np.fft.fft2(g) * np.exp(-2 * (np.pi * 5.0) ** 2 * (kx**2 + ky**2))))
    g = z(g)
    static = 0.25 * z(monthly["forest_frac"].values) - 0.20 * z(monthly["elevation"].values) + 0.05 * g
    seasonal = 0.15 * np.tanh((monthly["tas"].values - 10.0) / 8.0)
    eps = noise * rng.standard_normal(monthly["evspsbl"].shape)
    prod = monthly["evspsbl"].values * np.exp(static[None] + seasonal + eps)
    out = monthly["evspsbl"].copy(data=prod.astype(np.float32))
    out.attrs = {
        "units": "mm/month",
        "long_name": "biased evaporation product (SYNTHETIC: the demo's truth with a smooth bias and noise)",
        "cell_methods": "time: sum",
    }
    return out


DEMO_INPUTS = ("evspsbl", "pr", "evspsblpot", "tas", "rsds")
DEMO_STATICS = ("elevation", "forest_frac")


def demo_problem(
    cache_dir: Any = None, seed: int = 0, aggregation: str = "month"
) -> tuple[ClosureProblem, xr.Dataset]:
    """The closure problem of the synthetic demo: correct a biased product with the 5 gauges' budgets.

    The 5 nested demo basins become 5 disjoint incremental units; ``dS`` is the demo's true basin storage
    change, so the loss compares months.

    Parameters
    ----------
    cache_dir : path-like, optional
        Demo cache (see :func:`hydroml.data.demo.load_demo`).
    seed : int
        Seed of :func:`make_biased_product`.
    aggregation : str
        Loss windows.

    Returns
    -------
    problem : ClosureProblem
    data : xarray.Dataset
        The monthly demo with ``evspsbl`` replaced by the product and the truth as ``evspsbl_true``.
    """
    from hydroml.data.demo import load_demo
    from hydroml.data.spatial import basin_weights

    m = load_demo("monthly", cache_dir=cache_dir)
    prod = make_biased_product(m, seed=seed)
    data = m.assign(evspsbl_true=m["evspsbl"], evspsbl=prod)
    w = basin_weights(m, masks=m["basin_mask"].astype(bool))
    # the demo's own (spherical) cell areas make its water balance exact
    area = m["cell_area"].values.astype(float).ravel()
    w = dataclasses.replace(w, cell_weight=area, cell_area_km2=area)
    problem = build_problem(
        data,
        w,
        m["q_mm"],
        inputs=DEMO_INPUTS,
        statics=DEMO_STATICS,
        product="evspsbl",
        dtws=m["basin_dtws"],
        area_km2=m["area_km2"],
        aggregation=aggregation,
        truth=m["evspsbl"],
    )
    return problem, data


# --------------------------------------------------------------------------------------------------- training
@dataclasses.dataclass
class ClosureResult:
    """A trained closure model.

    Attributes
    ----------
    model : torch.nn.Module
        The network (``eval()`` mode).
    model_params : dict
        Arguments of ``hydroml.models.create(architecture, ...)``.
    architecture : str
        Registry name.
    train_units : list of str
        Units whose budgets supervised it.
    history : list of float
        Loss per epoch.
    config : dict
        Training settings.
    """

    model: torch.nn.Module
    model_params: dict
    architecture: str
    train_units: list[str]
    history: list[float]
    config: dict


def _unit_indices(problem: ClosureProblem, units: Sequence[str] | None) -> np.ndarray:
    if units is None:
        return np.arange(len(problem.units))
    bad = [u for u in units if u not in problem.units]
    if bad:
        raise ConfigError(f"closure: unknown units {bad}; units are {problem.units}")
    return np.asarray([problem.units.index(u) for u in units])


def _model_params(problem: ClosureProblem, architecture: str, params: dict | None) -> dict:
    params = dict(params or {})
    c = len(problem.channels)
    if architecture == "closure":
        out = {"in_channels": c, "hidden": 16, "context_layers": 1, "pixel_layers": 2}
        if problem.product_name is not None:
            s = problem.stats[problem.product_name]
            out.update(
                product_channel=problem.channels.index(problem.product_name),
                product_mean=s["mean"],
                product_std=s["std"],
                target_mean=s["mean"],
                target_std=s["std"],
            )
        else:
            out["mode"] = "direct"
        out.update(params)
        return out
    if architecture == "unet":
        out = {"in_channels": c, "out_channels": 1, "base_width": 8, "depth": 2, "norm": "none"}
        out.update(params)
        return out
    raise ConfigError(f"closure: architecture must be 'closure' or 'unet', got {architecture!r}")


def _evaporation(model: torch.nn.Module, out: dict, problem: ClosureProblem) -> torch.Tensor:
    """Physical evaporation [B, H, W] from a model output."""
    if "evspsbl" in out:
        return out["evspsbl"][:, 0]
    s = problem.stats.get(problem.product_name or "", {"mean": 0.0, "std": 1.0})
    return out["y_hat"][:, 0] * s["std"] + s["mean"]


class _Windows:
    """Loss windows restricted to a subset of months."""

    def __init__(self, problem: ClosureProblem, units: np.ndarray) -> None:
        m, self.labels = window_matrix(problem.time, problem.aggregation)
        self.m = m
        self.length = m.sum(axis=1)
        target = _window_sums(problem.budget[units], m)  # [k, win] NaN if any month missing
        self.target = target
        self.ok = np.isfinite(target)


def _closure_loss(
    sums_mm: torch.Tensor, target: torch.Tensor, wmat: torch.Tensor, ok: torch.Tensor, scale: float
) -> torch.Tensor:
    """Mean squared window-mean error. ``sums_mm`` [T, K] unit means, ``target`` [K, win] window sums."""
    pred = (wmat @ sums_mm).T  # [K, win]
    length = wmat.sum(dim=1)[None, :]
    diff = torch.where(ok, (pred - torch.nan_to_num(target)) / length, torch.zeros_like(pred))
    return (diff**2).sum() / ok.sum().clamp(min=1) / scale**2


def train(
    problem: ClosureProblem,
    train_units: Sequence[str] | None = None,
    *,
    architecture: str = "closure",
    model_params: dict | None = None,
    epochs: int = 150,
    lr: float = 3e-3,
    penalty: float = 0.0,
    windows_per_step: int | None = None,
    tile: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> ClosureResult:
    """Train a gridded evaporation model on the water budgets of ``train_units``.

    Parameters
    ----------
    problem : ClosureProblem
        From :func:`build_problem` or :func:`demo_problem`.
    train_units : sequence of str, optional
        Units whose budgets supervise the model (default all).
    architecture : {"closure", "unet"}
        ``closure`` (:class:`~hydroml.models.closure.ClosureNet`, a correction of the product) or ``unet``
        (direct prediction, in the normalised units of the product).
    model_params : dict, optional
        Overrides of the network's arguments.
    epochs : int
        Passes over the loss windows.
    lr : float
        Adam learning rate.
    penalty : float
        Weight ``lambda`` of the small-correction penalty (needs a product).
    windows_per_step : int, optional
        Loss windows per optimiser step (default: 24 monthly windows, or all windows for annual ones).
    tile : int, optional
        Train with the exact tiled catchment-sum passes of :func:`hydroml.memory.catchment_backward` using tiles
        of this size (for grids that do not fit whole).
    seed : int
        Seed of the initialisation and the window order.
    progress : bool, optional
        Progress bar.

    Returns
    -------
    ClosureResult
    """
    from hydroml.models import create

    if penalty and problem.product is None:
        raise ConfigError("closure: penalty > 0 needs a product to stay close to")
    idx = _unit_indices(problem, train_units)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = _model_params(problem, architecture, model_params)
    model = create(architecture, **params)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    win = _Windows(problem, idx)
    n_win = win.m.shape[0]
    if windows_per_step is None:
        windows_per_step = 24 if problem.aggregation == "month" else n_win
    windows_per_step = max(1, min(windows_per_step, n_win))
    s_prod = problem.stats.get(problem.product_name or "", None)
    scale = float(s_prod["std"]) if s_prod else float(np.nanstd(problem.budget))
    w_sub = problem.weights[idx]
    area = np.asarray(w_sub.sum(axis=1)).ravel()
    # unit means; cells without valid inputs contribute 0 (in both the whole-grid and the tiled path)
    keep = problem.valid.ravel().astype(float)[None, :]
    wn = sp.csr_matrix(w_sub.multiply(keep).multiply(1.0 / area[:, None]))
    coo = wn.tocoo()
    wt = torch.sparse_coo_tensor(
        np.vstack([coo.row, coo.col]),
        torch.tensor(coo.data, dtype=torch.float32),
        coo.shape,
        check_invariants=True,
    ).coalesce()
    valid = torch.from_numpy(problem.valid)
    history: list[float] = []
    model.train()
    for epoch in tqdm(range(epochs), progress=progress, desc="closure"):
        order = rng.permutation(n_win)
        losses = []
        for s in range(0, n_win, windows_per_step):
            wsel = order[s : s + windows_per_step]
            months = np.flatnonzero(win.m[wsel].sum(axis=0) > 0)
            wmat = torch.tensor(win.m[np.ix_(wsel, months)], dtype=torch.float32)
            target = torch.tensor(win.target[:, wsel], dtype=torch.float32)
            ok = torch.from_numpy(win.ok[:, wsel])
            if not ok.any():
                continue  # no supervised window in this draw
            x = torch.from_numpy(problem.x[months])
            prod = None if problem.product is None else torch.from_numpy(problem.product[months])
            opt.zero_grad()
            if tile is None:
                value = _whole_step(model, problem, x, prod, wt, target, wmat, ok, scale, penalty, valid)
            else:
                value = _tiled_step(
                    model, problem, x, prod, wn, target, wmat, ok, scale, penalty, tile, valid
                )
            opt.step()
            losses.append(value)
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs - 1:
            log.info("closure epoch %d: loss %.4g", epoch, history[-1])
    model.eval()
    config = {
        "architecture": architecture,
        "epochs": epochs,
        "lr": lr,
        "penalty": penalty,
        "windows_per_step": windows_per_step,
        "aggregation": problem.aggregation,
        "tile": tile,
        "seed": seed,
    }
    return ClosureResult(model, params, architecture, [problem.units[i] for i in idx], history, config)


def _whole_step(model, problem, x, prod, wt, target, wmat, ok, scale, penalty, valid) -> float:
    """Loss on the whole grid and its backward (accumulates parameter gradients)."""
    e = _evaporation(model, model({"x": x}), problem)  # [B, H, W]
    e = torch.where(valid, e, torch.zeros_like(e))
    sums = torch.sparse.mm(wt, e.reshape(e.shape[0], -1).T).T  # [B, K]
    loss = _closure_loss(sums, target, wmat, ok, scale)
    if penalty:
        dev = torch.where(valid, (e - torch.nan_to_num(prod)) / scale, torch.zeros_like(e))
        loss = loss + penalty * (dev**2).sum() / (valid.sum() * e.shape[0])
    loss.backward()
    return loss.item()


class _Physical(torch.nn.Module):
    """Wraps a model so that ``y_hat`` is physical evaporation with NaN-free zeros outside valid cells."""

    def __init__(self, model: torch.nn.Module, problem: ClosureProblem) -> None:
        super().__init__()
        self.model, self.problem = model, problem

    def forward(self, batch: dict) -> dict:
        return {"y_hat": _evaporation(self.model, self.model(batch), self.problem)[:, None]}

    def receptive_field(self):
        return self.model.receptive_field()


def _tiled_step(model, problem, x, prod, wn, target, wmat, ok, scale, penalty, tile, valid) -> float:
    """One exact tiled step (:func:`hydroml.memory.catchment_backward`) plus the penalty, tile by tile."""
    from hydroml.memory import catchment_backward, tiles

    phys = _Physical(model, problem)
    # invalid cells have zero weight in wn, so their (garbage) outputs never enter the sums
    xin = torch.nan_to_num(x).numpy()

    def loss_fn(sums: torch.Tensor) -> torch.Tensor:  # [B, 1, K]
        return _closure_loss(sums[:, 0].to(wmat.dtype), target, wmat, ok, scale)

    step = catchment_backward(phys, xin, wn, loss_fn, tile=tile, progress=False)
    value = step.loss
    if penalty:
        H, W = problem.shape
        rf = model.receptive_field()
        n = float(valid.sum()) * x.shape[0]
        for t in tiles((H, W), tile, rf.halo, rf.stride):
            xt = x[..., t.wr0 : t.wr1, t.wc0 : t.wc1]
            e = phys({"x": xt})["y_hat"][:, 0, t.r0 - t.wr0 : t.r1 - t.wr0, t.c0 - t.wc0 : t.c1 - t.wc0]
            p = torch.nan_to_num(prod[:, t.r0 : t.r1, t.c0 : t.c1])
            v = valid[t.r0 : t.r1, t.c0 : t.c1]
            dev = torch.where(v, (e - p) / scale, torch.zeros_like(e))
            part = penalty * (dev**2).sum() / n
            part.backward()
            value += part.item()
    return value


@torch.no_grad()
def predict(model: torch.nn.Module, problem: ClosureProblem, batch_size: int = 64) -> np.ndarray:
    """Monthly evaporation ``[T, H, W]`` (mm/month) of a trained model, NaN outside the valid cells."""
    model.eval()
    out = []
    for s in range(0, problem.x.shape[0], batch_size):
        x = torch.from_numpy(problem.x[s : s + batch_size])
        out.append(_evaporation(model, model({"x": x}), problem).numpy())
    e = np.concatenate(out).astype(np.float32)
    e[:, ~problem.valid] = np.nan
    return e


# --------------------------------------------------------------------------------------------------- scores
def _nse_cells(obs: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """NSE over time (axis 0) for each cell: ``1 - sum (s - o)^2 / sum (o - mean o)^2``."""
    den = ((obs - obs.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ((sim - obs) ** 2).sum(axis=0) / np.where(den > 0, den, np.nan)


def score(
    problem: ClosureProblem, evaporation: np.ndarray, units: Sequence[str] | None = None
) -> dict[str, float]:
    """Water-budget residual, deviation from the product and (synthetic data) skill against the truth.

    Parameters
    ----------
    problem : ClosureProblem
    evaporation : numpy.ndarray
        ``[T, H, W]`` evaporation to score, mm/month (e.g. :func:`predict`, or ``problem.product``).
    units : sequence of str, optional
        Units to score (e.g. the held-out ones); default all.

    Returns
    -------
    dict
        - ``residual_mae``: mean over units and windows of ``|mean(P - E - Q - dS)|`` over the window, mm/month
          (perfect 0);
        - ``residual_bias``: its signed mean, mm/month;
        - ``residual_rel``: ``residual_mae`` / mean unit precipitation;
        - ``dev_product_mae``, ``dev_product_rel``: mean ``|E - product|`` over the units' cells and months, mm/month
          and relative to the mean product (when a product is given);
        - with a truth: ``nse_cell_median`` (median over cells of the per-cell NSE over months, perfect 1),
          ``bias_cell_mae`` (mean over cells of ``|mean_t E - mean_t truth| / mean_t truth``, perfect 0) and
          ``bias_rel`` (``sum E / sum truth - 1`` over the cells, perfect 0).
    """
    idx = _unit_indices(problem, units)
    m, _ = window_matrix(problem.time, problem.aggregation)
    length = m.sum(axis=1)
    e_units = problem.unit_means(evaporation)[idx]
    resid = _window_sums(problem.budget[idx] - e_units, m) / length  # [k, win]
    ok = np.isfinite(resid)
    out = {
        "residual_mae": float(np.abs(resid[ok]).mean()),
        "residual_bias": float(resid[ok].mean()),
        "residual_rel": float(np.abs(resid[ok]).mean() / np.nanmean(problem.precip[idx])),
    }
    cu = problem.cell_unit()
    cells = np.isin(cu, idx) & problem.valid.ravel()
    e = evaporation.reshape(evaporation.shape[0], -1)[:, cells]
    if problem.product is not None:
        p = problem.product.reshape(problem.product.shape[0], -1)[:, cells]
        out["dev_product_mae"] = float(np.nanmean(np.abs(e - p)))
        out["dev_product_rel"] = float(np.nanmean(np.abs(e - p)) / np.nanmean(p))
    if problem.truth is not None:
        tr = problem.truth.reshape(problem.truth.shape[0], -1)[:, cells]
        out["nse_cell_median"] = float(np.nanmedian(_nse_cells(tr, e)))
        mt = tr.mean(axis=0)
        out["bias_cell_mae"] = float(np.nanmean(np.abs(e.mean(axis=0) - mt) / mt))
        out["bias_rel"] = float(e.sum() / tr.sum() - 1.0)
    out["n_units"] = int(len(idx))
    out["n_cells"] = int(cells.sum())
    return out


def kfold(
    problem: ClosureProblem, k: int = 5, seed: int = 0, **train_kwargs: Any
) -> tuple[np.ndarray, list[dict]]:
    """Basin k-fold over the (incremental) units: every unit is predicted by a model that never saw its budget.

    Parameters
    ----------
    problem : ClosureProblem
    k : int
        Folds (at most the number of units; ``k = n_units`` is leave-one-unit-out).
    seed : int
        Seed of the fold assignment and of the training.
    **train_kwargs
        Passed to :func:`train`.

    Returns
    -------
    out_of_fold : numpy.ndarray
        ``[T, H, W]`` evaporation where every cell comes from the fold that held its unit out (the product, or
        NaN, for cells outside every unit).
    folds : list of dict
        Per fold: ``train_units``, ``test_units``, ``history`` and :func:`score` on the held-out units for the
        product (``"before"``) and the model (``"after"``).
    """
    from hydroml.datasets.splits import kfold_basins

    n = len(problem.units)
    if not 2 <= k <= n:
        raise ConfigError(f"closure: k must lie in [2, {n}] (the number of units), got {k}")
    splits = kfold_basins(problem.units, k, seed=seed)
    oof = np.array(problem.product if problem.product is not None else np.full(problem.x[:, 0].shape, np.nan))
    cu = problem.cell_unit().reshape(problem.shape)
    folds = []
    for f, split in enumerate(splits):
        test_units = [u for u in problem.units if u in set(split.test_basins)]
        train_units = [u for u in problem.units if u not in test_units]
        res = train(problem, train_units, seed=seed + f, **train_kwargs)
        e = predict(res.model, problem)
        sel = np.isin(cu, [problem.units.index(u) for u in test_units])
        oof[:, sel] = e[:, sel]
        rec = {"fold": f, "train_units": train_units, "test_units": test_units, "history": res.history}
        rec["after"] = score(problem, e, test_units)
        if problem.product is not None:
            rec["before"] = score(problem, problem.product, test_units)
        folds.append(rec)
    return oof, folds


# --------------------------------------------------------------------------------------------------- output
def to_cf(
    evaporation: np.ndarray, problem: ClosureProblem, *, source: str = "", history: str = ""
) -> xr.Dataset:
    """Corrected evaporation as a CF Dataset: ``evspsbl`` [mm month-1] with ``cell_methods: time: sum``.

    Parameters
    ----------
    evaporation : numpy.ndarray
        ``[T, H, W]`` mm/month.
    problem : ClosureProblem
        Gives time, grid coordinates and provenance.
    source, history : str
        Provenance attributes.

    Returns
    -------
    xarray.Dataset
        Write it with :func:`hydroml.forecast.write_forecast` (atomic, CF-1.8: ``tests/test_cf.py``).
    """
    from hydroml import __version__

    ydim, xdim = problem.grid_coords.get("dims", ("lat", "lon"))
    coords: dict[str, Any] = {"time": ("time", problem.time, {"standard_name": "time", "axis": "T"})}
    for d in (ydim, xdim):
        if d in problem.grid_coords:
            coords[d] = problem.grid_coords[d]
    for name, std in (("lat", "latitude"), ("lon", "longitude")):
        if name in problem.grid_coords and name not in (ydim, xdim):
            coords[name] = ((ydim, xdim), problem.grid_coords[name], {"standard_name": std})
    ds = xr.Dataset(
        {
            "evspsbl": (
                ("time", ydim, xdim),
                np.asarray(evaporation, dtype=np.float32),
                {
                    "standard_name": "water_evapotranspiration_amount",
                    "long_name": "monthly actual evaporation corrected by water-cycle closure supervision",
                    "units": "mm month-1",
                    "cell_methods": "time: sum (interval: 1 month)",
                    "coverage_content_type": "modelResult",
                },
            )
        },
        coords=coords,
    )
    for name, std, units in (("lat", "latitude", "degrees_north"), ("lon", "longitude", "degrees_east")):
        if name in ds.coords:
            ds[name].attrs.update({"standard_name": std, "units": units})
    ds["evspsbl"].encoding.update({"dtype": "float32", "_FillValue": np.float32(np.nan), "zlib": True})
    ds.attrs.update(
        {
            "Conventions": "CF-1.8",
            "title": "evaporation corrected by water-cycle closure (hydroml.closure)",
            "source": source or f"hydroml {__version__} hydroml.closure",
            "history": history or f"hydroml {__version__}: hydroml.closure.to_cf",
            "references": "Hascoet, Pellet, Aires, Takiguchi (2024), Remote Sens. 16(1):170, "
            "doi:10.3390/rs16010170",
            "aggregation_of_supervision": problem.aggregation,
        }
    )
    return ds
