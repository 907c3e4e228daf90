"""xarray layer (== NumPy twin, lazy on dask), torch twins, public API contract and doctests."""

from __future__ import annotations

import doctest
import inspect

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydroml import evaluation as ev
from hydroml.exceptions import ConfigError, DataError

METRIC_NAMES = sorted(ev.METRICS)


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(5)
    time = pd.date_range("2001-01-01", periods=400)
    o = rng.gamma(2.0, size=(3, 2, 400))
    o[:, :, 150] += 20
    s = o * rng.normal(1, 0.25, size=o.shape)
    o[rng.random(o.shape) < 0.05] = np.nan
    s[rng.random(s.shape) < 0.02] = np.nan
    coords = {"basin": ["a", "b", "c"], "member": [0, 1], "time": time}
    obs = xr.DataArray(o, dims=("basin", "member", "time"), coords=coords, name="q")
    sim = xr.DataArray(s, dims=("basin", "member", "time"), coords=coords, name="q")
    return obs, sim


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_xarray_equals_numpy_twin(cube, name):
    obs, sim = cube
    f = getattr(ev, name)
    out = f(obs, sim)
    assert isinstance(out, xr.DataArray)
    assert out.dims == ("basin", "member") and list(out.basin.values) == ["a", "b", "c"]
    np.testing.assert_array_equal(out.values, f(obs.values, sim.values))
    # time first: dim is found by name, not position
    np.testing.assert_array_equal(f(obs.transpose("time", ...), sim, dim="time").values, out.values)


def test_lazy_on_dask_and_equal(cube):
    import dask  # noqa: F401  (dev dependency: fails, never skips)

    obs, sim = cube
    lo, ls = obs.chunk({"basin": 1, "time": 100}), sim.chunk({"basin": 2, "time": 50})
    out = ev.evaluate(lo, ls, ["nse", "kge", "fhv", "spearman_r"])
    assert all(v.chunks is not None for v in out.data_vars.values())  # still lazy
    eager = ev.evaluate(obs, sim, ["nse", "kge", "fhv", "spearman_r"])
    xr.testing.assert_allclose(out.compute(), eager, rtol=1e-12)
    k = ev.kge(lo, ls, components=True)
    assert isinstance(k, xr.Dataset) and set(k) == {"kge", "r", "alpha", "beta"}


def test_components_dataset_and_names(cube):
    obs, sim = cube
    k = ev.kge_np(obs, sim, components=True)
    assert set(k) == {"kge_np", "r_s", "alpha_np", "beta"}
    assert ev.nse(obs, sim).name == "nse"


def test_alignment_and_dimension_errors(cube):
    obs, sim = cube
    out = ev.nse(obs, sim.isel(time=slice(100, None)))  # inner join on time
    np.testing.assert_array_equal(
        out.values, ev.nse(obs.isel(time=slice(100, None)), sim.isel(time=slice(100, None))).values
    )
    with pytest.raises(DataError, match=r"no dimension 'date'.*\('basin', 'member', 'time'\)"):
        ev.nse(obs, sim, dim="date")
    with pytest.raises(DataError, match="share no 'time'"):
        ev.nse(obs.isel(time=slice(0, 10)), sim.isel(time=slice(20, 30)))
    with pytest.raises(ConfigError, match="axis= is for NumPy"):
        ev.nse(obs, sim, axis=-1)
    with pytest.raises(ConfigError, match="dim= is for xarray"):
        ev.nse(obs.values, sim.values, dim="time")
    # a plain array paired with a DataArray of the same shape takes its labels
    np.testing.assert_array_equal(ev.nse(obs, sim.values).values, ev.nse(obs, sim).values)


def test_other_reduction_dim(cube):
    obs, sim = cube
    out = ev.nse(obs, sim, dim="member")
    assert out.dims == ("basin", "time")


def test_keyword_obs_sim_everywhere():
    o, s = np.array([1.0, 2.0, 4.0, 3.0]), np.array([1.5, 2.0, 3.5, 3.0])
    for name in METRIC_NAMES:
        f = getattr(ev, name)
        params = list(inspect.signature(f).parameters)
        assert params[:2] == ["obs", "sim"], name
        np.testing.assert_array_equal(f(obs=o, sim=s), f(o, s))


