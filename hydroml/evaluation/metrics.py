r"""Public metrics: one function per metric for NumPy arrays *and* xarray objects.

``hydroml.evaluation.nse(obs, sim)`` dispatches on its inputs:

- NumPy / array-like inputs reduce over ``axis`` (default ``-1``) with the NumPy core
  (:mod:`hydroml.evaluation._core`), returning an ``ndarray`` (0-d for a single series);
- xarray inputs reduce over ``dim`` (default ``"time"``), keep every other dimension (basins, cells, members,
  lead times), align obs and sim on their shared coordinates (inner join) and run through
  ``xarray.apply_ufunc(..., dask="parallelized")``, so dask-backed inputs stay lazy.

Passing ``dim=`` with NumPy inputs, or ``axis=`` with xarray inputs, is an error rather than silently ignored.
Metrics with components (the KGE family) return only the efficiency unless ``components=True``: then a ``dict``
of arrays (NumPy) or an ``xarray.Dataset``. The conventions (pairwise NaN dropping, minimum of valid pairs,
constant observations) are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hydroml.evaluation import _core
from hydroml.evaluation._core import METRICS
from hydroml.exceptions import ConfigError, DataError

__all__ = [
    "nse",
    "log_nse",
    "kge",
    "kge_prime",
    "kge_np",
    "rmse",
    "mse",
    "mae",
    "mean_error",
    "pbias",
    "pearson_r",
    "spearman_r",
    "r_squared",
    "alpha_nse",
    "beta_nse",
    "fhv",
    "fms",
    "flv",
    "peak_timing",
    "missed_peaks",
    "peak_mape",
    "evaluate",
]


def _is_xr(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("xarray")


def _to_xr(x: Any, like: Any) -> Any:
    import xarray as xr

    if _is_xr(x):
        return x
    arr = np.asarray(x)
    if arr.shape != like.shape:
        raise DataError(
            f"cannot pair a plain array of shape {arr.shape} with an xarray object of shape {like.shape}; "
            "pass both as xarray objects"
        )
    return xr.DataArray(arr, dims=like.dims, coords=like.coords)


def _xr_apply(
    names: Sequence[str],
    obs: Any,
    sim: Any,
    dim: str,
    min_pairs: int | None,
    kwargs: dict[str, dict[str, Any]],
    caller: str,
) -> Any:
    import xarray as xr

    if not _is_xr(obs):
        obs = _to_xr(obs, sim)
    if not _is_xr(sim):
        sim = _to_xr(sim, obs)
    for label, x in (("obs", obs), ("sim", sim)):
        if dim not in x.dims:
            raise DataError(
                f"{label} has no dimension {dim!r} to reduce over; its dimensions are {tuple(x.dims)}"
            )
    obs, sim = xr.align(obs, sim, join="inner")
    if obs.sizes[dim] == 0:
        raise DataError(f"obs and sim share no {dim!r} coordinate values: nothing to evaluate")
    if obs.chunks:
        obs = obs.chunk({dim: -1})
    if sim.chunks:
        sim = sim.chunk({dim: -1})
    outputs = [o for n in names for o in METRICS[n].outputs]
    outputs = list(dict.fromkeys(outputs))

    threads = 1 if (obs.chunks or sim.chunks) else None

    def kernel(o: np.ndarray, s: np.ndarray) -> Any:
        res = _core._run(names, o, s, -1, min_pairs, kwargs, caller, threads)
        vals = tuple(res[k] for k in outputs)
        return vals[0] if len(vals) == 1 else vals

    res = xr.apply_ufunc(
        kernel,
        obs,
        sim,
        input_core_dims=[[dim], [dim]],
        output_core_dims=[[] for _ in outputs],
        dask="parallelized",
        output_dtypes=[np.float64 for _ in outputs],
        keep_attrs=False,
    )
    res = res if isinstance(res, tuple) else (res,)
    out = {}
    for k, v in zip(outputs, res):
        if isinstance(v, xr.DataArray):
            v = v.rename(k)
        out[k] = v
    return out


def _dispatch(
    name: str,
    obs: Any,
    sim: Any,
    dim: str | None,
    axis: int | None,
    min_pairs: int | None,
    components: bool = False,
    **kw: Any,
) -> Any:
    kwargs = {name: kw} if kw else {}
    if _is_xr(obs) or _is_xr(sim):
        if axis is not None:
            raise ConfigError(
                f"{name}: axis= is for NumPy inputs; xarray inputs take dim= (a dimension name)"
            )
        out = _xr_apply([name], obs, sim, dim or "time", min_pairs, kwargs, name)
        if components:
            import xarray as xr

            return xr.Dataset(out) if all(isinstance(v, xr.DataArray) for v in out.values()) else out
        return out[METRICS[name].outputs[0]]
    if dim is not None:
        raise ConfigError(f"{name}: dim= is for xarray inputs; NumPy inputs take axis= (default -1)")
    out = _core._run([name], obs, sim, -1 if axis is None else axis, min_pairs, kwargs, name)
    return out if components else out[METRICS[name].outputs[0]]


_PARAMS = """
    Parameters
    ----------
    obs : array_like or xarray.DataArray
        Observations.
    sim : array_like or xarray.DataArray
        Simulations, broadcastable against ``obs``.
    dim : str, optional
        Dimension reduced over for xarray inputs (default ``"time"``).
    axis : int, optional
        Axis reduced over for NumPy inputs (default ``-1``).
    min_pairs : int, optional
        Minimum number of valid pairs, fewer gives NaN (default 2, see :func:`set_options`).{extra}

    Returns
    -------
    numpy.ndarray or xarray.DataArray
        {returns}
