"""cnn_lstm and BasinGridDataset: gathers without copies, masking, checkpointing, state, skill on the demo."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from hydroml.data.spatial import basin_weights
from hydroml.datasets.basin_grid import BasinGridDataset
from hydroml.exceptions import ConfigError, DataError
from hydroml.models import create, list_models


def _toy(seed: int = 0):
    """A 12 x 10 grid, 3 variables, 200 days, two basins (one nested), discharge driven by basin rain."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2000-01-01", periods=200, freq="D")
    lat = np.arange(12) * 0.5 + 40.25
    lon = np.arange(10) * 0.5 + 5.25
    pr = rng.gamma(0.8, 4.0, (200, 12, 10))
    tas = 10 + rng.standard_normal((200, 12, 10))
    pet = 2 + rng.random((200, 12, 10))
    masks = np.zeros((2, 12, 10), dtype=bool)
    masks[0, 2:9, 1:7] = True
    masks[1, 3:6, 2:4] = True
    ds = xr.Dataset(
        {
            "pr": (("time", "lat", "lon"), pr),
            "tas": (("time", "lat", "lon"), tas),
            "evspsblpot": (("time", "lat", "lon"), pet),
            "elevation": (("lat", "lon"), rng.random((12, 10)) * 1000),
            "basin_mask": (("basin", "lat", "lon"), masks),
        },
        coords={"time": time, "lat": lat, "lon": lon, "basin": ["big", "small"]},
    )
    w = basin_weights(ds, masks=ds["basin_mask"])
    rain = w.aggregate(ds["pr"]).transpose("basin", "time").values
    q = np.stack([np.convolve(r, np.exp(-np.arange(10) / 3), "full")[:200] * 0.3 for r in rain])
    q[0, 50:60] = np.nan
    ds["q_mm"] = (("basin", "time"), q)
    return ds, w


def test_gather_is_index_arithmetic_on_one_stored_stack():
    ds, w = _toy()
    d = BasinGridDataset(ds, w, ["pr", "tas"], ["q_mm"], 30, static_maps=["elevation"], predict_last_n=5)
    assert d.window == (7, 6)  # the bounding box of the larger basin
    # storage: one (time, y, x, channel) stack, not one window per sample
    assert tuple(d.x.shape) == (200, 12, 10, 2)
    assert d.index_bytes_per_sample == 8.0
    idx = np.array([0, 17, len(d) - 1, 5])
    b = d.get_batch(idx)
    assert b["x_grid"].shape == (4, 30, 2, 7, 6) and b["x_static_grid"].shape == (4, 1, 7, 6)
    st = d.normaliser["pr"]
    for k in range(len(idx)):
        basin, t = int(b["basin"][k]), int(b["time"][k])
        r, c = d.origins[basin]
        raw = ds["pr"].values[t - 29 : t + 1, r : r + 7, c : c + 6]
        np.testing.assert_allclose(
            b["x_grid"][k, :, 0].numpy(), (raw - st["mean"]) / st["std"], rtol=1e-5, atol=1e-5
        )
        y = d.inverse_target(b["y"][k, :, 0].numpy())
        np.testing.assert_allclose(y, ds["q_mm"].values[basin, t - 4 : t + 1], rtol=1e-4, equal_nan=True)
        assert torch.equal(b["mask"][k, :, 0], torch.isfinite(b["y"][k, :, 0]))
        cw = b["cell_weight"][k].numpy()
        assert cw.sum() == pytest.approx(1.0, abs=1e-6)
        mask = ds["basin_mask"].values[basin, r : r + 7, c : c + 6]
        np.testing.assert_array_equal(cw > 0, mask)
    # samples whose last 5 targets are all missing are excluded, partly missing ones are kept (masked)
    times = d._time[d._basin == 0]
    assert 53 in times and 60 in times and not np.isin(np.arange(54, 60), times).any()


