"""The data catalog (hydroml.catalog): schema validation, lookup, and opening every entry."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import hydroml.catalog as catalog
from hydroml.exceptions import CatalogError
from tests.conftest import REPO

SHARED_ENTRIES = [
    ("camels_us_4basins", "daymet"),
    ("camels_us_4basins", "nldas"),
    ("moselle_mhm", "meteo"),
    ("moselle_mhm", "evaporation"),
    ("moselle_mhm", "discharge"),
    ("canada_salmon_river", "gauge"),
    ("canada_salmon_river", "gauge_1d"),
    ("canada_salmon_river", "era5"),
    ("canada_matapedia", "discharge"),
    ("canada_matapedia", "stations"),
    ("canada_hysets_574", None),
    ("canada_wsc_02le024", None),
    ("era5_cities", None),
    ("fluxnet_monthly_et", None),
    ("knmi_debilt", None),
    ("raven_q_sim", None),
]
REQUIRED = {"demo", "camels_us", "caravan", "era5_land_monthly", "gleam", "eobs", "grdc"}


def _entry(**over):
    entry = {
        "name": "mydata",
        "description": "test data",
        "licence": "CC-BY-4.0",
        "citation": "Me (2024)",
        "reader": "netcdf",
        "path": "mydata/{year}.nc",
        "variables": {"pr": {"source": "tp", "units": "m"}},
        "time_step": "daily",
    }
    entry.update(over)
    return entry


def _write_entry(folder, entry, name=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or entry['name']}.yaml"
    path.write_text(yaml.safe_dump(entry, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------ the catalog
def test_builtin_catalog_is_found_and_complete():
    folder = catalog.builtin_catalog_dir()
    assert (folder / "variables.yaml").is_file()
    assert folder.resolve() == (REPO / "data_catalog").resolve()  # package data or the checkout's folder
    names = set(catalog.list_entries())
    assert REQUIRED | {name for name, _ in SHARED_ENTRIES} <= names
    yaml_files = {p.stem for p in folder.glob("*.yaml")} - {"variables"}
    assert names == yaml_files


def test_builtin_catalog_through_importlib_resources(tmp_path, monkeypatch):
    # an installed wheel ships data_catalog/ as the namespace package hydroml._catalog
    import importlib.resources

    pkg = tmp_path / "fakepkg" / "_catalog"
    pkg.mkdir(parents=True)
    (tmp_path / "fakepkg" / "__init__.py").write_text("")
    (pkg / "variables.yaml").write_text((REPO / "data_catalog/variables.yaml").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.resources.files
    monkeypatch.setattr(
        importlib.resources,
        "files",
        lambda name: real("fakepkg._catalog" if name == "hydroml._catalog" else name),
    )
    assert catalog.builtin_catalog_dir() == pkg


def test_every_entry_is_complete_and_its_reader_exists():
    from hydroml.data.readers import list_readers

    readers = set(list_readers())
    for name in catalog.list_entries():
        e = catalog.get(name)
        assert e.licence and e.citation and e.description
        for product in e.product_names() or [None]:
            spec = e.resolve(product)
            assert spec["reader"] in readers, (name, product, spec["reader"])
            assert spec["time_step"] in catalog.TIME_STEPS, (name, product)
            assert spec["variables"], (name, product)
            assert spec["path"] or e.synthetic, (name, product)


def test_user_catalog_folder_adds_and_overrides(tmp_path, monkeypatch):
    cat = tmp_path / "cat"
    _write_entry(cat, _entry())
    _write_entry(cat, _entry(name="era5_cities", description="my own copy"))
    monkeypatch.setenv("HYDROML_CATALOG_PATH", str(cat))
    assert "mydata" in catalog.list_entries()
    assert catalog.get("era5_cities").description == "my own copy"
    monkeypatch.delenv("HYDROML_CATALOG_PATH")
    assert "mydata" not in catalog.list_entries()
    assert "mydata" in catalog.list_entries(catalog_path=cat)
    with pytest.raises(CatalogError, match="catalog folder .*nowhere does not exist"):
        catalog.list_entries(catalog_path=tmp_path / "nowhere")


def test_open_with_root_from_environment_and_path_placeholders(tmp_path, monkeypatch):
    cat = tmp_path / "cat"
    _write_entry(cat, _entry())
    root = tmp_path / "data"
    (root / "mydata").mkdir(parents=True)
    t = pd.date_range("2001-01-01", periods=3)
    xr.Dataset({"tp": (("time",), [0.001, 0.002, 0.0], {"units": "m"})}, coords={"time": t}).to_netcdf(
        root / "mydata/2001.nc"
    )
    monkeypatch.setenv("HYDROML_DATA_ROOT", str(root))
    ds = catalog.open("mydata", catalog_path=cat, year=2001)
    np.testing.assert_allclose(ds.pr.values, [1.0, 2.0, 0.0])
    assert ds.attrs["catalog_entry"] == "mydata" and ds.attrs["licence"] == "CC-BY-4.0"
    raw = catalog.open("mydata", catalog_path=cat, year=2001, convert=False)
    assert "tp" in raw and "pr" not in raw
    with pytest.raises(
        CatalogError, match=r"path template 'mydata/\{year\}.nc' needs value\(s\) for \['year'\]"
    ):
        catalog.open("mydata", catalog_path=cat)
    with pytest.raises(CatalogError, match=r"data not found at .*mydata/1999.nc"):
        catalog.open("mydata", catalog_path=cat, year=1999)
    monkeypatch.delenv("HYDROML_DATA_ROOT")
    with pytest.raises(CatalogError, match="no data root: pass root=... or set .*HYDROML_DATA_ROOT"):
        catalog.open("mydata", catalog_path=cat, year=2001)


def test_lookup_errors():
    with pytest.raises(CatalogError, match=r"no catalog entry 'era5_city' \(did you mean 'era5_cities'\?\)"):
        catalog.get("era5_city")
    with pytest.raises(
        CatalogError, match="has several products; choose one .*meteo, evaporation, discharge"
    ):
        catalog.get("moselle_mhm").resolve()
    with pytest.raises(CatalogError, match="has no product 'rain'; products: meteo, evaporation, discharge"):
        catalog.get("moselle_mhm").resolve("rain")
    with pytest.raises(CatalogError, match="has no products"):
        catalog.get("era5_cities").resolve("daily")
    assert catalog.get("canada_salmon_river").resolve()["product"] == "gauge"  # the default product


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"licens": "x"},
            r"unknown key 'licens' \(did you mean 'licence'\?\); valid keys: name, description",
        ),
        ({"citation": ""}, "required key 'citation' is missing or empty"),
        ({"name": "other"}, "entry name 'other' differs from the file name 'mydata'"),
        ({"time_step": "weekly"}, "key 'time_step' must be one of daily, monthly"),
        ({"reader_options": ["a"]}, "key 'reader_options' must be a mapping"),
        ({"extent": {"box": [0, 0, 1, 1]}}, r"extent: unknown key 'box'.*valid keys: region, bbox"),
        ({"extent": {"bbox": [10, 0, 1, 1]}}, r"extent bbox must be \[west, south, east, north\]"),
        ({"variables": {"rain": "tp"}}, "variable mapping names 'rain', which is not a canonical variable"),
        (
            {"variables": {"pr": {"source": "tp", "unit": "m"}}},
            r"mapping of 'pr' has unknown key\(s\) \['unit'\]",
        ),
        ({"products": {"a": {"path": "x", "units": "m"}}}, r"product 'a': unknown key 'units'"),
        ({"default_product": "b", "products": {"a": {"path": "x"}}}, "default_product 'b' is not a product"),
        ({"passthrough": "all"}, "key 'passthrough' must be a list of names or '\\*'"),
    ],
)
def test_schema_is_strict(tmp_path, over, message):
    path = _write_entry(tmp_path, _entry(**over), name="mydata")
    with pytest.raises(CatalogError, match=message) as err:
        catalog.load_entry_file(path)
    assert str(path) in str(err.value)


def test_reader_missing_from_entry(tmp_path):
    entry = _entry()
    del entry["reader"]
    path = _write_entry(tmp_path, entry)
    with pytest.raises(CatalogError, match="required key 'reader' is missing"):
        catalog.load_entry_file(path)


# ------------------------------------------------------------------------------------------------ shared data
def _check_shared(name, product, ds):  # noqa: C901 - one block per entry
    if name == "camels_us_4basins":
        assert ds.sizes["basin"] == 4 and list(ds.basin.values) == [
            "01022500",
            "01547700",
            "02064000",
            "03015500",
        ]
        assert {"pr", "tasmax", "tasmin", "rsds", "q", "q_mm", "area_km2"} <= set(ds.data_vars)
        assert ds.q.dims == ("basin", "time") and ds.area_km2.dims == ("basin",)
        assert 0 < float(ds.q.mean()) < 500 and 1.0 < float(ds.pr.mean()) < 6.0
        assert int(ds.q.isnull().sum()) >= 0 and float(ds.q.min()) >= 0  # -999 is NaN
    elif (name, product) == ("moselle_mhm", "meteo"):
        assert ds.sizes == {"time": 1826, "y": 9, "x": 6}
        assert set(ds.data_vars) == {"pr", "evspsblpot", "tas"}
        assert ds.lat.dims == ("y", "x") and 47.5 < float(ds.lat.mean()) < 49.5
        assert 700 < float(ds.pr.mean()) * 365.25 < 1300  # mm/year in the Moselle
        assert 8 < float(ds.tas.mean()) < 12  # degC
        # north-first rows: the wet, cool Vosges lie in the south-east corner of the grid
        pr_mean, tas_mean = ds.pr.mean("time"), ds.tas.mean("time")
        assert float(pr_mean.isel(y=-2, x=-1)) > 1.3 * float(pr_mean.isel(y=1, x=1))
        assert float(tas_mean.isel(y=-2, x=-1)) < float(tas_mean.isel(y=1, x=1))
    elif (name, product) == ("moselle_mhm", "evaporation"):
        assert ds.evspsbl.attrs["units"] == "mm/month" and ds.sizes["time"] == 48
        assert str(ds.time.values[0])[:10] == "1990-01-01"  # relabelled to month starts
        assert ds.lat.dims == ("y", "x")
        v = ds.evspsbl.values[np.isfinite(ds.evspsbl.values)]
        assert v.min() >= 7.0 and v.max() <= 106.0
    elif (name, product) == ("moselle_mhm", "discharge"):
        assert list(ds.basin.values) == ["398"] and ds.sizes["time"] == 1461
        assert 60 < float(ds.q.mean()) < 250  # Moselle at Perl (11,600 km2), m3 s-1
    elif name == "canada_salmon_river":
        assert ds.sizes["basin"] == 1
        if product in ("gauge", "gauge_1d"):
            assert int(ds.q.isnull().sum()) == 1697 and float(ds.q.min()) > 0
            assert ds.prra.attrs["units"] == "mm/day"
        else:
            assert ds.sizes["time"] == 14611 and ds.pr.attrs["units"] == "mm/day"
    elif name == "canada_matapedia":
        if product == "discharge":
            assert list(ds.basin.values) == ["01BD009"] and float(ds.q.min()) >= 0
        else:
            assert ds.sizes["basin"] == 6 and ds.pr.attrs["units"] == "mm/day"
    elif name in ("canada_hysets_574", "canada_wsc_02le024"):
        assert ds.q.dims == ("basin", "time") and float(ds.q.min()) >= 0
    elif name == "era5_cities":
        assert ds.sizes == {"station": 5, "time": 1461} and ds.tas.attrs["units"] == "degC"
    elif name == "fluxnet_monthly_et":
        assert ds.sizes["station"] == 64 and ds.evspsbl.attrs["units"] == "mm/month"
    elif name == "knmi_debilt":
        assert ds.sizes == {"station": 1, "time": 14610} and float(ds.pr.min()) >= 0
    elif name == "raven_q_sim":
        assert set(ds.data_vars) == {"q", "pr", "q_sim"} and ds.sizes["time"] == 3654
    else:  # pragma: no cover
        raise AssertionError(f"no checks for {name}")


@pytest.mark.parametrize(("name", "product"), SHARED_ENTRIES)
def test_open_shared_data_entry(shared_data, name, product):
    ds = catalog.open(name, root=shared_data, product=product)
    entry = catalog.get(name)
    table = __import__("hydroml.data.variables", fromlist=["x"]).variables_table()
    for var in entry.resolve(product)["variables"]:
        assert var in ds, var
        assert ds[var].attrs["standard_name"] == table[var].standard_name
        monthly = entry.resolve(product)["time_step"] == "monthly"
        assert ds[var].attrs["units"] == (table[var].monthly_units if monthly else table[var].units)
    assert ds.attrs["catalog_entry"].startswith(name) and ds.attrs["licence"] == entry.licence
    _check_shared(name, product, ds)


def test_open_a_period(shared_data):
    from hydroml.exceptions import DataError

    ds = catalog.open("knmi_debilt", root=shared_data, period=("1990-01-01", "1990-12-31"))
    assert ds.sizes["time"] == 365 and str(ds.time.values[0])[:10] == "1990-01-01"
    with pytest.raises(DataError, match=r"knmi_debilt: empty period: requested 2050-01-01..2051-01-01, but the data "
                       r"cover 1980-01-01..2019-12-31"):  # fmt: skip
        catalog.open("knmi_debilt", root=shared_data, period=("2050-01-01", "2051-01-01"))


def test_every_shared_entry_and_product_is_tested():
    tested = set(SHARED_ENTRIES)
    for name in ("camels_us_4basins", "moselle_mhm", "canada_salmon_river", "canada_matapedia", "era5_cities",
                 "fluxnet_monthly_et", "knmi_debilt", "raven_q_sim", "canada_hysets_574", "canada_wsc_02le024"):  # fmt: skip
        e = catalog.get(name)
        for product in e.product_names() or [None]:
            if name == "camels_us_4basins" and product in ("maurer", "maurer_extended"):
                continue  # same reader and mapping as daymet/nldas
            assert (name, product) in tested, (name, product)


def test_demo_entry(tmp_path, monkeypatch):
    # the catalog wiring on a small demo of the same generator (the full 32 x 32 x 16-year demo is tested in
    # tests/test_demo.py and tests/test_datasets.py)
    import hydroml.data.demo as demo

    small = demo.DemoConfig(n_lat=16, n_lon=16, start="2000-01-01", end="2001-12-31", spinup_days=90)
    full = demo.load_demo
    monkeypatch.setattr(
        demo, "load_demo", lambda product, cache_dir=None, seed=42: full(product, tmp_path, config=small)
    )
    basins = catalog.open("demo")  # default product: basins
    assert basins.attrs["synthetic"].startswith("yes")
    assert {"pr", "q", "q_mm", "area_km2"} <= set(basins.data_vars) and basins.q.dims == ("basin", "time")
    grid = catalog.open("demo", product="grid")
    assert grid.pr.dims == ("time", "lat", "lon") and grid.pr.attrs["units"] == "mm/day"
    monthly = catalog.open("demo", product="monthly")
    assert monthly.evspsbl.attrs["units"] == "mm/month"


# ------------------------------------------------------------------------------------------------ entries whose
# data are not in ../shared/data: tiny files in their real layouts
def _era5_land_file(path, year):
    t = pd.date_range(f"{year}-01-01", periods=12, freq="MS")
    lat, lon = [50.1, 50.0], [5.0, 5.1, 5.2]
    shape = (12, 2, 3)
    ds = xr.Dataset(
        {
            "tp": (("valid_time", "latitude", "longitude"), np.full(shape, 0.002), {"units": "m"}),
            "t2m": (("valid_time", "latitude", "longitude"), np.full(shape, 283.15), {"units": "K"}),
            "ssrd": (("valid_time", "latitude", "longitude"), np.full(shape, 8.64e6), {"units": "J m**-2"}),
            "pev": (("valid_time", "latitude", "longitude"), np.full(shape, -0.003), {"units": "m"}),
            "e": (
                ("valid_time", "latitude", "longitude"),
                np.full(shape, -0.001),
                {"units": "m of water equivalent"},
            ),
        },
        coords={"valid_time": t, "latitude": lat, "longitude": lon},
    )
    ds.to_netcdf(path)


def test_era5_land_monthly_entry(tmp_path):
    (tmp_path / "era5_land_monthly").mkdir()
    for y in (2001, 2000):
        _era5_land_file(tmp_path / f"era5_land_monthly/era5_land_{y}.nc", y)
    ds = catalog.open("era5_land_monthly", root=tmp_path)
    assert ds.pr.dims == ("time", "lat", "lon") and ds.sizes["time"] == 24
    days = ds.time.dt.days_in_month.values
    np.testing.assert_allclose(ds.pr.isel(lat=0, lon=0).values, 2.0 * days)  # 2 mm/day -> mm/month
    np.testing.assert_allclose(ds.evspsblpot.isel(lat=0, lon=0).values, 3.0 * days)  # sign flipped
    np.testing.assert_allclose(ds.evspsbl.isel(lat=0, lon=0).values, 1.0 * days)
    np.testing.assert_allclose(ds.rsds.values, 100.0)  # 8.64 MJ m-2 per day = 100 W m-2
    np.testing.assert_allclose(ds.tas.values, 10.0)


def test_gleam_entry(tmp_path):
    folder = tmp_path / "gleam"
    folder.mkdir()
    for var, value in (("E", 1.5), ("Ep", 3.0)):
        for y in (2003, 2004):
            t = pd.date_range(f"{y}-01-01", f"{y}-12-31")
            xr.Dataset(
                {var: (("time", "lon", "lat"), np.full((t.size, 2, 2), value), {"units": "mm/day"})},
                coords={"time": t, "lon": [10.0, 10.25], "lat": [45.0, 45.25]},
            ).to_netcdf(folder / f"{var}_{y}_GLEAM_v3.8a.nc")
    ds = catalog.open("gleam", root=tmp_path)
    assert ds.sizes["time"] == 731 and set(ds.data_vars) == {"evspsbl", "evspsblpot"}
    assert float(ds.evspsbl.mean()) == 1.5 and float(ds.evspsblpot.mean()) == 3.0


def test_eobs_entry(tmp_path):
    folder = tmp_path / "eobs"
    folder.mkdir()
    t = pd.date_range("2000-01-01", periods=10)
    for var, units, value in (("rr", "mm", 2.0), ("tg", "Celsius", 5.0), ("tn", "Celsius", 1.0),
                              ("tx", "Celsius", 9.0), ("qq", "W/m2", 80.0), ("pp", "hPa", 1010.0)):  # fmt: skip
        xr.Dataset(
            {
                var: (
                    ("time", "latitude", "longitude"),
                    np.full((10, 2, 2), value, dtype="float32"),
                    {"units": units},
                )
            },
            coords={"time": t, "latitude": [50.0, 50.1], "longitude": [6.0, 6.1]},
        ).to_netcdf(folder / f"{var}_ens_mean_0.1deg_reg_v29.0e.nc")
    ds = catalog.open("eobs", root=tmp_path)
    assert float(ds.pr.mean()) == 2.0 and float(ds.tasmax.mean()) == 9.0
    assert float(ds.ps.mean()) == pytest.approx(101000.0) and ds.pr.dims == ("time", "lat", "lon")


def test_grdc_entry(tmp_path):
    (tmp_path / "grdc").mkdir()
    t = pd.date_range("2000-01-01", periods=5)
    ds = xr.Dataset(
        {
            "runoff_mean": (
                ("time", "id"),
                np.array([[1.0, 864.0]] * 4 + [[-999.0, 864.0]]),
                {"units": "m³/s"},
            ),
            "area": ("id", [86.4, 864.0], {"units": "km²"}),
            "station_name": ("id", ["A", "B"]),
        },
        coords={"time": t, "id": [6335020, 6335050]},
    )
    ds.to_netcdf(tmp_path / "grdc/GRDC-Daily.nc")
    out = catalog.open("grdc", root=tmp_path)
    assert list(out.basin.values) == ["6335020", "6335050"]
    assert int(out.q.isnull().sum()) == 1
    np.testing.assert_allclose(out.q_mm.isel(time=0).values, [1.0, 86.4])


def test_caravan_entry(tmp_path):
    ts = tmp_path / "caravan/timeseries/csv/camels"
    ts.mkdir(parents=True)
    attrs = tmp_path / "caravan/attributes/camels"
    attrs.mkdir(parents=True)
    t = pd.date_range("2000-01-01", periods=4)
    for gid in ("camels_01", "camels_02"):
        pd.DataFrame(
            {
                "date": t.strftime("%Y-%m-%d"), "total_precipitation_sum": [1.0, 2.0, 0.0, 3.0],
                "potential_evaporation_sum": 2.0, "temperature_2m_mean": 4.0, "temperature_2m_min": 1.0,
                "temperature_2m_max": 8.0, "dewpoint_temperature_2m_mean": 0.5,
                "surface_net_solar_radiation_mean": 90.0, "surface_pressure_mean": 98.0,
                "snow_depth_water_equivalent_mean": 0.0, "streamflow": [0.864, 0.864, np.nan, 1.728],
            }
        ).to_csv(ts / f"{gid}.csv", index=False)  # fmt: skip
    pd.DataFrame({"gauge_id": ["camels_01", "camels_02"], "area": [10.0, 100.0], "gauge_lat": [40.0, 41.0],
                  "gauge_lon": [-100.0, -101.0]}).to_csv(attrs / "attributes_other_camels.csv", index=False)  # fmt: skip
    ds = catalog.open("caravan", root=tmp_path)
    assert ds.sizes == {"basin": 2, "time": 4}
    np.testing.assert_allclose(ds.ps.values, 98000.0)  # kPa -> Pa
    np.testing.assert_allclose(ds.q.isel(basin=0).values, [0.1, 0.1, np.nan, 0.2])  # 0.864 mm/d over 10 km2
    np.testing.assert_allclose(ds.q.isel(basin=1).values, [1.0, 1.0, np.nan, 2.0])


def test_camels_us_entry_on_the_camels_layout(tmp_path, shared_data):
    os.symlink(shared_data / "camels_us_4basins", tmp_path / "camels_us")
    ds = catalog.open("camels_us", root=tmp_path, product="maurer", basins=["01022500"])
    assert list(ds.basin.values) == ["01022500"] and ds.attrs["catalog_entry"] == "camels_us[maurer]"


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_list_and_show(capsys, shared_data):
    from hydroml.cli import main

    assert main(["catalog", "list"]) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "era5_cities" in out and "moselle_mhm" in out
    assert main(["catalog", "show", "era5_cities"]) == 0
    out = capsys.readouterr().out
    assert "pr          <- pr" in out and "licence:" in out and "Hersbach" in out
    assert main(["catalog", "show", "moselle_mhm", "--root", str(shared_data)]) == 0
    assert "[found]" in capsys.readouterr().out
    assert main(["catalog", "show", "moselle_mhm", "--root", "/nonexistent"]) == 1
    assert "data not found at /nonexistent/moselle_mhm/input" in capsys.readouterr().out
    assert main(["catalog", "show", "no_such"]) == 1
    assert "no catalog entry 'no_such'" in capsys.readouterr().err
