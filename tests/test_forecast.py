"""hydroml.forecast: sliding windows, chunked stateful passes, gridded maps, CF NetCDF output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from hydroml.exceptions import ConfigError, DataError
from hydroml.forecast import ForecastModel, config_hash, forecast, write_forecast

SEQ_LEN = 60


class _RecurrentModel(nn.Module):
    """A small model following the basin-model contract (``y_hat`` on every step, ``h_n``/``c_n``, ``state``)."""

    def __init__(self, n_dynamic: int, n_static: int, hidden: int = 12, n_out: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(n_dynamic + n_static, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)
        with torch.no_grad():  # a forget-gate bias that keeps memory long, so windows and states differ
            self.lstm.bias_hh_l0[hidden : 2 * hidden] = 3.0

    def forward(self, batch: dict) -> dict:
        x = batch["x_dynamic"]
        if "x_static" in batch:
            x = torch.cat([x, batch["x_static"][:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        out, (h, c) = self.lstm(x, batch.get("state"))
        return {"y_hat": self.head(out), "h_n": h, "c_n": c}


def _model(name: str = "lstm") -> ForecastModel:
    """The registered hydroml model when available, else the contract stand-in above."""
    torch.manual_seed(0)
    try:
        from hydroml.models import create, list_models

        if name in list_models():
            net = create(name, n_dynamic=2, n_static=1, hidden_size=12, n_targets=1)
        else:
            net = _RecurrentModel(2, 1)
    except TypeError:
        net = _RecurrentModel(2, 1)
    stats = {"pr": (2.0, 3.0), "tas": (5.0, 8.0), "area_km2": (100.0, 50.0), "q_mm": (1.0, 1.5)}
    return ForecastModel(
        model=net,
        architecture=name,
        inputs=["pr", "tas"],
        static_inputs=["area_km2"],
        targets=["q_mm"],
        normaliser=stats,
        seq_len=SEQ_LEN,
        config={"model": name, "seq_len": SEQ_LEN},
        model_id="test_20260101_000000",
    )


@pytest.fixture(scope="module")
def basin_data() -> xr.Dataset:
    """Inputs only (no discharge): three basins, 600 days of rain and temperature."""
    rng = np.random.default_rng(1)
    time = pd.date_range("2001-01-01", periods=600, freq="D")
    doy = time.day_of_year.to_numpy()
    tas = 5 + 10 * np.sin(2 * np.pi * (doy - 100) / 365) + rng.normal(0, 2, (3, 600))
    pr = rng.gamma(0.6, 4.0, (3, 600))
    return xr.Dataset(
        {
            "pr": (("basin", "time"), pr, {"units": "mm/day"}),
            "tas": (("basin", "time"), tas, {"units": "degC"}),
            "area_km2": (("basin",), np.array([50.0, 120.0, 300.0])),
        },
        coords={"basin": ["b1", "b2", "b3"], "time": time},
    )


def test_sliding_equals_one_model_call_per_window(basin_data):
    fm = _model()
    pred = forecast(fm, basin_data, "2001-06-01", "2001-06-20", mode="sliding", batch_size=7)
    # reference: call the model once per (basin, day) on its own normalised seq_len window
    x = np.stack([basin_data["pr"].values, basin_data["tas"].values], -1)
    x = (x - np.array([2.0, 5.0])) / np.array([3.0, 8.0])
    xs = (basin_data["area_km2"].values[:, None] - 100.0) / 50.0
    times = pd.DatetimeIndex(basin_data.time.values)
    for b in range(3):
        for day in pd.date_range("2001-06-01", "2001-06-20")[::6]:
            i = times.get_loc(day)
            batch = {
                "x_dynamic": torch.tensor(x[b : b + 1, i - SEQ_LEN + 1 : i + 1], dtype=torch.float32),
                "x_static": torch.tensor(xs[b : b + 1], dtype=torch.float32),
            }
            with torch.no_grad():
                ref = fm.model(batch)["y_hat"][0, -1, 0].item() * 1.5 + 1.0
            got = float(pred["q_mm"].sel(basin=basin_data.basin.values[b], time=day))
            assert got == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_stateful_in_chunks_equals_one_pass(basin_data):
    fm = _model()
    one = forecast(fm, basin_data, "2001-04-01", "2002-08-01", mode="stateful", chunk_size=10_000)
    for chunk, batch in ((7, 2), (37, 1), (100, 3)):
        chunked = forecast(
            fm, basin_data, "2001-04-01", "2002-08-01", mode="stateful", chunk_size=chunk, batch_size=batch
        )
        # identical maths; only float32 rounding of differently blocked matrix products may differ
        np.testing.assert_allclose(chunked["q_mm"].values, one["q_mm"].values, rtol=0, atol=1e-6)
    assert one["q_mm"].notnull().all()
    # stateful and sliding differ by design (the state reaches back further than seq_len) but not wildly
    sliding = forecast(fm, basin_data, "2001-04-01", "2002-08-01", mode="sliding")
    assert np.nanmax(np.abs(sliding["q_mm"].values - one["q_mm"].values)) > 0


def test_stateful_reads_in_blocks_and_runs_small_batches_on_one_thread(basin_data, monkeypatch):
    import hydroml.forecast as fc

    fm = _model()
    one = forecast(fm, basin_data, "2001-04-01", "2002-08-01", mode="stateful", chunk_size=10_000)
    # read blocks of 7 chunks (600 floats / (3 basins x 2 inputs) = 100 steps -> 91 = 7 x 13) instead of one read
    # of the whole period: several blocks, several chunks per block, a short last chunk
    monkeypatch.setattr(fc, "_READ_BLOCK_FLOATS", 600)
    reads: list[tuple[int, int]] = []
    dynamic_arrays = fc._dynamic_arrays

    def count_reads(ds, fm_, i0, i1, scaler):
        reads.append((i0, i1))
        return dynamic_arrays(ds, fm_, i0, i1, scaler)

    monkeypatch.setattr(fc, "_dynamic_arrays", count_reads)
    seen: list[int] = []
    model_forward = fm.model.forward

    def spy(batch):
        seen.append(torch.get_num_threads())
        return model_forward(batch)

    monkeypatch.setattr(fm.model, "forward", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blocked = forecast(fm, basin_data, "2001-04-01", "2002-08-01", mode="stateful", chunk_size=13)
        assert torch.get_num_threads() == 2  # restored after the pass
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(blocked["q_mm"].values, one["q_mm"].values, rtol=0, atol=1e-6)
    assert len(seen) > 30 and set(seen) == {1}  # 3 basins x hidden 12: far below the threading threshold
    assert len(reads) == -(-len(seen) // 7) and all(b - a <= 91 for a, b in reads)  # one read per 7 chunks


def test_no_observations_needed_and_cf_attributes(basin_data, tmp_path):
    assert "q_mm" not in basin_data
    fm = _model()
    pred = forecast(fm, basin_data, "2001-03-15", "2001-12-31", mode="stateful")
    path = write_forecast(pred, tmp_path / "pred.nc")
    assert not list(tmp_path.glob(".pred.nc*")), "temporary file left behind"
    with xr.open_dataset(path) as back:
        q = back["q_mm"]
        assert q.dims == ("basin", "time")
        assert q.attrs["units"] and q.attrs["long_name"]
        assert back["time"].attrs["standard_name"] == "time"
        assert back.attrs["Conventions"] == "CF-1.8"
        for key in ("history", "source", "model_name", "model_version", "config_hash"):
            assert back.attrs.get(key), key
        assert back.attrs["config_hash"] == config_hash({"model": "lstm", "seq_len": SEQ_LEN})
        assert back.attrs["config_hash"].startswith("sha256:") and len(back.attrs["config_hash"]) == 71
        assert str(back.time.values[0])[:10] == "2001-03-15" and back.sizes["time"] == 292


def test_missing_input_gives_nan_in_sliding_and_error_in_stateful(basin_data):
    fm = _model()
    gappy = basin_data.copy(deep=True)
    gappy["pr"][1, 200] = np.nan  # 2001-07-20 in basin b2
    pred = forecast(fm, gappy, "2001-07-01", "2001-10-31", mode="sliding")
    q = pred["q_mm"].to_series().unstack("time")
    assert q.loc["b2", "2001-07-19"] == q.loc["b2", "2001-07-19"]  # before the gap: predicted
    assert np.isnan(q.loc["b2", "2001-07-20"]) and np.isnan(q.loc["b2", "2001-09-17"])  # window holds the gap
    assert np.isfinite(q.loc["b2", "2001-09-18"])  # seq_len days after the gap: predicted again
    assert q.loc[["b1", "b3"]].notnull().all().all()
    with pytest.raises(DataError, match=r"'pr' is missing for basin b2 on 2001-07-20"):
        forecast(fm, gappy, "2001-07-01", "2001-10-31", mode="stateful")


def test_errors_name_what_is_wrong(basin_data):
    fm = _model()
    with pytest.raises(DataError, match="needs 60 time steps of input before 2001-01-10"):
        forecast(fm, basin_data, "2001-01-10", "2001-02-01", mode="stateful")
    with pytest.raises(DataError, match=r"lacks the dynamic inputs \['tas'\]"):
        forecast(fm, basin_data.drop_vars("tas"), "2001-06-01", "2001-06-02")
    with pytest.raises(ConfigError, match="valid modes: sliding, stateful"):
        forecast(fm, basin_data, mode="recursive")


class _PixelModel(nn.Module):
    """A 1x1-convolution stand-in for the gridded-model contract (``{"x": [B, C, H, W]}`` -> ``y_hat``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, batch: dict) -> dict:
        return {"y_hat": self.conv(batch["x"])}