def test_period_normaliser_and_errors():
    ds, w = _toy()
    tr = BasinGridDataset(ds, w, ["pr"], ["q_mm"], 30, period=("2000-02-01", "2000-04-30"))
    te = BasinGridDataset(
        ds, w, ["pr"], ["q_mm"], 30, period=("2000-05-01", "2000-07-18"), normaliser=tr.normaliser
    )
    assert te.normaliser == tr.normaliser
    assert tr.sample_time(np.arange(len(tr))).min() == pd.Timestamp("2000-02-01")
    assert te.sample_time(np.arange(len(te))).max() == pd.Timestamp("2000-07-18")
    with pytest.raises(DataError, match="not in the data"):
        BasinGridDataset(ds, w, ["rsds"], ["q_mm"], 30)
    with pytest.raises(DataError, match="no step"):
        BasinGridDataset(ds, w, ["pr"], ["q_mm"], 30, period=("1990-01-01", "1990-12-31"))
    with pytest.raises(ConfigError, match="predict_last_n"):
        BasinGridDataset(ds, w, ["pr"], ["q_mm"], 10, predict_last_n=11)


def test_model_masks_outside_the_basin_and_checkpointing_is_exact(one_thread):
    ds, w = _toy()
    d = BasinGridDataset(ds, w, ["pr", "tas", "evspsblpot"], ["q_mm"], 30, static_maps=["elevation"])
    assert "cnn_lstm" in list_models()
    torch.manual_seed(0)
    m = create("cnn_lstm", n_inputs=3, n_static_maps=1, conv_width=6, hidden_size=8)
    b = d.get_batch(np.arange(0, len(d), 37)[:4])
    out = m(b)
    assert out["y_hat"].shape == (4, 30, 1) and out["h_n"].shape == (1, 4, 8)
    # what lies outside the basin does not matter
    b2 = dict(b)
    outside = (b["cell_weight"] == 0)[:, None, None]
    b2["x_grid"] = torch.where(outside, torch.randn_like(b["x_grid"]) * 5, b["x_grid"])
    b2["x_static_grid"] = torch.where(outside[:, 0], torch.randn_like(b["x_static_grid"]), b["x_static_grid"])
    torch.testing.assert_close(m(b2)["y_hat"], out["y_hat"])
    # inside it does
    b3 = dict(b)
    b3["x_grid"] = torch.where(~outside, b["x_grid"] + 1.0, b["x_grid"])
    assert (m(b3)["y_hat"] - out["y_hat"]).abs().max() > 1e-3
    # checkpointing the CNN over time chunks: same outputs and gradients
    out["y_hat"].square().sum().backward()
    g_ref = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_checkpointing(7)
    y = m(b)["y_hat"]
    y.square().sum().backward()
    torch.testing.assert_close(y, out["y_hat"], rtol=1e-6, atol=1e-6)  # float32 round-off
    for a, p in zip(g_ref, m.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))  # summation order
    # a carried state continues the sequence exactly
    m.set_checkpointing(False)
    first = m({**b, "x_grid": b["x_grid"][:, :18]})
    second = m({**b, "x_grid": b["x_grid"][:, 18:], "state": first["state"]})
    torch.testing.assert_close(
        torch.cat([first["y_hat"], second["y_hat"]], 1), out["y_hat"], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ConfigError, match="unknown config keys"):
        create("cnn_lstm", n_inputs=3, hiden_size=3)
    with pytest.raises(ValueError, match="x_grid"):
        m({**b, "x_grid": b["x_grid"][:, :, :2]})


