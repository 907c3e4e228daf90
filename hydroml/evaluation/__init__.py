"""hydroml.evaluation: hydrological metrics for NumPy and xarray, torch losses, skill, signatures and reports.

Every metric takes ``obs`` and ``sim`` first and works on NumPy arrays (``axis=-1``) and on xarray objects
(``dim="time"``, lazily on dask); see :mod:`hydroml.evaluation.metrics` and ``docs/metrics.md`` for the
conventions. Torch losses live in :mod:`hydroml.evaluation.losses` (imported on demand, so this package does not
import torch).

Examples
--------
>>> import numpy as np
>>> from hydroml.evaluation import nse, kge
>>> obs = np.array([[1.0, 2.0, 4.0, 3.0], [2.0, 2.5, np.nan, 3.0]])
>>> sim = np.array([[1.5, 2.0, 3.5, 3.0], [2.0, 2.5, 9.0, 3.5]])
>>> nse(obs, sim).round(3)
array([0.9, 0.5])
"""

from hydroml.evaluation._core import (
    DEFAULT_METRICS,
    METRICS,
    ConstantObservationsWarning,
    get_options,
    set_options,
)
from hydroml.evaluation.metrics import (
    alpha_nse,
    beta_nse,
    evaluate,
    fhv,
    flv,
    fms,
    kge,
    kge_np,
    kge_prime,
    log_nse,
    mae,
    mean_error,
    missed_peaks,
    mse,
    nse,
    pbias,
    peak_mape,
    peak_timing,
    pearson_r,
    r_squared,
    rmse,
    spearman_r,
)
from hydroml.evaluation.probabilistic import crps_ensemble, interval_coverage, interval_width
from hydroml.evaluation.signatures import (
    SIGNATURES,
    baseflow_index,
    compute_signatures,
    hfd_mean,
    high_q_dur,
    high_q_freq,
    low_q_dur,
    low_q_freq,
    q5,
    q95,
    q_mean,
    runoff_ratio,
    signature_errors,
    slope_fdc,
    stream_elas,
    zero_q_freq,
)
from hydroml.evaluation.skill import (
    REFERENCES,
    benchmark_efficiency,
    benchmark_skill,
    climatology,
    mean_flow,
    persistence,
    skill_score,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "ConstantObservationsWarning",
    "get_options",
    "set_options",
    "alpha_nse",
    "beta_nse",
    "evaluate",
    "fhv",
    "flv",
    "fms",
    "kge",
    "kge_np",
    "kge_prime",
    "log_nse",
    "mae",
    "mean_error",
    "missed_peaks",
    "mse",
    "nse",
    "pbias",
    "peak_mape",
    "peak_timing",
    "pearson_r",
    "r_squared",
    "rmse",
    "spearman_r",
    # probabilistic
    "crps_ensemble",
    "interval_coverage",
    "interval_width",
    # signatures
    "SIGNATURES",
    "baseflow_index",
    "hfd_mean",
    "high_q_dur",
    "high_q_freq",
    "low_q_dur",
    "low_q_freq",
    "q5",
    "q95",
    "q_mean",
    "runoff_ratio",
    "signature_errors",
    "compute_signatures",
    "slope_fdc",
    "stream_elas",
    "zero_q_freq",
    # skill
    "REFERENCES",
    "benchmark_efficiency",
    "benchmark_skill",
    "climatology",
    "mean_flow",
    "persistence",
    "skill_score",
]
