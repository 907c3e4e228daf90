r"""Torch twins of the metrics that are also training losses: MSE and NSE.

All functions take ``obs`` (the target) and ``sim`` (the prediction) first, like the NumPy and xarray metrics,
and ignore pairs whose target is NaN (masked, so NaN targets neither poison the loss nor its gradient).

- :func:`mse` / :func:`nse` reduce over ``dim`` (default the last) and return one value per series, equal to
  :func:`hydroml.evaluation.mse` / :func:`hydroml.evaluation.nse` of the same data;
- :func:`mse_loss` / :func:`nse_loss` return a scalar to minimise. :func:`nse_loss` is NSE* of
  Kratzert et al. (2019): squared errors weighted by :math:`1/(\sigma_b + \epsilon)^2`, where :math:`\sigma_b`
  is the standard deviation of basin b's target in the *training* period, so that every basin counts alike
  whatever its flow magnitude.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["mse", "nse", "mse_loss", "nse_loss", "MaskedMSELoss", "NSELoss"]


def _mask(obs: torch.Tensor, sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    obs, sim = torch.broadcast_tensors(obs, sim)
    valid = ~(torch.isnan(obs) | torch.isnan(sim))
    zero = torch.zeros((), dtype=sim.dtype, device=sim.device)
    return torch.where(valid, obs, zero), torch.where(valid, sim, zero), valid


def mse(obs: torch.Tensor, sim: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Mean squared error per series over the valid pairs.

    .. math:: \mathrm{MSE} = \frac1n\sum_t (s_t - o_t)^2

    **Perfect value:** 0. **Range:** [0, inf).

    Parameters
    ----------
    obs, sim : torch.Tensor
        Targets and predictions; NaN pairs are ignored.
    dim : int
        Dimension reduced over.

    Returns
    -------
    torch.Tensor
        MSE with ``dim`` removed; NaN where a series has no valid pair.

    References
    ----------
    Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed.

    Examples
    --------
    >>> import torch
    >>> from hydroml.evaluation.losses import mse
    >>> float(mse(torch.tensor([1.0, 2.0, float("nan")]), torch.tensor([1.0, 4.0, 5.0])))
    2.0
    """
    o, s, valid = _mask(obs, sim)
    n = valid.sum(dim)
    return ((s - o) ** 2).sum(dim) / n


