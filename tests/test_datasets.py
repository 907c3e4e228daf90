"""Sequence datasets: windows, NaN policy, monthly targets, normalisation, splits, batch sampling."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from hydroml.datasets import (
    BasinDataset,
    BatchSampler,
    Normaliser,
    kfold_basins,
    split_by_basins,
    split_by_period,
)
from hydroml.exceptions import ConfigError, DataError

DYN = ["pr", "tas", "evspsblpot"]
STAT = ["area_km2", "elev_mean"]


def make_basins(n_basins: int = 4, start: str = "2000-01-01", end: str = "2003-12-31", seed: int = 0):
    """A small lumped dataset with realistic-looking values (random but reproducible)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(start, end, freq="D")
    nt = len(time)
    doy = time.day_of_year.values
    pr = rng.gamma(0.6, 5.0, (n_basins, nt)) * (rng.random((n_basins, nt)) < 0.5)
    tas = 10 + 8 * np.cos(2 * np.pi * (doy - 200) / 365)[None] + rng.normal(0, 2, (n_basins, nt))
    pet = np.clip(
        2 + 1.5 * np.cos(2 * np.pi * (doy - 180) / 365)[None] + rng.normal(0, 0.3, (n_basins, nt)), 0, None
    )
    q = np.empty((n_basins, nt))
    q[:, 0] = 1.0
    for t in range(1, nt):
        q[:, t] = 0.9 * q[:, t - 1] + 0.1 * pr[:, t]
    return xr.Dataset(
        {
            "pr": (("basin", "time"), pr.astype(np.float32)),
            "tas": (("basin", "time"), tas.astype(np.float32)),
            "evspsblpot": (("basin", "time"), pet.astype(np.float32)),
            "q_mm": (("basin", "time"), q.astype(np.float32)),
            "area_km2": ("basin", rng.uniform(100, 5000, n_basins).astype(np.float32)),
            "elev_mean": ("basin", rng.uniform(100, 2000, n_basins).astype(np.float32)),
        },
        coords={"basin": [f"b{i}" for i in range(n_basins)], "time": time},
    )


@pytest.fixture
def data():
    return make_basins()


def _norm_raw(ds: BasinDataset, raw: xr.Dataset, name: str) -> np.ndarray:
    return ds.normaliser.transform(name, raw[name].sel(basin=ds.basins).values.astype(np.float64))


def test_windows_equal_slicing_of_the_raw_array(data):
    ds = BasinDataset(data, DYN, STAT, ["q_mm"], 100, predict_last_n=3, period=("2001-01-01", "2002-12-31"))
    idx = np.random.default_rng(1).choice(len(ds), 64, replace=False)
    batch = ds.get_batch(idx)
    assert batch["x_dynamic"].shape == (64, 100, 3) and batch["x_dynamic"].dtype == torch.float32
    assert batch["y"].shape == (64, 3, 1) and batch["x_static"].shape == (64, 2)
    raw = {v: _norm_raw(ds, data, v) for v in DYN + ["q_mm"]}
    for k in range(64):
        b, t = int(batch["basin"][k]), int(batch["time"][k])
        # the data time axis and the dataset's time axis agree by date
        t_data = data.indexes["time"].get_loc(ds.time[t])
        for f, v in enumerate(DYN):
            np.testing.assert_allclose(
                batch["x_dynamic"][k, :, f].numpy(), raw[v][b, t_data - 99 : t_data + 1], rtol=1e-5, atol=1e-6
            )
        np.testing.assert_allclose(
            batch["y"][k, :, 0].numpy(), raw["q_mm"][b, t_data - 2 : t_data + 1], rtol=1e-5, atol=1e-6
        )
        assert ds.time[t] >= pd.Timestamp("2001-01-03")  # all three targets inside the period
    assert (batch["y_step"] == torch.tensor([97, 98, 99])).all()
    # samples: every basin, every day of the period minus the first predict_last_n - 1
    assert len(ds) == 4 * (730 - 2)


