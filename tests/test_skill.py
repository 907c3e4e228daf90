"""Benchmark skill: climatology, persistence and mean-flow references on real monthly and daily data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydroml import evaluation as ev
from hydroml.evaluation import skill as sk
from hydroml.exceptions import ConfigError, DataError


@pytest.fixture(scope="module")
def fluxnet(shared_data):
    """Observed monthly evaporation (mm/month) at the FLUXNET towers with at least 8 complete years."""
    df = pd.read_csv(
        shared_data / "fluxnet_monthly_et" / "et_fluxnet_global_monthly_total.csv", parse_dates=["date"]
    )
    df["site"] = df.lon.round(3).astype(str) + "_" + df.lat.round(3).astype(str)
    da = df.pivot_table(index="site", columns="date", values="et_mm_month").rename_axis(columns="time")
    da = xr.DataArray(
        da.values, dims=("site", "time"), coords={"site": da.index.values, "time": da.columns.values}
    )
    return da.isel(site=np.flatnonzero(da.notnull().sum("time").values >= 96))


@pytest.mark.shared_data
def test_monthly_climatology_and_skill_identities_on_fluxnet(fluxnet):
    obs = fluxnet
    assert obs.sizes["site"] >= 5
    assert sk.infer_freq(obs) == "month"
    clim = ev.climatology(obs, ref_period=("2001", "2010"))
    assert clim.attrs["freq"] == "month" and clim.dims == obs.dims
    # the climatology of a month is the mean of that month in the reference period
    site = obs.site.values[0]
    jan = obs.sel(site=site, time=slice("2001", "2010"))
    jan = jan[jan.time.dt.month == 1].mean()
    np.testing.assert_allclose(clim.sel(site=site, time="2015-01-01"), jan, rtol=1e-12)
    # a 'simulation': last year's value of the same month
    sim = obs.shift(time=12)
    test = {"time": slice("2011", "2019")}
    o, s, c = obs.sel(test), sim.sel(test), clim.sel(test)
    be = ev.benchmark_efficiency(o, s, c)
    np.testing.assert_allclose(be, ev.skill_score("nse", o, s, c), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(be, ev.skill_score("mse", o, s, c), rtol=1e-10, atol=1e-12)
    # same pairs for all three: NSE skill = (NSE - NSE_clim) / (1 - NSE_clim)
    out = ev.benchmark_skill(
        obs, sim, "nse", "climatology", ref_period=("2001", "2010"), period=("2011", "2019")
    )
    assert set(out) == {"nse", "nse_climatology", "nse_skill_climatology"}
    valid = o.notnull() & s.notnull()
    n_s = ev.nse(o.where(valid), s)
    n_c = ev.nse(o.where(valid), c)
    np.testing.assert_allclose(out["nse_skill_climatology"], (n_s - n_c) / (1 - n_c), rtol=1e-10)
    # the seasonal cycle explains much of monthly ET: climatology NSE is high, persistence-of-last-year worse
    assert float(n_c.median()) > 0.5
    assert float(out["nse_skill_climatology"].median()) < 0.2


def _camels_q(shared_data, basin="01022500"):
    path = shared_data / "camels_us_4basins" / "usgs_streamflow" / f"{basin}_streamflow_qc.txt"
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["id", "year", "month", "day", "q", "flag"])
    t = pd.to_datetime(df[["year", "month", "day"]])
    q = df.q.to_numpy(dtype=float, copy=True)
    q[q == -999] = np.nan
    return xr.DataArray(q, dims="time", coords={"time": t.values}, name="q")


@pytest.mark.shared_data
def test_daily_references_on_camels(shared_data):
    obs = _camels_q(shared_data)
    assert sk.infer_freq(obs) == "dayofyear"
    sim = obs.rolling(time=3, center=True, min_periods=1).mean() * 1.05
    # mean flow: the skill over the mean-flow reference is the NSE itself
    np.testing.assert_allclose(
        ev.skill_score("nse", obs, sim, ev.mean_flow(obs)), ev.nse(obs, sim), rtol=1e-10
    )
    # persistence: first step lost, skill of persistence against itself is 0
    pers = ev.persistence(obs, lag=1)
    assert np.isnan(pers[0]) and float(pers[1]) == float(obs[0])
    np.testing.assert_allclose(ev.skill_score("kge", obs, pers, pers), 0.0, atol=1e-12)
    out = ev.benchmark_skill(obs, sim, "kge", "persistence")
    assert np.isfinite(out["kge_skill_persistence"])
    # smoothed day-of-year climatology from 2000-2001, applied to 2002
    clim = ev.climatology(obs, ref_period=("2000-01-01", "2001-12-31"), smooth=15)
    assert clim.sel(time="2002").notnull().all()
    raw = ev.climatology(obs, ref_period=("2000-01-01", "2001-12-31"))
    assert float(abs(clim - raw).max()) > 0  # smoothing changed something
    np.testing.assert_allclose(float(clim.mean()), float(raw.mean()), rtol=0.02)


def test_feb29_shares_feb28_and_missing_days_are_nan():
    t = pd.date_range("2003-01-01", "2004-12-31")
    v = np.where((t.month == 2) & (t.day == 28), 10.0, 1.0)
    obs = xr.DataArray(v, dims="time", coords={"time": t})
    clim = ev.climatology(obs, ref_period=("2003", "2003"))
    assert float(clim.sel(time="2004-02-29")) == 10.0  # Feb 29 -> Feb 28's key
    assert float(clim.sel(time="2004-03-01")) == 1.0
    assert float(clim.sel(time="2004-12-31")) == 1.0
    # a day never observed in the reference period gives NaN
    gap = obs.where(~((obs.time.dt.month == 7) & (obs.time.dt.day == 4) & (obs.time.dt.year == 2003)))
    c2 = ev.climatology(gap, ref_period=("2003", "2003"))
    assert np.isnan(float(c2.sel(time="2004-07-04")))


def test_numpy_references_and_skill():
    obs = np.array([[1.0, 3.0, 2.0, 5.0, 4.0], [2.0, 2.5, 2.0, 3.0, 2.5]])
    sim = obs + 0.3
    np.testing.assert_allclose(ev.skill_score("nse", obs, sim, ev.mean_flow(obs)), ev.nse(obs, sim))
    np.testing.assert_array_equal(ev.persistence(obs)[:, 1:], obs[:, :-1])
    # reference perfect -> NaN (no room for skill), never inf
    out = ev.skill_score("rmse", obs, sim, obs)
    assert np.isnan(out).all()
    # custom metric without a perfect value needs perfect=
    with pytest.raises(ConfigError, match="perfect"):
        ev.skill_score(lambda obs, sim, axis=-1: np.nanmean(np.abs(sim - obs), axis=axis), obs, sim, obs)


def test_reference_errors():
    t = pd.date_range("2000-01-01", periods=30)
    obs = xr.DataArray(np.arange(30.0), dims="time", coords={"time": t})
    with pytest.raises(DataError, match="reference period 1990..1991 holds no"):
        ev.climatology(obs, ref_period=("1990", "1991"))
    with pytest.raises(ConfigError, match="unknown reference"):
        ev.benchmark_skill(obs, obs, reference="median")
    with pytest.raises(ConfigError, match="dayofyear"):
        ev.climatology(obs, freq="week")
    with pytest.raises(DataError):
        ev.climatology(np.arange(3.0))
