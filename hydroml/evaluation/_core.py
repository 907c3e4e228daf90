r"""NumPy core of hydroml's metrics: NaN-aware, vectorised, reducing over one axis (default the last).

Every function takes ``obs`` and ``sim`` first (positionally or as keywords) and an ``axis``; inputs are
broadcast against each other, the reduced axis is removed from the result. The conventions (stated once in
``docs/metrics.md``) are applied everywhere:

- **pairwise NaN dropping**: a time step is used only when both ``obs`` and ``sim`` are finite;
- **minimum of valid pairs**: fewer than ``min_pairs`` valid pairs (default 2, see :func:`set_options`) gives NaN;
- **constant observations**: a score that divides by the variance of the observations is NaN, with one
  :class:`ConstantObservationsWarning` per call naming how many series were affected, never ``inf``.

Large inputs are processed in blocks of series (``set_options(block_size=...)`` elements per block) so the
temporary arrays stay small; a float32 input is promoted to float64 block by block, never as a whole.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.evaluation")

__all__ = [
    "ConstantObservationsWarning",
    "set_options",
    "get_options",
    "METRICS",
    "compute",
]


class ConstantObservationsWarning(RuntimeWarning):
    """Observations have zero variance (or zero mean) over the valid pairs: the score is NaN."""


# --------------------------------------------------------------------------------------------------------------
# options
_OPTIONS: dict[str, Any] = {
    "min_pairs": 2,
    "block_size": 2**18,
    "threads": None,
    "warn": True,
    "engine": "auto",
}
_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "min_pairs": lambda v: isinstance(v, int | np.integer) and v >= 1,
    "block_size": lambda v: isinstance(v, int | np.integer) and v >= 1,
    "threads": lambda v: v is None or (isinstance(v, int | np.integer) and v >= 1),
    "warn": lambda v: isinstance(v, bool),
    "engine": lambda v: v in ("auto", "numpy", "numba"),
}


def get_options() -> dict[str, Any]:
    """Return a copy of the current evaluation options (see :func:`set_options`)."""
    return dict(_OPTIONS)


class set_options(contextlib.ContextDecorator):  # noqa: N801 - used like a function, as in xarray/cf-xarray
    """Set evaluation options globally or, as a context manager, temporarily.

    Parameters
    ----------
    min_pairs : int
        Minimum number of valid (obs, sim) pairs; fewer gives NaN. Default 2.
    block_size : int
        Number of array elements per block of series (bounds the memory of temporaries and keeps them in
        cache). Default 2**18 (2 MiB of float64 per temporary).
    threads : int or None
        Threads working on blocks at once (NumPy releases the GIL). ``None`` (default): up to 4, as many as
        CPUs; inside dask tasks always 1, as dask already runs chunks in parallel.
    warn : bool
        Emit :class:`ConstantObservationsWarning`. Default True.
    engine : {"auto", "numpy", "numba"}
        How the per-series moments (counts, means, sums of squares and products: everything NSE, KGE, RMSE,
        MAE, bias and Pearson need) are computed: ``"numba"`` fuses them into two passes over each series
        (several times faster, same two-pass algorithm), ``"numpy"`` uses vectorised NumPy only; ``"auto"``
        (default) uses numba when it is installed. Both give the same results to ~1e-14.

    Examples
    --------
    >>> import numpy as np
    >>> from hydroml.evaluation import nse, set_options
    >>> with set_options(min_pairs=5):
    ...     float(nse([1.0, 2.0, 3.0], [1.0, 2.0, 2.0]))
    nan
    """

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if key not in _OPTIONS:
                raise ConfigError(f"unknown evaluation option {key!r}; valid options: {sorted(_OPTIONS)}")
            if not _VALIDATORS[key](value):
                raise ConfigError(f"evaluation option {key!r}: invalid value {value!r}")
        self._old = {k: _OPTIONS[k] for k in kwargs}
        _OPTIONS.update(kwargs)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: Any) -> None:
        _OPTIONS.update(self._old)


# --------------------------------------------------------------------------------------------------------------
# blocks of series
def _prepare(obs: Any, sim: Any, axis: int) -> tuple[np.ndarray, np.ndarray]:
    obs = np.asarray(obs)
    sim = np.asarray(sim)
    if obs.dtype.kind not in "fiub" or sim.dtype.kind not in "fiub":
        raise DataError(f"obs and sim must be numeric arrays; found dtypes {obs.dtype} and {sim.dtype}")
    if obs.ndim == 0 or sim.ndim == 0:
        raise DataError("obs and sim must have at least one dimension (the one reduced over)")
    try:
        ob, sb = np.broadcast_arrays(obs, sim)
    except ValueError as err:
        if obs.ndim == sim.ndim and obs.shape[axis] != sim.shape[axis]:
            raise DataError(
                f"obs and sim differ in length along the reduced axis: {obs.shape[axis]} vs {sim.shape[axis]}"
            ) from err
        raise DataError(f"obs {obs.shape} and sim {sim.shape} cannot be broadcast together") from err
    # the axis refers to the broadcast shape (as in numpy's reductions)
    return np.moveaxis(ob, axis, -1), np.moveaxis(sb, axis, -1)


def _row_getter(a: np.ndarray) -> Callable[[int, int], np.ndarray]:
    lead = a.shape[:-1]
    try:
        v = a.view()
        v.shape = (-1, a.shape[-1])  # raises when a copy would be needed
        return lambda i0, i1: v[i0:i1]
    except AttributeError:

        def get(i0: int, i1: int) -> np.ndarray:
            return a[np.unravel_index(np.arange(i0, i1), lead)]

        return get


def _blocks(obs: np.ndarray, sim: np.ndarray) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    n_rows = math.prod(obs.shape[:-1])
    steps = max(obs.shape[-1], 1)
    per = max(1, int(_OPTIONS["block_size"]) // steps)
    go, gs = _row_getter(obs), _row_getter(sim)
    for i0 in range(0, n_rows, per):
        i1 = min(n_rows, i0 + per)
        yield (
            slice(i0, i1),
            np.asarray(go(i0, i1), dtype=np.float64),
            np.asarray(gs(i0, i1), dtype=np.float64),
        )


class _Warnings:
    """Counts of series with degenerate observations, turned into one warning per call."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.total = 0
        self._lock = threading.Lock()

    def add(self, reason: str, mask: np.ndarray) -> None:
        k = int(np.count_nonzero(mask))
        if k:
            with self._lock:
                self.counts[reason] = self.counts.get(reason, 0) + k

    def add_total(self, k: int) -> None:
        with self._lock:
            self.total += k

    def emit(self, name: str) -> None:
        if not self.counts or not _OPTIONS["warn"]:
            return
        parts = "; ".join(f"{k} series {reason}" for reason, k in self.counts.items())
        warnings.warn(
            f"{name}: {parts} (out of {self.total}); their score is NaN",
            ConstantObservationsWarning,
            stacklevel=5,
        )