def test_lead_time_shifts_targets(data):
    ds = BasinDataset(data, DYN, [], ["q_mm"], 30, lead_time=5, period=("2001-01-01", "2001-12-31"))
    batch = ds.get_batch(np.arange(len(ds)))
    raw = _norm_raw(ds, data, "q_mm")
    for k in range(0, len(ds), 97):
        b, t = int(batch["basin"][k]), int(batch["time"][k])
        t_data = data.indexes["time"].get_loc(ds.time[t])
        np.testing.assert_allclose(batch["y"][k, 0, 0].numpy(), raw[b, t_data + 5], rtol=1e-5, atol=1e-6)
    target_dates = ds.time[batch["time"].numpy()] + pd.Timedelta(days=5)
    assert target_dates.min() == pd.Timestamp("2001-01-01") and target_dates.max() == pd.Timestamp(
        "2001-12-31"
    )


def test_batch_gather_equals_per_item_gather(data):
    ds = BasinDataset(data, DYN, STAT, ["q_mm"], 50, predict_last_n=2)
    idx = np.array([0, 5, len(ds) - 1, 17, 3])
    batch = ds.get_batch(idx)
    items = [ds[int(i)] for i in idx]
    for key in batch:
        torch.testing.assert_close(batch[key], torch.stack([it[key] for it in items]), equal_nan=True)


def test_nan_inputs_exclude_or_fill(data):
    data = data.copy(deep=True)
    data["pr"][0, 500] = np.nan  # one missing day in basin b0
    seq = 30
    full = BasinDataset(make_basins(), DYN, [], ["q_mm"], seq)
    ex = BasinDataset(data, DYN, [], ["q_mm"], seq)
    assert len(full) - len(ex) == seq  # exactly the windows that contain day 500
    b, t = ex.sample_locations()
    bad = (b == 0) & (t >= 500) & (t < 500 + seq)
    assert not bad.any()
    assert ((b == 0) & (t == 499)).any() and ((b == 0) & (t == 500 + seq)).any()
    filled = BasinDataset(data, DYN, [], ["q_mm"], seq, nan_policy="fill", fill_value=0.0)
    assert len(filled) == len(full)
    k = np.flatnonzero((filled.sample_locations()[0] == 0) & (filled.sample_locations()[1] == 510))[0]
    x = filled.get_batch([k])["x_dynamic"][0]
    assert torch.isfinite(x).all() and x[seq - 1 - 10, 0] == 0.0


def test_nan_targets_masked_not_excluded(data):
    data = data.copy(deep=True)
    data["q_mm"][1, 600:610] = np.nan
    ds = BasinDataset(data, DYN, [], ["q_mm"], 30, predict_last_n=5)
    b, t = ds.sample_locations()
    # windows whose five targets are all NaN (t in 604..609) are excluded, partial ones kept and masked
    assert not ((b == 1) & (t >= 604) & (t <= 609)).any()
    k = np.flatnonzero((b == 1) & (t == 602))[0]
    batch = ds.get_batch([k])
    assert batch["mask"][0, :, 0].tolist() == [True, True, False, False, False]
    assert torch.isnan(batch["y"][0, 2:, 0]).all()


def test_all_nan_basin_excluded_with_warning(data, caplog):
    data = data.copy(deep=True)
    data["q_mm"][2, :] = np.nan
    with caplog.at_level(logging.WARNING, logger="hydroml"):
        ds = BasinDataset(data, DYN, STAT, ["q_mm"], 30)
    assert ds.basins == ["b0", "b1", "b3"]
    assert "b2 (all targets NaN)" in caplog.text
    b, _ = ds.sample_locations()
    assert set(b.tolist()) == {0, 1, 2}
    # gathered windows still come from the right basin
    ref = BasinDataset(data.sel(basin=["b0", "b1", "b3"]), DYN, STAT, ["q_mm"], 30, normaliser=ds.normaliser)
    idx = np.arange(0, len(ds), 50)
    for key, v in ds.get_batch(idx).items():
        torch.testing.assert_close(v, ref.get_batch(idx)[key], equal_nan=True)