def nse(obs: torch.Tensor, sim: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Nash-Sutcliffe efficiency per series over the valid pairs (differentiable).

    .. math:: \mathrm{NSE} = 1 - \frac{\sum_t (s_t - o_t)^2}{\sum_t (o_t - \overline{o})^2}

    **Perfect value:** 1. **Range:** (-inf, 1].

    Parameters
    ----------
    obs, sim : torch.Tensor
        Targets and predictions; NaN pairs are ignored.
    dim : int
        Dimension reduced over.

    Returns
    -------
    torch.Tensor
        NSE with ``dim`` removed; NaN for constant observations or fewer than 2 valid pairs.

    References
    ----------
    Nash, J. E. and Sutcliffe, J. V. (1970). River flow forecasting through conceptual models part I.
    Journal of Hydrology 10(3), 282-290.

    Examples
    --------
    >>> import torch
    >>> from hydroml.evaluation.losses import nse
    >>> round(float(nse(torch.tensor([1.0, 2.0, 4.0, 3.0]), torch.tensor([1.5, 2.0, 3.5, 3.0]))), 6)
    0.9
    """
    o, s, valid = _mask(obs, sim)
    n = valid.sum(dim, keepdim=True)
    mean = o.sum(dim, keepdim=True) / n
    den = torch.where(valid, o - mean, torch.zeros((), dtype=o.dtype, device=o.device)).pow(2).sum(dim)
    num = (s - o).pow(2).sum(dim)
    out = 1 - num / den
    bad = (n.squeeze(dim) < 2) | (den == 0)
    return torch.where(bad, torch.full_like(out, float("nan")), out)


def mse_loss(obs: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    r"""Masked mean squared error over all valid elements (a scalar training loss).

    .. math:: L = \frac{1}{|V|}\sum_{(b,t)\in V} (s_{bt} - o_{bt})^2

    **Perfect value:** 0. **Range:** [0, inf). NaN targets (or predictions) are left out; a batch without any
    valid target returns 0 with a zero gradient, so it does not poison the optimiser.

    Parameters
    ----------
    obs, sim : torch.Tensor
        Targets and predictions of any (broadcastable) shape.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    References
    ----------
    Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed.

    Examples
    --------
    >>> import torch
    >>> from hydroml.evaluation.losses import mse_loss
    >>> float(mse_loss(torch.tensor([[1.0, float("nan")], [3.0, 4.0]]), torch.tensor([[2.0, 0.0], [3.0, 5.0]])))
    0.6666666865348816
    """
    o, s, valid = _mask(obs, sim)
    n = valid.sum().clamp_min(1)
    return ((s - o) ** 2).sum() / n


def nse_loss(obs: torch.Tensor, sim: torch.Tensor, basin_std: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    r"""NSE* loss of Kratzert et al. (2019): squared errors weighted by the inverse basin variance.

    .. math:: \mathrm{NSE}^* = \frac{1}{|V|}\sum_{(b,t)\in V} \frac{(s_{bt} - o_{bt})^2}{(\sigma_b + \epsilon)^2}

    **Perfect value:** 0. **Range:** [0, inf). Minimising it maximises a basin-averaged NSE while every basin
    weighs the same; :math:`\epsilon` (default 0.1, as in the paper) keeps near-constant basins finite.

    Parameters
    ----------
    obs, sim : torch.Tensor
        Targets and predictions, shape ``[B, ...]`` (e.g. ``[B, T, n_targets]``); NaN targets are left out.
    basin_std : torch.Tensor
        Standard deviation of each sample's basin target over the training period, shape ``[B]`` or
        broadcastable against ``obs`` (e.g. ``[B, 1, n_targets]``), in the units of ``obs``.
    eps : float
        Stabiliser added to the standard deviation.

    Returns
    -------
    torch.Tensor
        Scalar loss (0 when no target is valid).

    References
    ----------
    Kratzert, F., Klotz, D., Shalev, G., Klambauer, G., Hochreiter, S. and Nearing, G. (2019). Towards learning
    universal, regional, and local hydrological behaviors via machine learning applied to large-sample datasets.
    HESS 23, 5089-5110. doi:10.5194/hess-23-5089-2019.

    Examples
    --------
    >>> import torch
    >>> from hydroml.evaluation.losses import nse_loss
    >>> obs = torch.tensor([[1.0, 2.0], [10.0, 20.0]])
    >>> sim = torch.tensor([[2.0, 2.0], [20.0, 20.0]])
    >>> round(float(nse_loss(obs, sim, basin_std=torch.tensor([0.9, 9.9]))), 4)
    0.5
    """
    o, s, valid = _mask(obs, sim)
    std = torch.as_tensor(basin_std, dtype=s.dtype, device=s.device)
    if std.ndim == 1 and o.ndim > 1:
        std = std.reshape((-1,) + (1,) * (o.ndim - 1))
    w = 1.0 / (std + eps) ** 2
    n = valid.sum().clamp_min(1)
    return (w * (s - o) ** 2).sum() / n


class MaskedMSELoss(nn.Module):
    """:func:`mse_loss` as a module: ``loss(obs, sim)``."""

    def forward(self, obs: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
        return mse_loss(obs, sim)


class NSELoss(nn.Module):
    """:func:`nse_loss` as a module: ``loss(obs, sim, basin_std)``.

    Parameters
    ----------
    eps : float
        Stabiliser added to the basin standard deviation (default 0.1).
    """

    def __init__(self, eps: float = 0.1) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, obs: torch.Tensor, sim: torch.Tensor, basin_std: torch.Tensor) -> torch.Tensor:
        return nse_loss(obs, sim, basin_std, self.eps)