def _rnd(x: np.ndarray | float) -> np.ndarray:
    """The FDC index rule: round half up, with a 1e-9 tolerance so 0.02 * 125 = 2.5 rounds to 3."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5 + 1e-9).astype(np.int64)


_FDC_FLOOR = 1e-6  # values <= 0 are replaced by this before taking logs of the flow-duration curve


_MOMENTS = ("n", "mo", "ms", "sso", "sss", "sos", "sse", "sae", "sd")
_KERNELS: dict[str, Any] = {}  # the numba engine's kernels (hydroml.evaluation._kernels), built on first use


def _fused_kernel() -> Callable[..., None] | None:
    """The numba kernel of the per-series moments, or None (engine "numpy", or numba not installed).

    The first call builds every kernel of :mod:`hydroml.evaluation._kernels` into ``_KERNELS``.
    """
    engine = _OPTIONS["engine"]
    if engine == "numpy":
        return None
    if not _KERNELS:
        from hydroml.evaluation import _kernels as K

        try:
            _KERNELS.update(
                moments=K.build_moments(),
                rank_stats=K.build_rank_stats(),
                peaks=K.build_peaks(),
                **K.build_sorted_sums(),
            )
        except ImportError:
            _KERNELS["moments"] = None
    if _KERNELS["moments"] is None and engine == "numba":
        raise ConfigError(
            "evaluation engine 'numba' requested but numba is not installed (pip install numba)"
        )
    return _KERNELS["moments"]


class _Block:
    """Shared statistics of one block of series (rows), computed lazily and reused across metrics."""

    def __init__(self, o: np.ndarray, s: np.ndarray, min_pairs: int, warn: _Warnings) -> None:
        self.raw_o, self.raw_s = o, s
        self.min_pairs = min_pairs
        self.warn = warn
        self._cache: dict[str, Any] = {}
        self._fused = _fused_kernel() is not None
        warn.add_total(o.shape[0])

    def get(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def _moment(self, key: str) -> np.ndarray:
        """One of the fused per-series moments (numba engine), all computed in one call."""
        if "moments" not in self._cache:
            out = np.empty((self.raw_o.shape[0], len(_MOMENTS)), dtype=np.float64)
            _fused_kernel()(self.raw_o, self.raw_s, out)
            self._cache["moments"] = out
        return self._cache["moments"][:, _MOMENTS.index(key)]

    # validity ---------------------------------------------------------------------------------------------
    @property
    def err_raw(self) -> np.ndarray:
        # NaN or inf when either is; |values| near 1e308 would overflow and count as invalid
        return self.get("err_raw", lambda: self.raw_s - self.raw_o)

    @property
    def m(self) -> np.ndarray:
        return self.get("m", lambda: np.isfinite(self.err_raw))

    @property
    def n(self) -> np.ndarray:
        if self._fused:
            return self.get("n", lambda: self._moment("n").astype(np.int64))
        return self.get("n", lambda: np.count_nonzero(self.m, axis=-1))

    @property
    def ok(self) -> np.ndarray:
        return self.get("ok", lambda: self.n >= self.min_pairs)

    # masked arrays (zeros where the pair is invalid) ------------------------------------------------------
    @property
    def o(self) -> np.ndarray:
        return self.get("o", lambda: np.where(self.m, self.raw_o, 0.0))

    @property
    def s(self) -> np.ndarray:
        return self.get("s", lambda: np.where(self.m, self.raw_s, 0.0))

    @property
    def nf(self) -> np.ndarray:
        return self.get("nf", lambda: np.where(self.ok, self.n, np.nan).astype(np.float64))

    @property
    def mo(self) -> np.ndarray:
        if self._fused:
            return self.get("mo", lambda: np.where(self.ok, self._moment("mo"), np.nan))
        return self.get("mo", lambda: self.o.sum(-1) / self.nf)

    @property
    def ms(self) -> np.ndarray:
        if self._fused:
            return self.get("ms", lambda: np.where(self.ok, self._moment("ms"), np.nan))
        return self.get("ms", lambda: self.s.sum(-1) / self.nf)

    @property
    def do(self) -> np.ndarray:
        return self.get("do", lambda: np.where(self.m, self.o - self.mo[:, None], 0.0))

    @property
    def ds(self) -> np.ndarray:
        return self.get("ds", lambda: np.where(self.m, self.s - self.ms[:, None], 0.0))

    @property
    def sso(self) -> np.ndarray:
        if self._fused:
            return self._moment("sso")
        return self.get("sso", lambda: np.einsum("ij,ij->i", self.do, self.do))

    @property
    def sss(self) -> np.ndarray:
        if self._fused:
            return self._moment("sss")
        return self.get("sss", lambda: np.einsum("ij,ij->i", self.ds, self.ds))

    @property
    def sos(self) -> np.ndarray:
        if self._fused:
            return self._moment("sos")
        return self.get("sos", lambda: np.einsum("ij,ij->i", self.do, self.ds))

    @property
    def err(self) -> np.ndarray:
        return self.get("err", lambda: np.where(self.m, self.err_raw, 0.0))

    @property
    def sse(self) -> np.ndarray:
        if self._fused:
            return self._moment("sse")
        return self.get("sse", lambda: np.einsum("ij,ij->i", self.err, self.err))

    @property
    def sd(self) -> np.ndarray:
        """Sum of the errors sim - obs over the valid pairs (no cancellation of two means)."""
        if self._fused:
            return self._moment("sd")
        return self.get("sd", lambda: self.err.sum(-1))

    @property
    def sae(self) -> np.ndarray:
        """Sum of absolute errors over the valid pairs."""
        if self._fused:
            return self._moment("sae")
        return self.get("sae", lambda: np.abs(self.err).sum(-1))

    @property
    def const_o(self) -> np.ndarray:
        """Observations constant over the valid pairs (relative std below ~2e-13)."""

        def f() -> np.ndarray:
            tol = self.n * (1e3 * np.finfo(np.float64).eps * np.abs(self.mo)) ** 2
            c = self.ok & (self.sso <= tol)
            self.warn.add("have constant observations", c)
            return c

        return self.get("const_o", f)

    @property
    def sso_safe(self) -> np.ndarray:
        """Sum of squared obs anomalies with NaN where the observations are constant."""
        return self.get("sso_safe", lambda: np.where(self.const_o, np.nan, self.sso))

    @property
    def mo_safe(self) -> np.ndarray:
        def f() -> np.ndarray:
            z = self.ok & (self.mo == 0)
            self.warn.add("have a zero mean of observations", z)
            return np.where(z, np.nan, self.mo)

        return self.get("mo_safe", f)

    # sorted values (NaN at the end) ----------------------------------------------------------------------
    def sorted(self, which: str) -> np.ndarray:
        """Valid values sorted ascending, NaN after them (shared with the ranks when those exist)."""

        def f() -> np.ndarray:
            if self._fused:
                return self.rank_stats()[0 if which == "o" else 1]
            if "ranks_" + which in self._cache:
                sv = self._cache["ranks_" + which][1]
                return np.where(np.arange(sv.shape[-1]) < self.n[:, None], sv, np.nan)
            raw = self.raw_o if which == "o" else self.raw_s
            return np.sort(np.where(self.m, raw, np.nan), axis=-1)

        return self.get("sorted_" + which, f)

    def rank_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """numba engine: sorted valid values of obs and sim (NaN after them) and Spearman's three rank sums.

        One NumPy ``argsort`` of float32 copies per series and variable, then one compiled pass that makes the
        order exact in float64 and computes the ranks (no rank arrays are kept).
        """

        def f() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            xo = np.where(self.m, self.raw_o, np.inf)
            xs = np.where(self.m, self.raw_s, np.inf)
            with np.errstate(over="ignore"):  # beyond float32's range: inf, then sorted exactly in the kernel
                order_o = np.argsort(xo.astype(np.float32), axis=-1)
                order_s = np.argsort(xs.astype(np.float32), axis=-1)
            so, ss = np.empty_like(xo), np.empty_like(xs)
            sums = np.empty((xo.shape[0], 3))
            _KERNELS["rank_stats"](xo, xs, order_o, order_s, self.n, so, ss, sums)
            return so, ss, sums

        return self.get("rank_stats", f)

    @property
    def bad_cumsum(self) -> np.ndarray:
        """Running count of invalid pairs, with a leading 0 column (windows free of invalid pairs)."""

        def f() -> np.ndarray:
            out = np.zeros((self.m.shape[0], self.m.shape[1] + 1), dtype=np.int32)
            np.cumsum(~self.m, axis=-1, out=out[:, 1:])
            return out

        return self.get("bad_cumsum", f)

    def ranks(self, which: str) -> np.ndarray:
        """Average ranks (1..n) of the valid pairs, 0 where invalid."""
        return self.get(
            "ranks_" + which, lambda: _avg_ranks(self.raw_o if which == "o" else self.raw_s, self.m)
        )[0]


def _avg_ranks(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1..n; ties share the mean of their ranks) of the valid entries of each row, 0 elsewhere.

    Also returns the rows sorted ascending with ``inf`` at the invalid entries (reused as the sorted flows).
    """
    xv = np.where(m, x, np.inf)
    order = np.argsort(xv, axis=-1)  # ties are averaged below, so a stable sort is not needed
    sv = np.take_along_axis(xv, order, axis=-1)
    t = x.shape[-1]
    j = np.arange(t, dtype=np.int32)
    eq = sv[:, 1:] == sv[:, :-1]
    eq &= np.isfinite(sv[:, 1:])
    if not eq.any():  # no ties among valid values: ranks are positions
        r_sorted = np.broadcast_to(j + 1.0, sv.shape)
    else:
        new = np.ones(sv.shape, dtype=bool)
        np.logical_not(eq, out=new[:, 1:])
        start = np.maximum.accumulate(np.where(new, j, np.int32(0)), axis=-1)
        last = np.ones(sv.shape, dtype=bool)
        last[:, :-1] = new[:, 1:]
        end = np.minimum.accumulate(np.where(last, j, np.int32(t))[:, ::-1], axis=-1)[:, ::-1]
        r_sorted = (start + end) * 0.5 + 1.0
    ranks = np.zeros(sv.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, r_sorted, axis=-1)
    ranks *= m  # invalid entries were ranked after the valid ones: zero them
    return ranks, sv


