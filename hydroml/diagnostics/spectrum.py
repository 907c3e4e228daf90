"""Hessian spectrum estimators on a matrix-free operator: top-k eigenvalues (power iteration with deflation,
Lanczos), the trace (Hutchinson, Hutch++), and the eigenvalue density (stochastic Lanczos quadrature).

Every function takes ``matvec`` (``v -> H v`` on flat vectors of length ``n``, e.g. a
:class:`hydroml.diagnostics.HessianOperator`) and ``n``, and works in the dtype of the vectors ``matvec``
returns (use float64 for tight checks). Random vectors come from a seeded ``torch.Generator``: results are
reproducible.

References
----------
- Lanczos, C. (1950): An iteration method for the solution of the eigenvalue problem of linear differential and
  integral operators, J. Res. Nat. Bur. Standards 45, 255-282.
- Hutchinson, M. F. (1989): A stochastic estimator of the trace of the influence matrix for Laplacian smoothing
  splines, Commun. Stat. Simul. Comput. 18, 1059-1076.
- Meyer, R. A., Musco, C., Musco, C., Woodruff, D. P. (2021): Hutch++: optimal stochastic trace estimation,
  SOSA 2021, 142-155.
- Lin, L., Saad, Y., Yang, C. (2016): Approximating spectral densities of large matrices, SIAM Review 58, 34-65.
- Ghorbani, B., Krishnan, S., Xiao, Y. (2019): An investigation into neural net optimization via Hessian
  eigenvalue density, ICML 2019.
- Yao, Z., Gholami, A., Keutzer, K., Mahoney, M. W. (2020): PyHessian: neural networks through the lens of the
  Hessian, IEEE BigData 2020.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hydroml.exceptions import ConfigError

log = logging.getLogger("hydroml.diagnostics")

__all__ = [
    "Eigen",
    "SLQ",
    "TraceEstimate",
    "density",
    "hutchinson_trace",
    "lanczos",
    "power_iteration",
    "slq",
    "top_eigenvalues",
]

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Eigen:
    """Eigenpairs: ``values`` ``[k]`` (descending), ``vectors`` ``[k, n]`` (unit norm), ``residuals`` ``[k]``
    (``||H u - lambda u||``), ``matvecs`` used."""

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    matvecs: int


@dataclass
class TraceEstimate:
    """A trace estimate with its standard error (0 for an exact Hutch++ sketch) and the products used."""

    value: float
    stderr: float
    matvecs: int


@dataclass
class SLQ:
    """Stochastic Lanczos quadrature: per probe vector, the Ritz values ``nodes`` ``[n_vectors, m]`` and their
    weights ``[n_vectors, m]`` (each row sums to 1); ``n`` is the dimension (the density integrates to 1)."""

    nodes: np.ndarray
    weights: np.ndarray
    n: int

    def trace(self) -> float:
        """The trace implied by the quadrature: ``n`` times the mean over vectors of ``sum_j w_j theta_j``."""
        return float(self.n * np.mean(np.sum(self.weights * self.nodes, axis=1)))


def _rademacher(n: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    return (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).to(dtype=dtype, device=device)


def _probe_dtype(matvec: MatVec, n: int) -> tuple[torch.dtype, torch.device]:
    dtype = getattr(matvec, "dtype", None)
    device = getattr(matvec, "device", None)
    return (dtype or torch.float64), (device or torch.device("cpu"))


def power_iteration(
    matvec: MatVec,
    n: int,
    k: int = 1,
    *,
    iters: int = 200,
    tol: float = 1e-8,
    seed: int = 0,
) -> Eigen:
    """Top-``k`` eigenpairs by power iteration with deflation (as PyHessian).

    Each eigenvector is iterated while orthogonal to those found before; iteration stops when the Rayleigh
    quotient changes by less than ``tol`` relative to itself. Power iteration finds the eigenvalues of largest
    **magnitude**; for a Hessian with large negative eigenvalues use :func:`lanczos`.

    Parameters
    ----------
    matvec : callable
        ``v -> H v``.
    n : int
        Dimension.
    k : int
        Number of eigenpairs.
    iters : int
        Maximum iterations per eigenpair.
    tol : float
        Relative tolerance on the Rayleigh quotient.
    seed : int
        Seed of the start vectors.

    Returns
    -------
    Eigen
    """
    dtype, device = _probe_dtype(matvec, n)
    gen = torch.Generator().manual_seed(seed)
    found: list[torch.Tensor] = []
    values, residuals, used = [], [], 0
    for _ in range(min(k, n)):
        v = torch.randn(n, generator=gen, dtype=dtype).to(device)
        lam = None
        for _ in range(iters):
            for u in found:
                v = v - (u @ v) * u
            v = v / v.norm()
            hv = matvec(v)
            used += 1
            for u in found:
                hv = hv - (u @ hv) * u
            new = float(v @ hv)
            converged = lam is not None and abs(new - lam) <= tol * max(abs(new), 1e-30)
            lam = new
            if converged:
                break
            v = hv
        v = v / v.norm()
        found.append(v)
        values.append(lam)
        hv = matvec(v)
        used += 1
        residuals.append(float((hv - lam * v).norm()))
    return Eigen(np.array(values), torch.stack(found), np.array(residuals), used)


def lanczos(
    matvec: MatVec, n: int, m: int, *, seed: int = 0, v0: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``m`` steps of Lanczos with full reorthogonalisation.

    Parameters
    ----------
    matvec : callable
        ``v -> H v`` (``H`` symmetric).
    n : int
        Dimension.
    m : int
        Steps (at most ``n``); stops early on an invariant subspace.
    seed : int
        Seed of the Rademacher start vector (when ``v0`` is not given).
    v0 : torch.Tensor, optional
        Start vector (normalised here).

    Returns
    -------
    alpha : numpy.ndarray
        Diagonal of the tridiagonal ``T`` (``[m']``, ``m' <= m``).
    beta : numpy.ndarray
        Off-diagonal (``[m' - 1]``).
    Q : torch.Tensor
        Lanczos vectors ``[m', n]`` (orthonormal rows); ``Q H Q^T = T``.
    """
    dtype, device = _probe_dtype(matvec, n)
    m = max(1, min(int(m), n))
    if v0 is None:
        v0 = _rademacher(n, torch.Generator().manual_seed(seed), dtype, device)
    q = v0.to(dtype=dtype, device=device)
    q = q / q.norm()
    Q = torch.zeros(m, n, dtype=dtype, device=device)
    alpha, beta = [], []
    for j in range(m):
        Q[j] = q
        w = matvec(q)
        a = float(q @ w)
        alpha.append(a)
        # full reorthogonalisation (twice is enough: Giraud et al. 2005)
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(w.norm())
        scale = max(abs(a), max(beta, default=0.0), 1e-300)
        if j == m - 1 or b <= 1e-10 * scale:
            break
        beta.append(b)
        q = w / b
    k = len(alpha)
    return np.array(alpha), np.array(beta[: k - 1]), Q[:k]


