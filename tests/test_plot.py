"""hydroml.plot: every figure drawn with Agg into PNG files, and the data on the axes checked.

Real series where they exist: observed vs GR4J-simulated discharge and its precipitation (``raven_q_sim``),
the CAMELS-US basins' outlets for maps (their east-coast coastline), a real profile and plan of a small CNN,
and a metrics.csv written by the training package's own writer.
"""

from __future__ import annotations

import urllib.request
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import hydroml.plot as hp  # noqa: E402
from hydroml.exceptions import DataError  # noqa: E402


@pytest.fixture(autouse=True)
def _no_network_and_close(monkeypatch):
    """No plot may try to download anything (cartopy's downloaders use urlopen); close figures after each test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"hydroml.plot tried to download: {args[:1]}")

    import cartopy.io

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(cartopy.io.Downloader, "_urlopen", refuse)  # what cartopy's downloaders call
    yield
    plt.close("all")


def _png(ax, path):
    ax.figure.savefig(path, dpi=80)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return path


@pytest.fixture(scope="module")
def raven(shared_data):
    import hydroml.catalog

    return hydroml.catalog.open("raven_q_sim", root=shared_data)


# ----------------------------------------------------------------------------------------------- hydrograph
def test_hydrograph_obs_sim_and_inverted_precipitation(raven, tmp_path):
    period = slice("2003-01-01", "2003-12-31")
    obs = raven["q"].sel(time=period)
    sim = raven["q_sim"].sel(time=period)
    ax = hp.hydrograph(obs, {"GR4J": sim}, precip=raven["pr"], basin="watershed")
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["observed", "GR4J"]
    np.testing.assert_array_equal(lines[0].get_ydata(), obs.sel(basin="watershed").values)
    np.testing.assert_array_equal(lines[1].get_ydata(), sim.sel(basin="watershed").values)
    assert ax.get_ylabel() == "discharge [m3 s-1]"
    # precipitation: only the plotted year (the series spans 2000-2010), as bars hanging from the top
    pax = ax.precip_ax
    heights = np.array([p.get_height() for p in pax.patches])
    assert heights.size == 365
    np.testing.assert_allclose(heights, np.nan_to_num(raven["pr"].sel(time=period, basin="watershed").values))
    bottom, top = pax.get_ylim()
    assert bottom > top == 0.0, "precipitation axis must be inverted"
    assert bottom == pytest.approx(heights.max() / 0.3)
    assert pax.get_ylabel() == "precipitation [mm/day]"
    # discharge leaves the top 30 % to the bars and is drawn above them
    assert ax.get_ylim()[1] >= np.nanmax(obs.values) / 0.7
    assert ax.get_zorder() > pax.get_zorder()
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"observed", "GR4J", "precipitation"}
    _png(ax, tmp_path / "hydrograph.png")


def test_hydrograph_on_given_axes_with_arrays_and_errors(tmp_path):
    fig, axes = plt.subplots(2, 1)
    t = pd.date_range("2001-01-01", periods=30)
    q = np.linspace(1.0, 2.0, 30)
    ax = hp.hydrograph(pd.Series(q, index=t), q * 0.9, ax=axes[1], time=t, units="mm/day")
    assert ax is axes[1] and ax.precip_ax is None
    assert ax.get_ylabel() == "discharge [mm/day]"
    assert len(ax.get_lines()) == 2
    two_d = xr.DataArray(np.ones((2, 30)), dims=("basin", "time"), coords={"time": t, "basin": ["a", "b"]})
    with pytest.raises(DataError, match="basin"):
        hp.hydrograph(two_d)
    with pytest.raises(DataError, match="give obs"):
        hp.hydrograph()
    with pytest.raises(DataError, match="precip_fraction"):
        hp.hydrograph(q, precip_fraction=1.5)
    _png(ax, tmp_path / "h.png")


# ---------------------------------------------------------------------------------------- flow duration
def test_exceedance_weibull_positions():
    p, v = hp.exceedance([2.0, np.nan, 5.0, 1.0, 4.0])
    np.testing.assert_allclose(p, [0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(v, [5.0, 4.0, 2.0, 1.0])


def test_flow_duration_curves_of_observed_and_simulated(raven, tmp_path):
    obs = raven["q"].sel(basin="watershed")
    sim = raven["q_sim"].sel(basin="watershed")
    ax = hp.flow_duration_curve({"observed": obs, "GR4J": sim})
    lo, ls = ax.get_lines()
    n_obs = int(np.isfinite(obs.values).sum())
    assert lo.get_xdata().size == int((obs.values > 0).sum())  # log axis: zeros left out
    assert np.all(np.diff(lo.get_xdata()) > 0) and np.all(np.diff(lo.get_ydata()) <= 0)
    assert lo.get_xdata()[0] == pytest.approx(100.0 / (n_obs + 1))
    assert lo.get_ydata()[0] == pytest.approx(np.nanmax(obs.values))
    assert lo.get_color() == "k" and ls.get_label() == "GR4J"
    assert ax.get_yscale() == "log" and ax.get_xlim() == (0.0, 100.0)
    # the median of the curve is the median flow
    med = np.interp(50.0, lo.get_xdata(), lo.get_ydata())
    assert med == pytest.approx(np.nanmedian(obs.values), rel=0.02)
    _png(ax, tmp_path / "fdc.png")


# --------------------------------------------------------------------------------------------- metric CDF
def test_metric_cdf_for_several_models(tmp_path):
    lstm = xr.DataArray([0.81, 0.62, 0.75, 0.9, np.nan], dims="basin", name="nse")
    clim = np.array([0.2, -3.0, 0.4, 0.1, 0.35])
    ax = hp.metric_cdf({"lstm": lstm, "climatology": clim}, metric="NSE")
    l1, l2 = ax.get_lines()
    assert l1.get_label() == "lstm (median 0.78, n=4)"
    assert l2.get_label() == "climatology (median 0.20, n=5, 1 < -1)"
    # a step from 0 up to 1 over the sorted scores; the -3 is drawn at the left edge
    np.testing.assert_allclose(l1.get_xdata(), [0.62, 0.62, 0.75, 0.81, 0.9])
    np.testing.assert_allclose(l1.get_ydata(), [0, 0.25, 0.5, 0.75, 1.0])
    assert l2.get_xdata().min() == -1.0
    assert ax.get_xlabel() == "NSE" and ax.get_xlim() == (-1.0, 1.0)
    _png(ax, tmp_path / "cdf.png")


def test_metric_cdf_accepts_a_model_dimension_and_datasets():
    da = xr.DataArray(
        [[0.5, 0.6], [0.1, 0.2]], dims=("model", "basin"), coords={"model": ["a", "b"]}, name="kge"
    )
    ax = hp.metric_cdf(da)
    assert [ln.get_label().split(" (")[0] for ln in ax.get_lines()] == ["a", "b"]
    assert ax.get_xlabel() == "kge"
    ds = xr.Dataset({"nse": ("basin", [0.3, 0.4]), "kge": ("basin", [0.5, 0.6])})
    ax = hp.metric_cdf({"m1": ds}, metric="kge")
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata()[1:], [0.5, 0.6])
    with pytest.raises(DataError, match="metric="):
        hp.metric_cdf({"m1": ds})


# ----------------------------------------------------------------------------------------------- maps
def _camels_outlets(shared_data):
    import hydroml.catalog

    ds = hydroml.catalog.open("camels_us_4basins", root=shared_data, progress=False)
    score = xr.DataArray(
        [0.71, 0.55, 0.62, 0.3], dims="basin", coords={"basin": ds["basin"].values}, name="nse"
    )
    return score, ds["gauge_lat"].values, ds["gauge_lon"].values


def test_skill_map_of_basin_outlets_with_offline_coastlines(shared_data, tmp_path):
    if hp.offline_coastlines() is None:
        pytest.skip(
            "no offline coastlines on this machine (apt-get install python-cartopy-data); see the next test"
        )
    score, lat, lon = _camels_outlets(shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "without coastlines" warning
        ax = hp.skill_map(score, lat=lat, lon=lon, title="NSE at the gauges")
    (points,) = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    np.testing.assert_allclose(points.get_array(), score.values)
    np.testing.assert_allclose(points.get_offsets()[:, 0], lon)
    # coastlines drawn from the local shapefile: a feature artist with geometries near the US east coast
    feats = [a for a in ax.artists + ax.collections if type(a).__name__ == "FeatureArtist"]
    assert feats, "no coastline artist on the map"
    w, e, s, n = ax.get_extent()
    assert w == pytest.approx(lon.min() - 0.5, abs=0.01) and n == pytest.approx(lat.max() + 0.5, abs=0.01)
    assert ax.cbar.ax.get_ylabel() == "nse"
    _png(ax, tmp_path / "outlets.png")


def test_skill_map_without_offline_data_warns_and_never_downloads(monkeypatch, tmp_path):
    import cartopy

    import hydroml.evaluation.report as report

    monkeypatch.setattr(report, "CARTOPY_DATA_DIRS", ())
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", str(tmp_path / "none"))
    monkeypatch.setitem(cartopy.config, "data_dir", str(tmp_path / "none2"))
    assert hp.offline_coastlines() is None
    lat, lon = np.arange(45.05, 46.0, 0.1), np.arange(5.05, 6.5, 0.1)
    grid = xr.DataArray(
        np.linspace(-0.5, 0.9, lat.size * lon.size).reshape(lat.size, lon.size),
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
        name="nse_skill",
    )
    with pytest.warns(UserWarning, match="python-cartopy-data"):
        ax = hp.skill_map(grid)
    mesh = [c for c in ax.collections if type(c).__name__.endswith("QuadMesh")]
    assert len(mesh) == 1
    np.testing.assert_allclose(np.asarray(mesh[0].get_array()).ravel(), grid.values.ravel())
    assert mesh[0].get_clim() == (-1.0, 1.0)
    _png(ax, tmp_path / "grid.png")


def test_skill_map_curvilinear_grid_transposed_and_errors(tmp_path):
    import cartopy.crs as ccrs

    y, x = np.meshgrid(np.arange(6), np.arange(9), indexing="ij")
    lat2, lon2 = 49.0 + 0.2 * y + 0.01 * x, 5.8 + 0.3 * x
    grid = xr.DataArray(
        np.random.default_rng(0).uniform(-1, 1, (6, 9)),
        dims=("y", "x"),
        coords={"lat": (("y", "x"), lat2), "lon": (("y", "x"), lon2)},
    )
    fig = plt.figure()
    ax = fig.add_subplot(1, 1, 1, projection=ccrs.LambertConformal(central_longitude=7, central_latitude=49))
    assert hp.skill_map(grid, ax=ax, coastlines=False) is ax
    # (lon, lat) order is transposed back to (lat, lon)
    g = xr.DataArray(
        np.arange(12.0).reshape(4, 3), dims=("lon", "lat"), coords={"lon": [1, 2, 3, 4], "lat": [5, 6, 7]}
    )
    ax2 = hp.skill_map(g, coastlines=False, vmin=0, vmax=11)
    mesh = [c for c in ax2.collections if type(c).__name__.endswith("QuadMesh")][0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(3, 4), g.values.T)
    with pytest.raises(DataError, match="lat/lon"):
        hp.skill_map(xr.DataArray([1.0, 2.0], dims="basin"))
    with pytest.raises(DataError, match="GeoAxes"):
        hp.skill_map(grid, ax=plt.subplots()[1])
    _png(ax, tmp_path / "curvilinear.png")


# ------------------------------------------------------------------------------------------ training curves
def test_training_curves_from_a_run_directory(tmp_path):
    from hydroml.training.runs import write_metrics_csv

    run = tmp_path / "demo_20261130_101500"
    run.mkdir()
    history = [
        {
            "epoch": e,
            "lr": 5e-3,
            "train_loss": 0.6 / e,
            "val_loss": 0.4 / e + 0.02 * e,
            "val_nse": 0.3 + 0.1 * e - 0.02 * e * e,
            "val_kge": 0.5 + 0.05 * e,
            "seconds": 20.0,
        }
        for e in range(1, 7)
    ]
    write_metrics_csv(run / "metrics.csv", history)
    ax = hp.training_curves(run)
    labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert labels == ["train_loss", "val_loss"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [h["train_loss"] for h in history])
    np.testing.assert_allclose(ax.score_ax.get_lines()[0].get_ydata(), [h["val_nse"] for h in history])
    best = int(np.argmax([h["val_nse"] for h in history])) + 1
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == best
    assert ax.get_title() == run.name
    _png(ax, tmp_path / "curves.png")
    # the table itself, a CSV path, and bad inputs
    ax = hp.training_curves(pd.read_csv(run / "metrics.csv"), scores=[], mark_best="val_loss", log_loss=True)
    assert ax.score_ax is None and ax.get_yscale() == "log"
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        hp.training_curves(tmp_path / "nothing")
    with pytest.raises(DataError, match="available"):
        hp.training_curves(run / "metrics.csv", scores=["val_rmse"])


# ---------------------------------------------------------------------------------------------- memory plan
def test_memory_plan_bars_from_a_real_profile_and_plan(tmp_path):
    import torch

    from hydroml import memory

    torch.manual_seed(0)
    layers = []
    for k in range(6):
        layers += [torch.nn.Conv2d(4 if k else 2, 4, 3, padding=1), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    prof = memory.profile(model, torch.randn(2, 2, 48, 48), repeat=1)
    sched = memory.plan(
        prof, prof.persistent_bytes + (sched_all := memory.store_all(prof)).predicted_peak_bytes // 3
    )
    assert sched.predicted_peak_bytes < sched_all.predicted_peak_bytes
    ax = hp.memory_plan(prof, sched, unit="KiB")
    saved, inputs = ax.containers
    n = len(prof.stages)
    assert len(saved) == len(inputs) == n
    np.testing.assert_allclose([b.get_height() for b in saved], [s.saved_bytes / 1024 for s in prof.stages])
    np.testing.assert_allclose([b.get_height() for b in inputs], [s.input_bytes / 1024 for s in prof.stages])
    # colours follow the schedule's top-level roles
    roles = {}
    for it in sched.items:
        if isinstance(it, memory.Segment):
            roles[it.start] = "checkpoint"
            roles.update({i: "recomputed" for i in range(it.start + 1, it.stop)})
    assert roles, "a third of the no-checkpointing peak must need checkpoints"
    colours = [matplotlib.colors.to_hex(b.get_facecolor()) for b in saved]
    for i, c in enumerate(colours):
        want = {"checkpoint": "tab:orange", "recomputed": "0.8"}.get(roles.get(i), "tab:blue")
        assert c == matplotlib.colors.to_hex(want), (i, roles.get(i))
    text = " ".join(t.get_text() for t in ax.texts)
    assert "budget" in text and "recomputation" in text and "no checkpointing" in text
    assert [t.get_text() for t in ax.get_xticklabels()] == [s.name for s in prof.stages]
    _png(ax, tmp_path / "memory.png")
    # a Schedule alone carries its costs; dict tables work too
    ax = hp.memory_plan(sched)
    assert len(ax.containers[0]) == n
    ax = hp.memory_plan([{"name": "a", "saved_bytes": 10, "input_bytes": 2}], unit="B")
    assert ax.containers[0][0].get_height() == 10
    with pytest.raises(DataError, match="unit"):
        hp.memory_plan(prof, unit="furlongs")


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("hydroml.plot.flows", "hydroml.plot.skill"):
        mod = importlib.import_module(name)
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.attempted > 0 and res.failed == 0, name


def test_importing_hydroml_plot_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, hydroml.plot; print('matplotlib' in sys.modules, 'cartopy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