# --------------------------------------------------------------------------------------------------------------
# metric kernels: f(block, **kw) -> array (rows,) or tuple of arrays
def _k_nse(b: _Block) -> np.ndarray:
    return 1.0 - b.sse / b.sso_safe


def _k_mse(b: _Block) -> np.ndarray:
    return b.sse / b.nf


def _k_rmse(b: _Block) -> np.ndarray:
    return np.sqrt(b.sse / b.nf)


def _k_mae(b: _Block) -> np.ndarray:
    return b.sae / b.nf


def _k_me(b: _Block) -> np.ndarray:
    return b.sd / b.nf


def _k_pbias(b: _Block) -> np.ndarray:
    return 100.0 * (b.sd / b.nf) / b.mo_safe


def _k_pearson(b: _Block) -> np.ndarray:
    return b.sos / np.sqrt(b.sso_safe * b.sss)


def _k_r2(b: _Block) -> np.ndarray:
    return _k_pearson(b) ** 2


def _k_spearman(b: _Block) -> np.ndarray:
    b.const_o  # noqa: B018 - registers the warning
    c = b.nf * ((b.nf + 1.0) / 2.0) ** 2
    if b._fused:
        sums = b.rank_stats()[2]
        r = (sums[:, 0] - c) / np.sqrt((sums[:, 1] - c) * (sums[:, 2] - c))
        return np.where(b.const_o, np.nan, r)
    ro, rs = b.ranks("o"), b.ranks("s")
    # ranks are multiples of 1/2 whose mean over the n valid pairs is exactly (n + 1) / 2, so the raw sums of
    # squares and products are exact in float64 (up to n ~ 1e5) and need no centred copies
    cov = np.einsum("ij,ij->i", ro, rs) - c
    vo = np.einsum("ij,ij->i", ro, ro) - c
    vs = np.einsum("ij,ij->i", rs, rs) - c
    r = cov / np.sqrt(vo * vs)
    return np.where(b.const_o, np.nan, r)