def test_monthly_targets_end_at_month_ends(data):
    data = data.copy(deep=True)
    data["q_mm"][0, 400] = np.nan  # 2001-02-05: February 2001 of b0 has no monthly value
    ds = BasinDataset(data, DYN, [], ["q_mm"], 90, target_freq="monthly", period=("2001-01-01", "2002-12-31"))
    batch = ds.get_batch(np.arange(len(ds)))
    ends = ds.time[batch["time"].numpy()]
    assert ends.is_month_end.all()
    assert len(ds) == 4 * 24 - 1  # 24 months, one missing
    monthly = data.q_mm.resample(time="MS").mean()
    for k in range(len(ds)):
        b, day = int(batch["basin"][k]), ends[k]
        expected = ds.normaliser.transform(
            "q_mm", float(monthly.sel(basin=ds.basins[b], time=day.replace(day=1)))
        )
        np.testing.assert_allclose(float(batch["y"][k, 0, 0]), expected, rtol=1e-5, atol=1e-6)
    assert (batch["y_step"] == 89).all()
    assert not ((batch["basin"] == 0).numpy() & (ends == pd.Timestamp("2001-02-28"))).any()
    # two months per sample: positions of both month ends inside the window
    ds2 = BasinDataset(
        data, DYN, [], ["q_mm"], 90, target_freq="monthly", predict_last_n=2, monthly_agg="sum"
    )
    b2 = ds2.get_batch(np.arange(len(ds2)))
    t_last = b2["time"].numpy()
    first_end = ds2.time[t_last - 89 + b2["y_step"][:, 0].numpy()]
    assert first_end.is_month_end.all() and (b2["y_step"][:, 1] == 89).all()


def test_monthly_targets_from_a_monthly_dataset(data):
    monthly = data[["q_mm"]].resample(time="MS").sum() * 2.0
    ds = BasinDataset(data, DYN, [], ["q_mm"], 60, target_freq="monthly", monthly_targets=monthly)
    batch = ds.get_batch(np.arange(len(ds)))
    y = ds.normaliser.inverse("q_mm", batch["y"][:, 0, 0].numpy().astype(np.float64))
    ends = ds.time[batch["time"].numpy()]
    exp = [
        float(monthly.q_mm.sel(basin=ds.basins[b], time=e.replace(day=1)))
        for b, e in zip(batch["basin"], ends)
    ]
    np.testing.assert_allclose(y, exp, rtol=1e-4)


def test_normaliser_fitted_on_train_only_and_json_roundtrip(data, tmp_path):
    train = BasinDataset(
        data,
        DYN,
        STAT,
        ["q_mm"],
        60,
        period=("2000-01-01", "2001-12-31"),
        basins=["b0", "b1", "b2"],
        log_transform=["q_mm"],
    )
    sub = data.sel(basin=["b0", "b1", "b2"], time=slice("2000-01-01", "2001-12-31"))
    st = train.normaliser.stats
    np.testing.assert_allclose(st["pr"]["mean"], float(sub.pr.astype("f8").mean()), rtol=1e-9)
    np.testing.assert_allclose(st["tas"]["std"], float(sub.tas.astype("f8").std()), rtol=1e-9)
    np.testing.assert_allclose(
        st["q_mm"]["mean"], float(np.log(sub.q_mm.astype("f8") + 1.0).mean()), rtol=1e-6
    )
    np.testing.assert_allclose(
        st["area_km2"]["mean"], float(sub.area_km2.astype("f8").mean()), rtol=1e-5, atol=1e-6
    )
    assert st["pr"]["mean"] != pytest.approx(float(data.pr.mean()), rel=1e-6)
    assert Normaliser.fit(sub, ["pr"]).stats["pr"]["mean"] == pytest.approx(st["pr"]["mean"])
    path = train.normaliser.to_json(tmp_path / "normalisation.json")
    back = Normaliser.from_json(path)
    assert back == train.normaliser
    # applied identically to the test basin and period
    test = BasinDataset(
        data, DYN, STAT, ["q_mm"], 60, period=("2002-06-01", "2003-12-31"), basins=["b3"], normaliser=back
    )
    batch = test.get_batch(np.arange(5))
    t_data = data.indexes["time"].get_loc(test.time[int(batch["time"][0])])
    raw = data.tas.sel(basin="b3").values[t_data - 59 : t_data + 1]
    np.testing.assert_allclose(
        batch["x_dynamic"][0, :, 1].numpy(), (raw - st["tas"]["mean"]) / st["tas"]["std"], rtol=1e-5
    )
    q = data.q_mm.sel(basin="b3").values[t_data]
    np.testing.assert_allclose(back.inverse("q_mm", batch["y"][0, 0, 0]).item(), q, rtol=1e-5)
    np.testing.assert_allclose(
        back.inverse("q_mm", back.transform("q_mm", np.array([0.0, 3.5]))), [0.0, 3.5], atol=1e-12
    )


