"""1-D and 2-D loss slices along filter-normalised random directions or Hessian eigenvectors.

A slice evaluates :math:`L(\\theta + \\alpha d_1)` (1-D) or :math:`L(\\theta + \\alpha d_1 + \\beta d_2)` (2-D) on a
grid. Random directions are **filter-normalised** (Li et al. 2018): each filter (a row of a weight matrix, an
output channel of a convolution) of a Gaussian direction is rescaled to the norm of the same filter of the
weights, so slices of networks of different scale are comparable; 1-D parameters (biases, norm scales) get a
zero direction by default, as in the paper. Eigenvector directions are unit vectors in parameter space, so
along the top eigenvector ``u`` of ``H`` at a minimum, :math:`L(\\theta + \\alpha u) \\approx L(\\theta) +
\\frac{1}{2} \\lambda_{max} \\alpha^2`.

Reference: Li, H., Xu, Z., Taylor, G., Studer, C., Goldstein, T. (2018): Visualizing the loss landscape of neural
nets, NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hydroml.diagnostics.hessian import HessianOperator, flatten, unflatten

__all__ = ["filter_normalised_direction", "loss_slice_1d", "loss_slice_2d"]


def filter_normalised_direction(
    params: Sequence[torch.Tensor], *, seed: int = 0, bias: str = "zero"
) -> torch.Tensor:
    """A random direction, filter by filter scaled to the weights' filter norms (flat, like the parameters).

    Parameters
    ----------
    params : sequence of torch.Tensor
        The parameters (e.g. ``HessianOperator.params``).
    seed : int
        Seed of the Gaussian direction.
    bias : {"zero", "keep"}
        1-D parameters: zero direction (Li et al.'s default) or normalised like a single filter.

    Returns
    -------
    torch.Tensor
        Flat direction ``[n]``; for every filter ``i`` of a >= 2-D parameter ``W``, ``||d_i|| = ||W_i||``.
    """
    from hydroml.exceptions import ConfigError

    if bias not in ("zero", "keep"):
        raise ConfigError(f"bias: expected 'zero' or 'keep', found {bias!r}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for p in params:
        w = p.detach()
        d = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)
        if w.dim() <= 1:
            if bias == "zero":
                d.zero_()
            else:
                d *= w.norm() / d.norm().clamp_min(1e-30)
        else:
            dims = tuple(range(1, w.dim()))
            vn = torch.linalg.vector_norm
            d *= vn(w, dim=dims, keepdim=True) / vn(d, dim=dims, keepdim=True).clamp_min(1e-30)
        out.append(d)
    return flatten(out)


@torch.no_grad()
def _shifted_loss(op: HessianOperator, base: list[torch.Tensor], shift: torch.Tensor) -> float:
    for p, b, s in zip(op.params, base, unflatten(shift, op.params)):
        p.copy_(b + s)
    return op.loss_value()


@torch.no_grad()
def loss_slice_1d(
    op: HessianOperator, direction: torch.Tensor, alphas: np.ndarray | Sequence[float]
) -> np.ndarray:
    """``L(theta + alpha d)`` for each ``alpha``; the parameters are restored exactly afterwards.

    Parameters
    ----------
    op : HessianOperator
        Supplies the model, the loss and the batches.
    direction : torch.Tensor
        Flat direction ``[n]``.
    alphas : array-like
        Step sizes.

    Returns
    -------
    numpy.ndarray
        Losses ``[len(alphas)]``.
    """
    base = [p.detach().clone() for p in op.params]
    d = direction.to(dtype=op.dtype, device=op.device)
    try:
        return np.array([_shifted_loss(op, base, float(a) * d) for a in alphas])
    finally:
        for p, b in zip(op.params, base):
            p.copy_(b)


@torch.no_grad()
def loss_slice_2d(
    op: HessianOperator,
    d1: torch.Tensor,
    d2: torch.Tensor,
    alphas: np.ndarray | Sequence[float],
    betas: np.ndarray | Sequence[float],
) -> np.ndarray:
    """``L(theta + alpha d1 + beta d2)`` on the grid ``alphas x betas`` (parameters restored afterwards).

    Returns
    -------
    numpy.ndarray
        Losses ``[len(alphas), len(betas)]``.
    """
    base = [p.detach().clone() for p in op.params]
    d1 = d1.to(dtype=op.dtype, device=op.device)
    d2 = d2.to(dtype=op.dtype, device=op.device)
    try:
        return np.array(
            [[_shifted_loss(op, base, float(a) * d1 + float(b) * d2) for b in betas] for a in alphas]
        )
    finally:
        for p, b in zip(op.params, base):
            p.copy_(b)
