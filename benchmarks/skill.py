"""Real skill on real basins (issue 4, item 7): hydroml LSTM vs baselines vs neuralhydrology, and the unet.

Parts (``python benchmarks/skill.py PART [--seeds 0 1 2] [--peer] [--json]``), configs in
``data_catalog/recipes/``, data from ``../shared/data`` (``HYDROML_DATA_ROOT`` overrides):

``salmon_river`` / ``camels_us_4basins``
    hydroml ``lstm`` trained by :func:`hydroml.training.train` with the recipe, one run per seed; test NSE and
    KGE per basin from :func:`hydroml.forecast.forecast` in ``sliding`` mode (and ``stateful``, to report the
    difference and the time of both); baselines on the same split: day-of-year climatology of the training
    period (:func:`hydroml.evaluation.skill.climatology`) and a scikit-learn linear regression on lagged inputs
    (each input at lags 0..6 days and its means over the previous 30, 90, 180 and 365 days); with ``--peer``,
    neuralhydrology 1.13.0 ``cudalstm`` with the same data, split, sequence length, hidden size, epochs, batch
    size, learning rate, loss (NSE) and seed, trained by its own ``BaseTrainer`` (with subnormal floats flushed
    to zero, as hydroml's trainer does) and scored by its ``Tester`` output (NSE/KGE computed with hydroml's
    metrics on its obs/sim). Every row has NSE, KGE and KGE's components ``r``, ``alpha``, ``beta``.
``moselle``
    ``unet`` on monthly actual evaporation (mHM simulated ``et.nc``) over the 9 x 6 grid, trained on
    1990-1991, validated 1992 (best epoch kept), tested 1993; against the per-cell monthly climatology of the
    training years. Scores per cell over the 12 test months (median over cells) and pooled over all cells.

Every number printed comes from this script; ``BENCHMARKS.md`` records what was run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RECIPES = REPO / "data_catalog" / "recipes"
RECIPE_OF = {
    "salmon_river": "salmon_river_lstm.yaml",
    "camels_us_4basins": "camels_us_4basins_lstm.yaml",
    "moselle": "moselle_unet_et.yaml",
}

log = logging.getLogger("skill")


def _data_root() -> None:
    os.environ.setdefault("HYDROML_DATA_ROOT", str(REPO.parent / "shared" / "data"))


SCORES = ["nse", "kge", "r", "alpha", "beta"]  # every row's scores: NSE, KGE (2009) and KGE's components


def _scores(obs: xr.DataArray, sim: xr.DataArray) -> pd.DataFrame:
    from hydroml.evaluation import evaluate

    sc = evaluate(obs, sim, ["nse", "kge"], dim="time")
    return sc[SCORES].to_dataframe()[SCORES]


def lagged_features(ds: xr.Dataset, inputs: list[str]) -> np.ndarray:
    """``[basin, time, F]``: each input at lags 0..6 and its means over the previous 30, 90, 180, 365 days."""
    feats = []
    for v in inputs:
        a = ds[v].transpose("basin", "time").to_pandas().T  # time x basin
        for lag in range(7):
            feats.append(a.shift(lag).T.values)
        for w in (30, 90, 180, 365):
            feats.append(a.rolling(w, min_periods=w).mean().T.values)
    return np.stack(feats, -1)


def linear_baseline(ds: xr.Dataset, inputs: list[str], target: str, train_p, test_p) -> xr.DataArray:
    """scikit-learn LinearRegression on lagged inputs, fitted on the training period (all basins pooled)."""
    from sklearn.linear_model import LinearRegression

    x = lagged_features(ds, inputs)
    y = ds[target].transpose("basin", "time").values
    t = pd.DatetimeIndex(ds["time"].values)
    tr = (t >= train_p[0]) & (t <= train_p[1])
    te = (t >= test_p[0]) & (t <= test_p[1])
    xt, yt = x[:, tr].reshape(-1, x.shape[-1]), y[:, tr].reshape(-1)
    ok = np.isfinite(xt).all(1) & np.isfinite(yt)
    reg = LinearRegression().fit(xt[ok], yt[ok])
    xs = x[:, te].reshape(-1, x.shape[-1])
    pred = np.full(xs.shape[0], np.nan)
    ok = np.isfinite(xs).all(1)
    pred[ok] = reg.predict(xs[ok])
    return xr.DataArray(
        pred.reshape(y.shape[0], int(te.sum())),
        dims=("basin", "time"),
        coords={"basin": ds["basin"].values, "time": ds["time"].values[te]},
    )


def nh_run(ds: xr.Dataset, recipe: dict, seed: int, work: Path) -> tuple[pd.DataFrame, float]:
    """neuralhydrology cudalstm with the recipe's settings; returns test NSE/KGE per basin and seconds."""
    from neuralhydrology.evaluation import get_tester
    from neuralhydrology.training.basetrainer import BaseTrainer
    from neuralhydrology.utils.config import Config

    from benchmarks._synthetic import write_generic_dataset

    d = recipe["data"]
    data_dir = work / "nh_data"
    if not (data_dir / "basins.txt").is_file():
        keep = list(dict.fromkeys(d["dynamic_inputs"] + d["targets"] + d["static_inputs"]))
        write_generic_dataset(ds[keep].astype("float32"), data_dir)

    def fmt(s: str) -> str:
        return pd.Timestamp(s).strftime("%d/%m/%Y")

    cfg = Config(
        {
            "experiment_name": f"{recipe['name']}_nh_s{seed}",
            "run_dir": str(work / f"nh_run_s{seed}"),
            "train_basin_file": str(data_dir / "basins.txt"),
            "validation_basin_file": str(data_dir / "basins.txt"),
            "test_basin_file": str(data_dir / "basins.txt"),
            "train_start_date": fmt(d["train_period"][0]),
            "train_end_date": fmt(d["train_period"][1]),
            "validation_start_date": fmt(d["test_period"][0]),
            "validation_end_date": fmt(d["test_period"][1]),
            "test_start_date": fmt(d["test_period"][0]),
            "test_end_date": fmt(d["test_period"][1]),
            "device": "cpu",
            "validate_every": None,
            "model": "cudalstm",
            "head": "regression",
            "output_activation": "linear",
            "hidden_size": recipe["model"]["hidden_size"],
            "initial_forget_bias": 3,
            "output_dropout": 0.0,
            "optimizer": "Adam",
            "loss": "NSE",
            "learning_rate": recipe["optimiser"]["lr"],
            "batch_size": recipe["train"]["batch_size"],
            "epochs": recipe["train"]["epochs"],
            "clip_gradient_norm": recipe["train"].get("clip_grad_norm", 1.0),
            "predict_last_n": 1,
            "seq_length": d["seq_len"],
            "num_workers": 0,
            "log_interval": 0,
            "log_tensorboard": False,
            "log_n_figures": 0,
            "save_weights_every": recipe["train"]["epochs"],
            "dataset": "generic",
            "data_dir": str(data_dir),
            "dynamic_inputs": d["dynamic_inputs"],
            "static_attributes": d["static_inputs"],
            "target_variables": d["targets"],
            "seed": seed,
            "verbose": 0,
            "metrics": ["NSE"],
        }
    )
    t0 = time.perf_counter()
    # Flush subnormal floats to zero, as hydroml's trainer does (train.flush_denormal): on this CPU an LSTM
    # backward pass with subnormal gradients is up to 8x slower. Only values below ~1e-38 change.
    torch.set_flush_denormal(True)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = BaseTrainer(cfg)
            trainer.initialize_training()
            trainer.train_and_validate()
            tester = get_tester(cfg=cfg, run_dir=cfg.run_dir, period="test", init_model=True)
            res = tester.evaluate(epoch=recipe["train"]["epochs"], save_results=False, metrics=["NSE"])
    finally:
        torch.set_flush_denormal(False)  # torch's default
    logging.getLogger().handlers.clear()
    secs = time.perf_counter() - t0
    target = d["targets"][0]
    obs, sim = [], []
    for basin, r in res.items():
        x = r["1D"]["xr"].isel(time_step=-1).rename(date="time")
        obs.append(x[f"{target}_obs"].expand_dims(basin=[basin]))
        sim.append(x[f"{target}_sim"].expand_dims(basin=[basin]))
    return _scores(xr.concat(obs, "basin"), xr.concat(sim, "basin")), secs


