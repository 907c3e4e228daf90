"""Figures of :mod:`hydroml.diagnostics`: sharpness over epochs against ``2 / lr``, the Hessian eigenvalue
density, and loss slices. Each takes a diagnostics dataset (or a run directory / ``diagnostics.nc``), ``ax=``,
and returns the axes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hydroml.exceptions import DataError
from hydroml.plot._common import get_ax

__all__ = ["sharpness", "hessian_density", "loss_slice"]


def _open(diag: Any) -> Any:
    if isinstance(diag, str | os.PathLike):
        from hydroml.diagnostics import read_diagnostics

        return read_diagnostics(diag)
    return diag


def _need(ds: Any, var: str, option: str) -> None:
    if var not in ds:
        raise DataError(f"diagnostics have no {var!r}: run `hydroml diagnose` with {option}")


def sharpness(
    diag: Any,
    ax: Any = None,
    *,
    label: str | None = None,
    edge: bool = True,
    ranks: Any = None,
    **kwargs: Any,
) -> Any:
    """Top Hessian eigenvalue(s) over epochs, with the ``2 / lr`` line of the edge of stability.

    Parameters
    ----------
    diag : xarray.Dataset or path-like
        From :func:`hydroml.diagnostics.diagnose_run` (or its ``diagnostics.nc`` / run directory).
    ax : matplotlib.axes.Axes, optional
    label : str, optional
        Legend label of the eigenvalue line (default ``lambda_max``; with several ranks ``lambda_i``).
    edge : bool
        Draw ``2 / lr`` (dashed, same colour).
    ranks : list of int, optional
        Which eigenvalues (default: the first).
    **kwargs
        Passed to ``ax.plot`` for the eigenvalue line(s).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ds = _open(diag)
    ax = get_ax(ax)
    epochs = ds["epoch"].values
    ranks = ranks or [1]
    line = None
    for r in ranks:
        name = label or ("lambda_max" if r == 1 else f"lambda_{r}")
        (line,) = ax.plot(epochs, ds["eigenvalues"].sel(rank=r).values, marker="o", label=name, **kwargs)
    if edge:
        colour = line.get_color() if line is not None else None
        ax.plot(
            epochs,
            ds["edge_of_stability"].values,
            ls="--",
            color=colour,
            label=f"2/lr{f' ({label})' if label else ''}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top Hessian eigenvalue")
    ax.legend(fontsize="small")
    return ax


def hessian_density(diag: Any, ax: Any = None, *, epochs: Any = None, log: bool = True, **kwargs: Any) -> Any:
    """The Hessian eigenvalue density (stochastic Lanczos quadrature) of selected epochs.

    Parameters
    ----------
    diag : xarray.Dataset or path-like
        Diagnostics with ``density`` (``hydroml diagnose --density N``).
    ax : matplotlib.axes.Axes, optional
    epochs : list of int, optional
        Default: first and last.
    log : bool
        Logarithmic density axis (the spectrum's bulk and outliers differ by orders of magnitude).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ds = _open(diag)
    _need(ds, "density", "--density N")
    ax = get_ax(ax)
    all_epochs = list(ds["epoch"].values)
    epochs = epochs or sorted({all_epochs[0], all_epochs[-1]})
    for e in epochs:
        rho = ds["density"].sel(epoch=e).values
        ax.plot(ds["eigenvalue"].values, np.maximum(rho, 1e-12) if log else rho, label=f"epoch {e}", **kwargs)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    return ax


def loss_slice(
    diag: Any, ax: Any = None, *, kind: str = "1d", epoch: int | None = None, **kwargs: Any
) -> Any:
    """Loss slices: 1-D along the random and top-eigenvector directions, or the 2-D random plane (contours).

    Parameters
    ----------
    diag : xarray.Dataset or path-like
        Diagnostics with slices (``hydroml diagnose --slices``).
    ax : matplotlib.axes.Axes, optional
    kind : {"1d", "2d"}
    epoch : int, optional
        Default: the last.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ds = _open(diag)
    _need(ds, "slice_2d", "--slices")
    if kind not in ("1d", "2d"):
        raise DataError(f"loss_slice kind: expected '1d' or '2d', found {kind!r}")
    epoch = int(ds["epoch"].values[-1]) if epoch is None else epoch
    row = ds.sel(epoch=epoch)
    ax = get_ax(ax, figsize=(5.0, 4.0) if kind == "2d" else (6.0, 4.0))
    a = ds["alpha"].values
    if kind == "1d":
        ax.plot(a, row["slice_random"].values, label="filter-normalised random", **kwargs)
        ax.plot(a, row["slice_eigen"].values, label="top eigenvector (unit)", **kwargs)
        ax.set_xlabel("alpha")
        ax.set_ylabel("training loss")
        ax.legend(fontsize="small")
    else:
        cs = ax.contour(a, ds["beta"].values, row["slice_2d"].values.T, levels=15, **kwargs)
        ax.clabel(cs, fontsize="x-small")
        ax.plot([0], [0], "k+")
        ax.set_xlabel("alpha (random direction 1)")
        ax.set_ylabel("beta (random direction 2)")
    ax.set_title(f"epoch {epoch}")
    return ax