def test_normaliser_rejects_bad_json(tmp_path):
    p = tmp_path / "n.json"
    p.write_text('{"variables": {}}')
    with pytest.raises(ConfigError, match="hydroml.normaliser"):
        Normaliser.from_json(p)
    with pytest.raises(ConfigError, match="'pr'"):
        Normaliser({"pr": {"mean": 1.0}})
    with pytest.raises(DataError, match="no normalisation statistics for 'tas'"):
        Normaliser({"pr": {"mean": 1.0, "std": 2.0}}).transform("tas", np.zeros(1))


def test_splits():
    s = split_by_period(
        ("2000-01-01", "2005-12-31"), ("2008-01-01", "2010-12-31"), val=("2006-01-01", "2007-12-31")
    )
    assert s.train_period == ("2000-01-01", "2005-12-31") and s.val_period[0] == "2006-01-01"
    with pytest.raises(ConfigError, match="overlaps"):
        split_by_period(("2000-01-01", "2005-12-31"), ("2005-12-31", "2010-12-31"))
    with pytest.raises(ConfigError, match="'b1' is in both"):
        split_by_basins(["b0", "b1"], ["b1", "b2"])
    basins = [f"g{i:03d}" for i in range(23)]
    folds = kfold_basins(basins, 5, seed=3)
    tests = [b for f in folds for b in f.test_basins]
    assert sorted(tests) == basins  # every basin tested exactly once
    for f in folds:
        assert not set(f.train_basins) & set(f.test_basins)
        assert sorted(f.train_basins + f.test_basins) == basins
    assert {len(f.test_basins) for f in folds} <= {4, 5}
    assert [f.test_basins for f in kfold_basins(basins, 5, seed=3)] == [f.test_basins for f in folds]
    assert [f.test_basins for f in kfold_basins(basins, 5, seed=4)] != [f.test_basins for f in folds]


def test_basin_dataset_with_splits(data):
    fold = kfold_basins(list(data.basin.values), 2, seed=0)[0]
    train = BasinDataset(data, DYN, STAT, ["q_mm"], 30, basins=fold.train_basins)
    test = BasinDataset(data, DYN, STAT, ["q_mm"], 30, basins=fold.test_basins, normaliser=train.normaliser)
    assert not set(train.basins) & set(test.basins)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_sampler_partitions_ranks_and_reseeds(world_size):
    n, bs = 103, 8
    per_rank = []
    for rank in range(world_size):
        s = BatchSampler(n, bs, shuffle=True, seed=11, rank=rank, world_size=world_size)
        s.set_epoch(0)
        batches = list(s)
        assert len(batches) == len(s)
        assert all(len(b) <= bs for b in batches)
        per_rank.append(np.concatenate(batches))
    assert len({len(p) for p in per_rank}) == 1  # same number of samples on every rank
    allpos = np.concatenate(per_rank)
    assert set(allpos.tolist()) == set(range(n))
    assert len(allpos) - n < world_size  # only the padding repeats
    drop = [
        np.concatenate(list(BatchSampler(n, 1, seed=11, rank=r, world_size=world_size, drop_last=True)))
        for r in range(world_size)
    ]
    assert len(set(np.concatenate(drop).tolist())) == len(np.concatenate(drop))  # disjoint
    s = BatchSampler(n, bs, seed=11, rank=0, world_size=world_size)
    s.set_epoch(1)
    e1 = np.concatenate(list(s))
    s.set_epoch(2)
    e2 = np.concatenate(list(s))
    s.set_epoch(1)
    assert np.array_equal(np.concatenate(list(s)), e1) and not np.array_equal(e1, e2)


