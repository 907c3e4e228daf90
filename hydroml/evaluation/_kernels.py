"""numba kernels of the metrics engine ``"numba"``: one pass per series for everything the metrics share.

Each builder imports numba and compiles on first use (``cache=True``: once per machine). The NumPy engine in
:mod:`hydroml.evaluation._core` computes the same quantities with array operations and is the reference:
``tests/test_metrics.py::test_numpy_and_numba_engines_agree`` compares the two on real and synthetic series.

- :func:`build_moments`: counts, means and the corrected two-pass sums of squares and products (NSE, KGE,
  RMSE, MAE, bias, Pearson...), two passes over each series;
- :func:`build_rank_stats`: from one ``argsort`` per series (NumPy's SIMD sort), the sorted valid values (for
  the flow-duration-curve metrics, KGE-NP and the peak thresholds), tie-averaged ranks and the three rank sums
  of Spearman's correlation, in one pass, without materialising rank arrays;
- :func:`build_peaks`: peak detection in O(n) per series with the van Herk / Gil-Werman running maximum;
- :func:`build_sorted_sums`: sums over ranges of the sorted values (FHV, FLV, KGE-NP's alpha).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["build_moments", "build_rank_stats", "build_peaks", "build_sorted_sums"]


def build_moments() -> Callable[..., None]:
    """``moments(o, s, out)``: per row n, mean_o, mean_s, sso, sss, sos, sse, sae, sum of errors (9 columns)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def moments(o, s, out):  # pragma: no cover - compiled
        rows, steps = o.shape
        for i in range(rows):
            n = 0
            so = 0.0
            ss = 0.0
            for t in range(steps):
                a = o[i, t]
                b = s[i, t]
                if np.isfinite(b - a):  # the same validity rule as the NumPy engine
                    n += 1
                    so += a
                    ss += b
            out[i, 0] = n
            if n == 0:
                for k in range(1, 9):
                    out[i, k] = np.nan
                continue
            mo = so / n
            ms = ss / n
            sso = 0.0
            sss = 0.0
            sos = 0.0
            sda = 0.0
            sdb = 0.0
            sse = 0.0
            sae = 0.0
            sd = 0.0
            for t in range(steps):
                a = o[i, t]
                b = s[i, t]
                d = b - a
                if np.isfinite(d):
                    da = a - mo
                    db = b - ms
                    sda += da
                    sdb += db
                    sso += da * da
                    sss += db * db
                    sos += da * db
                    sse += d * d
                    sae += abs(d)
                    sd += d
            # corrected two-pass sums (Chan, Golub and LeVeque 1983): remove the rounding error of the means,
            # so that constant series give exactly 0 even with sequential summation
            out[i, 1] = mo
            out[i, 2] = ms
            out[i, 3] = max(sso - sda * sda / n, 0.0)
            out[i, 4] = max(sss - sdb * sdb / n, 0.0)
            out[i, 5] = sos - sda * sdb / n
            out[i, 6] = sse
            out[i, 7] = sae
            out[i, 8] = sd

    return moments


def build_rank_stats() -> Callable[..., None]:
    """``rank_stats(xo, xs, order_o, order_s, n, sorted_o, sorted_s, sums)``.

    ``xo``/``xs`` hold the series with ``inf`` at invalid pairs and ``order_*`` the ascending ``argsort`` of
    their float32 copies (NumPy's SIMD argsort is ~2.5x faster on 32-bit keys), made exact for float64 here, in
    place (so the ``n[i]`` valid values come first). Writes the sorted valid values (NaN after them) and, per row,
    ``sum(r_o * r_s)``, ``sum(r_o**2)``, ``sum(r_s**2)`` of the tie-averaged ranks (1..n). Ranks are multiples
    of 1/2, so these sums are exact in float64 for n up to ~1e5.
    """
    import numba

    @numba.njit(cache=True, nogil=True, inline="always")
    def gather(x, order, k, srt):  # pragma: no cover - compiled
        """Sorted valid values; ``order`` sorts float32 copies, fixed up here to the exact float64 order."""
        for j in range(k):
            srt[j] = x[order[j]]
        for j in range(k, x.shape[0]):
            srt[j] = np.nan
        # float64 -> float32 rounding is monotonic, so only values that round to the same float32 can be out of
        # order: an insertion sort fixes them in O(n) unless there are many such near-ties (then a full sort)
        moves = 0
        ok = True
        for j in range(1, k):
            v = srt[j]
            if not np.isfinite(v):  # a valid value beyond float32's range sorted among the invalid ones
                ok = False
                break
            if v >= srt[j - 1]:
                continue
            o = order[j]
            q = j - 1
            while q >= 0 and srt[q] > v:
                srt[q + 1] = srt[q]
                order[q + 1] = order[q]
                q -= 1
                moves += 1
            srt[q + 1] = v
            order[q + 1] = o
            if moves > 16 * k + 1024:
                ok = False
                break
        if k and not np.isfinite(srt[0]):
            ok = False
        if not ok:
            full = np.argsort(x)  # x holds inf at the invalid pairs: the k valid values come first
            for j in range(x.shape[0]):
                order[j] = full[j]
            for j in range(k):
                srt[j] = x[order[j]]

    @numba.njit(cache=True, nogil=True)
    def rank_stats(xo, xs, order_o, order_s, n, sorted_o, sorted_s, sums):  # pragma: no cover - compiled
        rows, t = xo.shape
        ro = np.empty(t)  # rank of obs at each valid time step (invalid steps are never read)
        for i in range(rows):
            k = n[i]
            so = sorted_o[i]
            ss = sorted_s[i]
            oo = order_o[i]
            os = order_s[i]
            gather(xo[i], oo, k, so)
            gather(xs[i], os, k, ss)
            b = 0.0
            j = 0
            while j < k:  # tie groups of obs: mean 1-based rank j+1..e
                e = j + 1
                while e < k and so[e] == so[j]:
                    e += 1
                r = 0.5 * (j + e + 1)
                for q in range(j, e):
                    ro[oo[q]] = r
                b += (e - j) * r * r
                j = e
            a = 0.0
            c = 0.0
            j = 0
            while j < k:  # tie groups of sim, paired with the obs rank at the same time step
                e = j + 1
                while e < k and ss[e] == ss[j]:
                    e += 1
                r = 0.5 * (j + e + 1)
                acc = 0.0
                for q in range(j, e):
                    acc += ro[os[q]]
                a += r * acc
                c += (e - j) * r * r
                j = e
            sums[i, 0] = a
            sums[i, 1] = b
            sums[i, 2] = c

    return rank_stats


