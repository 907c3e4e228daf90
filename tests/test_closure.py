"""Water-cycle closure supervision (hydroml.closure, the ``closure`` model).

The central test corrupts the synthetic demo's true evaporation into a biased product and checks that the
closure model, trained on the water budgets of 3 of the 5 incremental units, recovers the truth better than
the product on the 2 held-out units (whose budgets it never saw).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import xarray as xr

from hydroml import closure
from hydroml.exceptions import ConfigError, DataError
from hydroml.models import create


@pytest.fixture(scope="module")
def demo(demo_cache):
    return closure.demo_problem(cache_dir=demo_cache)


# ---------------------------------------------------------------------------------------------- bookkeeping
def test_incremental_units_by_hand():
    # 1 = whole row of 6 cells; 2 = cells 0-3 (in 1); 3 = cells 0-1 (in 2); 4 = cells 4 (in 1)
    f = np.zeros((4, 6))
    f[0] = 1
    f[1, :4] = 1
    f[2, :2] = 1
    f[3, 4] = 0.5  # a fractional cell
    units, children = closure.incremental_units(sp.csr_matrix(f), ["a", "b", "c", "d"])
    assert children == {"a": ["b", "d"], "b": ["c"], "c": [], "d": []}
    np.testing.assert_allclose(units[0], [0, 0, 0, 0, 0.5, 1])
    np.testing.assert_allclose(units[1], [0, 0, 1, 1, 0, 0])
    np.testing.assert_allclose(units.sum(axis=0), f[0])  # a partition of the outer basin


def test_overlapping_children_are_an_error():
    f = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]], dtype=float)
    with pytest.raises(DataError, match="overlap"):
        closure.incremental_units(f, ["a", "b", "c"])


def test_window_matrix():
    t = xr.date_range("2000-01-01", periods=24, freq="MS")
    m, labels = closure.window_matrix(t, "year")
    assert labels == ["2000", "2001"] and m.sum() == 24 and (m.sum(axis=1) == 12).all()
    m, labels = closure.window_matrix(t, "hydro_year")
    assert labels == ["hy2000", "hy2001", "hy2002"] and m.sum(axis=1).tolist() == [9, 12, 3]
    with pytest.raises(ConfigError, match="aggregation"):
        closure.window_matrix(t, "week")


def test_demo_budget_closes_with_the_truth(demo):
    problem, data = demo
    assert problem.units == ["demo_01_incr", "demo_02_incr", "demo_03_incr", "demo_04", "demo_05"]
    # units are disjoint and cover the outermost basin
    w = (problem.weights > 0).astype(int)
    assert w.sum(axis=0).max() == 1
    assert w.sum() == int(data["basin_mask"].sel(basin="demo_01").sum())
    # the true evaporation closes every unit's monthly budget P - E - Q - dS (exact bookkeeping)
    s = closure.score(problem, problem.truth)
    assert s["residual_mae"] < 1e-3
    assert s["nse_cell_median"] == pytest.approx(1.0)
    # the product does not: a few mm/month of residual, biased cells
    p = closure.score(problem, problem.product)
    assert p["residual_mae"] > 3.0 and p["bias_cell_mae"] > 0.15


# ---------------------------------------------------------------------------------------------- the model
def test_closure_model_starts_as_the_product_and_checkpointing_is_exact():
    torch.manual_seed(0)
    m = create("closure", in_channels=4, product_channel=1, product_mean=50.0, product_std=20.0)
    x = torch.randn(3, 4, 10, 12)
    out = m({"x": x})
    np.testing.assert_allclose(out["evspsbl"][:, 0].detach(), (x[:, 1] * 20 + 50).clamp(min=0), rtol=1e-6)
    torch.nn.init.normal_(m.head.weight, std=0.1)  # a non-trivial correction
    ref = m({"x": x})["evspsbl"]
    ref.sum().backward()
    g_ref = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.checkpointing = True
    out = m({"x": x})["evspsbl"]
    out.sum().backward()
    assert torch.equal(out, ref)
    for a, p in zip(g_ref, m.parameters()):
        torch.testing.assert_close(p.grad, a)
    with pytest.raises(ConfigError, match="unknown config keys"):
        create("closure", in_channels=4, widht=3)


def test_receptive_field_is_what_the_model_sees():
    from hydroml.memory import probe_receptive_field

    m = create("closure", in_channels=2, context_layers=2, product_channel=0)
    torch.nn.init.normal_(m.head.weight)
    assert m.receptive_field().radius == 2
    assert probe_receptive_field(m, 2, stride=1, size=24).radius == 2


def test_tiled_training_step_equals_whole_grid(demo, one_thread):
    problem, _ = demo
    model = create("closure", **closure._model_params(problem, "closure", {"context_layers": 2}))
    model = model.double()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    idx = np.arange(len(problem.units))
    months = np.arange(0, 6)
    win = closure._Windows(problem, idx)
    w = problem.weights
    area = np.asarray(w.sum(axis=1)).ravel()
    wn = sp.csr_matrix(w.multiply(problem.valid.ravel()[None, :].astype(float)).multiply(1.0 / area[:, None]))
    coo = wn.tocoo()
    wt = torch.sparse_coo_tensor(
        np.vstack([coo.row, coo.col]), coo.data, coo.shape, check_invariants=True
    ).coalesce()
    wsel = np.arange(6)
    wmat = torch.tensor(win.m[np.ix_(wsel, months)])
    target = torch.tensor(win.target[:, wsel])
    ok = torch.from_numpy(win.ok[:, wsel])
    x = torch.from_numpy(problem.x[months]).double()
    prod = torch.from_numpy(problem.product[months]).double()
    valid = torch.from_numpy(problem.valid)
    args = (target, wmat, ok, 20.0, 0.5)
    loss_a = closure._whole_step(model, problem, x, prod, wt, *args, valid)
    g_a = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss_b = closure._tiled_step(model, problem, x, prod, wn, *args, 16, valid)
    assert loss_b == pytest.approx(loss_a, rel=1e-10)
    for a, p in zip(g_a, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------- the method
def test_truth_recovery_on_held_out_units(demo, one_thread):
    """The closure model beats the biased product on units whose budgets it never saw."""
    problem, _ = demo
    test_units = ["demo_02_incr", "demo_04"]  # 466 of 969 cells held out
    train_units = [u for u in problem.units if u not in test_units]
    res = closure.train(problem, train_units, epochs=15, lr=3e-3, seed=0, progress=False)
    assert res.history[-1] < 0.05 * res.history[0]
    e = closure.predict(res.model, problem)
    before = closure.score(problem, problem.product, test_units)
    after = closure.score(problem, e, test_units)
    # measured (seed 0): NSE 0.67 -> 0.94, per-cell |bias| 0.25 -> 0.08, residual 4.8 -> 1.0 mm/month
    assert after["nse_cell_median"] > before["nse_cell_median"] + 0.15
    assert after["bias_cell_mae"] < 0.5 * before["bias_cell_mae"]
    assert after["residual_mae"] < 0.5 * before["residual_mae"]
    # it corrected the product, it did not replace it by something unrelated
    assert 0.05 < after["dev_product_rel"] < 0.6


def test_cf_output_roundtrip(demo, tmp_path):
    from hydroml._io import write_netcdf_atomic

    problem, _ = demo
    model = create("closure", **closure._model_params(problem, "closure", None))
    e = closure.predict(model, problem)  # untrained: the product itself
    np.testing.assert_allclose(e[:, problem.valid], problem.product[:, problem.valid], rtol=1e-5, atol=1e-4)
    ds = closure.to_cf(e, problem)
    path = write_netcdf_atomic(ds, tmp_path / "evspsbl.nc")
    with xr.open_dataset(path) as back:
        v = back["evspsbl"]
        assert v.attrs["units"] == "mm month-1"
        assert v.attrs["standard_name"] == "water_evapotranspiration_amount"
        assert v.attrs["cell_methods"].startswith("time: sum")
        assert back.attrs["Conventions"] == "CF-1.8"
        assert back["lat"].attrs["units"] == "degrees_north"
        np.testing.assert_allclose(v.values, e, equal_nan=True)


# ---------------------------------------------------------------------------------------------- real data
def test_moselle_et_closure_residual(shared_data, one_thread):
    """et.nc on gauge 398: the annual budget residual drops when the correction is trained (in-sample)."""
    from hydroml import catalog
    from hydroml.data.readers.mhm import open_mhm_morph
    from hydroml.data.spatial import basin_area_from_facc, basin_weights
    from hydroml.data.time import to_monthly

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        met = catalog.open("moselle_mhm", root=shared_data, product="meteo")[
            ["pr", "evspsblpot", "tas"]
        ].load()
        et = catalog.open("moselle_mhm", root=shared_data, product="evaporation").load()
        q = catalog.open("moselle_mhm", root=shared_data, product="discharge").load()
    morph = open_mhm_morph(shared_data / "moselle_mhm")
    area = basin_area_from_facc(morph.facc, morph.idgauges).sel(basin=["398"])
    w = basin_weights(met, gauges=morph.idgauges, flowdir=morph.fdir)
    import dataclasses

    w = dataclasses.replace(w, basins=w.basins[[1]], fractions=w.fractions[[1]])
    assert w.basins.tolist() == ["398"]
    mon = to_monthly(met).sel(time=slice("1990-01-01", "1993-12-31"))
    mon = mon.assign(evspsbl=et["evspsbl"].reindex(time=mon.time))
    q_mm = to_monthly((q["q"] * 86.4 / area).rename("q_mm").sel(basin=["398"]))
    problem = closure.build_problem(
        mon, w, q_mm, inputs=["evspsbl", "pr", "evspsblpot", "tas"], area_km2=area, incremental=False
    )
    assert problem.aggregation == "year" and not problem.has_storage
    assert problem.valid.sum() == 34  # the cells of mHM's domain
    p_year = problem.precip[0].sum() / 4
    assert 800 < p_year < 1000  # mm/year over the Moselle
    before = closure.score(problem, problem.product)
    assert 5 < before["residual_mae"] < 12  # et.nc is ~7 mm/month short of P - Q (dS neglected)
    res = closure.train(problem, epochs=100, lr=3e-3, penalty=0.1, seed=0, progress=False,
                        model_params={"context_layers": 1, "pixel_layers": 1})  # fmt: skip
    after = closure.score(problem, closure.predict(res.model, problem))
    assert after["residual_mae"] < 0.5 * before["residual_mae"]
    assert after["dev_product_rel"] < 0.25


# ---------------------------------------------------------------------------------------------- zoo, forecast
def _zoo_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_zoo_gridded.py"
    spec = importlib.util.spec_from_file_location("train_zoo_gridded", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zoo_closure_reproduces_its_card(demo_cache, one_thread):
    import hydroml.zoo as zoo

    model = zoo.load("closure.demo_evaporation")
    card = model.card
    assert card.architecture == "closure" and card.time_step == "monthly"
    assert card.trained_by.startswith("OMP_NUM_THREADS=1 python scripts/train_zoo_gridded.py")
    scores = _zoo_script().score_closure(model)
    for key in ("nse_median", "kge_median", "residual_mae_after"):
        assert scores[key] == pytest.approx(card.test_scores[key], abs=1e-4), key
    # on held-out units the model beats the product it corrects
    assert card.test_scores["nse_median"] > card.test_scores["product_nse_median"] + 0.15
    assert card.test_scores["residual_mae_after"] < 0.5 * card.test_scores["residual_mae_before"]


def test_forecast_writes_the_corrected_grid_as_cf(demo, tmp_path):
    """``hydroml forecast closure.demo_evaporation`` writes the corrected evaporation grid as CF NetCDF."""
    import hydroml.zoo as zoo
    from hydroml._io import write_netcdf_atomic
    from hydroml.cli import main

    problem, data = demo
    inputs = write_netcdf_atomic(data.drop_vars("evspsbl_true"), tmp_path / "demo_with_product.nc")
    path = tmp_path / "evspsbl_corrected.nc"
    args = ["forecast", "closure.demo_evaporation", "--data", str(inputs), "--out", str(path)]
    assert main([*args, "--start", "2014-01-01", "--end", "2015-12-01"]) == 0
    model = zoo.load("closure.demo_evaporation")
    ref = closure.predict(model, problem)[-24:]
    with xr.open_dataset(path) as back:
        v = back["evspsbl"]
        assert v.dims == ("time", "lat", "lon") and v.shape == (24, 32, 32)
        assert v.attrs["standard_name"] == "lwe_thickness_of_water_evaporation_amount"  # CF-valid with mm
        assert v.attrs["units"] == "mm" and v.attrs["hydroml_units"] == "mm/month"
        assert v.attrs["cell_methods"] == "time: sum" and "time_bnds" in back.variables
        land = problem.valid
        np.testing.assert_allclose(v.values[:, land], ref[:, land], rtol=1e-4, atol=1e-3)


def test_kfold_scores_every_unit_out_of_fold(demo, one_thread):
    problem, _ = demo
    oof, folds = closure.kfold(problem, k=2, seed=0, epochs=1, windows_per_step=96)
    tested = sorted(u for f in folds for u in f["test_units"])
    assert tested == sorted(problem.units)  # every unit held out exactly once
    for f in folds:
        assert not set(f["test_units"]) & set(f["train_units"])
        assert {"residual_mae", "nse_cell_median"} <= set(f["after"]) and f["before"]["n_units"] == len(
            f["test_units"]
        )
    # out-of-fold cells differ from the product (a trained correction was applied everywhere)
    land = problem.valid
    assert np.nanmean(np.abs(oof[:, land] - problem.product[:, land])) > 0.01