def _k_alpha_nse(b: _Block) -> np.ndarray:
    return np.sqrt(b.sss / b.sso_safe)


def _k_beta_nse(b: _Block) -> np.ndarray:
    return (b.sd / b.nf) / np.sqrt(b.sso_safe / b.nf)


def _kge_parts(b: _Block, scale: Sequence[float], prime: bool) -> tuple[np.ndarray, ...]:
    r = _k_pearson(b)
    alpha = np.sqrt(b.sss / b.sso_safe)
    beta = b.ms / b.mo_safe
    var = alpha / beta if prime else alpha  # gamma = (sd_s/mu_s)/(sd_o/mu_o) = alpha/beta
    sr, sa, sb = _check_scale(scale)
    k = 1.0 - np.sqrt((sr * (r - 1)) ** 2 + (sa * (var - 1)) ** 2 + (sb * (beta - 1)) ** 2)
    return k, r, var, beta


def _check_scale(scale: Sequence[float]) -> tuple[float, float, float]:
    s = tuple(float(v) for v in scale)
    if len(s) != 3 or any(not np.isfinite(v) or v < 0 for v in s):
        raise ConfigError(
            f"KGE scale must be three non-negative numbers (s_r, s_alpha, s_beta); found {scale!r}"
        )
    return s  # type: ignore[return-value]


