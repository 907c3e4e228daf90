"""``hydroml demo``: train a small LSTM on the built-in demo data, forecast, evaluate, plot.

The whole workflow in one command (under 3 minutes on 2 CPU cores with the defaults): the synthetic demo basins
(:func:`hydroml.data.demo.load_demo`), :func:`hydroml.training.train`, :func:`hydroml.forecast.forecast` over the
test period, :func:`hydroml.evaluation.evaluate` against the simulated truth and a day-of-year climatology, and a
hydrograph. Every file is written atomically into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "demo"
HELP = "train a small LSTM on the built-in demo data, forecast, evaluate and plot (< 3 min on 2 CPU cores)"
DESCRIPTION = (
    "Runs the whole hydroml workflow on the built-in synthetic demo basins (5 nested basins, 2000-2015, "
    "generated on first use into HYDROML_CACHE or ~/.cache/hydroml): trains an LSTM on 2001-2009 (validation "
    "2010-2011), forecasts the test period 2012-2015 without looking at discharge, evaluates NSE/KGE/PBIAS/RMSE "
    "against the demo's simulated truth and the skill over a day-of-year climatology of the training period, and "
    "writes into --out (default ./hydroml_demo_output): predictions.nc (CF NetCDF), metrics.csv (one row per "
    "basin and the median), hydrograph.png and runs/demo_<YYYYmmdd_HHMMSS>/ (the trained run)."
)

DEFAULT_OUT = "hydroml_demo_output"
TRAIN_PERIOD = ["2001-01-01", "2009-12-31"]
VALIDATION_PERIOD = ["2010-01-01", "2011-12-31"]
TEST_PERIOD = ["2012-01-01", "2015-12-31"]
DYNAMIC_INPUTS = ["pr", "tas", "rsds", "evspsblpot"]
STATIC_INPUTS = ["area_km2", "elev_mean", "aridity", "frac_snow", "forest_frac", "soil_capacity"]


def demo_config(
    epochs: int = 5, hidden: int = 32, seq_len: int = 180, seed: int = 0, lr: float = 5e-3
) -> dict:
    """The training configuration of the demo (also used by ``scripts/train_zoo.py``).

    Parameters
    ----------
    epochs, hidden, seq_len, seed, lr
        Training length, LSTM hidden size, input window (days), random seed, learning rate.

    Returns
    -------
    dict
        A configuration for :func:`hydroml.training.train`.
    """
    return {
        "name": "demo",
        "seed": seed,
        "data": {
            "source": "demo",
            "product": "basins",
            "dynamic_inputs": list(DYNAMIC_INPUTS),
            "static_inputs": list(STATIC_INPUTS),
            "targets": ["q_mm"],
            "train_period": list(TRAIN_PERIOD),
            "validation_period": list(VALIDATION_PERIOD),
            "test_period": list(TEST_PERIOD),
            "seq_len": seq_len,
        },
        "model": {"name": "lstm", "hidden_size": hidden},
        "optimiser": {"name": "adam", "lr": lr},
        "train": {"epochs": epochs, "batch_size": 256, "loss": "nse", "clip_grad_norm": 1.0},
    }


def plot_hydrographs(obs: Any, sim: Any, clim: Any | None = None, axes: Any = None) -> Any:
    """Observed and predicted discharge, one panel per basin.

    Parameters
    ----------
    obs, sim : xarray.DataArray
        ``(basin, time)``.
    clim : xarray.DataArray, optional
        A benchmark on ``(basin, time)``, drawn thin.
    axes : sequence of matplotlib Axes, optional
        One per basin; created when omitted.

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    basins = list(obs["basin"].values)
    if axes is None:
        _, axes = plt.subplots(len(basins), 1, figsize=(11, 2.0 * len(basins)), sharex=True, squeeze=False)
        axes = axes[:, 0]
    units = obs.attrs.get("units", "mm/day")
    for ax, b in zip(axes, basins):
        ax.plot(obs["time"].values, obs.sel(basin=b).values, color="k", lw=0.8, label="truth (demo)")
        ax.plot(sim["time"].values, sim.sel(basin=b).values, color="tab:blue", lw=0.8, label="LSTM")
        if clim is not None:
            ax.plot(
                clim["time"].values, clim.sel(basin=b).values, color="tab:orange", lw=0.6, label="climatology"
            )
        ax.set_ylabel(f"q [{units}]")
        ax.set_title(str(b), loc="left", fontsize=9)
    axes[0].legend(loc="upper right", fontsize=8, ncol=3)
    return list(axes)


