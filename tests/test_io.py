"""Opening NetCDF / zarr files (hydroml.data.io) on small written files and on ../shared/data."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydroml.data.io import expand_paths, mask_sentinels, open_dataset, standardise_coords


def _grid(times, lat=(10.0, 11.0, 12.0), lon=(5.0, 6.0), seed=0, names=("latitude", "longitude")):
    rng = np.random.default_rng(seed)
    data = rng.random((len(times), len(lat), len(lon)))
    return xr.Dataset(
        {"tp": (("time", names[0], names[1]), data, {"units": "m"})},
        coords={
            "time": times,
            names[0]: (names[0], np.asarray(lat), {"units": "degrees_north"}),
            names[1]: (names[1], np.asarray(lon), {"units": "degrees_east"}),
        },
    )


# ------------------------------------------------------------------------------------------------ coordinates
def test_regular_grid_names_are_standardised(tmp_path):
    ds = _grid(pd.date_range("2000-01-01", periods=5)).rename({"time": "valid_time"})
    ds.to_netcdf(tmp_path / "era5.nc")
    out = open_dataset(tmp_path / "era5.nc")
    assert out.tp.dims == ("time", "lat", "lon")
    assert list(out.lat.values) == [10.0, 11.0, 12.0]
    assert "time" in out.indexes and "lat" in out.indexes and "lon" in out.indexes


def test_y_x_in_degrees_become_lat_lon_but_projected_y_x_stay(tmp_path):
    t = pd.date_range("2000-01-01", periods=3)
    _grid(t, names=("y", "x")).to_netcdf(tmp_path / "deg.nc")
    out = open_dataset(tmp_path / "deg.nc")
    assert out.tp.dims == ("time", "lat", "lon")
    proj = _grid(t, lat=(2.9e6, 2.8e6), lon=(3.9e6, 4.0e6), names=("y", "x"))
    proj.y.attrs["units"] = "m"
    proj.x.attrs["units"] = "m"
    proj.to_netcdf(tmp_path / "proj.nc")
    out = open_dataset(tmp_path / "proj.nc")
    assert out.tp.dims == ("time", "y", "x") and "lat" not in out.variables


def test_curvilinear_2d_lat_lon(tmp_path):
    t = pd.date_range("2000-01-01", periods=3)
    yy, xx = np.meshgrid(np.arange(4.0), np.arange(3.0), indexing="ij")
    ds = xr.Dataset(
        {"sst": (("time", "yc", "xc"), np.ones((3, 4, 3)))},
        coords={
            "time": t,
            "nav_lat": (("yc", "xc"), 40 + yy + 0.1 * xx),
            "nav_lon": (("yc", "xc"), -5 + xx + 0.1 * yy),
            "yc": ("yc", np.arange(4.0) * 1000),
            "xc": ("xc", np.arange(3.0) * 1000),
        },
    )
    ds.to_netcdf(tmp_path / "curvi.nc")
    out = open_dataset(tmp_path / "curvi.nc")
    assert out.sst.dims == ("time", "y", "x")
    assert out.lat.dims == ("y", "x") and out.lon.dims == ("y", "x")
    assert out.lat.values[2, 1] == pytest.approx(42.1)
    np.testing.assert_array_equal(out.y.values, np.arange(4.0) * 1000)  # projected coordinate kept


def test_station_lat_lon_become_coordinates():
    ds = xr.Dataset(
        {"q": (("station", "time"), np.ones((2, 3))), "latitude": ("station", [50.0, 51.0]),
         "longitude": ("station", [4.0, 5.0])},
        coords={"time": pd.date_range("2000", periods=3)},
    )  # fmt: skip
    out = standardise_coords(ds)
    assert "lat" in out.coords and "lon" in out.coords and out.lat.dims == ("station",)


def test_non_standard_calendar_and_multi_file_along_time(tmp_path):
    for year in (2001, 2000):  # written out of order: the files are sorted by their first time step
        t = xr.date_range(f"{year}-01-01", f"{year}-12-31", freq="D", calendar="noleap", use_cftime=True)
        _grid(t, seed=year).to_netcdf(tmp_path / f"tp_{year}.nc")
    out = open_dataset(tmp_path / "tp_*.nc")
    assert out.sizes["time"] == 730  # no 29 February in a noleap calendar
    assert out.time.values[0].calendar == "noleap"
    assert out.time.values[0].year == 2000 and out.time.values[-1].year == 2001
    sub = open_dataset(tmp_path / "tp_*.nc", time=("2000-12-31", "2001-01-02"))
    assert sub.sizes["time"] == 3
    assert np.all(np.diff(np.array([t.toordinal() for t in out.time.values])) == 1)


def test_overlapping_files_with_identical_values_are_joined(tmp_path, caplog):
    t = pd.date_range("2000-01-01", periods=10)
    full = _grid(t)
    full.isel(time=slice(0, 6)).to_netcdf(tmp_path / "a.nc")
    full.isel(time=slice(4, 10)).to_netcdf(tmp_path / "b.nc")
    with caplog.at_level(logging.INFO, logger="hydroml"):
        out = open_dataset([tmp_path / "b.nc", tmp_path / "a.nc"])
    assert "overlaps" in caplog.text
    xr.testing.assert_allclose(out.tp.load(), full.tp.rename(latitude="lat", longitude="lon"))


def test_interleaving_files_are_joined_in_time_order(tmp_path):
    t = pd.date_range("2000-01-01", periods=9)
    full = _grid(t)
    full.isel(time=[0, 1, 2, 6, 7, 8]).to_netcdf(tmp_path / "a.nc")  # a gap filled by the other file
    full.isel(time=[2, 3, 4, 5]).to_netcdf(tmp_path / "b.nc")  # one common, identical step
    out = open_dataset(tmp_path / "*.nc", chunks=None)
    xr.testing.assert_allclose(out.tp, full.tp.rename(latitude="lat", longitude="lon"))


def test_files_with_other_variables_are_merged(tmp_path):
    t = pd.date_range("2000-01-01", periods=4)
    a = _grid(t)
    b = _grid(t, seed=1).rename({"tp": "t2m"})
    a.to_netcdf(tmp_path / "tp.nc")
    b.to_netcdf(tmp_path / "t2m.nc")
    out = open_dataset(tmp_path)  # a folder: all its *.nc
    assert set(out.data_vars) == {"tp", "t2m"}
    out2 = open_dataset([tmp_path / "tp.nc", tmp_path / "t2m.nc"], variables=["t2m"])
    assert set(out2.data_vars) == {"t2m"}


def test_lazy_with_dask(tmp_path):
    import dask  # noqa: F401  (dev dependency: fails, never skips)

    _grid(pd.date_range("2000-01-01", periods=50)).to_netcdf(tmp_path / "f.nc")
    out = open_dataset(tmp_path / "f.nc")
    assert out.tp.chunks is not None
    eager = open_dataset(tmp_path / "f.nc", chunks=None)
    assert eager.tp.chunks is None
    xr.testing.assert_allclose(out.tp.compute(), eager.tp)


def test_without_dask_data_load_eagerly(tmp_path, monkeypatch):
    import importlib.util

    _grid(pd.date_range("2000-01-01", periods=5)).to_netcdf(tmp_path / "f.nc")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "dask" else real(name, *a)
    )
    out = open_dataset(tmp_path / "f.nc")
    assert out.tp.chunks is None


def test_zarr_store(tmp_path):
    import zarr  # noqa: F401  (dev dependency: fails, never skips)

    ds = _grid(pd.date_range("2000-01-01", periods=5))
    ds.to_zarr(tmp_path / "store.zarr", consolidated=False)
    out = open_dataset(tmp_path / "store.zarr")
    assert out.tp.dims == ("time", "lat", "lon") and out.sizes["time"] == 5


def test_sentinels_and_nonstandard_fill_attributes(tmp_path):
    t = pd.date_range("2000-01-01", periods=6)
    ds = xr.Dataset(
        {
            "q": ("time", np.array([1.0, -1.2345, 3.0, -999.0, 5.0, 6.0], dtype="float32")),
            "Q": ("time", [1.0, 2.0, -9999.0, 4.0, 5.0, 6.0], {"fill_value": -9999.0}),
        },
        coords={"time": t},
    )
    ds.to_netcdf(tmp_path / "s.nc")
    out = open_dataset(tmp_path / "s.nc", sentinels=[-1.2345, -999.0])
    assert out.q.dtype == np.float32  # -1.2345 matched in float32, as stored
    np.testing.assert_array_equal(np.isnan(out.q.values), [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(np.isnan(out.Q.values), [0, 0, 1, 0, 0, 0])
    only_q = mask_sentinels(ds, {"q": [-999.0]})
    assert int(only_q.q.isnull().sum()) == 1


def test_expand_paths(tmp_path):
    for n in ("b.nc", "a.nc", "c.txt"):
        (tmp_path / n).write_text("x")
    assert [p.name for p in expand_paths(tmp_path)] == ["a.nc", "b.nc"]
    assert [p.name for p in expand_paths(str(tmp_path / "*.nc"))] == ["a.nc", "b.nc"]
    with pytest.raises(FileNotFoundError, match=r"no file matches .*\*\.grib"):
        expand_paths(str(tmp_path / "*.grib"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_paths(tmp_path / "missing.nc")


# ------------------------------------------------------------------------------------------------ real data
def test_moselle_grids_take_true_coordinates_from_latlon_file(shared_data):
    root = shared_data / "moselle_mhm/input"
    ds = open_dataset(
        [root / "meteo/pre/pre.nc", root / "meteo/tmin.nc"], latlon_file=root / "latlon/latlon_1.nc"
    )
    ll = xr.open_dataset(root / "latlon/latlon_1.nc")
    assert ds.pre.dims == ("time", "y", "x") and ds.sizes == {"time": 1826, "y": 9, "x": 6}
    np.testing.assert_allclose(ds.lat.values, ll.lat.values)
    np.testing.assert_allclose(ds.lon.values, ll.lon.values)
    assert ds.lat.values[0, 0] > ds.lat.values[-1, 0]  # first row is the northern one
    assert 47.5 < ds.lat.min() and ds.lat.max() < 49.7 and 5.2 < ds.lon.min() and ds.lon.max() < 7.3
    et = open_dataset(root / "optional_data/et.nc")
    np.testing.assert_allclose(ds.x.values, et.x.values)  # cell centres, like the monthly et grid
    np.testing.assert_allclose(ds.y.values, et.y.values)
    # tmin's own lat/lon are placeholders (a grid near 7.5 E), replaced; its values are not Moselle data either
    # (see data_catalog/moselle_mhm.yaml), the file serves here only as a grid with placeholder coordinates
    raw = open_dataset(root / "meteo/tmin.nc")
    assert raw.lat.dims == ("y", "x") and abs(float(raw.lon[0, 0]) - float(ll.lon[0, 0])) > 1.0
    assert float(ds.tmin.isnull().sum()) == float(raw.tmin.isnull().sum()) > 0  # -9999 outside the basin


def test_moselle_et_double_fill_value(shared_data):
    path = shared_data / "moselle_mhm/input/optional_data/et.nc"
    ds = open_dataset(path)
    assert "units" not in ds.et.attrs  # units come from the catalog entry
    raw = xr.open_dataset(path, mask_and_scale=False, decode_times=False).et.values
    assert np.isnan(ds.et.values).sum() == (raw == -9999.0).sum() > 0
    valid = ds.et.values[np.isfinite(ds.et.values)]
    assert 7.0 <= valid.min() and valid.max() <= 106.0  # mm/month, no -9999 left
    assert ds.sizes["time"] == 48


def test_salmon_river_sentinel(shared_data):
    path = shared_data / "canada_basins/salmon_river/Salmon-River-Near-Prince-George_meteo_daily.nc"
    raw = open_dataset(path)
    assert int(np.isclose(raw.qobs.values, -1.2345).sum()) == 1697
    ds = open_dataset(path, sentinels=[-1.2345])
    assert int(ds.qobs.isnull().sum()) == 1697
    assert float(ds.qobs.min()) > 0
    assert int(ds.rain.isnull().sum()) == 0


def test_wsc_fill_value_attribute(shared_data):
    path = shared_data / "canada_basins/wsc_02LE024/WSC02LE024.nc"
    raw = xr.open_dataset(path, mask_and_scale=False).Q.values
    ds = open_dataset(path, chunks=None)
    assert int(ds.Q.isnull().sum()) == int((raw == -9999.0).sum())
    assert ds.time.values[1] - ds.time.values[0] == np.timedelta64(1, "D")  # "minutes since" decoded


def test_era5_cities_units_untouched_by_io(shared_data):
    ds = open_dataset(shared_data / "era5_cities/ERA5_daily_surface_cancities_1990-1993.nc")
    assert ds.pr.attrs["units"] == "kg m-2 s-1"
    assert ds.lat.dims == ("location",) and "lat" in ds.coords
    assert ds.sizes == {"location": 5, "time": 1461}


def test_hydroml_data_imports_lazily():
    import subprocess
    import sys

    code = (
        "import sys, hydroml.data, hydroml.catalog; "
        "print('xarray' in sys.modules); "
        "from hydroml.data import open_dataset, to_canonical, to_monthly; print(open_dataset.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "hydroml.data.io"]