def test_every_metric_documents_formula_perfect_range_reference_example():
    for name in [*METRIC_NAMES, "evaluate"]:
        doc = getattr(ev, name).__doc__
        assert ">>>" in doc, name
        if name != "evaluate":
            for key in (".. math::", "Perfect value", "Range", "References"):
                assert key in doc, (name, key)
            assert getattr(ev, name).perfect == ev.METRICS[name].perfect


@pytest.mark.parametrize(
    "module",
    [
        "hydroml.evaluation",
        "hydroml.evaluation.metrics",
        "hydroml.evaluation._core",
        "hydroml.evaluation.losses",
    ],
)
def test_doctests(module):
    import importlib

    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


# ----------------------------------------------------------------------------------------------------------
# torch twins
import torch  # noqa: E402  (dev dependency: fails, never skips)


def test_torch_mse_and_nse_equal_numpy(cube):
    from hydroml.evaluation import losses

    obs, sim = cube
    o = torch.tensor(obs.values)
    s = torch.tensor(sim.values)
    np.testing.assert_allclose(losses.nse(o, s).numpy(), ev.nse(obs.values, sim.values), rtol=1e-12)
    np.testing.assert_allclose(losses.mse(o, s).numpy(), ev.mse(obs.values, sim.values), rtol=1e-12)
    # constant observations: NaN, never inf
    assert torch.isnan(losses.nse(torch.ones(10), torch.arange(10.0)))


def test_nse_star_loss_weights_basins_by_variance_and_masks_nan():
    from hydroml.evaluation.losses import NSELoss, mse_loss, nse_loss

    # two basins, same relative error; without weighting the big basin dominates
    obs = torch.tensor([[[1.0], [2.0], [float("nan")]], [[100.0], [200.0], [300.0]]])  # [B, T, 1]
    sim = (obs * 1.1).nan_to_num(0.0).requires_grad_(True)
    std = torch.tensor([0.5, 50.0])
    loss = nse_loss(obs, sim, std)
    se = (sim.detach() - obs) ** 2
    w = 1 / (std + 0.1) ** 2
    expected = (se[0, :2, 0].sum() * w[0] + se[1, :, 0].sum() * w[1]) / 5
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.isfinite(sim.grad).all() and sim.grad[0, 2, 0] == 0  # NaN target: no gradient
    assert torch.allclose(NSELoss()(obs, sim, std), loss)
    # broadcastable std [B, 1, 1] gives the same
    assert torch.allclose(nse_loss(obs, sim, std.reshape(2, 1, 1)), loss)
    # all targets missing: 0, finite gradient
    nan_obs = torch.full((2, 3), float("nan"))
    s2 = torch.zeros(2, 3, requires_grad=True)
    lo = mse_loss(nan_obs, s2)
    lo.backward()
    assert lo.item() == 0 and torch.isfinite(s2.grad).all()


def test_nse_star_equals_one_minus_mean_nse_for_train_std():
    """With eps=0 and sigma_b the basin's own (population) std, NSE* = mean over basins of (1 - NSE)."""
    from hydroml.evaluation import losses

    rng = np.random.default_rng(0)
    o = rng.gamma(2.0, size=(4, 200))
    s = o + rng.normal(0, 0.5, size=o.shape)
    ot, st_ = torch.tensor(o), torch.tensor(s)
    std = ot.std(dim=1, unbiased=False)
    loss = losses.nse_loss(ot, st_, std, eps=0.0)
    np.testing.assert_allclose(loss.item(), np.mean(1 - ev.nse(o, s)), rtol=1e-12)


def test_dataset_inputs_stay_eager_and_match(cube):
    obs, sim = cube
    dso = xr.Dataset({"q": obs, "q2": 2 * obs})
    dss = xr.Dataset({"q": sim, "q2": 2 * sim})
    out = ev.nse(dso, dss)
    assert isinstance(out, xr.Dataset) and out["q"].chunks is None  # not turned into dask
    np.testing.assert_array_equal(out["q"].values, ev.nse(obs, sim).values)
    np.testing.assert_allclose(out["q2"].values, out["q"].values, rtol=1e-12)
