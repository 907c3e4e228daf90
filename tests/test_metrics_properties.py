"""Property-based tests (hypothesis) of the metric invariants."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hydroml import evaluation as ev

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

flows = st.floats(min_value=0.01, max_value=1e4, allow_nan=False, allow_infinity=False)


@st.composite
def basins(draw, min_steps=8, max_steps=60):
    """(obs, sim) of shape (basins, steps), positive flows, some NaNs in both."""
    nb = draw(st.integers(1, 5))
    nt = draw(st.integers(min_steps, max_steps))
    obs = draw(arrays(np.float64, (nb, nt), elements=flows))
    noise = draw(arrays(np.float64, (nb, nt), elements=st.floats(0.5, 1.5)))
    sim = obs * noise
    mask_o = draw(arrays(np.bool_, (nb, nt), elements=st.sampled_from([False] * 9 + [True])))
    mask_s = draw(arrays(np.bool_, (nb, nt), elements=st.sampled_from([False] * 9 + [True])))
    obs = np.where(mask_o, np.nan, obs)
    sim = np.where(mask_s, np.nan, sim)
    return obs, sim


def _nonconstant(obs, sim):
    m = ~(np.isnan(obs) | np.isnan(sim))
    ok = []
    for i in range(obs.shape[0]):
        v = obs[i][m[i]]
        ok.append(v.size >= 2 and np.ptp(v) > 1e-6 * max(1.0, np.abs(v).max()))
    return np.array(ok)


@SETTINGS
@given(basins())
def test_perfect_simulation_scores_perfectly(data):
    obs, _ = data
    ok = _nonconstant(obs, obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ev.evaluate(
            obs,
            obs.copy(),
            ["nse", "kge", "kge_prime", "rmse", "mae", "pbias", "fhv", "kge_np"],
            options={"fhv": {"h": 0.3}},  # at least 2 of the >= 8 steps in the high segment
        )
    for name in ("nse", "kge", "kge_prime", "kge_np"):
        np.testing.assert_allclose(res[name][ok], 1.0, atol=1e-9)
    for name in ("rmse", "mae", "pbias", "fhv"):
        np.testing.assert_allclose(res[name][ok], 0.0, atol=1e-9)


@SETTINGS
@given(basins())
def test_nse_of_the_mean_flow_is_zero(data):
    obs, sim = data
    m = ~(np.isnan(obs) | np.isnan(sim))
    ok = _nonconstant(obs, sim)
    mean = np.array([obs[i][m[i]].mean() if m[i].any() else np.nan for i in range(obs.shape[0])])
    bench = np.where(m, mean[:, None], np.nan)  # the mean over the same valid pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ev.nse(obs, bench)
    np.testing.assert_allclose(out[ok], 0.0, atol=1e-9)


@SETTINGS
@given(basins(), st.randoms(use_true_random=False))
def test_invariant_to_basin_order(data, rnd):
    obs, sim = data
    perm = list(range(obs.shape[0]))
    rnd.shuffle(perm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ev.evaluate(obs, sim)
        b = ev.evaluate(obs[perm], sim[perm])
    for k in a:
        np.testing.assert_array_equal(a[k][perm], b[k])


@SETTINGS
@given(basins())
def test_nse_decomposition_identity(data):
    obs, sim = data
    ok = _nonconstant(obs, sim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ev.evaluate(obs, sim, ["nse", "alpha_nse", "beta_nse", "pearson_r"])
    lhs = r["nse"][ok]
    rhs = (2 * r["alpha_nse"] * r["pearson_r"] - r["alpha_nse"] ** 2 - r["beta_nse"] ** 2)[ok]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-8, atol=1e-8)


@SETTINGS
@given(basins(min_steps=4, max_steps=30))
def test_spearman_equals_scipy_with_ties(data):
    from scipy.stats import spearmanr

    obs, sim = data
    obs = np.round(obs, -3)  # many ties
    sim = np.round(sim, -3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = ev.spearman_r(obs, sim)
        for i in range(obs.shape[0]):
            m = ~(np.isnan(obs[i]) | np.isnan(sim[i]))
            o, s = obs[i][m], sim[i][m]
            if m.sum() < 2 or np.ptp(o) == 0 or np.ptp(s) == 0:
                continue
            np.testing.assert_allclose(ours[i], spearmanr(o, s).statistic, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(basins())
def test_bounds(data):
    obs, sim = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ev.evaluate(obs, sim)
    for name in ("nse", "kge", "kge_prime", "kge_np", "log_nse"):
        v = r[name][np.isfinite(r[name])]
        assert (v <= 1 + 1e-12).all()
    for name in ("pearson_r", "spearman_r"):
        v = r[name][np.isfinite(r[name])]
        assert (np.abs(v) <= 1 + 1e-12).all()
    for name in ("rmse", "mae", "mse", "peak_mape"):
        v = r[name][np.isfinite(r[name])]
        assert (v >= 0).all()
    v = r["missed_peaks"][np.isfinite(r["missed_peaks"])]
    assert ((v >= 0) & (v <= 1)).all()
