"""Gridded hydrology on real data: cnn_lstm vs lstm discharge, and water-cycle closure of et.nc (Moselle, gauge 398).

Usage::

    python benchmarks/bench_gridded.py                 # readable tables
    python benchmarks/bench_gridded.py --json          # one JSON object per line
    python benchmarks/bench_gridded.py --part closure  # only the closure part (seconds)
    python benchmarks/bench_gridded.py --part demo     # closure k-fold on the synthetic demo

Data: ``../shared/data/moselle_mhm`` (``HYDROML_SHARED_DATA`` overrides ``../shared/data``). Settings come from
``data_catalog/recipes/gridded_moselle.yaml``, ``closure_moselle.yaml`` and ``closure_demo.yaml``.

Discharge (gauge 398, Moselle at Perl, 11,636 km2 from the flow-accumulation raster): targets train
1990-01-01..1992-12-31, test 1993-01-01..1993-12-31, inputs from 1989 (warm-up for the 365-day windows).
``cnn_lstm`` reads the 9 x 6 grid window of ``pr``, ``evspsblpot``, ``tas`` masked by the basin fractions of the
24 km cells (from the 500 m flow direction); ``lstm`` reads the same three variables averaged over the basin
with the same weights. Same seq_len, hidden size, epochs, batch size, learning rate and seeds. Scores on 1993:
NSE, KGE (hydroml.evaluation), and skill over the day-of-year climatology of the training years
``1 - MSE(model) / MSE(climatology)`` (climatology: mean of 1990-1992 discharge per day of year, smoothed by a
31-day circular moving mean).

Closure: monthly ``P`` (sum of daily ``pre.nc``), ``Q`` (gauge 398 in mm/month with the facc area) and the
mHM ``et.nc`` product. No storage change is available: annual windows (calendar years), dS neglected. The
model corrects et.nc multiplicatively from (et, pr, pet, tas). Trained on 1990-1992 budgets; the 1993 budget is
held out in time (one basin: nothing can be held out in space).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HYDROML_SHARED_DATA", REPO.parent / "shared" / "data"))
RECIPES = REPO / "data_catalog" / "recipes"


def load_recipe(name: str, allowed: set[str]) -> dict:
    """Read a recipe YAML; unknown keys are errors."""
    from hydroml.exceptions import ConfigError

    path = RECIPES / name
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    unknown = set(cfg) - allowed
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; valid keys: {sorted(allowed)}")
    return cfg


# --------------------------------------------------------------------------------------------------- data
def moselle(root: Path = SHARED) -> dict:
    """Daily meteo grid, gauge 398 discharge (m3/s and mm/day), weights, facc area, monthly et.nc."""
    from hydroml import catalog
    from hydroml.data.readers.mhm import open_mhm_morph
    from hydroml.data.spatial import basin_area_from_facc, basin_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        met = catalog.open("moselle_mhm", root=root, product="meteo").load()
        et = catalog.open("moselle_mhm", root=root, product="evaporation").load()
        q = catalog.open("moselle_mhm", root=root, product="discharge").load()
    morph = open_mhm_morph(root / "moselle_mhm")
    area = basin_area_from_facc(morph.facc, morph.idgauges).sel(basin=["398"])
    w_all = basin_weights(met, gauges=morph.idgauges, flowdir=morph.fdir)
    import dataclasses

    k = list(w_all.basins).index("398")
    w = dataclasses.replace(w_all, basins=w_all.basins[[k]], fractions=w_all.fractions[[k]])
    q = q.sel(basin=["398"])
    q["q_mm"] = q["q"] * 86.4 / area  # m3/s -> mm/day over the facc area
    q["q_mm"].attrs["units"] = "mm/day"
    q["area_km2"] = area
    return {"met": met, "q": q, "weights": w, "area": area, "et": et}


# --------------------------------------------------------------------------------------------------- training
def fit(
    model, ds, *, epochs: int, batch_size: int, lr: float, seed: int, n_last: int = 1, stride: int = 1
) -> list[float]:
    """Adam on the masked MSE of the normalised targets of the last ``n_last`` steps of every ``stride``-th
    sample (``stride = n_last`` covers every target day once per epoch with ``1 / n_last`` of the windows)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    positions = np.arange(len(ds))[::-1][::stride][::-1]  # keep the last sample
    hist = []
    model.train()
    for _ in range(epochs):
        order = rng.permutation(positions)
        tot, n = 0.0, 0
        for s in range(0, len(order), batch_size):
            batch = ds.get_batch(order[s : s + batch_size])
            y_hat = model(batch)["y_hat"][:, -n_last:]
            m = batch["mask"]
            diff = torch.where(m, y_hat - torch.nan_to_num(batch["y"]), torch.zeros_like(y_hat))
            loss = (diff**2).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += float(loss.detach()) * len(batch["basin"])
            n += len(batch["basin"])
        hist.append(tot / max(n, 1))
    model.eval()
    return hist


