"""hydroml.plot: the figures users look at (matplotlib; maps with cartopy, from the ``maps`` extra).

Every function takes ``ax=`` (new axes are created when it is omitted) and returns the axes it drew on.

- :func:`hydrograph` -- observed and simulated discharge, precipitation on an inverted top axis;
- :func:`flow_duration_curve` -- flow against exceedance probability (:func:`exceedance`);
- :func:`metric_cdf` -- CDF of a metric across basins for several models;
- :func:`skill_map` -- a score per grid cell or basin outlet on a map projection, with coastlines from offline
  data only (:func:`offline_coastlines`; a warning, never a download, when there are none);
- :func:`training_curves` -- losses and validation scores per epoch from a run directory's ``metrics.csv``;
- :func:`memory_plan` -- the memory planner's per-stage table as a bar chart, coloured by a schedule.

Importing this package does not import matplotlib; each function does, through
:func:`hydroml.exceptions.require` (install ``hydroml[maps]``). Use a non-interactive backend (``MPLBACKEND=Agg``)
on servers.
"""

from hydroml.plot.diagnostics import hessian_density, loss_slice, sharpness  # noqa: F401 (issue 15)
from hydroml.plot.flows import exceedance, flow_duration_curve, hydrograph
from hydroml.plot.runs import memory_plan, read_metrics, training_curves
from hydroml.plot.skill import COASTLINE_FILES, metric_cdf, offline_coastlines, skill_map

__all__ = [
    "COASTLINE_FILES",
    "exceedance",
    "flow_duration_curve",
    "hydrograph",
    "memory_plan",
    "metric_cdf",
    "offline_coastlines",
    "read_metrics",
    "skill_map",
    "training_curves",
]
