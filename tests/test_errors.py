"""Bad input gets a clear error naming the file, variable or key, what was expected and what was found.

One test per case of issue 2, item 7, each on tiny files written to tmp_path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hydroml.catalog
from hydroml.data.io import open_dataset
from hydroml.data.variables import to_canonical
from hydroml.exceptions import CatalogError, DataError, HydroMLError, UnitError


def _write(path, times, values=None, var="pr", lat=(1.0, 2.0), lon=(3.0, 4.0, 5.0), units="mm/day", **kw):
    n = len(times)
    data = np.arange(n * len(lat) * len(lon), dtype="float64").reshape(n, len(lat), len(lon))
    if values is not None:
        data = np.asarray(values, dtype="float64").reshape(n, len(lat), len(lon))
    ds = xr.Dataset(
        {var: (("time", "lat", "lon"), data, {"units": units})},
        coords={"time": times, "lat": list(lat), "lon": list(lon)},
    )
    ds.to_netcdf(path, **kw)
    return ds


def test_errors_are_value_errors():
    assert issubclass(DataError, HydroMLError) and issubclass(HydroMLError, ValueError)
    assert issubclass(UnitError, DataError) and issubclass(CatalogError, HydroMLError)


def test_missing_variable_lists_those_available(tmp_path):
    f = tmp_path / "tas_only.nc"
    _write(f, pd.date_range("2000-01-01", periods=3), var="tas", units="K")
    with pytest.raises(DataError, match=r"tas_only.nc: variable\(s\) \['pr'\] not found; available: tas"):
        open_dataset(f, variables=["pr"])
    ds = open_dataset(f)
    with pytest.raises(DataError, match=r"variable 'pr' \(for 'pr'\) not found; available: tas"):
        to_canonical(ds, {"pr": "pr"}, source=str(f))


def test_unknown_unit_names_variable_file_and_unit(tmp_path):
    f = tmp_path / "odd_units.nc"
    _write(f, pd.date_range("2000-01-01", periods=3), units="inches per fortnight")
    ds = open_dataset(f)
    with pytest.raises(UnitError) as err:
        to_canonical(ds, {"pr": "pr"}, source=str(f))
    msg = str(err.value)
    assert "variable 'pr'" in msg and "odd_units.nc" in msg and "'inches per fortnight'" in msg
    _write(tmp_path / "no_units.nc", pd.date_range("2000-01-01", periods=3), units="")
    with pytest.raises(UnitError, match=r"no_units.nc: no units .*expected units convertible to 'mm/day'"):
        to_canonical(
            open_dataset(tmp_path / "no_units.nc"), {"pr": "pr"}, source=str(tmp_path / "no_units.nc")
        )


def test_non_monotonic_time(tmp_path):
    f = tmp_path / "shuffled.nc"
    times = pd.DatetimeIndex(["2000-01-01", "2000-01-02", "2000-01-04", "2000-01-03"])
    _write(f, times)
    with pytest.raises(
        DataError,
        match=r"shuffled.nc: time is not monotonically increasing: step 3 is 2000-01-03, after 2000-01-04",
    ):
        open_dataset(f)


def test_duplicated_time(tmp_path):
    f = tmp_path / "dup.nc"
    times = pd.DatetimeIndex(["2000-01-01", "2000-01-02", "2000-01-02", "2000-01-03"])
    _write(f, times)
    with pytest.raises(DataError, match=r"dup.nc: duplicated time step 2000-01-02 \(at positions 1 and 2\)"):
        open_dataset(f)


def test_overlapping_files_that_disagree(tmp_path):
    t = pd.date_range("2000-01-01", periods=6)
    _write(tmp_path / "part1.nc", t[:4])
    other = np.arange(4 * 6, dtype="float64").reshape(4, 2, 3) + 1000.0
    _write(tmp_path / "part2.nc", t[2:], values=other)
    with pytest.raises(
        DataError,
        match=r"overlapping files disagree: part1.nc and part2.nc both hold variable 'pr' at 2000-01-03 "
        r"but with different values \(12.0 vs 1000.0\); 2 overlapping time step\(s\)",
    ):
        open_dataset(tmp_path / "part*.nc")
    # a variable repeated in a file that also holds others is checked too
    both = xr.open_dataset(tmp_path / "part2.nc").load()
    both["tas"] = both["pr"] * 0 + 1.0
    both.to_netcdf(tmp_path / "both.nc")
    with pytest.raises(
        DataError, match=r"overlapping files disagree: variable\(s\) \['pr'\] appear in several"
    ):
        open_dataset([tmp_path / "part1.nc", tmp_path / "both.nc"])


def test_grids_that_do_not_match(tmp_path):
    t1 = pd.date_range("2000-01-01", periods=3)
    t2 = pd.date_range("2000-01-04", periods=3)
    _write(tmp_path / "a.nc", t1)
    _write(tmp_path / "b.nc", t2, lat=(1.0, 2.5))
    with pytest.raises(
        DataError, match=r"grids do not match: coordinate 'lat' differs between a.nc and b.nc"
    ):
        open_dataset([tmp_path / "a.nc", tmp_path / "b.nc"])
    _write(tmp_path / "c.nc", t2, lat=(1.0, 2.0, 3.0))
    with pytest.raises(
        DataError, match=r"grids do not match: dimension 'lat' has size 2 in a.nc but 3 in c.nc"
    ):
        open_dataset([tmp_path / "a.nc", tmp_path / "c.nc"])
    # variables merged from different files must share the grid too
    _write(tmp_path / "tas.nc", t1, var="tas", lon=(3.0, 4.0, 6.0))
    with pytest.raises(DataError, match="grids do not match: coordinate 'lon' differs"):
        open_dataset([tmp_path / "a.nc", tmp_path / "tas.nc"])


def test_files_with_different_time_steps(tmp_path):
    _write(tmp_path / "daily.nc", pd.date_range("2000-01-01", periods=60))
    _write(tmp_path / "monthly.nc", pd.date_range("2000-01-01", periods=2, freq="MS"), var="et")
    with pytest.raises(
        DataError, match="different time steps and cannot be merged: daily.nc: daily, monthly.nc: monthly"
    ):
        open_dataset([tmp_path / "daily.nc", tmp_path / "monthly.nc"])


def test_latlon_file_of_another_grid(tmp_path, shared_data):
    f = tmp_path / "curvi.nc"
    ds = xr.Dataset(
        {"pr": (("time", "y", "x"), np.ones((2, 3, 3)))},
        coords={"time": pd.date_range("2000", periods=2), "lat": (("y", "x"), np.ones((3, 3))),
                "lon": (("y", "x"), np.ones((3, 3)))},
    )  # fmt: skip
    ds.to_netcdf(f)
    with pytest.raises(
        DataError, match=r"grids do not match: .*latlon_1.nc has lat/lon of shape \(9, 6\) .* \(3, 3\)"
    ):
        open_dataset(f, latlon_file=shared_data / "moselle_mhm/input/latlon/latlon_1.nc")


def test_empty_period(tmp_path):
    f = tmp_path / "short.nc"
    _write(f, pd.date_range("2000-01-01", periods=5))
    with pytest.raises(
        DataError,
        match=r"short.nc: empty period: requested 2010-01-01..2010-12-31, but the data cover "
        r"2000-01-01..2000-01-05",
    ):
        open_dataset(f, time=("2010-01-01", "2010-12-31"))


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF3_64BIT"])
def test_truncated_netcdf(tmp_path, fmt):
    full = tmp_path / "full.nc"
    _write(
        full, pd.date_range("2000-01-01", periods=200), lat=np.arange(10.0), lon=np.arange(10.0), format=fmt
    )
    data = full.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"cut.nc: .*(truncated or corrupt)"):
        open_dataset(cut)
    assert open_dataset(full).sizes["time"] == 200


def test_corrupt_file(tmp_path):
    bad = tmp_path / "garbage.nc"
    bad.write_bytes(b"this is not a NetCDF file" * 40)
    with pytest.raises(
        DataError, match=r"garbage.nc: cannot be read as NetCDF or zarr \(truncated or corrupt"
    ):
        open_dataset(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nothing.nc"):
        open_dataset(tmp_path / "nothing.nc")


# ------------------------------------------------------------------------------------------------ catalog
def _entry(**over):
    entry = {
        "name": "mydata",
        "description": "test data",
        "licence": "CC-BY-4.0",
        "citation": "Me (2024)",
        "reader": "netcdf",
        "path": "mydata/*.nc",
        "variables": {"pr": {"source": "pr", "units": "mm/day"}},
        "time_step": "daily",
    }
    entry.update(over)
    return entry


def _write_entry(folder, entry, name=None):
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or entry['name']}.yaml"
    path.write_text(yaml.safe_dump(entry))
    return path


def test_catalog_unknown_key_names_key_file_and_valid_keys(tmp_path):
    path = _write_entry(tmp_path / "cat", _entry(licens="CC-BY-4.0"))
    with pytest.raises(CatalogError) as err:
        hydroml.catalog.load_entry_file(path)
    msg = str(err.value)
    assert str(path) in msg and "unknown key 'licens'" in msg and "did you mean 'licence'" in msg
    assert "valid keys: name, description, licence" in msg


def test_catalog_missing_file_names_path_and_root(tmp_path):
    cat = tmp_path / "cat"
    _write_entry(cat, _entry())
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(
        CatalogError,
        match=rf"'mydata': data not found at {root}/mydata/\*\.nc \(path 'mydata/\*\.nc' under data root {root}\)",
    ):
        hydroml.catalog.open("mydata", root=root, catalog_path=cat)
