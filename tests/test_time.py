"""Daily -> monthly aggregation (hydroml.data.time)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from hydroml.data.time import cell_method_of, to_monthly
from hydroml.exceptions import DataError


def _daily_ds(start="2001-01-01", end="2001-04-30", calendar=None):
    if calendar:
        t = xr.date_range(start, end, freq="D", calendar=calendar, use_cftime=True)
    else:
        t = pd.date_range(start, end, freq="D")
    n = len(t)
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "pr": ("time", rng.gamma(0.5, 4.0, n), {"units": "mm/day"}),
            "tas": ("time", rng.normal(5, 3, n), {"units": "degC"}),
            "area_km2": ((), 12.0, {"units": "km2"}),
        },
        coords={"time": t},
    )


def test_sum_for_fluxes_mean_for_states():
    ds = _daily_ds()
    out = to_monthly(ds)
    df = ds[["pr", "tas"]].to_dataframe()
    sums = df["pr"].groupby(df.index.to_period("M")).sum().to_numpy()
    means = df["tas"].groupby(df.index.to_period("M")).mean().to_numpy()
    np.testing.assert_allclose(out.pr.values, sums)
    np.testing.assert_allclose(out.tas.values, means)
    assert out.pr.attrs["units"] == "mm/month" and out.pr.attrs["cell_methods"] == "time: sum"
    assert out.tas.attrs["units"] == "degC" and out.tas.attrs["cell_methods"] == "time: mean"
    assert list(out.time.values) == list(pd.date_range("2001-01-01", periods=4, freq="MS").values)
    assert float(out.area_km2) == 12.0  # statics pass through


def test_month_lengths_of_a_constant_rate():
    ds = _daily_ds("2000-01-01", "2000-12-31")
    ds["pr"][:] = 2.0
    out = to_monthly(ds)
    np.testing.assert_allclose(
        out.pr.values, 2.0 * pd.date_range("2000-01", periods=12, freq="MS").days_in_month
    )
    assert out.pr.values[1] == 58.0  # leap February


@pytest.mark.parametrize(("calendar", "feb"), [("noleap", 28), ("all_leap", 29), ("360_day", 30)])
def test_cftime_calendars(calendar, feb):
    ds = _daily_ds("2001-01-01", "2001-03-30" if calendar == "360_day" else "2001-03-31", calendar=calendar)
    ds["pr"][:] = 1.0
    out = to_monthly(ds)
    assert out.pr.values[1] == feb
    assert out.sizes["time"] == 3


def test_min_valid_days_rule():
    ds = _daily_ds("2001-01-01", "2001-03-31")
    ds["pr"][:] = 1.0
    ds["pr"][0:3] = np.nan  # January: 28 valid days of 31
    ds["pr"][31:51] = np.nan  # February: 8 valid days of 28
    strict = to_monthly(ds)
    assert np.isnan(strict.pr.values[0]) and np.isnan(strict.pr.values[1]) and strict.pr.values[2] == 31.0
    lenient = to_monthly(ds, min_valid_days=20)
    assert lenient.pr.values[0] == pytest.approx(31.0)  # mean of valid days x true month length
    assert np.isnan(lenient.pr.values[1])
    assert to_monthly(ds, min_valid_days=5).pr.values[1] == pytest.approx(28.0)


def test_partial_months_at_the_ends_are_nan_by_default():
    ds = _daily_ds("2001-01-15", "2001-03-10")
    out = to_monthly(ds)
    assert np.isnan(out.pr.values[0]) and np.isfinite(out.pr.values[1]) and np.isnan(out.pr.values[2])
    assert np.isnan(out.tas.values[0])


def test_missing_time_steps_count_as_missing_days():
    ds = _daily_ds("2001-01-01", "2001-02-28")
    ds["pr"][:] = 1.0
    gappy = ds.isel(time=np.r_[0:10, 12:59])  # two January days absent from the file
    out = to_monthly(gappy)
    assert np.isnan(out.pr.values[0]) and out.pr.values[1] == 28.0
    assert to_monthly(gappy, min_valid_days=25).pr.values[0] == pytest.approx(31.0)


def test_rate_units_become_monthly_totals():
    t = pd.date_range("2001-02-01", "2001-02-28")
    da = xr.DataArray(
        np.full(t.size, 1e-5), {"time": t}, dims="time", name="pr", attrs={"units": "kg m-2 s-1"}
    )
    out = to_monthly(da)
    assert out.name == "pr"
    assert out.item() == pytest.approx(0.864 * 28)
    assert out.attrs["units"] == "mm/month"


def test_lazy_with_dask_and_equal_to_eager():
    import dask  # noqa: F401  (dev dependency: fails, never skips)

    ds = _daily_ds("2000-01-01", "2001-12-31")
    grid = ds[["pr", "tas"]].expand_dims(lat=3, lon=4).transpose("time", "lat", "lon")
    lazy = to_monthly(grid.chunk({"time": 100}), min_valid_days=20)
    assert lazy.pr.chunks is not None
    assert lazy.pr.dims == ("time", "lat", "lon")
    eager = to_monthly(grid.load(), min_valid_days=20)
    xr.testing.assert_allclose(lazy.compute(), eager)


def test_errors():
    ds = _daily_ds()
    monthly = to_monthly(ds)
    with pytest.raises(DataError, match="expected daily data, found time step 'monthly'"):
        to_monthly(monthly)
    odd = ds.rename({"pr": "runoff_sim"})
    with pytest.raises(DataError, match="'runoff_sim': cannot tell how to aggregate"):
        to_monthly(odd)
    ok = to_monthly(odd, cell_methods={"runoff_sim": "sum"})
    assert ok.runoff_sim.attrs["units"] == "mm/month"
    odd["runoff_sim"].attrs["cell_methods"] = "time: sum"
    assert cell_method_of(odd["runoff_sim"]) == "sum"
    with pytest.raises(DataError, match="min_valid_days must be between 0 and 31"):
        to_monthly(ds, min_valid_days=40)


def test_moselle_daily_precipitation_to_monthly_matches_the_et_months(shared_data):
    import hydroml.catalog

    meteo = hydroml.catalog.open("moselle_mhm", root=shared_data, product="meteo")
    et = hydroml.catalog.open("moselle_mhm", root=shared_data, product="evaporation")
    monthly = to_monthly(meteo[["pr", "evspsblpot", "tas"]])
    assert monthly.sizes["time"] == 60  # 1989..1993
    a, b = xr.align(monthly, et, join="inner")
    assert a.sizes["time"] == 48  # the et months 1990-01..1993-12, labelled alike
    df = meteo.pr.isel(y=4, x=3).to_series()
    np.testing.assert_allclose(
        monthly.pr.isel(y=4, x=3).values, df.groupby(df.index.to_period("M")).sum().values
    )
    # a water-balance sanity check on real data: annual actual evaporation below precipitation and PET
    land = np.isfinite(b.evspsbl.isel(time=0))
    et_year = float(b.evspsbl.where(land).mean()) * 12
    pr_year = float(a.pr.where(land).mean()) * 12
    pet_year = float(a.evspsblpot.where(land).mean()) * 12
    assert 300 < et_year < min(pr_year, pet_year) * 1.1


def test_era5_cities_monthly_totals(shared_data):
    import hydroml.catalog

    ds = hydroml.catalog.open("era5_cities", root=shared_data)
    out = to_monthly(ds[["pr", "tas", "evspsblpot"]])
    assert out.sizes["time"] == 48
    s = ds.pr.isel(station=0).to_series()
    np.testing.assert_allclose(
        out.pr.isel(station=0).values, s.groupby(s.index.to_period("M")).sum().values, rtol=1e-5
    )
    assert out.pr.attrs["units"] == "mm/month" and out.tas.attrs["units"] == "degC"


@settings(max_examples=10, deadline=None)
@given(
    start=st.dates(min_value=pd.Timestamp("1990-01-01").date(), max_value=pd.Timestamp("2030-01-01").date()),
    n=st.integers(1, 120),
    chunk=st.integers(1, 50),
    nan_frac=st.floats(0, 0.5),
    seed=st.integers(0, 1000),
)
def test_monthly_matches_pandas_and_dask_matches_numpy(start, n, chunk, nan_frac, seed):
    rng = np.random.default_rng(seed)
    t = pd.date_range(start, periods=n, freq="D")
    x = rng.gamma(1.0, 2.0, (2, n))
    x[rng.random((2, n)) < nan_frac] = np.nan
    da = xr.DataArray(x, {"time": t}, dims=("cell", "time"), name="pr", attrs={"units": "mm/day"})
    out = to_monthly(da, min_valid_days=10)
    s = pd.Series(x[1], index=t)
    g = s.groupby(s.index.to_period("M"))
    expect = (g.mean() * g.apply(lambda v: v.index.days_in_month[0])).where(g.count() >= 10).to_numpy()
    np.testing.assert_allclose(out.isel(cell=1).values, expect, rtol=1e-12)
    lazy = to_monthly(da.chunk({"time": chunk}), min_valid_days=10)
    np.testing.assert_allclose(lazy.values, out.values, rtol=1e-12)
