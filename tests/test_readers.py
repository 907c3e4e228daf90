"""Readers on the real data in ../shared/data (and Caravan on a small fixture in its real layout)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydroml.data.readers import get_reader, list_readers
from hydroml.data.readers.basin_netcdf import read_basin_netcdf
from hydroml.data.readers.camels import read_camels_us, read_forcing_file, read_streamflow_file
from hydroml.data.readers.caravan import read_caravan
from hydroml.data.readers.fluxnet import read_fluxnet_csv
from hydroml.data.readers.mhm import open_mhm_grid, open_mhm_morph, read_esri_ascii, read_mhm_gauge
from hydroml.data.readers.station import read_knmi, read_station_csv
from hydroml.exceptions import CatalogError, DataError

CAMELS_IDS = ["01022500", "01547700", "02064000", "03015500"]


def test_registry_knows_every_reader():
    names = list_readers()
    for n in (
        "camels_us",
        "caravan",
        "basin_netcdf",
        "station_csv",
        "mhm_gauge",
        "mhm_grid",
        "fluxnet_csv",
        "knmi",
    ):
        assert n in names
    assert get_reader("camels_us") is read_camels_us
    with pytest.raises(CatalogError, match="camels_us"):
        get_reader("camels_uk")


# ------------------------------------------------------------------------------------------------ CAMELS-US
@pytest.fixture(scope="module")
def camels(shared_data):
    return read_camels_us(shared_data / "camels_us_4basins")


def test_camels_layout_and_raw_values(camels, shared_data):
    ds = camels
    assert list(ds.basin.values) == CAMELS_IDS  # from basins.txt
    assert ds.prcp.dims == ("basin", "time")
    # daymet of 01022500 runs to 2003, the others to 2002: outer join of dates
    assert str(ds.time.values[0])[:10] == "2000-01-01" and str(ds.time.values[-1])[:10] == "2003-12-31"
    assert ds.sizes["time"] == 1461
    root = shared_data / "camels_us_4basins"
    raw = pd.read_csv(
        root / "basin_mean_forcing/daymet/02064000_lump_cida_forcing_leap.txt", sep=r"\s+", skiprows=3
    )
    np.testing.assert_allclose(ds.prcp.sel(basin="02064000").values[:1096], raw["prcp(mm/day)"].to_numpy())
    np.testing.assert_allclose(ds.tmax.sel(basin="02064000").values[:1096], raw["tmax(C)"].to_numpy())
    assert (
        ds.prcp.attrs["units"] == "mm d-1"
        and ds.tmin.attrs["units"] == "degC"
        and ds.vp.attrs["units"] == "Pa"
    )
    # streamflow stays in cubic feet per second here; the catalog layer converts
    assert ds.streamflow.attrs["units"] == "ft3 s-1"
    assert ds.streamflow.sel(basin="01022500", time="2000-01-01").item() == 255.0
    assert ds.streamflow.sel(basin="03015500", time="2002-12-31").item() == 1150.0
    assert ds.streamflow_qc.sel(basin="01022500", time="2000-01-01").item() == "A:e"
    # NaN exactly where a basin has no record: the 2003 padding (365 days x 4 basins, no -999 in this copy)
    q = ds.streamflow
    assert int(q.isnull().sum()) == 4 * 365
    assert not q.sel(time=slice("2000", "2002")).isnull().any()
    assert int(ds.prcp.isnull().sum()) == 3 * 365  # only 01022500 has 2003 forcing


def test_camels_area_and_attributes(camels, shared_data):
    # area from the third header line (m2)
    np.testing.assert_allclose(
        camels.area_km2.values, [587.675987, 114.169652, 427.165365, 831.030801], rtol=1e-12
    )
    assert camels.area_km2.attrs["units"] == "km2"
    assert camels.lat.sel(basin="01022500").item() == 44.82
    topo = pd.read_csv(
        shared_data / "camels_us_4basins/camels_attributes_v2.0/camels_topo.txt",
        sep=";",
        dtype={"gauge_id": str},
    ).set_index("gauge_id")
    assert len(topo) == 671
    np.testing.assert_allclose(camels.area_gages2.values, topo.loc[CAMELS_IDS, "area_gages2"].to_numpy())
    assert camels.p_mean.dims == ("basin",)
    # the header area is CAMELS' own; the geospatial-fabric area differs by up to 5.3 % (01022500: 588 vs 620 km2)
    np.testing.assert_allclose(camels.area_km2.values, camels.area_geospa_fabric.values, rtol=0.06)


def test_camels_options_and_errors(shared_data, tmp_path):
    root = shared_data / "camels_us_4basins"
    ds = read_camels_us(root, basins=["01547700"], forcing="nldas", attributes=["gauge_name", "frac_forest"])
    assert list(ds.basin.values) == ["01547700"] and ds.sizes["time"] == 1096
    assert ds.gauge_name.item() == "Marsh Creek at Blanchard, PA"
    assert "p_mean" not in ds
    ds = read_camels_us(root, forcing="maurer", attributes=False, streamflow=False)
    assert "streamflow" not in ds and "p_mean" not in ds and ds.sizes["basin"] == 4
    with pytest.raises(DataError, match="99999999"):
        read_camels_us(root, basins=["01022500", "99999999"])
    with pytest.raises(DataError, match="available: .*daymet"):
        read_camels_us(root, forcing="livneh")
    with pytest.raises(DataError, match="not_an_attribute.*available"):
        read_camels_us(root, attributes=["not_an_attribute"])
    with pytest.raises(DataError, match="unknown reader options"):
        read_camels_us(root, forcings="daymet")
    # a forcing file without its 3 header lines, and one with a repeated day, are refused by name
    lines = (root / "basin_mean_forcing/daymet/01547700_lump_cida_forcing_leap.txt").read_text().splitlines()
    (tmp_path / "noheader_lump_cida_forcing_leap.txt").write_text("\n".join(lines[3:]) + "\n")
    with pytest.raises(DataError, match="noheader.*3 header lines"):
        read_forcing_file(tmp_path / "noheader_lump_cida_forcing_leap.txt")
    (tmp_path / "dup_lump_cida_forcing_leap.txt").write_text("\n".join(lines[:10] + lines[9:]) + "\n")
    with pytest.raises(DataError, match="dup_lump.*duplicated dates, first 2000-01-06"):
        read_forcing_file(tmp_path / "dup_lump_cida_forcing_leap.txt")
    # -999 marks missing discharge
    src = (root / "usgs_streamflow/01547700_streamflow_qc.txt").read_text().splitlines()
    src[2] = "01547700 2000 01 03  -999.00 M"
    f = tmp_path / "01547700_streamflow_qc.txt"
    f.write_text("\n".join(src) + "\n")
    q = read_streamflow_file(f)
    assert np.isnan(q.streamflow.iloc[2]) and q.streamflow_qc.iloc[2] == "M"
    assert int(q.streamflow.isnull().sum()) == 1
    assert q.streamflow.iloc[3] == float(src[3].split()[4])


# -------------------------------------------------------------------------------------------- per-basin NetCDF
def test_salmon_river_sentinel(shared_data):
    f = shared_data / "canada_basins/salmon_river/Salmon-River-Near-Prince-George_meteo_daily.nc"
    ds = read_basin_netcdf(f)
    assert ds.qobs.dims == ("basin", "time") and list(ds.basin.values) == ["08KC001"]
    assert int(ds.qobs.isnull().sum()) == 1697  # every -1.2345 and nothing else
    assert float(ds.qobs.min()) > 0
    for v in ("rain", "snow", "tmin", "tmax", "pet"):
        assert not ds[v].isnull().any()
    assert ds.lat.item() == pytest.approx(54.4848) and ds.lon.item() == pytest.approx(-123.3659)
    assert ds.time.values[0] == np.datetime64("1954-01-01") and ds.sizes["time"] == 20819
    # without the sentinel the raw values come through
    raw = read_basin_netcdf(f, missing_values=None)
    assert int((raw.qobs == -1.2345).sum()) == 1697
    # lazily with dask chunks: same values, nothing read until computed
    lazy = read_basin_netcdf(f, chunks={"time": 5000})
    assert lazy.qobs.chunks is not None
    xr.testing.assert_identical(lazy.qobs.compute(), ds.qobs)
    # the 2-D copy (dimension 'region') reads the same
    ds2 = read_basin_netcdf(f.with_name(f.stem + "_2d.nc"))
    xr.testing.assert_equal(ds2.qobs, ds.qobs)


def test_raven_wsc_hysets_matapedia(shared_data):
    raven = read_basin_netcdf(shared_data / "era5_cities/Raven_q_sim.nc")
    assert list(raven.basin.values) == ["watershed"] and raven.q_obs.dims == ("basin", "time")
    assert int(raven.q_obs.isnull().sum()) == 919 and not raven.q_sim.isnull().any()
    assert raven.q_obs.attrs["units"] == "m**3 s**-1"
    wsc = read_basin_netcdf(shared_data / "canada_basins/wsc_02LE024/WSC02LE024.nc")
    assert list(wsc.basin.values) == ["02LE024"] and int(wsc.Q.isnull().sum()) == 492
    assert wsc.time.values[0] == np.datetime64("1979-05-01")  # 'minutes since' decoded
    stations = read_basin_netcdf(shared_data / "canada_basins/matapedia/Matapedia_meteo_data_stations.nc")
    assert list(stations.basin.values) == ["1", "2", "3", "4", "5", "6"]
    assert stations.pr.dims == ("basin", "time") and stations.lat.dims == ("basin",)
    hysets = read_basin_netcdf(shared_data / "canada_basins/hysets_574/Qobs_574_HYSETS.nc", basin_id="574")
    assert list(hysets.basin.values) == ["574"] and int(hysets.discharge.isnull().sum()) == 5273
    both = read_basin_netcdf(str(shared_data / "canada_basins/*/Qobs_*.nc"))
    assert sorted(both.basin.values) == ["Qobs_574_HYSETS", "Qobs_Matapedia_01BD009"]
    assert both.time.values[0] == np.datetime64("1950-01-01") and both.time.values[-1] == np.datetime64(
        "2022-12-31"
    )
    with pytest.raises(DataError, match="salmon_river.*dimensions"):
        read_basin_netcdf(
            shared_data / "canada_basins/salmon_river/Salmon-River-Near-Prince-George_meteo_daily.nc",
            basin_dim="nbasins",
        )
    with pytest.raises(DataError, match="not found; available"):
        read_basin_netcdf(shared_data / "era5_cities/Raven_q_sim.nc", variables=["qobs"])


# ----------------------------------------------------------------------------------------------- station CSV
def test_station_csv(tmp_path):
    dates = pd.date_range("2001-01-01", periods=10, freq="D")
    for sid, q in (("A1", np.arange(10.0)), ("B2", np.arange(10.0) + 100)):
        q = q.copy()
        q[3] = -999
        pd.DataFrame({"date": dates.strftime("%Y%m%d"), "q": q, "t": 1.5}).to_csv(
            tmp_path / f"{sid}.csv", index=False
        )
    ds = read_station_csv(tmp_path, date_format="%Y%m%d", missing_values=-999, units={"q": "m3 s-1"})
    assert list(ds.basin.values) == ["A1", "B2"] and ds.q.dims == ("basin", "time")
    assert int(ds.q.isnull().sum()) == 2 and ds.q.sel(basin="B2").values[9] == 109.0
    assert ds.q.attrs["units"] == "m3 s-1"
    long = pd.concat(pd.read_csv(tmp_path / f"{s}.csv").assign(gauge=s) for s in ("A1", "B2"))
    long.to_csv(tmp_path / "long.tsv", sep="\t", index=False)
    ds2 = read_station_csv(
        tmp_path / "long.tsv",
        sep="\t",
        id_column="gauge",
        columns=["q"],
        date_format="%Y%m%d",
        missing_values=-999,
    )
    xr.testing.assert_equal(ds2.q, ds.q.drop_attrs() if hasattr(ds.q, "drop_attrs") else ds.q)
    with pytest.raises(DataError, match="columns \\['flow'\\] not found"):
        read_station_csv(tmp_path / "A1.csv", columns=["flow"])
    pd.concat([long.iloc[:3], long.iloc[:1]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(DataError, match="duplicated dates"):
        read_station_csv(tmp_path / "dup.csv", id_column="gauge", date_format="%Y%m%d")


def test_knmi(shared_data):
    f = shared_data / "knmi_debilt/etmgeg_260.txt"
    ds = read_knmi(f)
    assert list(ds.station.values) == ["260"] and ds.RH.dims == ("station", "time")
    assert ds.time.values[0] == np.datetime64("1980-01-01") and ds.time.values[-1] == np.datetime64(
        "2019-12-31"
    )
    # independent parse of the raw RH column (tenths of mm, -1 = < 0.05 mm)
    lines = [ln for ln in f.read_text(encoding="latin-1").splitlines() if ln.strip().startswith("260,")]
    raw_rh = np.array([float(ln.split(",")[22]) if ln.split(",")[22].strip() else np.nan for ln in lines])
    assert len(raw_rh) == ds.sizes["time"]
    trace = raw_rh == -1
    assert trace.sum() > 100
    np.testing.assert_allclose(ds.RH.values[0][trace], 0.025)
    np.testing.assert_allclose(ds.RH.values[0][~trace], raw_rh[~trace] / 10.0)
    assert float(ds.RH.min()) >= 0
    assert ds.RH.sel(time="1980-01-01").item() == pytest.approx(5.8)
    assert ds.TG.sel(time="1980-01-01").item() == pytest.approx(0.9) and ds.TG.attrs["units"] == "degC"
    # De Bilt: about 800-900 mm of rain and 550-650 mm Makkink evaporation a year
    assert 750 < float(ds.RH.sum()) / 40 < 950
    assert 500 < float(ds.EV24.sum()) / 40 < 700
    assert ds.RH.attrs["units"] == "mm d-1" and ds.Q.attrs["units"] == "J cm-2 d-1"
    assert read_knmi(f, trace_value=0.0, columns=["RH"]).RH.values[0][trace].max() == 0.0


def test_fluxnet(shared_data):
    ds = read_fluxnet_csv(shared_data / "fluxnet_monthly_et/et_fluxnet_global_monthly_total.csv")
    assert ds.sizes == {"station": 64, "time": 228}
    assert ds.et_mm_month.dims == ("station", "time") and ds.lat.dims == ("station",)
    assert ds.station.values[0] == "38.05_-121.77"
    assert ds.lat.values[0] == 38.05 and ds.lon.values[0] == -121.77
    assert ds.et_mm_month.values[0, 0] == pytest.approx(34.299)
    assert int(ds.et_mm_month.isnull().sum()) == 16
    assert ds.et_mm_month.attrs["units"] == "mm month-1"
    assert ds.time.values[0] == np.datetime64("2001-01-01") and ds.time.values[-1] == np.datetime64(
        "2019-12-01"
    )


# ------------------------------------------------------------------------------------------------------ mHM
def test_mhm_gauge(shared_data, tmp_path):
    f = shared_data / "moselle_mhm/input/gauge/00398.txt"
    ds = read_mhm_gauge(f)
    assert list(ds.basin.values) == ["398"] and ds.q.dims == ("basin", "time")
    assert ds.sizes["time"] == 1461 and ds.time.values[0] == np.datetime64("1990-01-01")
    assert ds.q.values[0, 0] == 157.0 and ds.q.values[0, -1] == 617.0
    assert not ds.q.isnull().any() and ds.q.attrs["units"] == "m3 s-1"
    lines = f.read_text().splitlines()
    lines[5 + 10] = "1990  01  11  00  00  -9999.000"
    (tmp_path / "00398.txt").write_text("\n".join(lines) + "\n")
    q = read_mhm_gauge(tmp_path / "00398.txt").q
    assert int(q.isnull().sum()) == 1 and np.isnan(q.sel(time="1990-01-11").item())
    (tmp_path / "short.txt").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DataError, match="short.txt.*1993-12-31"):
        read_mhm_gauge(tmp_path / "short.txt")
    both = read_mhm_gauge(shared_data / "moselle_mhm/input/gauge")
    assert list(both.basin.values) == ["333", "398"]


def test_mhm_grids_get_true_coordinates(shared_data):
    root = shared_data / "moselle_mhm"
    ll = xr.open_dataset(root / "input/latlon/latlon_1.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = open_mhm_grid(root / "input/meteo/pre/pre.nc")
        tavg = open_mhm_grid(root / "input/meteo/tavg/tavg.nc")
        tmin = open_mhm_grid(root / "input/meteo/tmin.nc")
        et = open_mhm_grid(root / "input/optional_data/et.nc")
        mask = open_mhm_grid(root / "input/meteo/mask.nc")
    for ds in (pre, tmin, et):
        assert ds.sizes["y"] == 9 and ds.sizes["x"] == 6 and ds.attrs["crs"] == "EPSG:3035"
        np.testing.assert_array_equal(ds.lat.values, ll.lat.values)
        np.testing.assert_array_equal(ds.y.values, ll.yc.values)
    # placeholder lat/lon of tmin.nc are gone; cell centres in LAEA give the latitude of latlon_1.nc
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(tmin.x.values[0], tmin.y.values[0])
    assert lat == pytest.approx(tmin.lat.values[0, 0], abs=1e-5) and lon == pytest.approx(
        tmin.lon.values[0, 0], abs=1e-5
    )
    # rows are north first: mean temperature falls with the (coarsened 500 m) elevation
    dem = open_mhm_morph(root).dem.values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells wholly outside the domain
        dem24 = np.nanmean(dem.reshape(9, 48, 6, 48), axis=(1, 3))
    t = tavg.tavg.mean("time").values
    ok = np.isfinite(dem24)
    assert np.corrcoef(t[ok], dem24[ok])[0, 1] < -0.7
    # the 20 cells outside the domain are NaN in tmin, et and mask alike
    assert int(np.isnan(mask.mask.values[0]).sum()) == 20
    np.testing.assert_array_equal(np.isnan(tmin.tmin.values[0]), np.isnan(mask.mask.values[0]))
    np.testing.assert_array_equal(np.isnan(et.et.values[0]), np.isnan(mask.mask.values[0]))
    assert et.time.size == 48


def test_esri_ascii(tmp_path):
    (tmp_path / "g.asc").write_text(
        "ncols 3\nnrows 2\nxllcorner 100\nyllcorner 200\ncellsize 10\nNODATA_value -9999\n1 2 3\n4 -9999 6\n"
    )
    a = read_esri_ascii(tmp_path / "g.asc", crs="EPSG:3035")
    np.testing.assert_array_equal(a.x.values, [105, 115, 125])
    np.testing.assert_array_equal(a.y.values, [215, 205])  # north first
    assert np.isnan(a.values[1, 1]) and a.values[1, 2] == 6 and a.attrs["crs"] == "EPSG:3035"
    (tmp_path / "bad.asc").write_text("ncols 3\nnrows 3\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2 3\n")
    with pytest.raises(DataError, match="3 x 3 cells, found 1 x 3"):
        read_esri_ascii(tmp_path / "bad.asc")


# --------------------------------------------------------------------------------------------------- Caravan
CARAVAN_VARS = [
    "snow_depth_water_equivalent_mean",
    "surface_net_solar_radiation_mean",
    "surface_pressure_mean",
    "temperature_2m_mean",
    "temperature_2m_min",
    "temperature_2m_max",
    "total_precipitation_sum",
    "potential_evaporation_sum",
    "streamflow",
]


@pytest.fixture
def caravan_root(tmp_path):
    """A tiny copy of the Caravan layout: 2 sub-datasets, 3 basins, CSV and NetCDF time series."""
    rng = np.random.default_rng(0)
    root = tmp_path / "Caravan"
    basins = {"camels": ["camels_01022500", "camels_01547700"], "camelsgb": ["camelsgb_28015"]}
    dates = pd.date_range("1981-01-01", "1981-03-31", freq="D")
    for src, ids in basins.items():
        (root / "timeseries/csv" / src).mkdir(parents=True)
        (root / "timeseries/netcdf" / src).mkdir(parents=True)
        (root / "attributes" / src).mkdir(parents=True)
        for k, gid in enumerate(ids):
            df = pd.DataFrame({v: rng.gamma(2.0, 2.0, len(dates)) for v in CARAVAN_VARS})
            df["temperature_2m_mean"] -= 5
            df.loc[5:9, "streamflow"] = np.nan
            df.insert(0, "date", dates.strftime("%Y-%m-%d"))
            n = len(dates) - 10 * k  # the second basin's record ends earlier
            df.iloc[:n].to_csv(root / "timeseries/csv" / src / f"{gid}.csv", index=False)
            nc = df.iloc[:n].assign(date=pd.to_datetime(df.date.iloc[:n])).set_index("date").to_xarray()
            nc.to_netcdf(root / "timeseries/netcdf" / src / f"{gid}.nc")
        pd.DataFrame(
            {
                "gauge_id": ids,
                "gauge_name": [f"river {i}" for i in ids],
                "country": "X",
                "gauge_lat": [44.6, 40.9][: len(ids)],
                "gauge_lon": [-67.9, -77.8][: len(ids)],
                "area": [620.4, 114.5][: len(ids)],
            }
        ).to_csv(root / "attributes" / src / f"attributes_other_{src}.csv", index=False)
        pd.DataFrame(
            {"gauge_id": ids, "p_mean": [3.1, 2.9][: len(ids)], "aridity": [0.6, 0.8][: len(ids)]}
        ).to_csv(root / "attributes" / src / f"attributes_caravan_{src}.csv", index=False)
    return root


def test_caravan_layout(caravan_root):
    csv = read_caravan(caravan_root, file_format="csv")
    assert list(csv.basin.values) == ["camels_01022500", "camels_01547700", "camelsgb_28015"]
    assert csv.streamflow.dims == ("basin", "time") and csv.sizes["time"] == 90
    assert csv.streamflow.attrs["units"] == "mm d-1" and csv.temperature_2m_mean.attrs["units"] == "degC"
    assert csv.surface_pressure_mean.attrs["units"] == "kPa"
    # 5 missing days per basin, plus the 10 days after the second basin's record ends
    assert int(csv.streamflow.isnull().sum()) == 3 * 5 + 10
    np.testing.assert_allclose(csv.area_km2.values, [620.4, 114.5, 620.4])
    assert csv.lat.sel(basin="camels_01547700").item() == 40.9
    assert csv.p_mean.dims == ("basin",) and "gauge_name" not in csv
    raw = pd.read_csv(caravan_root / "timeseries/csv/camelsgb/camelsgb_28015.csv")
    np.testing.assert_allclose(
        csv.total_precipitation_sum.sel(basin="camelsgb_28015").values, raw.total_precipitation_sum
    )
    nc = read_caravan(caravan_root, file_format="netcdf")
    xr.testing.assert_allclose(nc.streamflow, csv.streamflow)
    sub = read_caravan(
        caravan_root, basins=["camelsgb_28015"], variables=["streamflow"], attributes=["gauge_name"]
    )
    assert list(sub.data_vars) == ["streamflow", "area_km2", "gauge_name"]
    assert list(read_caravan(caravan_root, sources="camelsgb").basin.values) == ["camelsgb_28015"]
    with pytest.raises(DataError, match="camels_99999999"):
        read_caravan(caravan_root, basins=["camels_99999999"])
    with pytest.raises(DataError, match="variables \\['qobs'\\] not found"):
        read_caravan(caravan_root, variables=["qobs"])
