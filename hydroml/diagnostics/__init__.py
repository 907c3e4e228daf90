"""hydroml.diagnostics: loss-landscape curvature along training.

- :class:`HessianOperator` -- Hessian-vector products of a model's loss over fixed batches, by double backward
  or ``torch.func`` (forward over reverse), through activation checkpointing;
- :func:`top_eigenvalues` (Lanczos) and :func:`power_iteration` -- the largest Hessian eigenvalues;
- :func:`hutchinson_trace` -- Hutchinson / Hutch++ trace estimates with a standard error;
- :func:`slq` and :func:`density` -- the eigenvalue density by stochastic Lanczos quadrature;
- :func:`filter_normalised_direction`, :func:`loss_slice_1d`, :func:`loss_slice_2d` -- loss slices;
- :func:`diagnose_run` -- all of them on each saved epoch of a run directory (``hydroml diagnose RUN_DIR``),
  written to ``diagnostics.nc`` / ``diagnostics.json``; plots in :mod:`hydroml.plot` (:func:`~hydroml.plot.sharpness`,
  :func:`~hydroml.plot.hessian_density`, :func:`~hydroml.plot.loss_slice`).
"""

from hydroml.diagnostics.hessian import HessianOperator, flatten, unflatten
from hydroml.diagnostics.landscape import filter_normalised_direction, loss_slice_1d, loss_slice_2d
from hydroml.diagnostics.run import diagnose_run, list_checkpoints, read_diagnostics
from hydroml.diagnostics.spectrum import (
    SLQ,
    Eigen,
    TraceEstimate,
    density,
    hutchinson_trace,
    lanczos,
    power_iteration,
    slq,
    top_eigenvalues,
)

__all__ = [
    "SLQ",
    "Eigen",
    "HessianOperator",
    "TraceEstimate",
    "density",
    "diagnose_run",
    "filter_normalised_direction",
    "flatten",
    "hutchinson_trace",
    "lanczos",
    "list_checkpoints",
    "loss_slice_1d",
    "loss_slice_2d",
    "power_iteration",
    "read_diagnostics",
    "slq",
    "top_eigenvalues",
    "unflatten",
]