"""


def _doc(
    summary: str,
    formula: str,
    perfect: str,
    rng: str,
    references: str,
    example: str,
    notes: str = "",
    extra: str = "",
    returns: str = "The score with the reduced dimension removed.",
) -> str:
    text = f"{summary}\n\n    .. math::\n\n        {formula}\n\n"
    text += f"    **Perfect value:** {perfect}. **Range:** {rng}.\n"
    if notes:
        text += f"\n    {notes}\n"
    text += _PARAMS.format(extra=extra, returns=returns)
    text += f"\n    References\n    ----------\n    {references}\n"
    text += f"\n    Examples\n    --------\n    >>> import numpy as np\n    >>> from hydroml import evaluation as ev\n{example}\n"
    return text


_NS = "Nash, J. E. and Sutcliffe, J. V. (1970). River flow forecasting through conceptual models part I. Journal of Hydrology 10(3), 282-290. doi:10.1016/0022-1694(70)90255-6."
_GUPTA = "Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009). Decomposition of the mean squared error and NSE performance criteria. Journal of Hydrology 377, 80-91. doi:10.1016/j.jhydrol.2009.08.003."
_YILMAZ = "Yilmaz, K. K., Gupta, H. V. and Wagener, T. (2008). A process-based diagnostic approach to model evaluation. Water Resources Research 44, W09417. doi:10.1029/2007WR006716."
_KRATZERT = "Kratzert, F., Klotz, D., Hochreiter, S. and Nearing, G. S. (2021). A note on leveraging synergy in multiple meteorological data sets with deep learning for rainfall-runoff modeling. HESS 25, 2685-2703. doi:10.5194/hess-25-2685-2021."
_WILKS = "Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed. Academic Press."
_KGE_EXTRA = """
    components : bool
        Also return the components (``r``, the variability ratio, ``beta``)."""
_SCALE = """
    scale : sequence of 3 floats
        Scaling factors :math:`(s_r, s_\\alpha, s_\\beta)`, placed *inside* the squares as in Gupta et al. (2009),
        eq. 10. neuralhydrology's ``weights`` multiply the squares instead (``weights = scale**2``)."""

_O = r"\overline{o}"