@torch.no_grad()
def predict_last(model, ds, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Normalised prediction of the last step of every sample, with its time index (samples in order)."""
    model.eval()
    ys, ts = [], []
    for s in range(0, len(ds), batch_size):
        b = ds.get_batch(np.arange(s, min(s + batch_size, len(ds))))
        ys.append(model(b)["y_hat"][:, -1, 0].numpy())
        ts.append(b["time"].numpy())
    return np.concatenate(ys), np.concatenate(ts)


def doy_climatology(obs_train, time_train, time_test, window: int = 31) -> np.ndarray:
    """Mean of the training observations per day of year (366 days), circularly smoothed, read at test days."""
    import pandas as pd

    doy = pd.DatetimeIndex(time_train).day_of_year.values - 1
    s = np.bincount(doy, weights=np.nan_to_num(obs_train), minlength=366)
    c = np.bincount(doy, weights=np.isfinite(obs_train).astype(float), minlength=366)
    k = np.ones(window)
    sp = np.convolve(np.r_[s[-window:], s, s[:window]], k, "same")[window:-window]
    cp = np.convolve(np.r_[c[-window:], c, c[:window]], k, "same")[window:-window]
    clim = sp / np.maximum(cp, 1)
    return clim[pd.DatetimeIndex(time_test).day_of_year.values - 1]


def scores(obs: np.ndarray, sim: np.ndarray, clim: np.ndarray) -> dict:
    from hydroml.evaluation import kge, nse

    ok = np.isfinite(obs) & np.isfinite(sim)
    mse = np.mean((sim[ok] - obs[ok]) ** 2)
    mse_c = np.mean((clim[ok] - obs[ok]) ** 2)
    return {
        "nse": float(nse(obs[ok], sim[ok])),
        "kge": float(kge(obs[ok], sim[ok])),
        "skill_vs_doy_clim": float(1 - mse / mse_c),
    }


DISCHARGE_KEYS = {
    "inputs", "seq_len", "train_period", "test_period", "epochs", "batch_size", "lr", "hidden_size",
    "seeds", "conv_width", "conv_layers", "pool", "log_transform", "predict_last_n",
}  # fmt: skip


def run_discharge(data: dict, cfg: dict, threads: int) -> list[dict]:
    """Train cnn_lstm and lstm on the same split and seeds; score 1993."""
    from hydroml.datasets import BasinDataset
    from hydroml.datasets.basin_grid import BasinGridDataset
    from hydroml.models import create

    met, q, w = data["met"], data["q"], data["weights"]
    grid = met.assign(q_mm=q["q_mm"].reindex(time=met.time))
    inputs = list(cfg["inputs"])
    common = dict(seq_len=cfg["seq_len"], log_transform=cfg.get("log_transform", []))
    n_last = int(cfg.get("predict_last_n", 1))
    trp = tuple(cfg["train_period"])
    g_tr = BasinGridDataset(grid, w, inputs, ["q_mm"], period=trp, predict_last_n=n_last, **common)
    g_te = BasinGridDataset(
        grid, w, inputs, ["q_mm"], period=tuple(cfg["test_period"]), normaliser=g_tr.normaliser, **common
    )
    lumped = w.aggregate(met[inputs]).assign(q_mm=q["q_mm"].reindex(time=met.time))
    b_tr = BasinDataset(lumped, inputs, (), ["q_mm"], period=trp, predict_last_n=n_last, **common)
    b_te = BasinDataset(
        lumped, inputs, (), ["q_mm"], period=tuple(cfg["test_period"]), normaliser=b_tr.normaliser, **common
    )
    obs_tr = q["q_mm"].sel(time=slice(*cfg["train_period"])).isel(basin=0)
    results = []
    for seed in cfg["seeds"]:
        for name in ("cnn_lstm", "lstm"):
            torch.manual_seed(seed)
            if name == "cnn_lstm":
                model = create(
                    "cnn_lstm", n_inputs=len(inputs), hidden_size=cfg["hidden_size"],
                    conv_width=cfg["conv_width"], conv_layers=cfg["conv_layers"], pool=cfg["pool"],
                )  # fmt: skip
                tr, te = g_tr, g_te
                inv = g_tr.inverse_target
            else:
                model = create("lstm", n_dynamic=len(inputs), n_static=0, hidden_size=cfg["hidden_size"])
                tr, te = b_tr, b_te

                def inv(y, _n=b_tr.normaliser):
                    return _n.inverse("q_mm", y)

            t0 = time.perf_counter()
            hist = fit(
                model, tr, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed,
                n_last=n_last, stride=n_last,
            )  # fmt: skip
            train_s = time.perf_counter() - t0
            y, ti = predict_last(model, te)
            sim = np.asarray(inv(y), dtype=float)
            times = te.time[ti]
            obs = q["q_mm"].isel(basin=0).sel(time=times).values.astype(float)
            clim = doy_climatology(obs_tr.values, obs_tr.time.values, times)
            rec = {
                "part": "discharge", "model": name, "seed": seed, "test_days": int(np.isfinite(obs).sum()),
                **scores(obs, sim, clim), "train_s": round(train_s, 1), "final_train_loss": hist[-1],
                "n_params": sum(p.numel() for p in model.parameters()), "threads": threads,
            }  # fmt: skip
            results.append(rec)
            print(json.dumps(rec), file=sys.stderr)
    # the climatology itself, for reference
    obs = q["q_mm"].isel(basin=0).sel(time=slice(*cfg["test_period"]))
    clim = doy_climatology(obs_tr.values, obs_tr.time.values, obs.time.values)
    results.append(
        {"part": "discharge", "model": "doy_climatology", "seed": None, **scores(obs.values, clim, clim)}
    )
    return results


# --------------------------------------------------------------------------------------------------- closure
CLOSURE_KEYS = {
    "inputs",
    "train_years",
    "test_years",
    "epochs",
    "lr",
    "penalty",
    "seeds",
    "model_params",
    "aggregation",
}


def moselle_problem(data: dict, cfg: dict):
    """The closure problem of gauge 398 (monthly P, Q, et.nc)."""
    import xarray as xr

    from hydroml import closure
    from hydroml.data.time import to_monthly

    met, q, w, et = data["met"], data["q"], data["weights"], data["et"]
    mon = to_monthly(met[["pr", "evspsblpot", "tas"]])
    mon = mon.sel(time=slice(str(et.time.values[0])[:10], str(et.time.values[-1])[:10]))
    mon = mon.assign(evspsbl=et["evspsbl"].reindex(time=mon.time))
    qm = to_monthly(q[["q_mm"]]).q_mm.reindex(time=mon.time)
    assert isinstance(qm, xr.DataArray)
    return closure.build_problem(
        mon, w, qm, inputs=list(cfg["inputs"]), product="evspsbl", area_km2=data["area"], incremental=False,
        aggregation=cfg.get("aggregation", "year"),
    )  # fmt: skip


def _subset_years(problem, years):
    """A copy of the problem whose budget is NaN outside ``years`` (windows outside are ignored)."""
    import dataclasses

    keep = np.isin(problem.time.year, years)
    b = problem.budget.copy()
    b[:, ~keep] = np.nan
    return dataclasses.replace(problem, budget=b)


def run_closure(data: dict, cfg: dict, threads: int) -> list[dict]:
    from hydroml import closure

    problem = moselle_problem(data, cfg)
    tr = _subset_years(problem, cfg["train_years"])
    te = _subset_years(problem, cfg["test_years"])
    out = []
    before_tr = closure.score(tr, problem.product)
    before_te = closure.score(te, problem.product)
    before_all = closure.score(problem, problem.product)
    annual = problem.budget @ closure.window_matrix(problem.time, "year")[0].T
    out.append({
        "part": "closure", "what": "budget", "years": [int(y) for y in sorted(set(problem.time.year))],
        "P_mm_per_year": np.round(problem.precip @ closure.window_matrix(problem.time, "year")[0].T, 1)[0].tolist(),
        "E_budget_mm_per_year": np.round(annual, 1)[0].tolist(),
        "E_product_mm_per_year": np.round(
            problem.unit_means(problem.product) @ closure.window_matrix(problem.time, "year")[0].T, 1)[0].tolist(),
    })  # fmt: skip
    for seed in cfg["seeds"]:
        t0 = time.perf_counter()
        res = closure.train(
            tr, architecture="closure", model_params=cfg.get("model_params"), epochs=cfg["epochs"], lr=cfg["lr"],
            penalty=cfg["penalty"], seed=seed, progress=False,
        )  # fmt: skip
        e = closure.predict(res.model, problem)
        rec = {
            "part": "closure",
            "seed": seed,
            "train_s": round(time.perf_counter() - t0, 1),
            "threads": threads,
        }
        for tag, p, before in (
            ("train", tr, before_tr),
            ("test", te, before_te),
            ("all", problem, before_all),
        ):
            after = closure.score(p, e)
            rec[f"{tag}_residual_before"] = before["residual_mae"]
            rec[f"{tag}_residual_after"] = after["residual_mae"]
            rec[f"{tag}_residual_bias_before"] = before["residual_bias"]
            rec[f"{tag}_residual_bias_after"] = after["residual_bias"]
        rec["dev_product_mae"] = after["dev_product_mae"]
        rec["dev_product_rel"] = after["dev_product_rel"]
        rec["mean_ratio_corrected_to_product"] = float(np.nansum(e) / np.nansum(problem.product))
        out.append(rec)
        print(json.dumps(rec), file=sys.stderr)
    return out


def run_demo(cfg: dict, threads: int) -> list[dict]:
    """Leave-units-out k-fold of the closure model on the synthetic demo (truth known)."""
    from hydroml import closure

    problem, _ = closure.demo_problem(seed=cfg.get("product_seed", 0))
    out = []
    for seed in cfg["seeds"]:
        t0 = time.perf_counter()
        oof, folds = closure.kfold(
            problem, k=cfg["k"], seed=seed, epochs=cfg["epochs"], lr=cfg["lr"], penalty=cfg["penalty"],
            progress=False,
        )  # fmt: skip
        before = closure.score(problem, problem.product)
        after = closure.score(problem, oof)
        rec = {
            "part": "demo_closure",
            "seed": seed,
            "k": cfg["k"],
            "train_s": round(time.perf_counter() - t0, 1),
        }
        for key in ("residual_mae", "residual_bias", "nse_cell_median", "bias_cell_mae", "bias_rel"):
            rec[f"{key}_before"] = before[key]
            rec[f"{key}_after"] = after[key]
        rec["dev_product_rel"] = after["dev_product_rel"]
        rec["folds"] = [{"test": f["test_units"], "residual_before": f["before"]["residual_mae"],
                         "residual_after": f["after"]["residual_mae"], "nse_before": f["before"]["nse_cell_median"],
                         "nse_after": f["after"]["nse_cell_median"]} for f in folds]  # fmt: skip
        out.append(rec)
        print(json.dumps(rec), file=sys.stderr)
    return out


def _table(rows: list[dict]) -> str:
    lines = []
    dis = [r for r in rows if r["part"] == "discharge"]
    if dis:
        lines.append("Discharge, gauge 398, test 1993 (train 1990-1992)")
        lines.append(f"{'model':<16}{'seed':>6}{'NSE':>8}{'KGE':>8}{'skill/clim':>12}{'train s':>10}")
        for r in dis:
            lines.append(
                f"{r['model']:<16}{str(r['seed']):>6}{r['nse']:>8.3f}{r['kge']:>8.3f}{r['skill_vs_doy_clim']:>12.3f}"
                f"{r.get('train_s', float('nan')):>10.1f}"
            )
    clo = [r for r in rows if r["part"] == "closure" and "seed" in r]
    bud = [r for r in rows if r["part"] == "closure" and r.get("what") == "budget"]
    if bud:
        b = bud[0]
        lines.append("\nGauge 398 annual budget (mm/year): years " + str(b["years"]))
        lines.append(
            f"  P {b['P_mm_per_year']}  P-Q {b['E_budget_mm_per_year']}  et.nc {b['E_product_mm_per_year']}"
        )
    if clo:
        lines.append("\nClosure of et.nc, |annual residual| P-E-Q (dS neglected), mm/month")
        lines.append(
            f"{'seed':>6}{'train before':>14}{'after':>8}{'test(1993) before':>19}{'after':>8}{'dev/product':>13}"
        )
        for r in clo:
            lines.append(
                f"{r['seed']:>6}{r['train_residual_before']:>14.2f}{r['train_residual_after']:>8.2f}"
                f"{r['test_residual_before']:>19.2f}{r['test_residual_after']:>8.2f}{r['dev_product_rel']:>13.3f}"
            )
    demo = [r for r in rows if r["part"] == "demo_closure"]
    if demo:
        lines.append("\nSynthetic demo, closure k-fold over incremental units (out-of-fold)")
        lines.append(
            f"{'seed':>6}{'resid before':>14}{'after':>8}{'NSE before':>12}{'after':>8}{'|bias| before':>15}{'after':>8}"
        )
        for r in demo:
            lines.append(
                f"{r['seed']:>6}{r['residual_mae_before']:>14.2f}{r['residual_mae_after']:>8.2f}"
                f"{r['nse_cell_median_before']:>12.3f}{r['nse_cell_median_after']:>8.3f}"
                f"{r['bias_cell_mae_before']:>15.3f}{r['bias_cell_mae_after']:>8.3f}"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "discharge", "closure", "demo"], default="all")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--seeds", type=int, nargs="*", help="override the recipes' seeds")
    ap.add_argument("--epochs", type=int, help="override the recipes' epochs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    data = moselle() if args.part in ("all", "discharge", "closure") else None

    def over(cfg):
        if args.seeds:
            cfg["seeds"] = args.seeds
        if args.epochs:
            cfg["epochs"] = args.epochs
        return cfg

    if args.part in ("all", "discharge"):
        rows += run_discharge(data, over(load_recipe("gridded_moselle.yaml", DISCHARGE_KEYS)), args.threads)
    if args.part in ("all", "closure"):
        rows += run_closure(data, over(load_recipe("closure_moselle.yaml", CLOSURE_KEYS)), args.threads)
    if args.part in ("all", "demo"):
        keys = {"k", "epochs", "lr", "penalty", "seeds", "product_seed"}
        rows += run_demo(over(load_recipe("closure_demo.yaml", keys)), args.threads)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