def _k_kge(b: _Block, scale: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, ...]:
    return _kge_parts(b, scale, prime=False)


def _k_kge_prime(b: _Block, scale: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, ...]:
    return _kge_parts(b, scale, prime=True)


def _k_kge_np(b: _Block) -> tuple[np.ndarray, ...]:
    r = _k_spearman(b)
    mo = b.mo_safe
    if b._fused:
        diff = _KERNELS["scaled_abs_diff"](
            b.sorted("o"), b.sorted("s"), b.n, 1.0 / (b.nf * b.ms), 1.0 / (b.nf * mo)
        )
        alpha = 1.0 - 0.5 * diff
    else:
        so = np.nan_to_num(b.sorted("o"), nan=0.0)
        ss = np.nan_to_num(b.sorted("s"), nan=0.0)
        alpha = 1.0 - 0.5 * np.abs(ss / (b.nf * b.ms)[:, None] - so / (b.nf * mo)[:, None]).sum(-1)
    beta = b.ms / mo
    k = 1.0 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)
    return k, r, alpha, beta


def _log_eps(b: _Block, epsilon: float | str) -> np.ndarray:
    if isinstance(epsilon, str):
        if epsilon != "mean/100":
            raise ConfigError(f"epsilon must be a number or 'mean/100'; found {epsilon!r}")
        return 0.01 * b.mo
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise ConfigError(f"epsilon must be a positive number; found {epsilon!r}")
    return np.full(b.mo.shape, float(epsilon))


def _k_log_nse(b: _Block, epsilon: float | str = "mean/100") -> np.ndarray:
    eps = _log_eps(b, epsilon)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, ls = np.maximum(b.raw_o, 0.0), np.maximum(b.raw_s, 0.0)  # fresh arrays, transformed in place
        for a in (lo, ls):
            a += eps
            np.log(a, out=a)
    sub = _Block(lo, ls, b.min_pairs, _Warnings())  # log(NaN) is NaN: same valid pairs as b
    out = 1.0 - sub.sse / sub.sso
    const = sub.ok & (sub.sso <= sub.n * (1e3 * np.finfo(np.float64).eps * np.abs(sub.mo)) ** 2)
    b.warn.add("have constant log-observations", const & ~b.const_o)
    return np.where(const, np.nan, out)


