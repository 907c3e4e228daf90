"""Ensemble scores (CRPS standard/fair, interval coverage/width) and hydrological signatures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats

from hydroml import evaluation as ev


def _crps_integral(y, members):
    """CRPS by integrating (F_ens(x) - 1{x >= y})^2 numerically (the definition)."""
    xs = np.sort(members)
    lo, hi = min(xs[0], y) - 1, max(xs[-1], y) + 1

    def f(x):
        return (np.searchsorted(xs, x, side="right") / xs.size - (x >= y)) ** 2

    pts = np.unique(np.concatenate([xs, [y]]))
    return integrate.quad(f, lo, hi, points=pts, limit=500)[0]


def test_crps_matches_definition_and_fair_estimator():
    rng = np.random.default_rng(0)
    ens = rng.normal(size=(7, 3, 20))  # members, basins, time
    obs = rng.normal(size=(3, 20))
    per_step = ev.crps_ensemble(obs, ens, reduce=False)
    for b, t in [(0, 0), (1, 7), (2, 19)]:
        assert per_step[b, t] == pytest.approx(_crps_integral(obs[b, t], ens[:, b, t]), abs=1e-6)
    # fair = standard - sum|xi-xj| * (1/(2M(M-1)) - 1/(2M^2))
    m = 7
    pair = np.abs(ens[:, None] - ens[None, :]).sum((0, 1))
    fair = ev.crps_ensemble(obs, ens, fair=True, reduce=False)
    np.testing.assert_allclose(fair, per_step - pair * (1 / (2 * m * (m - 1)) - 1 / (2 * m * m)), rtol=1e-12)
    np.testing.assert_allclose(ev.crps_ensemble(obs, ens), per_step.mean(-1), rtol=1e-12)
    # one member: CRPS = absolute error
    np.testing.assert_allclose(ev.crps_ensemble(obs, ens[:1], reduce=False), np.abs(ens[0] - obs), rtol=1e-12)


def test_fair_crps_unbiased_for_small_ensembles():
    """Fair CRPS of small ensembles drawn from N(0,1) ~ CRPS of N(0,1) itself; the standard one is too high."""
    rng = np.random.default_rng(1)
    obs = rng.normal(size=20000)
    ens = rng.normal(size=(4, 20000))
    y = obs
    exact = np.mean(y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / np.sqrt(np.pi))
    assert float(ev.crps_ensemble(obs, ens, fair=True)) == pytest.approx(exact, rel=0.02)
    assert float(ev.crps_ensemble(obs, ens)) > exact * 1.05


def test_crps_nan_steps_and_xarray():
    rng = np.random.default_rng(2)
    t = pd.date_range("2000-01-01", periods=30)
    ens = xr.DataArray(rng.normal(size=(2, 5, 30)), dims=("basin", "member", "time"), coords={"time": t})
    obs = xr.DataArray(rng.normal(size=(2, 30)), dims=("basin", "time"), coords={"time": t})
    obs[0, 3] = np.nan
    ens[1, 2, 10] = np.nan  # one member missing: the step is left out
    out = ev.crps_ensemble(obs, ens)
    assert out.dims == ("basin",) and out.name == "crps"
    ref = ev.crps_ensemble(obs.values, ens.transpose("member", "basin", "time").values)
    np.testing.assert_allclose(out.values, ref, rtol=1e-12)
    per = ev.crps_ensemble(obs.values, ens.transpose("member", "basin", "time").values, reduce=False)
    assert np.isnan(per[0, 3]) and np.isnan(per[1, 10]) and np.isfinite(per[1, 9])
    lazy = ev.crps_ensemble(obs.chunk({"basin": 1}), ens.chunk({"basin": 1}), fair=True)
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute(), ev.crps_ensemble(obs, ens, fair=True), rtol=1e-12)


def test_interval_coverage_and_width_reliable_ensemble():
    rng = np.random.default_rng(3)
    ens = rng.normal(size=(200, 4000))
    obs = rng.normal(size=4000)
    assert float(ev.interval_coverage(obs, ens, coverage=0.9)) == pytest.approx(0.9, abs=0.02)
    assert float(ev.interval_coverage(obs, 0.5 * ens, coverage=0.9)) < 0.7  # under-dispersed
    w = float(ev.interval_width(obs, ens, coverage=0.9))
    assert w == pytest.approx(2 * stats.norm.ppf(0.95), rel=0.03)
    with pytest.raises(ev.metrics.ConfigError):
        ev.interval_coverage(obs, ens, coverage=1.5)


# ------------------------------------------------------------------------------------------------------------
# signatures
def _daily(values, start="2000-10-01"):
    t = pd.date_range(start, periods=len(values))
    return xr.DataArray(np.asarray(values, dtype=float), dims="time", coords={"time": t})


def test_signatures_known_values():
    q = np.ones(730)
    q[[10, 11, 12, 400]] = 30.0  # 2 high-flow events (4 days) in 2 years
    q[[100, 101]] = 0.0
    assert float(ev.high_q_freq(q)) == pytest.approx(4 / (730 / 365.25))
    assert float(ev.high_q_dur(q)) == 2.0
    assert float(ev.low_q_freq(q)) == pytest.approx(2 / (730 / 365.25))
    assert float(ev.low_q_dur(q)) == 2.0
    assert float(ev.zero_q_freq(q)) == pytest.approx(2 / 730)
    np.testing.assert_allclose(ev.q5(q), np.quantile(q, 0.05))
    np.testing.assert_allclose(ev.q95(q), np.quantile(q, 0.95))
    # NaN steps are ignored
    q2 = q.copy()
    q2[500:510] = np.nan
    np.testing.assert_allclose(ev.q_mean(q2), np.nanmean(q2))
    # runoff ratio over common valid steps
    pr = np.full(730, 4.0)
    pr[0] = np.nan
    np.testing.assert_allclose(ev.runoff_ratio(q, pr), q[1:].mean() / 4.0)


def test_baseflow_index_properties():
    rng = np.random.default_rng(4)
    base = 2 + np.sin(np.arange(1000) / 100)
    storm = np.zeros(1000)
    storm[rng.integers(0, 1000, 30)] = rng.gamma(2, 10, 30)
    quick = np.convolve(storm, np.exp(-np.arange(15) / 2.0))[:1000]
    q = base + quick
    bfi = float(ev.baseflow_index(q))
    assert 0.2 < bfi < 0.9
    # more passes remove more quickflow; baseflow never exceeds the flow
    assert float(ev.baseflow_index(q, passes=1)) > bfi
    # a forward pass over a pure recession finds no quickflow; a slow seasonal cycle has little
    rec = 5 * np.exp(-np.arange(1000) / 300)
    assert float(ev.baseflow_index(rec, passes=1, pad=0)) == pytest.approx(1.0, abs=1e-12)
    assert float(ev.baseflow_index(base)) > 0.9
    # gaps are interpolated for the filter and left out of the sums
    q2 = q.copy()
    q2[300:305] = np.nan
    assert abs(float(ev.baseflow_index(q2)) - bfi) < 0.01


def test_slope_half_flow_date_and_elasticity():
    # log-linear FDC: slope known
    q = np.exp(np.linspace(0, 3, 301))
    np.testing.assert_allclose(ev.slope_fdc(q), 3 * (0.67 - 0.34) / 0.33, rtol=1e-6)
    # all flow on one day of the water year -> that day is the half-flow date
    t = pd.date_range("2000-10-01", "2002-09-30")
    v = np.full(t.size, 1e-6)
    v[[100, 465]] = 1000.0  # day 101 of water year 2001, day 101 of 2002 (100 + 365)
    assert float(ev.hfd_mean(_daily(v))) == 101.0
    # elasticity: Q proportional to P^2 at annual scale -> ~2
    years = t.year + (t.month >= 10)
    p_ann = {2001: 1.0, 2002: 1.3}
    pr = np.array([p_ann[y] for y in years])
    qq = pr**2
    e = float(ev.stream_elas(_daily(qq), _daily(pr)))
    assert 1.8 < e < 2.4


def test_signatures_dataset_and_errors_on_camels(shared_data):
    path = shared_data / "camels_us_4basins" / "usgs_streamflow" / "02064000_streamflow_qc.txt"
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["id", "year", "month", "day", "q", "flag"])
    t = pd.to_datetime(df[["year", "month", "day"]])
    q = xr.DataArray(df.q.to_numpy(dtype=float, copy=True), dims="time", coords={"time": t.values})
    sig = ev.compute_signatures(q)
    assert set(sig) == set(ev.SIGNATURES)
    assert 0 < float(sig["baseflow_index"]) < 1
    assert float(sig["q5"]) < float(sig["q_mean"]) < float(sig["q95"]) * 2
    assert 100 < float(sig["hfd_mean"]) < 300
    err = ev.signature_errors(q, q * 1.2)
    assert float(err["q_mean"]) == pytest.approx(0.2)
    assert float(err["baseflow_index"]) == pytest.approx(0.0, abs=1e-9)  # scale-free
    # xarray layer == numpy twin, basins kept
    qq = xr.concat([q, 2 * q], dim="basin")
    np.testing.assert_allclose(ev.baseflow_index(qq).values, ev.baseflow_index(qq.values))


def test_baseflow_index_close_to_camels_attributes(shared_data):
    """CAMELS baseflow_index (1989-2009) vs ours on the 2000-2002 records here: the filter reproduces it closely.

    Other signatures (q_mean, slope_fdc, frequencies) differ because 2000-2002 was dry in these basins.
    """
    root = shared_data / "camels_us_4basins"
    hyd = pd.read_csv(root / "camels_attributes_v2.0" / "camels_hydro.txt", sep=";", dtype={"gauge_id": str})
    hyd = hyd.drop_duplicates("gauge_id").set_index("gauge_id")
    for bid in ("01022500", "01547700", "02064000", "03015500"):
        path = root / "usgs_streamflow" / f"{bid}_streamflow_qc.txt"
        df = pd.read_csv(path, sep=r"\s+", header=None, names=["id", "year", "month", "day", "q", "flag"])
        q = df.q.to_numpy(dtype=float, copy=True)
        q[q == -999] = np.nan
        bfi = float(ev.baseflow_index(q))
        assert abs(bfi - hyd.loc[bid, "baseflow_index"]) < 0.05, (bid, bfi)