def test_gridded_forecast_predicts_every_cell_with_lags():
    rng = np.random.default_rng(3)
    time = pd.date_range("1990-01-01", periods=24, freq="MS")
    pr = rng.gamma(2, 30, (24, 5, 4))
    pr[:, 0, 0] = np.nan  # a cell outside the domain
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), pr), "elev": (("lat", "lon"), rng.normal(300, 100, (5, 4)))},
        coords={"time": time, "lat": np.arange(5.0), "lon": np.arange(4.0)},
    )
    torch.manual_seed(0)
    fm = ForecastModel(
        model=_PixelModel(3),
        architecture="unet",
        inputs=["pr"],
        static_inputs=["elev"],
        targets=["evspsbl"],
        normaliser={"pr": (60.0, 40.0), "elev": (300.0, 100.0), "evspsbl": (0.0, 1.0)},
        lags=2,
    )
    pred = forecast(fm, ds, "1990-03-01", "1991-12-01", batch_size=5)
    assert pred["evspsbl"].dims == ("time", "lat", "lon") and pred.sizes["time"] == 22
    assert np.isnan(pred["evspsbl"][:, 0, 0]).all() and pred["evspsbl"][:, 1:, 1:].notnull().all()
    assert pred["evspsbl"].attrs["units"] in {"mm/month", "mm month-1"}
    # reference for one month: channels [pr(t), pr(t-1), elev], normalised
    w = fm.model.conv.weight.detach().numpy().ravel()
    b = fm.model.conv.bias.item()
    t = 5
    ref = w[0] * (pr[t] - 60) / 40 + w[1] * (pr[t - 1] - 60) / 40 + w[2] * (ds.elev.values - 300) / 100 + b
    np.testing.assert_allclose(pred["evspsbl"].values[t - 2, 1:, 1:], ref[1:, 1:], rtol=1e-5)