def _tridiag_eig(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg import eigh_tridiagonal

    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    return eigh_tridiagonal(alpha, beta)


def top_eigenvalues(
    matvec: MatVec,
    n: int,
    k: int = 1,
    *,
    method: str = "lanczos",
    m: int | None = None,
    iters: int = 200,
    tol: float = 1e-8,
    seed: int = 0,
) -> Eigen:
    """The ``k`` largest (algebraic) eigenvalues of ``H`` and their eigenvectors.

    Parameters
    ----------
    matvec : callable
        ``v -> H v``.
    n : int
        Dimension.
    k : int
        How many.
    method : {"lanczos", "power"}
        ``"lanczos"`` (default): Ritz pairs of ``m`` Lanczos steps; the extremal ones converge first, in far
        fewer products than power iteration when eigenvalues are close. ``"power"``: :func:`power_iteration`.
    m : int, optional
        Lanczos steps (default ``min(n, max(3 k + 20, 40))``).
    iters, tol : int, float
        Power iteration only.
    seed : int
        Seed of the start vector(s).

    Returns
    -------
    Eigen
        ``residuals`` are the exact ``||H u - theta u||`` (one more product each).
    """
    if method == "power":
        return power_iteration(matvec, n, k, iters=iters, tol=tol, seed=seed)
    if method != "lanczos":
        raise ConfigError(f"eigenvalue method: expected 'lanczos' or 'power', found {method!r}")
    m = min(n, m or max(3 * k + 20, 40))
    alpha, beta, Q = lanczos(matvec, n, m, seed=seed)
    theta, y = _tridiag_eig(alpha, beta)
    order = np.argsort(theta)[::-1][: min(k, len(theta))]
    vectors = torch.from_numpy(y[:, order].T.copy()).to(Q) @ Q  # [k, n]
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    res = [float((matvec(u) - float(t) * u).norm()) for u, t in zip(vectors, theta[order])]
    return Eigen(theta[order].copy(), vectors, np.array(res), len(alpha) + len(res))


def hutchinson_trace(
    matvec: MatVec, n: int, samples: int = 30, *, method: str = "hutch++", seed: int = 0
) -> TraceEstimate:
    """Stochastic trace estimate ``tr(H)``.

    ``"hutchinson"``: :math:`\\mathrm{tr}(H) \\approx \\frac{1}{s} \\sum_i z_i^T H z_i` with Rademacher
    ``z_i`` (unbiased; variance :math:`2 \\sum_{i \\neq j} H_{ij}^2 / s`, exact for a diagonal ``H``).
    ``"hutch++"`` (Meyer et al. 2021): a third of the products sketch the dominant range ``Q`` of ``H``, whose
    trace :math:`\\mathrm{tr}(Q^T H Q)` is exact, and Hutchinson estimates the rest on the complement; the error
    falls as ``1/s`` instead of ``1/sqrt(s)`` for Hessians whose spectrum is dominated by a few outliers, and
    the estimate is exact when ``rank(H) <= s/3``.

    Parameters
    ----------
    matvec : callable
        ``v -> H v``.
    n : int
        Dimension.
    samples : int
        Hessian-vector products to spend (Hutch++: at least 3).
    method : {"hutch++", "hutchinson"}
    seed : int

    Returns
    -------
    TraceEstimate
        The estimate, its standard error (of the stochastic part) and the products used.
    """
    dtype, device = _probe_dtype(matvec, n)
    gen = torch.Generator().manual_seed(seed)
    if method == "hutchinson":
        vals = []
        for _ in range(samples):
            z = _rademacher(n, gen, dtype, device)
            vals.append(float(z @ matvec(z)))
        v = np.array(vals)
        se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        return TraceEstimate(float(v.mean()), se, samples)
    if method != "hutch++":
        raise ConfigError(f"trace method: expected 'hutch++' or 'hutchinson', found {method!r}")
    s = max(1, samples // 3)
    r = min(s, n)
    S = torch.stack([_rademacher(n, gen, dtype, device) for _ in range(r)], dim=1)  # [n, r]
    HS = torch.stack([matvec(S[:, i]) for i in range(r)], dim=1)
    Q, _ = torch.linalg.qr(HS)
    HQ = torch.stack([matvec(Q[:, i]) for i in range(Q.shape[1])], dim=1)
    exact = float(torch.trace(Q.T @ HQ))
    used = r + Q.shape[1]
    rest = samples - used
    if rest <= 0 or r == n:
        return TraceEstimate(exact, 0.0 if r == n else float("nan"), used)
    vals = []
    for _ in range(rest):
        z = _rademacher(n, gen, dtype, device)
        z = z - Q @ (Q.T @ z)
        hz = matvec(z)
        vals.append(float(z @ (hz - Q @ (Q.T @ hz))))
    v = np.array(vals)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return TraceEstimate(exact + float(v.mean()), se, used + rest)


def slq(matvec: MatVec, n: int, n_vectors: int = 4, m: int = 60, *, seed: int = 0) -> SLQ:
    """Stochastic Lanczos quadrature of the eigenvalue density (Lin et al. 2016; Ghorbani et al. 2019).

    For each Rademacher probe ``v`` (normalised), ``m`` Lanczos steps give a tridiagonal ``T = Y diag(theta)
    Y^T``; the quadrature nodes are ``theta`` and the weights ``Y[0, :]**2``, so that
    :math:`v^T f(H) v \\approx \\sum_j w_j f(\\theta_j)`. Averaged over probes this approximates the spectral
    density :math:`\\frac{1}{n} \\sum_i \\delta(t - \\lambda_i)`; :func:`density` smooths it on a grid.

    Parameters
    ----------
    matvec : callable
        ``v -> H v``.
    n : int
        Dimension.
    n_vectors : int
        Probe vectors.
    m : int
        Lanczos steps per probe (at most ``n``; with ``m = n`` the nodes are the exact eigenvalues).
    seed : int

    Returns
    -------
    SLQ
        Rows padded with zero weights when a probe's Lanczos stopped early.
    """
    m = min(int(m), n)
    nodes = np.zeros((n_vectors, m))
    weights = np.zeros((n_vectors, m))
    for i in range(n_vectors):
        alpha, beta, _ = lanczos(matvec, n, m, seed=seed + 7919 * i)
        theta, y = _tridiag_eig(alpha, beta)
        nodes[i, : len(theta)] = theta
        weights[i, : len(theta)] = y[0] ** 2
        if len(theta) < m:
            nodes[i, len(theta) :] = theta[-1]
    return SLQ(nodes, weights, n)


def density(
    result: SLQ, grid: np.ndarray | int = 200, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The SLQ density smoothed with a Gaussian kernel of width ``sigma`` on a grid.

    .. math::

        \\rho(t) = \\frac{1}{n_v} \\sum_{l=1}^{n_v} \\sum_{j} w_{lj}\\, \\frac{1}{\\sigma\\sqrt{2\\pi}}
                   e^{-(t - \\theta_{lj})^2 / (2\\sigma^2)}

    integrates to 1 over the real line.

    Parameters
    ----------
    result : SLQ
        From :func:`slq`.
    grid : numpy.ndarray or int
        Evaluation points, or their number over the node range padded by ``3 sigma``.
    sigma : float, optional
        Kernel width (default: 1 % of the node range, at least 1e-12).

    Returns
    -------
    grid : numpy.ndarray
    rho : numpy.ndarray
    """
    lo, hi = float(result.nodes.min()), float(result.nodes.max())
    if sigma is None:
        sigma = max(0.01 * (hi - lo), 1e-12)
    if np.isscalar(grid):
        grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, int(grid))
    grid = np.asarray(grid, dtype=float)
    diff = grid[:, None, None] - result.nodes[None]
    kern = np.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    rho = (kern * result.weights[None]).sum(axis=2).mean(axis=1)
    return grid, rho
