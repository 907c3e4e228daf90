"""``hydroml evaluate`` end to end on real files, and the report module behind it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydroml import evaluation as ev
from hydroml.cli import main
from hydroml.evaluation import report

CAMELS_IDS = ("01022500", "01547700", "02064000", "03015500")


@pytest.mark.shared_data
def test_evaluate_obs_inside_prediction_file(shared_data, tmp_path, capsys):
    pred = shared_data / "era5_cities" / "Raven_q_sim.nc"
    out = tmp_path / "out"
    rc = main(["evaluate", str(pred), "--pair", "q_obs:q_sim", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "nse" in printed and "median" in printed
    for f in (
        "metrics_q_sim.nc",
        "metrics_q_sim.csv",
        "summary.csv",
        "cdf_q_sim.png",
        "hydrographs_q_sim.png",
    ):
        assert (out / f).is_file(), f
    res = xr.open_dataset(out / "metrics_q_sim.nc")
    ds = xr.open_dataset(pred)
    np.testing.assert_allclose(res["nse"].values, ev.nse(ds.q_obs, ds.q_sim).values, rtol=1e-12)
    assert res["nse"].attrs["perfect_value"] == 1.0 and res["pbias"].attrs["units"] == "%"
    assert "nse_skill_climatology" in res and res["n_pairs"].item() == int(ds.q_obs.notnull().sum())
    assert "hydroml" in res.attrs["history"]
    summary = pd.read_csv(out / "summary.csv", index_col=[0, 1])
    assert summary.loc[("q_sim", "nse"), "median"] == pytest.approx(res["nse"].item())


@pytest.fixture(scope="module")
def camels_files(shared_data, tmp_path_factory):
    """obs.nc: CAMELS discharge of 4 basins; pred.nc: a damped, lagged 'simulation' for 2001-2002."""
    qs = []
    for bid in CAMELS_IDS:
        path = shared_data / "camels_us_4basins" / "usgs_streamflow" / f"{bid}_streamflow_qc.txt"
        df = pd.read_csv(path, sep=r"\s+", header=None, names=["id", "year", "month", "day", "q", "flag"])
        df = df[(df.year >= 2000) & (df.year <= 2002)]
        q = df.q.to_numpy(dtype=float, copy=True)
        q[q == -999] = np.nan
        qs.append(q)
    t = pd.date_range("2000-01-01", periods=len(qs[0]))
    obs = xr.Dataset(
        {"q": (("basin", "time"), np.vstack(qs) * 0.0283168, {"units": "m3 s-1"})},
        coords={"basin": list(CAMELS_IDS), "time": t},
    )
    sim = obs.q.rolling(time=5, min_periods=1).mean().shift(time=1) * 1.1
    pred = xr.Dataset({"q": sim.sel(time=slice("2001", "2002"))})
    d = tmp_path_factory.mktemp("camels_eval")
    obs.to_netcdf(d / "obs.nc")
    pred.to_netcdf(d / "pred.nc")
    return d, obs, pred


@pytest.mark.shared_data
def test_evaluate_separate_obs_file_basins(camels_files, tmp_path):
    d, obs, pred = camels_files
    out = tmp_path / "out"
    rc = main(
        [
            "evaluate",
            str(d / "pred.nc"),
            "--obs",
            str(d / "obs.nc"),
            "--out",
            str(out),
            "--ref-period",
            "2000-01-01",
            "2000-12-31",
            "--no-figures",  # figures are tested on the Raven and gridded cases
        ]
    )
    assert rc == 0
    res = xr.open_dataset(out / "metrics_q.nc")
    assert res["nse"].dims == ("basin",) and list(res.basin.values) == list(CAMELS_IDS)
    o = obs.q.sel(time=slice("2001", "2002"))
    np.testing.assert_allclose(res["kge"].values, ev.kge(o, pred.q).values, rtol=1e-12)
    # skill over a climatology taken from 2000 only (the reference period), evaluated on 2001-2002
    clim = ev.climatology(obs.q, ref_period=("2000-01-01", "2000-12-31")).sel(time=o.time)
    np.testing.assert_allclose(
        res["nse_skill_climatology"].values, ev.skill_score("nse", o, pred.q, clim).values, rtol=1e-10
    )
    assert not list(out.glob("*.png"))
    csv = pd.read_csv(out / "metrics_q.csv", index_col=0, dtype={"basin": str})
    assert list(csv.index) == list(CAMELS_IDS) and "alpha" in csv.columns
    summary = pd.read_csv(out / "summary.csv", index_col=[0, 1])
    assert summary.loc[("q", "nse"), "median"] == pytest.approx(np.median(res["nse"].values))
    assert summary.loc[("q", "nse"), "q25"] == pytest.approx(np.quantile(res["nse"].values, 0.25))


@pytest.fixture(scope="module")
def gridded_files(tmp_path_factory):
    """Monthly evaporation on a 6 x 9 lat/lon grid over the Moselle, 2001-2006, and a noisy 'prediction'."""
    rng = np.random.default_rng(0)
    t = pd.date_range("2001-01-01", "2006-12-01", freq="MS")
    lat = np.linspace(48.3, 50.5, 6)
    lon = np.linspace(5.2, 8.0, 9)
    seas = 60 + 50 * np.sin(2 * np.pi * (t.month.values - 4) / 12)
    et = seas[:, None, None] * (1 + 0.1 * rng.normal(size=(t.size, 6, 9)))
    obs = xr.Dataset(
        {"evspsbl": (("time", "lat", "lon"), et, {"units": "mm month-1"})},
        coords={"time": t, "lat": lat, "lon": lon},
    )
    pred = obs.copy(deep=True)
    pred["evspsbl"] = obs.evspsbl * 0.95 + rng.normal(0, 5, size=et.shape)
    d = tmp_path_factory.mktemp("grid_eval")
    obs.to_netcdf(d / "obs.nc")
    pred.to_netcdf(d / "pred.nc")
    return d


def test_evaluate_gridded_writes_skill_map(gridded_files, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "evaluate",
            str(gridded_files / "pred.nc"),
            "--obs",
            str(gridded_files / "obs.nc"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = xr.open_dataset(out / "metrics_evspsbl.nc")
    assert res["nse"].dims == ("lat", "lon")
    assert (res["nse_climatology"] > 0.5).all()  # monthly ET: the seasonal cycle alone scores well
    assert (out / "skill_map_evspsbl.png").is_file()
    csv = pd.read_csv(out / "metrics_evspsbl.csv")
    assert len(csv) == 54 and {"lat", "lon", "nse"} <= set(csv.columns)


def test_skill_map_without_offline_coastlines_warns(monkeypatch):
    import cartopy  # noqa: F401  (dev dependency: fails, never skips)

    monkeypatch.setattr(report, "CARTOPY_DATA_DIRS", ())
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", "")
    score = xr.DataArray(
        np.random.default_rng(1).uniform(-1, 1, (4, 5)),
        dims=("lat", "lon"),
        coords={"lat": np.linspace(48, 50, 4), "lon": np.linspace(5, 8, 5)},
        name="nse",
    )
    with pytest.warns(UserWarning, match="without coastlines"):
        ax = report.plot_skill_map(score)
    assert ax is not None


def test_skill_map_uses_debian_coastlines_when_present():
    import cartopy  # noqa: F401  (dev dependency: fails, never skips)

    _, kind = report._cartopy_offline()
    from pathlib import Path

    has = any(
        Path(d, *report._GSHHS_COAST).is_file() or Path(d, *report._NE_COAST).is_file()
        for d in report.CARTOPY_DATA_DIRS
    )
    assert (kind is not None) == has
    if has:
        score = xr.DataArray(
            np.zeros((3, 3)), dims=("lat", "lon"), coords={"lat": [40.0, 45, 50], "lon": [-5.0, 0, 5]}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            report.plot_skill_map(score)


def test_evaluate_errors_are_one_line(tmp_path, capsys, gridded_files):
    assert main(["evaluate", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "o")]) == 1
    assert "missing.nc" in capsys.readouterr().err
    # no obs given and no X_obs variable in the prediction file
    rc = main(["evaluate", str(gridded_files / "pred.nc"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "no observation variable" in err and len(err.strip().splitlines()) == 1
    assert (
        main(["evaluate", str(gridded_files / "pred.nc"), "--pair", "bad", "--out", str(tmp_path / "o")]) == 1
    )


def test_ensemble_predictions_get_crps(tmp_path):
    rng = np.random.default_rng(2)
    t = pd.date_range("2000-01-01", periods=400)
    o = rng.gamma(2, size=(2, 400))
    ds = xr.Dataset(
        {
            "q_obs": (("basin", "time"), o),
            "q_sim": (("member", "basin", "time"), o[None] * rng.normal(1, 0.2, size=(8, 2, 400))),
        },
        coords={"time": t, "basin": ["a", "b"]},
    )
    res = report.evaluate_datasets(None, ds, reference="persistence")["q"]
    for k in ("crps", "crps_fair", "interval_coverage", "interval_width", "nse", "nse_skill_persistence"):
        assert k in res and res[k].dims == ("basin",)
    assert (res["crps_fair"] <= res["crps"]).all()
    files = report.write_report({"q": res}, tmp_path, pred=ds, figures=False)
    assert {f.name for f in files} == {"metrics_q.nc", "metrics_q.csv", "summary.csv"}


def test_integer_time_skips_climatology_skill(caplog):
    rng = np.random.default_rng(3)
    o = rng.gamma(2, size=(3, 100))
    ds = xr.Dataset({"q_obs": (("basin", "step"), o), "q": (("basin", "step"), o * 1.1)})
    with caplog.at_level("WARNING", logger="hydroml"):
        res = report.evaluate_datasets(None, ds, dim="step")["q"]
    assert "nse" in res and not any(str(k).startswith("nse_skill") for k in res)
    assert "not datetime64" in caplog.text


def test_unit_mismatch_is_an_error(tmp_path, capsys):
    t = pd.date_range("2000-01-01", periods=50)
    o = xr.Dataset({"q": ("time", np.arange(50.0), {"units": "m3 s-1"})}, coords={"time": t})
    p = xr.Dataset({"q": ("time", np.arange(50.0), {"units": "mm day-1"})}, coords={"time": t})
    o.to_netcdf(tmp_path / "o.nc")
    p.to_netcdf(tmp_path / "p.nc")
    rc = main(
        ["evaluate", str(tmp_path / "p.nc"), "--obs", str(tmp_path / "o.nc"), "--out", str(tmp_path / "x")]
    )
    assert rc == 1 and "'m3 s-1' but predictions 'q' in 'mm day-1'" in capsys.readouterr().err