def basin_part(part: str, seeds: list[int], peer: bool, work: Path, bf16: bool = False) -> list[dict]:
    from hydroml import catalog
    from hydroml.evaluation.skill import climatology
    from hydroml.forecast import forecast
    from hydroml.training import train

    recipe = yaml.safe_load((RECIPES / RECIPE_OF[part]).read_text())
    d = recipe["data"]
    target = d["targets"][0]
    ds = catalog.open(d["source"])
    ds = ds[list(dict.fromkeys(d["dynamic_inputs"] + d["static_inputs"] + d["targets"]))].load()
    train_p = tuple(pd.Timestamp(s) for s in d["train_period"])
    test_p = tuple(pd.Timestamp(s) for s in d["test_period"])
    obs = ds[target].sel(time=slice(*test_p))
    rows: list[dict] = []

    def add(model: str, seed, sc: pd.DataFrame, **extra) -> None:
        for basin, r in sc.iterrows():
            rows.append(
                {"part": part, "model": model, "seed": seed, "basin": str(basin),
                 **{k: float(r[k]) for k in SCORES}, **extra}
            )  # fmt: skip

    clim = climatology(ds[target], ref_period=tuple(d["train_period"])).sel(time=obs["time"])
    add("climatology (day of year)", None, _scores(obs, clim))
    lin = linear_baseline(ds, d["dynamic_inputs"], target, train_p, test_p)
    add("linear regression (lagged inputs)", None, _scores(obs, lin))
    for seed, precision in ((s, p) for s in seeds for p in (("float32", "bf16") if bf16 else ("float32",))):
        cfg = copy.deepcopy(recipe)
        cfg["seed"] = seed
        cfg["name"] = f"{recipe['name']}_s{seed}" + ("_bf16" if precision == "bf16" else "")
        cfg.setdefault("train", {})["bf16"] = precision == "bf16"
        tag = " bf16" if precision == "bf16" else ""
        t0 = time.perf_counter()
        run_dir = train(cfg, runs_dir=work / "runs", progress=False)
        t_train = time.perf_counter() - t0
        for mode in ("sliding", "stateful"):
            t0 = time.perf_counter()
            pred = forecast(run_dir, ds, d["test_period"][0], d["test_period"][1], mode=mode, progress=False)
            secs = time.perf_counter() - t0
            add(f"hydroml lstm{tag} ({mode})", seed, _scores(obs, pred[target]), forecast_seconds=round(secs, 2),
                train_seconds=round(t_train, 1))  # fmt: skip
        if precision == "bf16":
            continue
        if peer:
            sc, secs = nh_run(ds, recipe, seed, work)
            add("neuralhydrology cudalstm", seed, sc, train_seconds=round(secs, 1))
    return rows