def nse(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("nse", obs, sim, dim, axis, min_pairs)


nse.__doc__ = _doc(
    "Nash-Sutcliffe efficiency.",
    rf"\mathrm{{NSE}} = 1 - \frac{{\sum_t (s_t - o_t)^2}}{{\sum_t (o_t - {_O})^2}}",
    "1",
    "(-inf, 1]; 0 is the skill of the mean observation",
    _NS,
    "    >>> float(ev.nse([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0]))\n    0.9",
    notes="Constant observations (zero variance over the valid pairs) give NaN and a warning.",
)


def log_nse(
    obs: Any,
    sim: Any,
    *,
    epsilon: float | str = "mean/100",
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("log_nse", obs, sim, dim, axis, min_pairs, epsilon=epsilon)


log_nse.__doc__ = _doc(
    "NSE of log-transformed flows.",
    r"\mathrm{NSE}_{\log} = \mathrm{NSE}\big(\ln(\max(o,0)+\varepsilon), \ln(\max(s,0)+\varepsilon)\big)",
    "1",
    "(-inf, 1]",
    "Pushpalatha, R., Perrin, C., Le Moine, N. and Andreassian, V. (2012). A review of efficiency criteria "
    "suitable for evaluating low-flow simulations. Journal of Hydrology 420-421, 171-182.",
    "    >>> float(ev.log_nse([1.0, 2.0, 4.0, 0.0], [1.0, 2.0, 4.0, 0.0]))\n    1.0",
    notes="By default :math:`\\varepsilon` is one hundredth of the mean observation over the valid pairs "
    "(Pushpalatha et al. 2012; hydroeval's default). Negative values are clipped to 0 before the transform.",
    extra="\n    epsilon : float or 'mean/100'\n        Constant added before the logarithm.",
)


def kge(
    obs: Any,
    sim: Any,
    *,
    scale: Sequence[float] = (1.0, 1.0, 1.0),
    components: bool = False,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("kge", obs, sim, dim, axis, min_pairs, components, scale=tuple(scale))


kge.__doc__ = _doc(
    "Kling-Gupta efficiency (2009), optionally with its components r, alpha, beta.",
    r"\mathrm{KGE} = 1 - \sqrt{[s_r(r-1)]^2 + [s_\alpha(\alpha-1)]^2 + [s_\beta(\beta-1)]^2},\quad"
    r"\alpha = \sigma_s/\sigma_o,\ \beta = \mu_s/\mu_o",
    "1 (r = alpha = beta = 1)",
    "(-inf, 1]; about -0.41 is the skill of the mean observation",
    _GUPTA,
    "    >>> round(float(ev.kge([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0])), 4)\n    0.7069\n"
    "    >>> sorted(ev.kge([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0], components=True))\n"
    "    ['alpha', 'beta', 'kge', 'r']",
    notes="A zero mean of observations gives NaN and a warning.",
    extra=_KGE_EXTRA + _SCALE,
)


def kge_prime(
    obs: Any,
    sim: Any,
    *,
    scale: Sequence[float] = (1.0, 1.0, 1.0),
    components: bool = False,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("kge_prime", obs, sim, dim, axis, min_pairs, components, scale=tuple(scale))


kge_prime.__doc__ = _doc(
    "Modified Kling-Gupta efficiency KGE' (Kling et al. 2012) with the variability ratio gamma of the CVs.",
    r"\mathrm{KGE'} = 1 - \sqrt{[s_r(r-1)]^2 + [s_\gamma(\gamma-1)]^2 + [s_\beta(\beta-1)]^2},\quad"
    r"\gamma = \frac{\sigma_s/\mu_s}{\sigma_o/\mu_o}",
    "1",
    "(-inf, 1]",
    "Kling, H., Fuchs, M. and Paulin, M. (2012). Runoff conditions in the upper Danube basin under an ensemble "
    "of climate change scenarios. Journal of Hydrology 424-425, 264-277. doi:10.1016/j.jhydrol.2012.01.011.",
    "    >>> round(float(ev.kge_prime([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0])), 4)\n    0.7069",
    extra=_KGE_EXTRA + _SCALE,
)


def kge_np(
    obs: Any,
    sim: Any,
    *,
    components: bool = False,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("kge_np", obs, sim, dim, axis, min_pairs, components)


kge_np.__doc__ = _doc(
    "Non-parametric Kling-Gupta efficiency (Pool et al. 2018).",
    r"\mathrm{KGE_{NP}} = 1 - \sqrt{(r_S-1)^2 + (\alpha_{NP}-1)^2 + (\beta-1)^2},\quad"
    r"\alpha_{NP} = 1 - \tfrac12\sum_k\Big|\frac{s_{(k)}}{n\mu_s} - \frac{o_{(k)}}{n\mu_o}\Big|",
    "1",
    "(-inf, 1]",
    "Pool, S., Vis, M. and Seibert, J. (2018). Evaluating model performance: towards a non-parametric variant "
    "of the Kling-Gupta efficiency. Hydrological Sciences Journal 63(13-14), 1941-1953.",
    "    >>> round(float(ev.kge_np([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0])), 4)\n    0.95",
    notes=":math:`r_S` is Spearman's rank correlation with average ranks for ties; :math:`s_{(k)}` and "
    ":math:`o_{(k)}` are the sorted flows (the flow-duration curves).",
    extra=_KGE_EXTRA,
)


def rmse(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("rmse", obs, sim, dim, axis, min_pairs)


rmse.__doc__ = _doc(
    "Root mean squared error.",
    r"\mathrm{RMSE} = \sqrt{\tfrac1n\sum_t (s_t - o_t)^2}",
    "0",
    "[0, inf), units of the data",
    _WILKS,
    "    >>> float(ev.rmse([1.0, 2.0, 3.0], [1.0, 2.0, 6.0]))\n    1.7320508075688772",
)


def mse(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("mse", obs, sim, dim, axis, min_pairs)


mse.__doc__ = _doc(
    "Mean squared error.",
    r"\mathrm{MSE} = \tfrac1n\sum_t (s_t - o_t)^2",
    "0",
    "[0, inf), squared units of the data",
    _WILKS,
    "    >>> float(ev.mse([1.0, 2.0, 3.0], [1.0, 2.0, 6.0]))\n    3.0",
)


def mae(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("mae", obs, sim, dim, axis, min_pairs)


mae.__doc__ = _doc(
    "Mean absolute error.",
    r"\mathrm{MAE} = \tfrac1n\sum_t |s_t - o_t|",
    "0",
    "[0, inf), units of the data",
    _WILKS,
    "    >>> float(ev.mae([1.0, 2.0, 3.0], [1.0, 2.0, 6.0]))\n    1.0",
)


def mean_error(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("mean_error", obs, sim, dim, axis, min_pairs)


mean_error.__doc__ = _doc(
    "Mean error (bias), simulation minus observation: positive when the simulation is too high.",
    r"\mathrm{ME} = \tfrac1n\sum_t (s_t - o_t)",
    "0",
    "(-inf, inf), units of the data",
    _WILKS,
    "    >>> float(ev.mean_error([1.0, 2.0, 3.0], [1.0, 2.0, 6.0]))\n    1.0",
)


def pbias(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("pbias", obs, sim, dim, axis, min_pairs)


pbias.__doc__ = _doc(
    "Percent bias, positive when the simulation over-estimates the volume (hydroeval's sign is the opposite).",
    r"\mathrm{PBIAS} = 100\,\frac{\sum_t (s_t - o_t)}{\sum_t o_t}",
    "0",
    "[-100, inf) for non-negative flows, in %",
    "Gupta, H. V., Sorooshian, S. and Yapo, P. O. (1999). Status of automatic calibration for hydrologic "
    "models. Journal of Hydrologic Engineering 4(2), 135-143.",
    "    >>> float(ev.pbias([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0]))\n    20.0",
)


def pearson_r(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("pearson_r", obs, sim, dim, axis, min_pairs)


pearson_r.__doc__ = _doc(
    "Pearson correlation coefficient.",
    r"r = \frac{\sum_t (o_t-\mu_o)(s_t-\mu_s)}{\sqrt{\sum_t (o_t-\mu_o)^2\sum_t (s_t-\mu_s)^2}}",
    "1",
    "[-1, 1]",
    "Pearson, K. (1895). Notes on regression and inheritance in the case of two parents. Proc. R. Soc. Lond. 58, 240-242.",
    "    >>> float(ev.pearson_r([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]))\n    1.0",
)


def spearman_r(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("spearman_r", obs, sim, dim, axis, min_pairs)


spearman_r.__doc__ = _doc(
    "Spearman rank correlation: Pearson correlation of the average ranks (ties share the mean rank).",
    r"r_S = r\big(\mathrm{rank}(o), \mathrm{rank}(s)\big)",
    "1",
    "[-1, 1]",
    "Spearman, C. (1904). The proof and measurement of association between two things. Am. J. Psychol. 15, 72-101.",
    "    >>> float(ev.spearman_r([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0]))\n    1.0",
)


def r_squared(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("r_squared", obs, sim, dim, axis, min_pairs)


r_squared.__doc__ = _doc(
    "Coefficient of determination as the squared Pearson correlation (not the NSE).",
    r"R^2 = r^2",
    "1",
    "[0, 1]",
    "Krause, P., Boyle, D. P. and Base, F. (2005). Comparison of different efficiency criteria for "
    "hydrological model assessment. Advances in Geosciences 5, 89-97.",
    "    >>> float(ev.r_squared([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]))\n    1.0",
)


def alpha_nse(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("alpha_nse", obs, sim, dim, axis, min_pairs)


alpha_nse.__doc__ = _doc(
    "Ratio of standard deviations (alpha of the NSE decomposition), population standard deviations.",
    r"\alpha = \sigma_s / \sigma_o,\quad \mathrm{NSE} = 2\alpha r - \alpha^2 - \beta_n^2",
    "1",
    "[0, inf)",
    _GUPTA,
    "    >>> float(ev.alpha_nse([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]))\n    2.0",
)


def beta_nse(
    obs: Any, sim: Any, *, dim: str | None = None, axis: int | None = None, min_pairs: int | None = None
) -> Any:
    return _dispatch("beta_nse", obs, sim, dim, axis, min_pairs)


beta_nse.__doc__ = _doc(
    "Bias normalised by the observed (population) standard deviation (beta of the NSE decomposition).",
    r"\beta_n = (\mu_s - \mu_o)/\sigma_o",
    "0",
    "(-inf, inf)",
    _GUPTA,
    "    >>> round(float(ev.beta_nse([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])), 6)\n    1.224745",
)

_FDC_NOTE = (
    "Flow-duration curve (FDC): the valid pairs' flows sorted in descending order, 0-based index i; "
    "index rule: k = floor(x n + 1/2) (half rounds up). Flows <= 0 are set to 1e-6 before logarithms."
)


def fhv(
    obs: Any,
    sim: Any,
    *,
    h: float = 0.02,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("fhv", obs, sim, dim, axis, min_pairs, h=h)


fhv.__doc__ = _doc(
    "Percent bias of the high-flow segment of the flow-duration curve (top h fraction of flows).",
    r"\%\mathrm{BiasFHV} = 100\,\frac{\sum_{i<H}(S_i - O_i)}{\sum_{i<H} O_i},\quad H = \lfloor h n + 1/2\rfloor",
    "0",
    "[-100, inf), in %",
    _YILMAZ,
    "    >>> round(float(ev.fhv(np.arange(1.0, 101.0), np.arange(1.0, 101.0) * 1.1)), 6)\n    10.0",
    notes=_FDC_NOTE,
    extra="\n    h : float\n        Fraction of highest flows, in ]0, 1[.",
)


def fms(
    obs: Any,
    sim: Any,
    *,
    lower: float = 0.2,
    upper: float = 0.7,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("fms", obs, sim, dim, axis, min_pairs, lower=lower, upper=upper)


fms.__doc__ = _doc(
    "Percent bias of the slope of the middle segment of the flow-duration curve.",
    r"\%\mathrm{BiasFMS} = 100\,\frac{(\ln S_{m_1} - \ln S_{m_2}) - (\ln O_{m_1} - \ln O_{m_2})}"
    r"{\ln O_{m_1} - \ln O_{m_2}},\quad m_j = \lfloor p_j n + 1/2\rfloor",
    "0",
    "(-inf, inf), in %",
    _YILMAZ,
    "    >>> q = np.arange(1.0, 101.0)\n    >>> float(ev.fms(q, q**2))\n    100.0",
    notes=_FDC_NOTE,
    extra="\n    lower, upper : float\n        Exceedance fractions bounding the middle segment, 0 < lower < upper < 1.",
)


def flv(
    obs: Any,
    sim: Any,
    *,
    l: float = 0.3,  # noqa: E741 - the paper's symbol
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("flv", obs, sim, dim, axis, min_pairs, l=l)


flv.__doc__ = _doc(
    "Percent bias of the low-flow segment of the flow-duration curve (in log space, relative to its minimum).",
    r"\%\mathrm{BiasFLV} = -100\,\frac{\sum_{l\in L}(\ln S_l - \ln S_{\min}) - \sum_{l\in L}(\ln O_l - \ln O_{\min})}"
    r"{\sum_{l\in L}(\ln O_l - \ln O_{\min})},\quad |L| = \lfloor l n + 1/2\rfloor",
    "0",
    "(-inf, inf), in %",
    _YILMAZ,
    "    >>> q = np.arange(1.0, 101.0)\n    >>> float(ev.flv(q, q))\n    -0.0",
    notes=_FDC_NOTE + " The sign follows Yilmaz et al. (2008), as neuralhydrology.",
    extra="\n    l : float\n        Fraction of lowest flows, in ]0, 1[.",
)

_PEAK_NOTE = (
    "Peak detection (vectorised, no prominence): step t is a peak of x when x_t is the maximum of the window "
    "[t - distance, t + distance], x_t > x_{t-1} (first step of a plateau), and x_t is at least the given "
    "percentile of x over the valid pairs. neuralhydrology uses scipy's find_peaks with a prominence threshold "
    "instead, so peak sets can differ."
)


def peak_timing(
    obs: Any,
    sim: Any,
    *,
    window: int = 3,
    distance: int = 100,
    percentile: float = 80.0,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch(
        "peak_timing", obs, sim, dim, axis, min_pairs, window=window, distance=distance, percentile=percentile
    )


peak_timing.__doc__ = _doc(
    "Mean absolute timing error (in time steps) of the simulated peaks around the observed peaks.",
    r"\mathrm{PT} = \frac1P\sum_{p} |t_p^{s} - t_p^{o}|,\quad t_p^s = \arg\max_{|u - t_p^o|\le w} s_u",
    "0",
    "[0, window]",
    _KRATZERT,
    "    >>> t = np.arange(400.0)\n    >>> q = np.exp(-((t - 200) ** 2) / 50)\n"
    "    >>> float(ev.peak_timing(q, np.roll(q, 2)))\n    2.0",
    notes=_PEAK_NOTE + " Only peaks whose whole +-window holds valid pairs inside the series count; if s_t "
    "itself is a local maximum the error is 0 (as neuralhydrology). No countable peak gives NaN.",
    extra="\n    window : int\n        Half-width of the search window in steps.\n    distance : int\n"
    "        Half-width of the peak-detection window.\n    percentile : float\n        Minimum peak height, percentile of obs.",
)


def missed_peaks(
    obs: Any,
    sim: Any,
    *,
    window: int = 1,
    distance: int = 30,
    percentile: float = 80.0,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch(
        "missed_peaks",
        obs,
        sim,
        dim,
        axis,
        min_pairs,
        window=window,
        distance=distance,
        percentile=percentile,
    )


missed_peaks.__doc__ = _doc(
    "Fraction of observed peaks with no simulated peak within +-window steps.",
    r"\mathrm{MP} = \frac{\#\{p: \nexists\, q \in \mathcal{P}_s,\ |t_q - t_p| \le w\}}{\#\mathcal{P}_o}",
    "0",
    "[0, 1]",
    _KRATZERT,
    "    >>> t = np.arange(400.0)\n    >>> q = np.exp(-((t - 200) ** 2) / 50)\n"
    "    >>> float(ev.missed_peaks(q, np.roll(q, 5)))\n    1.0",
    notes=_PEAK_NOTE + " Peaks of sim are detected the same way with sim's own percentile. No observed peak "
    "gives 0 (nothing missed).",
    extra="\n    window : int\n        Tolerance in steps.\n    distance : int\n"
    "        Half-width of the peak-detection window.\n    percentile : float\n        Minimum peak height, percentile.",
)


def peak_mape(
    obs: Any,
    sim: Any,
    *,
    distance: int = 100,
    percentile: float = 80.0,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
) -> Any:
    return _dispatch("peak_mape", obs, sim, dim, axis, min_pairs, distance=distance, percentile=percentile)


peak_mape.__doc__ = _doc(
    "Mean absolute percentage error of the simulation at the observed peaks.",
    r"\mathrm{MAPE}_{peak} = \frac{100}{P}\sum_p \Big|\frac{s_{t_p} - o_{t_p}}{o_{t_p}}\Big|",
    "0",
    "[0, inf), in %",
    _KRATZERT,
    "    >>> t = np.arange(400.0)\n    >>> q = np.exp(-((t - 200) ** 2) / 50)\n"
    "    >>> float(ev.peak_mape(q, 0.5 * q))\n    50.0",
    notes=_PEAK_NOTE + " No observed peak gives NaN.",
    extra="\n    distance : int\n        Half-width of the peak-detection window.\n    percentile : float\n"
    "        Minimum peak height, percentile of obs.",
)


def evaluate(
    obs: Any,
    sim: Any,
    metrics: Sequence[str] | None = None,
    *,
    dim: str | None = None,
    axis: int | None = None,
    min_pairs: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """Compute several metrics in one pass (shared means, variances and sorts per block of series).

    Parameters
    ----------
    obs, sim : array_like or xarray.DataArray
        Observations and simulations.
    metrics : sequence of str, optional
        Metric names (default: all deterministic metrics, :data:`hydroml.evaluation.METRICS`).
    dim, axis, min_pairs
        As for the single metrics.
    options : dict, optional
        Keyword arguments per metric, e.g. ``{"fhv": {"h": 0.01}}``.

    Returns
    -------
    dict of numpy.ndarray or xarray.Dataset
        One variable per output (the KGE family adds its components).

    Examples
    --------
    >>> from hydroml.evaluation import evaluate
    >>> out = evaluate([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0], ["nse", "kge"])
    >>> sorted(out)
    ['alpha', 'beta', 'kge', 'nse', 'r']
    """
    names, options = _core._check_metrics(metrics, options)
    if _is_xr(obs) or _is_xr(sim):
        if axis is not None:
            raise ConfigError("evaluate: axis= is for NumPy inputs; xarray inputs take dim=")
        import xarray as xr

        return xr.Dataset(_xr_apply(names, obs, sim, dim or "time", min_pairs, options, "evaluate"))
    if dim is not None:
        raise ConfigError("evaluate: dim= is for xarray inputs; NumPy inputs take axis=")
    return _core.compute(obs, sim, names, -1 if axis is None else axis, min_pairs, options)


for _f in (globals()[n] for n in __all__):
    if _f.__name__ in METRICS:
        _f.perfect = METRICS[_f.__name__].perfect  # type: ignore[attr-defined]
