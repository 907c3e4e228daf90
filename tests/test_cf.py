"""CF-1.8 validity of every output kind and of the variables table's units.

``compliance-checker --test cf:1.8`` (IOOS) runs on a basin prediction file, a monthly evaporation grid, the
closure-corrected evaporation grid and both kinds of metrics file, and must report zero errors (its "high priority" failures). The variables table is checked with
cf-units (UDUNITS-2): every unit parses, every standard name is in the CF standard name table that
compliance-checker ships, and every (units, standard_name) pair that hydroml writes is convertible to the
name's canonical units.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import cf_units
import compliance_checker
import netCDF4
import numpy as np
import pytest

import hydroml.zoo as zoo
from hydroml import closure
from hydroml._cf import cf_variable_attrs, same_units
from hydroml.cli import main
from hydroml.data.variables import variables_table
from hydroml.forecast import forecast, write_forecast

_TABLE = (Path(compliance_checker.__file__).parent / "data" / "cf-standard-name-table.xml").read_text()
CANONICAL = dict(re.findall(r'<entry id="([^"]+)">\s*<canonical_units>([^<]*)</canonical_units>', _TABLE))
ALIASES = dict(re.findall(r'<alias id="([^"]+)">\s*<entry_id>([^<]*)</entry_id>', _TABLE))


def _canonical(name: str) -> str | None:
    return CANONICAL.get(name, CANONICAL.get(ALIASES.get(name, "")))


def cf_errors(path: Path, tmp_path: Path) -> tuple[int, list[str]]:
    """Number of compliance-checker cf:1.8 errors (high-priority failures) and their messages."""
    report = tmp_path / f"{path.stem}_cc.json"
    subprocess.run(
        ["compliance-checker", "--test", "cf:1.8", "-f", "json", "-o", str(report), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # the exit code is 2 also for checker-internal warnings (string coordinates): read the report
    result = json.loads(report.read_text())["cf:1.8"]
    assert result["possible_points"] > 50, "the checker did not run its checks"
    msgs = [
        f"{item['name']}: {m}"
        for item in result["high_priorities"]
        if item["value"][0] < item["value"][1]
        for m in item["msgs"]
    ]
    return int(result["high_count"]), msgs


def test_variables_table_units_are_udunits_and_pairs_are_cf_valid():
    table = variables_table()
    assert len(table) >= 25
    checked = 0
    for name, var in table.items():
        for monthly, units in ((False, var.units), (True, var.monthly_units)):
            unit = cf_units.Unit(units)  # raises ValueError on anything UDUNITS cannot parse
            assert not unit.is_unknown(), (name, units)
            if not var.standard_name:
                continue
            assert _canonical(var.standard_name) is not None, (
                f"{name}: {var.standard_name!r} is not a CF name"
            )
            attrs = cf_variable_attrs({"units": units, "standard_name": var.standard_name}, monthly)
            written = attrs.get("standard_name")
            if written is None:
                assert var.standard_name in attrs["comment"], name  # the CF quantity is still named
                continue
            canonical = _canonical(written)
            assert canonical is not None, f"{name}: writes {written!r}, not a CF name"
            assert cf_units.Unit(attrs["units"]).is_convertible(cf_units.Unit(canonical)), (
                f"{name}: {attrs['units']!r} is not convertible to {canonical!r} ({written})"
            )
            checked += 1
    assert checked >= 40


def test_the_writer_fixes_exactly_the_pairs_cf_rejects():
    # mm/day with a mass-flux name is invalid in CF and must change; W m-2 / degC pairs are valid and kept
    for std in ("runoff_flux", "water_evapotranspiration_flux", "precipitation_flux"):
        canonical = cf_units.Unit(_canonical(std))
        assert not cf_units.Unit("mm/day").is_convertible(canonical)
    assert cf_variable_attrs({"units": "mm/day", "standard_name": "precipitation_flux"}, False) == {
        "units": "mm/day",
        "standard_name": "lwe_precipitation_rate",
    }
    kept = {"units": "W m-2", "standard_name": "surface_downwelling_shortwave_flux_in_air"}
    assert cf_variable_attrs(kept, True) == kept
    monthly = cf_variable_attrs({"units": "mm/month", "standard_name": "water_evapotranspiration_flux"}, True)
    assert monthly["units"] == "mm" and monthly["cell_methods"] == "time: sum" and monthly["needs_bounds"]
    assert monthly["standard_name"] == "lwe_thickness_of_water_evaporation_amount"
    assert same_units(monthly, {"units": "mm/month"}) and same_units("mm day-1", "mm/day")
    assert not same_units("mm/day", "mm/month")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, demo_cache):
    tmp = tmp_path_factory.mktemp("cf")
    basins = forecast(
        zoo.load("lstm.demo_discharge"), "demo:basins", "2014-01-01", "2014-06-30", mode="stateful"
    )
    grid = forecast(zoo.load("unet.demo_evaporation"), "demo:monthly", "2013-01-01", "2014-12-31")
    files = {
        "basins": write_forecast(basins, tmp / "q_pred.nc"),
        "grid": write_forecast(grid, tmp / "et_pred.nc"),
    }
    assert (
        main(
            [
                "evaluate",
                str(files["grid"]),
                "--obs",
                "demo:monthly",
                "--out",
                str(tmp / "ev"),
                "--no-figures",
            ]
        )
        == 0
    )
    files["metrics_grid"] = tmp / "ev" / "metrics_evspsbl.nc"
    assert (
        main(
            [
                "evaluate",
                str(files["basins"]),
                "--obs",
                "demo:basins",
                "--out",
                str(tmp / "eb"),
                "--no-figures",
            ]
        )
        == 0
    )
    files["metrics_basins"] = tmp / "eb" / "metrics_q_mm.nc"
    problem, _ = closure.demo_problem()
    corrected = closure.to_cf(np.full(problem.product.shape, 40.0, dtype=np.float32), problem, source="test")
    files["closure"] = write_forecast(corrected, tmp / "et_closure.nc")
    return files


@pytest.mark.parametrize("kind", ["basins", "grid", "metrics_grid", "metrics_basins", "closure"])
def test_every_output_kind_passes_compliance_checker_cf_1_8(outputs, kind, tmp_path):
    n, msgs = cf_errors(outputs[kind], tmp_path)
    assert n == 0, msgs


def test_prediction_files_carry_what_the_checker_cannot_see(outputs):
    with netCDF4.Dataset(outputs["basins"]) as nc:
        assert nc.Conventions == "CF-1.8" and nc.featureType == "timeSeries"
        assert nc["time"].dtype == np.int32 and nc["time"].units.startswith("days since")
        for coord in ("time", "gauge_lat", "gauge_lon"):
            assert "_FillValue" not in nc[coord].ncattrs(), coord
        assert nc["gauge_lat"].standard_name == "latitude" and nc["gauge_lon"].units == "degrees_east"
        assert set(nc["q_mm"].coordinates.split()) >= {"gauge_lat", "gauge_lon"}
        assert (
            nc["q_mm"].units == "mm/day" and "standard_name" not in nc["q_mm"].ncattrs()
        )  # no lwe runoff name
        assert nc.input_data == "demo:basins" and "/" not in nc.source
    with netCDF4.Dataset(outputs["grid"]) as nc:
        et = nc["evspsbl"]
        assert et.units == "mm" and et.cell_methods == "time: sum" and et.hydroml_units == "mm/month"
        assert et.standard_name == "lwe_thickness_of_water_evaporation_amount"
        assert nc["time"].bounds == "time_bnds"
        t = netCDF4.num2date(nc["time"][:], nc["time"].units)
        bnds = netCDF4.num2date(nc["time_bnds"][:], nc["time"].units)
        assert all(b[0].day == 1 and b[0] <= ti < b[1] for ti, b in zip(t, bnds))
        assert bnds[0][1].month == 2 and bnds[-1][1].year == 2015  # [Jan 1, Feb 1) ... [Dec 1, Jan 1)
    with netCDF4.Dataset(outputs["metrics_grid"]) as nc:
        assert nc.Conventions == "CF-1.8" and nc["lat"].units == "degrees_north"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d\.\.\d{4}-\d\d-\d\d", nc.time_period), nc.time_period
        assert nc.input_data == "et_pred.nc, demo:monthly"