def run_demo(
    out: str | Path,
    epochs: int = 5,
    hidden: int = 32,
    seq_len: int = 180,
    seed: int = 0,
    mode: str = "sliding",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train, forecast, evaluate and plot; return the output paths and the metrics table.

    Parameters
    ----------
    out : path-like
        Output folder (created).
    epochs, hidden, seq_len, seed
        Training settings (see :func:`demo_config`).
    mode : {"sliding", "stateful"}
        Forecast mode for the test period.
    progress : bool, optional
        Progress bars.

    Returns
    -------
    dict
        ``run_dir``, ``predictions``, ``metrics``, ``hydrograph`` (paths) and ``table`` (pandas.DataFrame).
    """
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from hydroml._io import atomic_path, write_text_atomic
    from hydroml.data.demo import load_demo
    from hydroml.evaluation.report import evaluate_datasets
    from hydroml.evaluation.skill import climatology
    from hydroml.forecast import forecast, write_forecast
    from hydroml.training import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_demo("basins")
    run_dir = train(demo_config(epochs, hidden, seq_len, seed), runs_dir=out / "runs", progress=progress)
    pred = forecast(run_dir, ds[DYNAMIC_INPUTS + STATIC_INPUTS], *TEST_PERIOD, mode=mode, progress=progress)
    pred_path = write_forecast(pred, out / "predictions.nc")

    obs = ds["q_mm"].sel(time=slice(*TEST_PERIOD))
    sim = pred["q_mm"]
    # the same code, names and reference period as `hydroml evaluate RUN_DIR`: the climatology benchmark is the
    # day-of-year mean of the training period; nse_climatology is the benchmark's own NSE and
    # nse_skill_climatology the LSTM's skill over it, (NSE - NSE_clim) / (1 - NSE_clim)
    scores = evaluate_datasets(
        ds[["q_mm"]], pred[["q_mm"]], metrics=["nse", "kge", "pbias", "rmse"], ref_period=tuple(TRAIN_PERIOD)
    )["q_mm"]
    columns = ["nse", "kge", "pbias", "rmse", "nse_climatology", "nse_skill_climatology"]
    table = scores[columns].reset_coords(drop=True).to_dataframe()
    table.index = table.index.astype(str)
    table.loc["median"] = table.median()
    table = table.round(4)
    clim = climatology(ds["q_mm"], ref_period=tuple(TRAIN_PERIOD)).sel(time=obs["time"])
    metrics_path = write_text_atomic(out / "metrics.csv", table.to_csv(index_label="basin"))

    import matplotlib.pyplot as plt

    axes = plot_hydrographs(obs, sim, clim)
    axes[0].figure.suptitle(
        f"hydroml demo: LSTM ({mode}) on the test period {TEST_PERIOD[0]}..{TEST_PERIOD[1]}, "
        f"median NSE {table.loc['median', 'nse']:.2f}",
        fontsize=10,
    )
    axes[0].figure.tight_layout()
    png = out / "hydrograph.png"
    with atomic_path(png) as tmp:
        axes[0].figure.savefig(tmp, dpi=110, format="png")
    plt.close(axes[0].figure)
    return {
        "run_dir": Path(run_dir),
        "predictions": pred_path,
        "metrics": metrics_path,
        "hydrograph": png,
        "table": pd.DataFrame(table),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hydroml demo``."""
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder (default: ./{DEFAULT_OUT}): predictions.nc, metrics.csv, hydrograph.png, runs/",
    )
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM hidden size (default 32)")
    parser.add_argument("--seq-len", type=int, default=180, help="input window in days (default 180)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--mode", choices=("sliding", "stateful"), default="sliding", help="forecast mode (default sliding)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: a small LSTM gains little from more, and on a machine shared with "
        "other jobs 2 threads were 5-10x slower than 1 here); 0 = torch's default",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml demo``."""
    import time

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = run_demo(args.out, args.epochs, args.hidden, args.seq_len, args.seed, args.mode)
    table = res["table"]
    print(table.to_string())
    print(f"\nfinished in {time.perf_counter() - t0:.0f} s")
    print(f"run directory : {res['run_dir']}")
    print(f"predictions   : {res['predictions']}")
    print(f"metrics table : {res['metrics']}")
    print(f"hydrograph    : {res['hydrograph']}")
    return 0