def build_peaks() -> Callable[..., None]:
    """``peaks(x, m, thr, distance, out)``: the peak rule of the NumPy engine in O(n) per row.

    A peak is a valid value ``>= thr[i]``, rising from a valid predecessor (if any), and the maximum of the valid
    values within ``+-distance`` steps. The window maxima come from the van Herk (1992) / Gil and Werman (1993)
    algorithm: prefix and suffix maxima over blocks of ``2 * distance + 1`` steps of the series padded with
    ``-inf``, so each window is the maximum of one suffix and one prefix.
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def peaks(x, m, thr, distance, out):  # pragma: no cover - compiled
        rows, steps = x.shape
        d = distance
        w = 2 * d + 1
        p_len = steps + 2 * d
        buf = np.empty(p_len)
        g = np.empty(p_len)
        h = np.empty(p_len)
        for i in range(rows):
            th = thr[i]
            buf[:d] = -np.inf
            buf[d + steps :] = -np.inf
            for t in range(steps):
                buf[d + t] = x[i, t] if m[i, t] else -np.inf
            for b0 in range(0, p_len, w):  # blocks [b0, b1): prefix maxima up, suffix maxima down
                b1 = min(b0 + w, p_len)
                acc = -np.inf
                for p in range(b0, b1):
                    acc = max(acc, buf[p])
                    g[p] = acc
                acc = -np.inf
                for p in range(b1 - 1, b0 - 1, -1):
                    acc = max(acc, buf[p])
                    h[p] = acc
            for t in range(steps):
                out[i, t] = False
                if not m[i, t]:
                    continue
                v = x[i, t]
                if not v >= th:  # also False for a NaN threshold
                    continue
                if t > 0 and m[i, t - 1] and not v > x[i, t - 1]:
                    continue
                out[i, t] = v >= max(h[t], g[t + 2 * d])  # window [t - d, t + d] in padded coordinates

    return peaks


def build_sorted_sums() -> dict[str, Any]:
    """Sums over ranges of ascending rows (``NaN`` after the ``n`` valid values).

    ``range_sum(srt, lo, hi)``: sum of ``srt[i, lo[i]:hi[i]]``; ``log_fdc_sum(srt, k, floor)``: sum over
    ``j < k[i]`` of ``log(max(srt[i, j], floor)) - log(max(srt[i, 0], floor))`` (the low-flow FDC segment);
    ``scaled_abs_diff(so, ss, n, a, b)``: sum over ``j < n[i]`` of ``|ss[i, j] * a[i] - so[i, j] * b[i]|``.
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def range_sum(srt, lo, hi):  # pragma: no cover - compiled
        out = np.zeros(srt.shape[0])
        for i in range(srt.shape[0]):
            acc = 0.0
            for j in range(max(lo[i], 0), min(hi[i], srt.shape[1])):
                acc += srt[i, j]
            out[i] = acc
        return out

    @numba.njit(cache=True, nogil=True)
    def log_fdc_sum(srt, k, floor):  # pragma: no cover - compiled
        out = np.zeros(srt.shape[0])
        for i in range(srt.shape[0]):
            kk = min(k[i], srt.shape[1])
            if kk <= 0:
                continue
            base = np.log(max(srt[i, 0], floor))
            acc = 0.0
            for j in range(kk):
                acc += np.log(max(srt[i, j], floor)) - base
            out[i] = acc
        return out

    @numba.njit(cache=True, nogil=True)
    def scaled_abs_diff(so, ss, n, a, b):  # pragma: no cover - compiled
        out = np.zeros(so.shape[0])
        for i in range(so.shape[0]):
            acc = 0.0
            ai = a[i]
            bi = b[i]
            for j in range(n[i]):
                acc += abs(ss[i, j] * ai - so[i, j] * bi)
            out[i] = acc
        return out

    return {"range_sum": range_sum, "log_fdc_sum": log_fdc_sum, "scaled_abs_diff": scaled_abs_diff}