def test_cnn_lstm_learns_demo_discharge(demo_cache, one_thread):
    """A small cnn_lstm on the demo's smallest basin beats the day-of-year climatology on later years."""
    from hydroml.data.demo import load_demo

    g = load_demo("grid", cache_dir=demo_cache)
    w = basin_weights(g, masks=g["basin_mask"].astype(bool))
    inputs = ["pr", "tas", "evspsblpot"]
    kw = dict(basins=["demo_05"], static_maps=["elevation"])
    tr = BasinGridDataset(
        g, w, inputs, ["q_mm"], 45, predict_last_n=30, period=("2001-01-01", "2008-12-31"), **kw
    )
    te = BasinGridDataset(
        g, w, inputs, ["q_mm"], 45, period=("2010-01-01", "2011-12-31"), normaliser=tr.normaliser, **kw
    )
    torch.manual_seed(0)
    m = create("cnn_lstm", n_inputs=3, n_static_maps=1, conv_width=8, hidden_size=16)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    pos = np.arange(len(tr))[::15]
    for _ in range(6):
        for s in np.array_split(rng.permutation(pos), max(1, len(pos) // 16)):
            b = tr.get_batch(s)
            y = m(b)["y_hat"][:, -30:]
            loss = torch.where(b["mask"], y - torch.nan_to_num(b["y"]), torch.zeros_like(y)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        b = te.get_batch(np.arange(len(te)))
        sim = te.inverse_target(m(b)["y_hat"][:, -1, 0].numpy())
    obs = g["q_mm"].sel(basin="demo_05").values[b["time"].numpy()]
    nse = 1 - np.sum((sim - obs) ** 2) / np.sum((obs - obs.mean()) ** 2)
    q_tr = g["q_mm"].sel(basin="demo_05", time=slice("2001", "2008")).to_series()
    clim = q_tr.groupby(q_tr.index.day_of_year).mean()
    c = clim.reindex(te.time[b["time"].numpy()].day_of_year).values
    nse_clim = 1 - np.sum((c - obs) ** 2) / np.sum((obs - obs.mean()) ** 2)
    # measured: NSE 0.56 against 0.08 for the climatology (6 epochs of 13 small batches)
    assert nse > 0.4 and nse > nse_clim + 0.25, (nse, nse_clim)


def test_moselle_basin_window(shared_data):
    """Gauge 398 on the real 24 km Moselle grid: fractions from the 500 m flow direction, window and averages."""
    from hydroml import catalog
    from hydroml.data.readers.mhm import open_mhm_morph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        met = catalog.open("moselle_mhm", root=shared_data, product="meteo")[["pr", "tas"]].load()
        q = catalog.open("moselle_mhm", root=shared_data, product="discharge").load()
    morph = open_mhm_morph(shared_data / "moselle_mhm")
    w = basin_weights(met, gauges=morph.idgauges, flowdir=morph.fdir)
    grid = met.assign(q=q["q"].reindex(basin=w.basins.tolist(), time=met.time))
    d = BasinGridDataset(
        grid, w, ["pr", "tas"], ["q"], 365, basins=["398"], period=("1990-01-01", "1993-12-31")
    )
    assert len(d) == 1461  # every day of 1990-1993 has discharge and a full year of meteo before it
    assert d.window == (9, 6)
    cw = d.cell_weight[0].numpy()
    assert (cw > 0).sum() == 34
    b = d.get_batch([len(d) - 1])
    # the model's lumped channel (weighted mean of the window) equals the data layer's basin average
    lumped = torch.einsum("tchw,hw->tc", b["x_grid"][0], b["cell_weight"][0])[:, 0].numpy()
    st = d.normaliser["pr"]
    ref = w.aggregate(met["pr"]).sel(basin="398").values[-365:]
    np.testing.assert_allclose(lumped * st["std"] + st["mean"], ref, rtol=1e-4, atol=1e-4)


def test_zoo_cnn_lstm_reproduces_its_card(demo_cache, one_thread):
    import importlib.util
    from pathlib import Path

    import hydroml.zoo as zoo

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_zoo_gridded.py"
    spec = importlib.util.spec_from_file_location("train_zoo_gridded", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = zoo.load("cnn_lstm.demo_discharge")
    card = model.card
    assert card.architecture == "cnn_lstm" and card.forecast_mode == "stateful"
    assert set(card.inputs) | set(card.static_inputs) | set(card.targets) <= set(
        card.normalisation["variables"]
    )
    scores = script.score_cnn_lstm(model)
    assert scores["nse_median"] == pytest.approx(card.test_scores["nse_median"], abs=1e-4)
    for basin, value in card.test_scores["nse"].items():
        assert scores["nse"][basin] == pytest.approx(value, abs=1e-4), basin
    assert card.test_scores["nse_median"] > 0.3