def test_hydroml_normaliser_with_log_target_is_inverted(basin_data):
    from hydroml.datasets.normalise import Normaliser

    norm = Normaliser()
    for v in ("pr", "tas", "area_km2"):
        norm.fit_array(v, basin_data[v].values)
    norm.fit_array("q_mm", np.array([0.2, 0.5, 1.0, 3.0, 8.0]), log=True, eps=0.1)
    fm = _model()
    fm.normaliser = norm
    pred = forecast(fm, basin_data, "2001-06-01", "2001-06-01", mode="sliding")
    i = int(np.flatnonzero(basin_data.time.values == np.datetime64("2001-06-01"))[0])
    x = np.stack(
        [norm.transform(v, basin_data[v].values[:, i - SEQ_LEN + 1 : i + 1]) for v in ("pr", "tas")], -1
    )
    batch = {
        "x_dynamic": torch.tensor(x, dtype=torch.float32),
        "x_static": torch.tensor(
            norm.transform("area_km2", basin_data["area_km2"].values)[:, None], dtype=torch.float32
        ),
    }
    with torch.no_grad():
        y = fm.model(batch)["y_hat"][:, -1, 0].numpy()
    np.testing.assert_allclose(pred["q_mm"].values[:, 0], norm.inverse("q_mm", y), rtol=1e-5)


def test_lead_time_labels_outputs_with_the_target_day(basin_data):
    fm = _model()
    fm.lead_time = 2
    pred = forecast(fm, basin_data, "2001-06-01", "2001-06-10", mode="stateful")
    assert str(pred.time.values[0])[:10] == "2001-06-03" and pred.sizes["time"] == 10