def moselle_part(seeds: list[int], work: Path) -> list[dict]:
    from hydroml import catalog
    from hydroml.data.time import to_monthly
    from hydroml.datasets.grid import GridDataset
    from hydroml.evaluation import evaluate
    from hydroml.evaluation.skill import climatology
    from hydroml.forecast import ForecastModel, forecast
    from hydroml.models import create

    r = yaml.safe_load((RECIPES / RECIPE_OF["moselle"]).read_text())
    meteo = catalog.open("moselle_mhm", product="meteo")[r["inputs"]].load()
    et = catalog.open("moselle_mhm", product="evaporation").load()
    monthly = to_monthly(meteo)
    ds = xr.merge([monthly, et[r["targets"]]], join="inner", compat="override")
    target = r["targets"][0]
    valid = np.isfinite(ds[target]).all("time").values
    common = dict(static_inputs=r["static_inputs"], lags=r["lags"], valid_mask=valid)
    rows: list[dict] = []
    obs = ds[target].sel(time=slice(*r["test_period"]))

    def add(model, seed, sim):
        sc = evaluate(obs, sim, ["nse", "kge"], dim="time")
        o = obs.values[:, valid]
        s = sim.values[:, valid]
        pooled_nse = 1 - np.nansum((s - o) ** 2) / np.nansum((o - np.nanmean(o)) ** 2)
        rows.append(
            {"part": "moselle", "model": model, "seed": seed, "basin": "grid (median of cells)",
             "nse": float(np.nanmedian(sc["nse"].values[valid])), "kge": float(np.nanmedian(sc["kge"].values[valid])),
             "nse_pooled": float(pooled_nse), "cells": int(valid.sum())}
        )  # fmt: skip

    clim = climatology(ds[target], ref_period=tuple(r["train_period"])).sel(time=obs["time"])
    add("climatology (monthly, per cell)", None, clim)
    for seed in seeds:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tr = GridDataset(ds, r["inputs"], r["targets"], period=tuple(r["train_period"]), **common)
        va = GridDataset(
            ds,
            r["inputs"],
            r["targets"],
            period=tuple(r["validation_period"]),
            normaliser=tr.normaliser,
            **common,
        )
        params = {k: v for k, v in r["model"].items() if k != "name"}
        model = create("unet", in_channels=tr.n_channels, out_channels=len(r["targets"]), **params)
        opt = torch.optim.Adam(model.parameters(), lr=r["lr"])

        def mse(batch, model=model):
            y_hat = model({"x": batch["x"]})["y_hat"]
            return ((y_hat - torch.nan_to_num(batch["y"]))[batch["mask"]] ** 2).mean()

        best, state = np.inf, None
        t0 = time.perf_counter()
        for _ in range(r["epochs"]):
            model.train()
            order = rng.permutation(len(tr))
            for i in range(0, len(order), r["batch_size"]):
                loss = mse(tr.get_batch(order[i : i + r["batch_size"]]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                v = float(mse(va.get_batch(np.arange(len(va)))))
            if v < best:
                best, state = v, {k: t.clone() for k, t in model.state_dict().items()}
        model.load_state_dict(state)
        fm = ForecastModel(
            model=model.eval(), architecture="unet", inputs=r["inputs"], targets=r["targets"],
            static_inputs=r["static_inputs"], normaliser=tr.normaliser, lags=r["lags"], config=r,
            model_id=f"{r['name']}_s{seed}",
        )  # fmt: skip
        pred = forecast(fm, ds, r["test_period"][0], r["test_period"][1], progress=False)
        sim = pred[target].where(xr.DataArray(valid, dims=pred[target].dims[1:]))
        add("hydroml unet", seed, sim)
        rows[-1]["train_seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="+", choices=sorted(RECIPE_OF))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--peer", action="store_true", help="also train neuralhydrology cudalstm (basin parts)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="also train each seed with train.bf16 (the fused kernel's bf16 path)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--workdir")
    args = p.parse_args(argv)
    _data_root()
    os.environ["HYDROML_PROGRESS"] = "0"
    logging.getLogger("hydroml").setLevel(logging.WARNING)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="hydroml_skill_")
    work = Path(args.workdir or tmp.name)
    rows = []
    for part in args.parts:
        if part == "moselle":
            rows += moselle_part(args.seeds, work / part)
        else:
            rows += basin_part(part, args.seeds, args.peer, work / part, bf16=args.bf16)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        df = pd.DataFrame(rows)
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(df.round(3).to_string(index=False))
            summary = df.groupby(["part", "model"])[["nse", "kge"]].median().round(3)
            print("\nmedian over basins and seeds:\n" + summary.to_string())
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
