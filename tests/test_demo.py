"""The synthetic demo: deterministic, closing its water balance, nested basins, plausible magnitudes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hydroml.data.demo import DemoConfig, generate_demo, load_demo
from hydroml.exceptions import DataError

SMALL = DemoConfig(seed=7, n_lat=14, n_lon=12, start="2001-01-01", end="2003-12-31", spinup_days=365)
D8_OFFSETS = {
    1: (0, 1),
    2: (-1, 1),
    4: (-1, 0),
    8: (-1, -1),
    16: (0, -1),
    32: (1, -1),
    64: (1, 0),
    128: (1, 1),
}


@pytest.fixture(scope="module")
def small():
    return generate_demo(SMALL)


@pytest.fixture(scope="module")
def demo(demo_cache):
    return {p: load_demo(p, cache_dir=demo_cache) for p in ("grid", "basins", "monthly")}


def test_deterministic_same_seed_identical(small):
    again = generate_demo(SMALL)
    for name in small:
        xr.testing.assert_identical(small[name], again[name])
    other = generate_demo(DemoConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not np.allclose(other["grid"].pr.values, small["grid"].pr.values)


def test_labelled_synthetic(demo):
    for ds in demo.values():
        assert "SYNTHETIC" in ds.attrs["source"]
        assert ds.attrs["synthetic"] == "yes"


def _cell_closure(m: xr.Dataset) -> np.ndarray:
    """Whole-period P - E - R - dS per land cell, from the monthly sums."""
    land = m.land_mask.values == 1
    s = lambda v: m[v].values.astype(np.float64).sum(0)  # noqa: E731
    resid = s("pr") - s("evspsbl") - s("mrro") - s("dtws")
    return resid[land], s("pr")[land]


@pytest.mark.parametrize("which", ["small", "demo"])
def test_water_balance_closes_per_cell(which, small, request):
    m = small["monthly"] if which == "small" else request.getfixturevalue("demo")["monthly"]
    resid, p = _cell_closure(m)
    # float32 storage of monthly sums: round-off only (1e-6 of the precipitation total)
    assert np.abs(resid).max() < 1e-6 * p.max() + 1e-3
    # monthly, too, and storage changes are consistent with the end-of-month storage
    land = m.land_mask.values == 1
    monthly = (m.pr - m.evspsbl - m.mrro - m.dtws).values[:, land]
    assert np.abs(monthly).max() < 1e-3
    np.testing.assert_allclose(m.tws.diff("time").values[:, land], m.dtws.values[1:, land], atol=1e-3)
    # something actually happens: evaporation is a large, storage change a small part of the budget
    e_ratio = m.evspsbl.values.sum(0)[land] / p
    assert 0.2 < np.median(e_ratio) < 0.9


def test_water_balance_closes_per_basin(demo):
    m = demo["monthly"]
    resid = (m.basin_pr - m.basin_evspsbl - m.q_mm - m.basin_dtws).values
    assert np.abs(resid).max() < 1e-3
    total = (m.basin_pr - m.basin_evspsbl - m.q_mm).sum("time") - m.basin_dtws.sum("time")
    assert float(abs(total).max()) < 0.05  # mm over 16 years


def _trace_to_gauge(flow_dir: np.ndarray, land: np.ndarray, gauge: tuple[int, int]) -> np.ndarray:
    """Cells whose D8 path passes through ``gauge`` (independent of the generator's own bookkeeping)."""
    ny, nx = flow_dir.shape
    inside = np.zeros((ny, nx), dtype=bool)
    for i in range(ny):
        for j in range(nx):
            if not land[i, j]:
                continue
            ci, cj, steps = i, j, 0
            while True:
                if (ci, cj) == gauge:
                    inside[i, j] = True
                    break
                code = int(flow_dir[ci, cj])
                if code == 0 or steps > ny * nx:
                    break
                di, dj = D8_OFFSETS[code]
                ci, cj, steps = ci + di, cj + dj, steps + 1
    return inside


def test_nested_basins_follow_flow_directions(demo):
    g = demo["grid"]
    masks = g.basin_mask.values.astype(bool)
    assert 4 <= masks.shape[0] <= 6
    land = g.land_mask.values == 1
    for k in range(masks.shape[0]):
        gi = int(np.argmin(np.abs(g.lat.values - float(g.gauge_lat[k]))))
        gj = int(np.argmin(np.abs(g.lon.values - float(g.gauge_lon[k]))))
        np.testing.assert_array_equal(_trace_to_gauge(g.flow_dir.values, land, (gi, gj)), masks[k])
    # nesting: 05 in 03 in 02 in 01; 04 in 01, disjoint from 02
    sub = lambda a, b: not (masks[a] & ~masks[b]).any()  # noqa: E731
    assert sub(4, 2) and sub(2, 1) and sub(1, 0) and sub(3, 0)
    assert not (masks[3] & masks[1]).any()
    area = (masks * g.cell_area.values).sum(axis=(1, 2))
    np.testing.assert_allclose(area, g.area_km2.values, rtol=1e-5)
    # the outlet's upstream area is the whole land area
    np.testing.assert_allclose(np.nanmax(g.upstream_area.values), g.cell_area.values[land].sum(), rtol=1e-5)


def test_discharge_plausible(demo):
    b = demo["basins"]
    q_mm = b.q_mm.values
    assert np.isfinite(q_mm).all() and (q_mm > 0).all()
    np.testing.assert_allclose(b.q.values, q_mm * b.area_km2.values[:, None] / 86.4, rtol=1e-5)
    annual_q = q_mm.mean(1) * 365.25
    annual_p = b.pr.values.mean(1) * 365.25
    assert ((annual_q > 150) & (annual_q < 1500)).all()
    assert ((annual_q / annual_p > 0.2) & (annual_q / annual_p < 0.85)).all()
    clim = b.q_mm.groupby("time.month").mean().transpose("month", "basin").values
    assert (clim.max(0) / clim.min(0) > 1.5).all()  # a seasonal regime
    # the snowiest basin peaks in late spring / early summer (snowmelt)
    snowy = int(np.argmax(b.frac_snow.values))
    assert 4 <= int(clim[:, snowy].argmax()) + 1 <= 7
    # floods: daily peaks well above the mean
    assert (q_mm.max(1) / q_mm.mean(1) > 3).all()


def test_forcings_realistic(demo):
    g = demo["grid"]
    land = g.land_mask.values == 1
    pr = g.pr.values
    annual = pr.mean(0)[land] * 365.25
    assert 600 < annual.min() and annual.max() < 3000
    assert 0.3 < (pr < 0.1).mean() < 0.9  # intermittent
    assert 80 < pr.max() < 400
    # storms are spatially correlated: neighbours correlate more than distant cells
    a = pr[:, 10, 10]
    assert np.corrcoef(a, pr[:, 10, 11])[0, 1] > 0.8
    assert np.corrcoef(a, pr[:, 10, 11])[0, 1] > np.corrcoef(a, pr[:, 10, 30])[0, 1]
    tas = g.tas
    clim = tas.groupby("time.month").mean().mean(("lat", "lon")).values
    assert clim.argmax() in (6, 7) and clim.max() - clim.min() > 12
    # lapse rate: higher cells are colder
    slope = np.polyfit(g.elevation.values[land], tas.mean("time").values[land], 1)[0]
    assert -0.008 < slope < -0.005
    assert float(g.rsds.min()) >= 0 and float(g.rsds.max()) < 450
    pet = g.evspsblpot.values
    assert (pet >= 0).all() and 400 < pet.mean() * 365.25 < 1100
    et = g.evspsbl.values[:, land]
    assert (et >= 0).all() and (et <= pet[:, land] + 1e-5).all()
    assert np.isnan(g.evspsbl.values[:, ~land]).all()


def test_products_consistent(demo):
    g, b, m = demo["grid"], demo["basins"], demo["monthly"]
    assert g.sizes["lat"] == g.sizes["lon"] == 32 and g.sizes["time"] >= 15 * 365
    assert str(g.time.values[0])[:10] == "2000-01-01" and str(g.time.values[-1])[:10] == "2015-12-31"
    assert b.pr.dims == ("basin", "time") and b.area_km2.dims == ("basin",)
    assert len([v for v in b.data_vars if b[v].dims == ("basin",)]) >= 5
    # basin averages are area-weighted means over the masks
    w = g.basin_mask * g.cell_area
    avg = (g.pr.isel(time=slice(0, 40)) * w).sum(("lat", "lon")) / w.sum(("lat", "lon"))
    np.testing.assert_allclose(
        avg.transpose("basin", "time").values, b.pr.values[:, :40], rtol=1e-4, atol=1e-5
    )
    # monthly sums of the daily data
    jan = g.pr.sel(time="2003-01").sum("time")
    np.testing.assert_allclose(m.pr.sel(time="2003-01-01").values, jan.values, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(
        m.q_mm.sel(time="2003-01-01").values, b.q_mm.sel(time="2003-01").sum("time").values, rtol=1e-5
    )
    assert m.sizes["time"] == 192 and m.pr.attrs["units"] == "mm/month"


def test_cache_reused_and_reader(demo_cache, demo):
    files = sorted(demo_cache.glob("hydroml_demo_*.nc"))
    assert len(files) == 3
    assert not list(demo_cache.glob(".*"))  # no temporary files left behind
    before = [f.stat().st_mtime_ns for f in files]
    load_demo("basins", cache_dir=demo_cache)
    assert [f.stat().st_mtime_ns for f in files] == before
    from hydroml.data.readers import get_reader

    ds = get_reader("demo")(None, product="basins", cache_dir=str(demo_cache))
    xr.testing.assert_identical(ds, demo["basins"])


def test_unknown_product():
    with pytest.raises(DataError, match="unknown demo product 'daily'"):
        load_demo("daily")