def test_dataloader_whole_batches(data):
    ds = BasinDataset(data, DYN, STAT, ["q_mm"], 40)
    loader = ds.loader(batch_size=64, shuffle=True, seed=0)
    loader.sampler.set_epoch(0)
    seen = 0
    for batch in loader:
        assert batch["x_dynamic"].shape[1:] == (40, 3)
        seen += batch["x_dynamic"].shape[0]
    assert seen == len(ds)
    # works with a worker process too
    loader = torch.utils.data.DataLoader(
        ds, sampler=BatchSampler(len(ds), 128, seed=1), batch_size=None, num_workers=1
    )
    first = next(iter(loader))
    torch.testing.assert_close(
        first["x_dynamic"], ds.get_batch(next(iter(BatchSampler(len(ds), 128, seed=1))))["x_dynamic"]
    )


def test_index_bytes_per_sample(data):
    ds = BasinDataset(data, DYN, STAT, ["q_mm"], 365)
    assert ds.index_bytes_per_sample == 4
    assert ds.index_nbytes == 4 * len(ds)
    assert ds.dynamic.flags.c_contiguous and ds.dynamic.dtype == np.float32
    assert ds.dynamic.shape == (4, len(ds.time), 3)


def test_memmap_storage_gives_the_same_batches(data, tmp_path):
    a = BasinDataset(data, DYN, STAT, ["q_mm"], 30)
    b = BasinDataset(data, DYN, STAT, ["q_mm"], 30, memmap_dir=tmp_path)
    assert isinstance(b._dyn, np.memmap) and (tmp_path / "dynamic.npy").is_file()
    idx = np.arange(0, len(a), 7)
    for key, v in a.get_batch(idx).items():
        torch.testing.assert_close(v, b.get_batch(idx)[key], equal_nan=True)


def test_clear_errors(data):
    with pytest.raises(DataError, match=r"\['nope'\] not found.*available: pr"):
        BasinDataset(data, ["pr", "nope"], [], ["q_mm"], 30)
    with pytest.raises(DataError, match="has no data"):
        BasinDataset(data, DYN, [], ["q_mm"], 30, period=("2010-01-01", "2011-01-01"))
    with pytest.raises(ConfigError, match="nan_policy"):
        BasinDataset(data, DYN, [], ["q_mm"], 30, nan_policy="drop")
    with pytest.raises(DataError, match="basin"):
        BasinDataset(data, DYN, [], ["q_mm"], 30, basins=["zz"])


def test_demo_basins(demo_cache):
    from hydroml.data.demo import load_demo

    demo = load_demo("basins", cache_dir=demo_cache)
    statics = ["area_km2", "elev_mean", "aridity", "frac_snow", "forest_frac"]
    train = BasinDataset(
        demo, ["pr", "tas", "rsds", "evspsblpot"], statics, ["q_mm"], 365, period=("2001-01-01", "2010-12-31")
    )
    test = BasinDataset(
        demo,
        ["pr", "tas", "rsds", "evspsblpot"],
        statics,
        ["q_mm"],
        365,
        period=("2011-01-01", "2015-12-31"),
        normaliser=train.normaliser,
    )
    assert len(train) == 5 * 3652 and len(test) == 5 * 1826
    batch = test.get_batch(np.arange(0, len(test), 100))
    assert torch.isfinite(batch["x_dynamic"]).all() and batch["mask"].all()
    assert train.target_std.shape == (5, 1) and (train.target_std > 0).all()


