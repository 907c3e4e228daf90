"""Canonical variables table and unit conversion (hydroml.data.variables), on synthetic and real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from hydroml.data.variables import (
    canonical_units,
    convert_units,
    infer_time_step,
    parse_units,
    to_canonical,
    variables_table,
)
from hydroml.exceptions import CatalogError, DataError, UnitError


def _daily(values, start="2000-01-01", units=None, name="x"):
    t = pd.date_range(start, periods=len(values), freq="D")
    return xr.DataArray(
        np.asarray(values, dtype="float64"),
        {"time": t},
        dims="time",
        name=name,
        attrs={"units": units} if units else {},
    )


def _monthly(values, start="2000-01-01", calendar=None):
    if calendar:
        t = xr.date_range(start, periods=len(values), freq="MS", calendar=calendar, use_cftime=True)
    else:
        t = pd.date_range(start, periods=len(values), freq="MS")
    return xr.DataArray(np.asarray(values, dtype="float64"), {"time": t}, dims="time")


# ------------------------------------------------------------------------------------------------ table
def test_table_matches_the_documented_canonical_units():
    table = variables_table()
    expected = {
        "pr": "mm/day", "prsn": "mm/day", "tas": "degC", "tasmin": "degC", "tasmax": "degC", "rsds": "W m-2",
        "rlds": "W m-2", "evspsblpot": "mm/day", "evspsbl": "mm/day", "q": "m3 s-1", "q_mm": "mm/day",
    }  # fmt: skip
    for name, units in expected.items():
        assert table[name].units == units, name
    assert canonical_units("pr", "monthly") == "mm/month"
    assert canonical_units("evspsbl", "monthly") == "mm/month"
    assert canonical_units("tas", "monthly") == "degC"
    assert table["pr"].cell_method == "sum" and table["tas"].cell_method == "mean"
    assert table["q"].cell_method == "mean" and table["q_mm"].cell_method == "sum"
    assert table["area_km2"].static and table["area_km2"].cell_method is None
    for var in table.values():  # every canonical unit parses
        parse_units(var.units)
        parse_units(var.monthly_units)


# ------------------------------------------------------------------------------------------------ conversions
@pytest.mark.parametrize(
    ("value", "src", "dst", "expected", "kw"),
    [
        (1e-5, "kg m-2 s-1", "mm/day", 0.864, {}),
        (1e-5, "kg/m2/s", "mm d-1", 0.864, {}),
        (2.0, "mm/s", "mm/day", 172800.0, {}),
        (0.003, "m", "mm/day", 3.0, {"time_step": "daily"}),  # ERA5 daily accumulation
        (0.003, "m/day", "mm/day", 3.0, {}),
        (0.003, "m d-1", "mm/month", 0.003 * 1000 * 31, {}),  # ERA5-Land monthly mean of daily accumulation
        (5.0, "mm", "mm/day", 5.0, {"time_step": "daily"}),
        (12.0, "0.1 mm", "mm/day", 1.2, {"time_step": "daily"}),  # KNMI tenths
        (2.5, "mm/h", "mm/day", 60.0, {}),
        (300.0, "K", "degC", 26.85, {}),
        (26.85, "degC", "K", 300.0, {}),
        (212.0, "degF", "degC", 100.0, {}),
        (125.0, "0.1 degC", "degC", 12.5, {}),
        (20.0, "Celsius", "degC", 20.0, {}),
        (100.0, "cfs", "m3 s-1", 2.8316846592, {}),
        (100.0, "ft3/s", "m3 s-1", 2.8316846592, {}),
        (100.0, "ft**3 s**-1", "m3 s-1", 2.8316846592, {}),
        (7.0, "m**3 s**-1", "m3 s-1", 7.0, {}),
        (7.0, "m³/s", "m3 s-1", 7.0, {}),
        (1000.0, "l/s", "m3 s-1", 1.0, {}),
        (86400.0, "J m-2", "W m-2", 1.0, {"time_step": "daily"}),  # ERA5 daily radiation sum
        (8.64, "MJ m-2 d-1", "W m-2", 100.0, {}),
        (864.0, "J/cm2", "W m-2", 100.0, {"time_step": "daily"}),  # KNMI global radiation
        (864.0, "J cm-2 d-1", "W m-2", 100.0, {}),
        (1013.0, "hPa", "Pa", 101300.0, {}),
        (10132.0, "0.1 hPa", "Pa", 101320.0, {}),
        (101.3, "kPa", "Pa", 101300.0, {}),
        (0.5, "1", "%", 50.0, {}),
        (5.0, "g kg-1", "1", 0.005, {}),
        (0.25, "m", "mm", 250.0, {"kind": "water_amount"}),
        (4.2e6, "m2", "km2", 4.2, {}),
        (-2e-6, "kg m-2 s-1", "mm/day", -0.1728, {}),  # signs are kept (condensation)
    ],
)
def test_convert_units(value, src, dst, expected, kw):
    da = _daily([value])
    out = convert_units(da, src, dst, **kw)
    assert out.item() == pytest.approx(expected, rel=1e-9)
    assert out.attrs["units"] == dst


@pytest.mark.parametrize(
    ("calendar", "start", "lengths"),
    [
        (None, "2000-01-01", [31, 29, 31, 30]),  # leap February
        (None, "2001-01-01", [31, 28, 31, 30]),
        ("noleap", "2000-01-01", [31, 28, 31, 30]),
        ("360_day", "2000-01-01", [30, 30, 30, 30]),
        ("all_leap", "2001-01-01", [31, 29, 31, 30]),
    ],
)
def test_mm_per_month_uses_true_month_lengths(calendar, start, lengths):
    totals = _monthly([62.0, 58.0, 31.0, 60.0], start=start, calendar=calendar)
    per_day = convert_units(totals, "mm/month", "mm/day")
    np.testing.assert_allclose(per_day.values, totals.values / np.array(lengths))
    back = convert_units(per_day, "mm/day", "mm/month")
    np.testing.assert_allclose(back.values, totals.values)


def test_discharge_and_depth_given_the_basin_area():
    q = _daily([10.0, 20.0])
    mm = convert_units(q, "m3 s-1", "mm/day", area_km2=86.4)
    np.testing.assert_allclose(mm.values, [10.0, 20.0])  # 1 m3/s over 86.4 km2 = 1 mm/day
    area = xr.DataArray([86.4, 864.0], dims="basin")
    mm2 = convert_units(q.expand_dims(basin=2), "cfs", "mm/day", area_km2=area)
    np.testing.assert_allclose(mm2.values[:, 0], [10 * 0.028316846592, 1 * 0.028316846592])
    q2 = convert_units(mm, "mm/day", "m3 s-1", area_km2=86.4)
    np.testing.assert_allclose(q2.values, q.values)
    with pytest.raises(UnitError, match="basin area"):
        convert_units(q, "m3 s-1", "mm/day", where="variable 'q_mm'")


def test_unknown_and_incompatible_units_raise():
    da = _daily([1.0])
    with pytest.raises(UnitError, match=r"'furlong'.*in 'furlong/fortnight'.*variable 'pr' in f.nc"):
        convert_units(da, "furlong/fortnight", "mm/day", where="variable 'pr' in f.nc")
    with pytest.raises(UnitError, match="cannot convert 'K' into 'mm/day'"):
        convert_units(da, "K", "mm/day")
    with pytest.raises(UnitError, match="dimensions differ"):
        convert_units(da, "W m-2", "mm/day")
    with pytest.raises(UnitError, match="empty"):
        parse_units("")


def test_conversion_stays_lazy_and_keeps_float32():
    import dask  # noqa: F401  (dev dependency: fails, never skips)

    da = _daily(np.arange(10.0)).astype("float32").chunk({"time": 5})
    out = convert_units(da, "kg m-2 s-1", "mm/day")
    assert out.chunks is not None
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.compute().values, np.arange(10.0) * 86400, rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=12), st.integers(1990, 2030))
def test_round_trips(values, year):
    m = _monthly(values, start=f"{year}-01-01")
    back = convert_units(convert_units(m, "mm/month", "mm/day"), "mm/day", "mm/month")
    np.testing.assert_allclose(back.values, m.values, rtol=1e-12, atol=1e-9)
    t = convert_units(convert_units(m, "K", "degC"), "degC", "K")
    np.testing.assert_allclose(t.values, m.values, rtol=1e-12, atol=1e-9)


def test_infer_time_step():
    assert infer_time_step(_daily([1, 2, 3])) == "daily"
    assert infer_time_step(_monthly([1, 2, 3])) == "monthly"
    assert infer_time_step(_monthly([1, 2, 3], calendar="360_day")) == "monthly"
    assert infer_time_step(_daily([1])) is None
    hourly = xr.DataArray([1, 2], {"time": pd.date_range("2000", periods=2, freq="h")}, dims="time")
    assert infer_time_step(hourly) == "hourly"


# ------------------------------------------------------------------------------------------------ to_canonical
def _source_dataset():
    t = pd.date_range("2000-01-01", periods=4)
    return xr.Dataset(
        {
            "tp": ("time", [1e-5, 2e-5, -1e-8, 0.0], {"units": "kg m-2 s-1"}),  # ERA5-like rounding
            "t2m": ("time", [273.15, 283.15, -9999.0, 293.15], {"units": "K"}),
            "flow": ("time", [100.0, -999.0, 50.0, 0.0], {"units": "cfs"}),
            "area": ((), 86.4),
            "tenths": ("time", [10.0, 20.0, 30.0, 40.0]),
            "slope": ((), 0.1),
        },
        coords={"time": t},
    )


def test_to_canonical_renames_converts_and_describes():
    ds = _source_dataset()
    mapping = {
        "pr": "tp",
        "tas": {"source": "t2m", "missing": -9999.0},
        "q": {"source": "flow", "missing": [-999.0]},
        "q_mm": {"source": "flow", "missing": -999.0},
        "area_km2": {"source": "area", "units": "km2"},
        "tasmax": {"source": "tenths", "units": "degC", "scale": 0.1, "offset": 1.0},
    }
    out = to_canonical(ds, mapping, source="test.nc", passthrough=["slope"])
    assert set(out.data_vars) == {"pr", "tas", "q", "q_mm", "area_km2", "tasmax", "slope"}
    np.testing.assert_allclose(out.pr.values, [0.864, 1.728, -0.000864, 0.0])  # rounding negative kept
    np.testing.assert_allclose(out.tas.values, [0.0, 10.0, np.nan, 20.0])
    np.testing.assert_allclose(out.q.values, [2.8316846592, np.nan, 1.4158423296, 0.0])
    np.testing.assert_allclose(out.q_mm.values, out.q.values)  # area 86.4 km2: 1 m3/s = 1 mm/day
    np.testing.assert_allclose(out.tasmax.values, [2.0, 3.0, 4.0, 5.0])
    assert out.pr.attrs["units"] == "mm/day"
    assert out.pr.attrs["standard_name"] == "precipitation_flux"
    assert out.pr.attrs["cell_methods"] == "time: sum"
    assert out.pr.attrs["source_variable"] == "tp" and out.pr.attrs["source_units"] == "kg m-2 s-1"
    assert out.attrs["source"] == "test.nc"


def test_to_canonical_monthly_fluxes_are_totals():
    ds = xr.Dataset(
        {"et": ("time", [31.0, 28.0]), "t": ("time", [274.15, 275.15], {"units": "K"})},
        coords={"time": pd.date_range("2001-01-01", periods=2, freq="MS")},
    )
    out = to_canonical(ds, {"evspsbl": {"source": "et", "units": "mm/day"}, "tas": "t"})
    np.testing.assert_allclose(out.evspsbl.values, [31.0 * 31, 28.0 * 28])
    assert out.evspsbl.attrs["units"] == "mm/month"
    assert out.tas.attrs["units"] == "degC"
    np.testing.assert_allclose(out.tas.values, [1.0, 2.0], atol=1e-5)


def test_to_canonical_errors_name_what_is_wrong():
    ds = _source_dataset()
    with pytest.raises(DataError, match="f.nc: expected monthly data, found time step 'daily'"):
        to_canonical(ds, {"pr": "tp"}, source="f.nc", time_step="monthly")
    with pytest.raises(
        DataError, match=r"'precip' \(for 'pr'\) not found; available: area, flow, slope, t2m"
    ):
        to_canonical(ds, {"pr": "precip"}, source="f.nc")
    with pytest.raises(UnitError, match=r"variable 'tasmax' \(source 'tenths'\) in f.nc: no units"):
        to_canonical(ds, {"tasmax": "tenths"}, source="f.nc")
    with pytest.raises(UnitError, match=r"'furlong'.*variable 'pr' \(source 'tp'\) in f.nc"):
        to_canonical(ds, {"pr": {"source": "tp", "units": "furlong"}}, source="f.nc")
    with pytest.raises(
        CatalogError, match="names 'precipitation', which is not a canonical variable; known: area_km2"
    ):
        to_canonical(ds, {"precipitation": "tp"})
    with pytest.raises(CatalogError, match=r"unknown key\(s\) \['unit'\]; valid keys: source, units"):
        to_canonical(ds, {"pr": {"source": "tp", "unit": "mm"}})
    with pytest.raises(UnitError, match="needs the basin area"):
        to_canonical(ds, {"q_mm": "flow"})


# ------------------------------------------------------------------------------------------------ real data
def test_era5_cities_flux_units(shared_data):
    import hydroml.catalog

    raw = xr.open_dataset(shared_data / "era5_cities/ERA5_daily_surface_cancities_1990-1993.nc")
    ds = hydroml.catalog.open("era5_cities", root=shared_data).load()
    assert raw.pr.attrs["units"] == "kg m-2 s-1"
    np.testing.assert_allclose(ds.pr.values, raw.pr.values * 86400, rtol=1e-6)
    np.testing.assert_allclose(ds.evspsblpot.values, raw.evspsblpot.values * 86400, rtol=1e-6)
    n_neg = int((raw.evspsblpot < 0).sum())
    assert n_neg > 0
    assert int((ds.evspsblpot < 0).sum()) == n_neg  # small negative values kept, not clipped
    np.testing.assert_allclose(ds.tas.values, raw.tas.values - 273.15, atol=1e-4)
    np.testing.assert_allclose(ds.swe.values, raw.swe.values * 1000, rtol=1e-6)
    assert ds.pr.dims == ("station", "time") and ds.sizes["station"] == 5
    assert 0.5 < float(ds.pr.mean()) < 5  # mm/day, plausible for Canadian cities
    assert 20 < float(ds.hurs.mean()) <= 100


def test_knmi_tenths_and_radiation(shared_data):
    import hydroml.catalog
    from hydroml.data.readers import get_reader

    raw = get_reader("knmi")(shared_data / "knmi_debilt/etmgeg_260.txt")
    ds = hydroml.catalog.open("knmi_debilt", root=shared_data)
    np.testing.assert_allclose(ds.rsds.values, raw.Q.values * 1e4 / 86400)
    np.testing.assert_allclose(ds.pr.values, raw.RH.values)
    np.testing.assert_allclose(ds.psl.values, raw.PG.values * 100)
    assert 9 < float(ds.tas.mean()) < 12  # De Bilt, degC
    assert 700 < float(ds.pr.mean()) * 365.25 < 950  # mm/year
    assert 100 < float(ds.rsds.mean()) < 140  # W m-2


def test_salmon_river_sentinel_and_specific_discharge(shared_data):
    import hydroml.catalog

    ds = hydroml.catalog.open("canada_salmon_river", root=shared_data)
    assert int(ds.q.isnull().sum()) == 1697
    assert float(ds.q.min()) > 0  # the -1.2345 sentinel is gone
    area = float(ds.area_km2.item())
    assert area == pytest.approx(4250.6)
    np.testing.assert_allclose(ds.q_mm.values, ds.q.values * 86.4 / area)
    assert 0.5 < float(ds.q_mm.mean()) < 2.0  # mm/day, a plausible runoff depth


def test_camels_cfs_to_m3s(shared_data):
    import hydroml.catalog
    from hydroml.data.readers import get_reader

    raw = get_reader("camels_us")(shared_data / "camels_us_4basins", attributes=False)
    ds = hydroml.catalog.open("camels_us_4basins", root=shared_data)
    np.testing.assert_allclose(ds.q.values, raw.streamflow.values * 0.028316846592)
    expect = raw.streamflow.values * 0.028316846592 * 86.4 / raw.area_km2.values[:, None]
    np.testing.assert_allclose(ds.q_mm.values, expect)
    assert ds.pr.attrs["units"] == "mm/day" and ds.tasmax.attrs["units"] == "degC"
    assert "frac_forest" in ds  # attributes pass through


def test_fluxnet_monthly_totals(shared_data):
    import hydroml.catalog

    ds = hydroml.catalog.open("fluxnet_monthly_et", root=shared_data)
    assert ds.evspsbl.attrs["units"] == "mm/month"
    raw = hydroml.catalog.open("fluxnet_monthly_et", root=shared_data, convert=False)
    np.testing.assert_array_equal(ds.evspsbl.values, raw.et_mm_month.values)
    per_day = convert_units(ds.evspsbl, "mm/month", "mm/day")
    days = pd.DatetimeIndex(ds.time.values).days_in_month.to_numpy()
    np.testing.assert_allclose(per_day.values, raw.et_mm_month.values / days)
    assert int(days[1]) == 28 and int(days[37]) == 29  # 2001-02, 2004-02
    assert ds.sizes["station"] == 64
    vals = ds.evspsbl.values[np.isfinite(ds.evspsbl.values)]
    assert 0 < np.median(vals) < 150


@pytest.mark.parametrize("module", ["hydroml.data.variables", "hydroml.data.time", "hydroml.catalog"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