def _fdc_desc(sorted_asc: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Value at 0-based descending index k of each row (ascending index n - 1 - k)."""
    idx = np.clip(n - 1 - k, 0, sorted_asc.shape[-1] - 1)
    return np.take_along_axis(sorted_asc, idx[:, None], axis=-1)[:, 0]


def _check_frac(name: str, v: float) -> float:
    if not 0.0 < float(v) < 1.0:
        raise ConfigError(f"{name} must be in ]0, 1[; found {v!r}")
    return float(v)


def _k_fhv(b: _Block, h: float = 0.02) -> np.ndarray:
    h = _check_frac("h", h)
    k = _rnd(h * b.n)
    if b._fused:
        so = _KERNELS["range_sum"](b.sorted("o"), b.n - k, b.n)
        ss = _KERNELS["range_sum"](b.sorted("s"), b.n - k, b.n)
    else:
        j = np.arange(b.m.shape[-1])
        top = (j[None, :] >= (b.n - k)[:, None]) & (j[None, :] < b.n[:, None])
        so = np.where(top, b.sorted("o"), 0.0).sum(-1)
        ss = np.where(top, b.sorted("s"), 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * (ss - so) / so
    return np.where(b.ok & (k > 0) & (so != 0), out, np.nan)


def _k_flv(b: _Block, l: float = 0.3) -> np.ndarray:  # noqa: E741 - the paper's symbol
    l = _check_frac("l", l)  # noqa: E741
    k = _rnd(l * b.n)
    kmax = max(int(k.max(initial=0)), 1)
    low = np.arange(kmax)[None, :] < k[:, None]

    def part(which: str) -> np.ndarray:
        if b._fused:
            return _KERNELS["log_fdc_sum"](b.sorted(which), k, _FDC_FLOOR)
        lq = np.log(np.maximum(np.nan_to_num(b.sorted(which)[:, :kmax], nan=1.0), _FDC_FLOOR))
        return np.where(low, lq - lq[:, :1], 0.0).sum(-1)

    qol, qsl = part("o"), part("s")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = -100.0 * (qsl - qol) / qol
    return np.where(b.ok & (k > 0) & (qol != 0), out, np.nan)


def _k_fms(b: _Block, lower: float = 0.2, upper: float = 0.7) -> np.ndarray:
    lower, upper = _check_frac("lower", lower), _check_frac("upper", upper)
    if lower >= upper:
        raise ConfigError(f"lower ({lower}) must be smaller than upper ({upper})")
    il, iu = _rnd(lower * b.n), _rnd(upper * b.n)

    def part(which: str) -> np.ndarray:
        srt = b.sorted(which)
        ql = np.maximum(_fdc_desc(srt, b.n, il), _FDC_FLOOR)
        qu = np.maximum(_fdc_desc(srt, b.n, iu), _FDC_FLOOR)
        return np.log(ql) - np.log(qu)

    do, ds = part("o"), part("s")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * (ds - do) / do
    return np.where(b.ok & (do != 0), out, np.nan)


def _find_peaks(b: _Block, which: str, distance: int, percentile: float) -> np.ndarray:
    """Boolean mask of peaks: the maximum of the +-distance window, rising into it, above the percentile."""

    def f() -> np.ndarray:
        from scipy.ndimage import maximum_filter1d

        if int(distance) < 0 or not 0.0 <= float(percentile) <= 100.0:
            raise ConfigError(
                "peak detection: distance must be >= 0 and percentile in [0, 100]; "
                f"found {distance!r}, {percentile!r}"
            )
        x = b.raw_o if which == "o" else b.raw_s
        thr = _quantile_sorted(b.sorted(which), b.n, float(percentile))
        if b._fused:
            peak = np.empty(x.shape, dtype=np.bool_)
            _KERNELS["peaks"](x, b.m, thr, int(distance), peak)
            return peak
        xv = np.where(b.m, x, -np.inf)
        peak = xv >= thr[:, None]  # False where invalid (-inf) or for an all-invalid row (NaN threshold)
        np.greater(xv[:, 1:], xv[:, :-1], out=peak[:, 1:], where=peak[:, 1:])  # rising into it
        mx = maximum_filter1d(xv, size=2 * int(distance) + 1, axis=-1, mode="constant", cval=-np.inf)
        peak &= xv == mx
        return peak

    return b.get(f"peaks_{which}_{distance}_{percentile}", f)


def _quantile_sorted(srt: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation quantile (numpy's default) of ascending rows with n valid values each; q in [0, 100]."""
    pos = (n - 1).clip(0) * (q / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    vlo = np.take_along_axis(srt, lo[:, None], -1)[:, 0]
    vhi = np.take_along_axis(srt, hi[:, None], -1)[:, 0]
    out = vlo + (vhi - vlo) * (pos - lo)
    return np.where(n > 0, out, np.nan)


def _peak_windows(b: _Block, peaks: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and time index of the peaks whose whole +-window lies inside the series and holds no invalid pair."""
    t = b.m.shape[-1]
    rows, ts = np.nonzero(peaks)
    inside = (ts - window >= 0) & (ts + window < t)
    rows, ts = rows[inside], ts[inside]
    if window > 0 and rows.size:
        pad = b.bad_cumsum
        nbad = pad[rows, ts + window + 1] - pad[rows, ts - window]
        keep = nbad == 0
        rows, ts = rows[keep], ts[keep]
    return rows, ts


def _per_row_mean(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    cnt = np.bincount(rows, minlength=n_rows)
    tot = np.bincount(rows, weights=values, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def _k_peak_timing(b: _Block, window: int = 3, distance: int = 100, percentile: float = 80.0) -> np.ndarray:
    peaks = _find_peaks(b, "o", distance, percentile)
    rows, ts = _peak_windows(b, peaks, window)
    s = b.raw_s
    offs = np.arange(-window, window + 1)
    win = s[rows[:, None], ts[:, None] + offs[None, :]]
    best = offs[np.argmax(win, axis=-1)]
    if window >= 1:
        local = (win[:, window] > win[:, window - 1]) & (win[:, window] > win[:, window + 1])
        best = np.where(local, 0, best)
    out = _per_row_mean(rows, np.abs(best).astype(np.float64), b.m.shape[0])
    return np.where(b.ok, out, np.nan)


def _k_missed_peaks(b: _Block, window: int = 1, distance: int = 30, percentile: float = 80.0) -> np.ndarray:
    po = _find_peaks(b, "o", distance, percentile)
    ps = _find_peaks(b, "s", distance, percentile)
    rows, ts = _peak_windows(b, po, window)
    # simulated peaks within +-window of each observed peak, from a cumulative count (window fully inside)
    cs = np.zeros((ps.shape[0], ps.shape[1] + 1), dtype=np.int32)
    np.cumsum(ps, axis=-1, out=cs[:, 1:])
    missed = (cs[rows, ts + window + 1] - cs[rows, ts - window] == 0).astype(np.float64)
    n_rows = b.m.shape[0]
    out = _per_row_mean(rows, missed, n_rows)
    # no observed peak at all: nothing missed (as neuralhydrology); no countable peak: NaN
    out = np.where(po.any(-1), out, 0.0)
    return np.where(b.ok, out, np.nan)


def _k_peak_mape(b: _Block, distance: int = 100, percentile: float = 80.0) -> np.ndarray:
    peaks = _find_peaks(b, "o", distance, percentile)
    rows, ts = np.nonzero(peaks)
    o = b.raw_o[rows, ts]
    s = b.raw_s[rows, ts]
    with np.errstate(invalid="ignore", divide="ignore"):
        ape = np.abs((s - o) / o) * 100.0
    out = _per_row_mean(rows, ape, b.m.shape[0])
    return np.where(b.ok, out, np.nan)


class _Spec(NamedTuple):
    kernel: Callable[..., Any]
    outputs: tuple[str, ...]
    perfect: float
    bounds: str


METRICS: dict[str, _Spec] = {
    "nse": _Spec(_k_nse, ("nse",), 1.0, "(-inf, 1]"),
    "log_nse": _Spec(_k_log_nse, ("log_nse",), 1.0, "(-inf, 1]"),
    "kge": _Spec(_k_kge, ("kge", "r", "alpha", "beta"), 1.0, "(-inf, 1]"),
    "kge_prime": _Spec(_k_kge_prime, ("kge_prime", "r", "gamma", "beta"), 1.0, "(-inf, 1]"),
    "kge_np": _Spec(_k_kge_np, ("kge_np", "r_s", "alpha_np", "beta"), 1.0, "(-inf, 1]"),
    "rmse": _Spec(_k_rmse, ("rmse",), 0.0, "[0, inf)"),
    "mse": _Spec(_k_mse, ("mse",), 0.0, "[0, inf)"),
    "mae": _Spec(_k_mae, ("mae",), 0.0, "[0, inf)"),
    "mean_error": _Spec(_k_me, ("mean_error",), 0.0, "(-inf, inf)"),
    "pbias": _Spec(_k_pbias, ("pbias",), 0.0, "(-inf, inf)"),
    "pearson_r": _Spec(_k_pearson, ("pearson_r",), 1.0, "[-1, 1]"),
    "spearman_r": _Spec(_k_spearman, ("spearman_r",), 1.0, "[-1, 1]"),
    "r_squared": _Spec(_k_r2, ("r_squared",), 1.0, "[0, 1]"),
    "alpha_nse": _Spec(_k_alpha_nse, ("alpha_nse",), 1.0, "[0, inf)"),
    "beta_nse": _Spec(_k_beta_nse, ("beta_nse",), 0.0, "(-inf, inf)"),
    "fhv": _Spec(_k_fhv, ("fhv",), 0.0, "[-100, inf)"),
    "fms": _Spec(_k_fms, ("fms",), 0.0, "(-inf, inf)"),
    "flv": _Spec(_k_flv, ("flv",), 0.0, "(-inf, inf)"),
    "peak_timing": _Spec(_k_peak_timing, ("peak_timing",), 0.0, "[0, window]"),
    "missed_peaks": _Spec(_k_missed_peaks, ("missed_peaks",), 0.0, "[0, 1]"),
    "peak_mape": _Spec(_k_peak_mape, ("peak_mape",), 0.0, "[0, inf)"),
}

#: the metrics computed by default by :func:`compute` and ``hydroml evaluate``
DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)


def _n_threads(n_blocks: int, threads: int | None) -> int:
    if threads is None:
        threads = _OPTIONS["threads"]
    if threads is None:
        threads = min(4, os.cpu_count() or 1)
    return max(1, min(int(threads), n_blocks))


def _run(
    names: Sequence[str],
    obs: Any,
    sim: Any,
    axis: int,
    min_pairs: int | None,
    kwargs: dict[str, dict[str, Any]],
    caller: str,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Run several metric kernels over blocks of series, sharing the statistics of each block."""
    o, s = _prepare(obs, sim, axis)
    mp = int(_OPTIONS["min_pairs"] if min_pairs is None else min_pairs)
    if mp < 1:
        raise ConfigError(f"min_pairs must be >= 1; found {mp}")
    lead = o.shape[:-1]
    n_rows = math.prod(lead)
    outs: dict[str, np.ndarray] = {}
    for name in names:
        for out in METRICS[name].outputs:
            outs.setdefault(out, np.empty(n_rows, dtype=np.float64))
    w = _Warnings()

    def work(item: tuple[slice, np.ndarray, np.ndarray]) -> None:
        sl, ob, sb = item
        with np.errstate(invalid="ignore", divide="ignore"):
            b = _Block(ob, sb, mp, w)
            for name in names:
                spec = METRICS[name]
                res = spec.kernel(b, **kwargs.get(name, {}))
                res = res if isinstance(res, tuple) else (res,)
                for out, val in zip(spec.outputs, res):
                    outs[out][sl] = np.where(b.ok, val, np.nan)

    per = max(1, int(_OPTIONS["block_size"]) // max(o.shape[-1], 1))
    nt = _n_threads(-(-n_rows // per), threads)
    if nt == 1:
        for item in _blocks(o, s):
            work(item)
    else:
        with ThreadPoolExecutor(nt) as pool:
            # bounded submission: at most 2 blocks per thread in flight, so memory stays bounded
            pending: list[Any] = []
            for item in _blocks(o, s):
                pending.append(pool.submit(work, item))
                if len(pending) >= 2 * nt:
                    pending.pop(0).result()
            for f in pending:
                f.result()
    w.emit(caller)
    return {k: v.reshape(lead) for k, v in outs.items()}


def _check_metrics(
    metrics: Sequence[str] | None, options: dict[str, dict[str, Any]] | None
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Metric names (default all deterministic ones) and their options, refusing unknown names and options
    for metrics that are not computed."""
    names = list(DEFAULT_METRICS if metrics is None else metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; available: {sorted(METRICS)}")
    options = options or {}
    bad = [k for k in options if k not in names]
    if bad:
        raise ConfigError(f"options given for metric(s) {bad} that are not computed ({names})")
    return names, options


def compute(
    obs: Any,
    sim: Any,
    metrics: Sequence[str] | None = None,
    axis: int = -1,
    min_pairs: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Compute several metrics in one pass over blocks of series (shared means, variances, sorts).

    Parameters
    ----------
    obs, sim : array_like
        Observations and simulations, broadcastable, reduced over ``axis``.
    metrics : sequence of str, optional
        Names from :data:`METRICS` (default all deterministic metrics).
    axis : int
        Time axis.
    min_pairs : int, optional
        Minimum number of valid pairs (default from :func:`set_options`).
    options : dict, optional
        Keyword arguments per metric, e.g. ``{"fhv": {"h": 0.01}}``.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per output (KGE adds ``r``, ``alpha``, ``beta``...), with ``axis`` removed.

    Examples
    --------
    >>> from hydroml.evaluation._core import compute
    >>> out = compute([1.0, 2.0, 4.0, 3.0], [1.5, 2.0, 3.5, 3.0], metrics=["nse", "rmse"])
    >>> sorted(out), round(float(out["nse"]), 4)
    (['nse', 'rmse'], 0.9)
    """
    names, options = _check_metrics(metrics, options)
    return _run(names, obs, sim, axis, min_pairs, options, "compute")


def _single(name: str, obs: Any, sim: Any, axis: int, min_pairs: int | None, **kw: Any) -> Any:
    out = _run([name], obs, sim, axis, min_pairs, {name: kw} if kw else {}, name)
    vals = [out[k] for k in METRICS[name].outputs]
    return vals[0] if len(vals) == 1 else vals