# ---------------------------------------------------------------------------------------------- GridDataset
def make_grid(nt: int = 40, ny: int = 10, nx: int = 12, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    time = pd.date_range("2000-01-01", periods=nt, freq="MS")
    land = np.ones((ny, nx), dtype=np.int8)
    land[:3, :3] = 0
    et = rng.gamma(2.0, 20.0, (nt, ny, nx)).astype(np.float32)
    et[:, land == 0] = np.nan
    return xr.Dataset(
        {
            "pr": (("time", "lat", "lon"), rng.gamma(1.0, 80.0, (nt, ny, nx)).astype(np.float32)),
            "tas": (("time", "lat", "lon"), rng.normal(10, 5, (nt, ny, nx)).astype(np.float32)),
            "evspsbl": (("time", "lat", "lon"), et),
            "elevation": (("lat", "lon"), rng.uniform(0, 2000, (ny, nx)).astype(np.float32)),
            "land_mask": (("lat", "lon"), land),
        },
        coords={"time": time, "lat": 45 + 0.1 * np.arange(ny), "lon": 5 + 0.1 * np.arange(nx)},
    )


def test_grid_windows_lags_tiles_and_masks():
    from hydroml.datasets import GridDataset

    g = make_grid()
    ds = GridDataset(
        g,
        ["pr", "tas"],
        ["evspsbl"],
        static_inputs=["elevation"],
        lags=3,
        tile=(4, 5),
        stride=(3, 4),
        valid_mask="land_mask",
        period=("2000-06-01", "2002-12-31"),
    )
    assert ds.channel_names == ["pr", "pr_lag1", "pr_lag2", "tas", "tas_lag1", "tas_lag2", "elevation"]
    assert ds.index_bytes_per_sample == 4
    # tiles cover the grid; origins end on the edges
    assert ds.origins[:, 0].max() == 10 - 4 and ds.origins[:, 1].max() == 12 - 5
    batch = ds.get_batch(np.arange(len(ds)))
    assert batch["x"].shape == (len(ds), 7, 4, 5) and batch["y"].shape == (len(ds), 1, 4, 5)
    norm = ds.normaliser
    for k in np.random.default_rng(0).choice(len(ds), 20, replace=False):
        t, (iy, ix) = int(batch["time"][k]), batch["origin"][k].tolist()
        ti = g.indexes["time"].get_loc(ds.time[t])
        win = (slice(iy, iy + 4), slice(ix, ix + 5))
        for lag in range(3):
            exp = norm.transform("tas", g.tas.values[ti - lag][win].astype(np.float64))
            np.testing.assert_allclose(batch["x"][k, 3 + lag].numpy(), exp, rtol=1e-5, atol=1e-5)
        exp_y = norm.transform("evspsbl", g.evspsbl.values[ti][win].astype(np.float64))
        np.testing.assert_allclose(batch["y"][k, 0].numpy(), exp_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(batch["mask"][k, 0].numpy(), g.land_mask.values[win] == 1)
        assert pd.Timestamp("2000-06-01") <= ds.time[t] <= pd.Timestamp("2002-12-31")
    # normaliser fitted on the period and valid cells only
    sub = g.evspsbl.sel(time=slice("2000-06-01", "2002-12-31")).values
    np.testing.assert_allclose(norm.stats["evspsbl"]["mean"], np.nanmean(sub.astype("f8")), rtol=1e-6)
    # the tile fully in the sea corner has no target: excluded
    sea_only = GridDataset(g, ["pr"], ["evspsbl"], tile=3, valid_mask="land_mask")
    _, tiles = sea_only.sample_locations()
    assert 0 not in set(tiles.tolist())


def test_grid_nan_input_policy():
    from hydroml.datasets import GridDataset

    g = make_grid()
    g["pr"][10, 5, 5] = np.nan  # a valid cell
    g["pr"][12, 0, 0] = np.nan  # a sea cell: always filled
    ex = GridDataset(g, ["pr"], ["evspsbl"], lags=2, valid_mask="land_mask")
    t, _ = ex.sample_locations()
    assert 10 not in t and 11 not in t and 12 in t
    fill = GridDataset(g, ["pr"], ["evspsbl"], lags=2, valid_mask="land_mask", nan_policy="fill")
    assert len(fill) == len(ex) + 2
    assert torch.isfinite(fill.get_batch(np.arange(len(fill)))["x"]).all()


def test_grid_demo_monthly(demo_cache):
    from hydroml.data.demo import load_demo
    from hydroml.datasets import GridDataset

    m = load_demo("monthly", cache_dir=demo_cache)
    kw = dict(static_inputs=["elevation", "forest_frac"], lags=3, tile=16, valid_mask="land_mask")
    inputs = ["pr", "tas", "rsds", "evspsblpot"]
    train = GridDataset(m, inputs, ["evspsbl"], period=("2000-01-01", "2010-12-31"), **kw)
    test = GridDataset(
        m, inputs, ["evspsbl"], period=("2011-01-01", "2015-12-31"), normaliser=train.normaliser, **kw
    )
    assert len(train) == 4 * (132 - 2) and len(test) == 4 * 60
    batch = test.get_batch(np.arange(8))
    assert batch["x"].shape == (8, 14, 16, 16) and torch.isfinite(batch["x"]).all()
    assert batch["mask"].float().mean() > 0.8


@pytest.mark.shared_data
def test_camels_us_4basins(shared_data):
    from hydroml import catalog

    raw = catalog.open("camels_us_4basins", root=shared_data)
    dyn, stat = ["pr", "tasmax", "tasmin", "rsds", "vp"], ["area_km2", "elev", "p_mean", "aridity"]
    train = BasinDataset(
        raw, dyn, stat, ["q_mm"], 90, period=("2000-01-01", "2001-12-31"), log_transform=["q_mm"]
    )
    test = BasinDataset(
        raw, dyn, stat, ["q_mm"], 90, period=("2002-01-01", "2003-12-31"), normaliser=train.normaliser
    )
    assert train.basins == [str(b) for b in raw.basin.values]
    batch = test.get_batch(np.arange(len(test)))
    ends = test.time[batch["time"].numpy()]
    assert ends.min() >= pd.Timestamp("2002-01-01")
    # the shared copy has no forcing after 2002: no sample may use a NaN input or have no finite target
    assert torch.isfinite(batch["x_dynamic"]).all() and batch["mask"].all()
    q = raw.q_mm.values
    for k in range(0, len(test), 211):
        b = int(batch["basin"][k])
        ti = raw.indexes["time"].get_loc(ends[k])
        np.testing.assert_allclose(
            batch["x_dynamic"][k, :, 0].numpy(),
            test.normaliser.transform("pr", raw.pr.values[b, ti - 89 : ti + 1]),
            rtol=1e-5,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            test.normaliser.inverse("q_mm", batch["y"][k, 0, 0]).item(), q[b, ti], rtol=1e-4
        )
    x_all = raw[dyn].to_array().values
    n_ok = sum(
        int(np.isfinite(q[b, i]) and np.isfinite(x_all[:, b, i - 89 : i + 1]).all())
        for b in range(4)
        for i in range(raw.indexes["time"].get_loc(pd.Timestamp("2002-01-01")), raw.sizes["time"])
    )
    assert len(test) == n_ok


def test_pickling_keeps_views_out(data, tmp_path):
    """What DataLoader workers started by spawn receive: a small pickle giving the same batches (memmap reopened)."""
    import pickle

    from hydroml.datasets import GridDataset

    for kwargs in ({}, {"memmap_dir": tmp_path}):
        ds = BasinDataset(data, DYN, STAT, ["q_mm"], 365, **kwargs)
        blob = pickle.dumps(ds)
        assert len(blob) < 2 * data.nbytes  # not the (n_windows x 365 x 3) materialised windows
        back = pickle.loads(blob)
        idx = np.arange(0, len(ds), 13)
        for key, v in ds.get_batch(idx).items():
            torch.testing.assert_close(back.get_batch(idx)[key], v, equal_nan=True)
    g = GridDataset(make_grid(), ["pr"], ["evspsbl"], tile=4, stride=1, lags=2)
    back = pickle.loads(pickle.dumps(g))
    torch.testing.assert_close(back.get_batch(np.arange(9))["x"], g.get_batch(np.arange(9))["x"])
