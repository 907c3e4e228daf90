"""Benchmark: hydroml's vectorised metrics against per-series loops of HydroErr, hydroeval and neuralhydrology.

Usage::

    python benchmarks/bench_metrics.py --series 10000 --steps 10000 [--json]

Every implementation runs in a fresh subprocess (so its peak memory, VmHWM from /proc/self/status, is its own)
on the same synthetic data: gamma-distributed "observed" flows, a multiplicatively perturbed "simulation", and
5 % NaN in the observations and 1 % in the simulation (``--nan-frac``). Timings cover the metric computation
only, not the data generation. Peers run on a subset of the series (``--peer-series``, neuralhydrology
``--nh-series``) and their time is extrapolated linearly to all series (``extrapolated: true``).

Metric sets:

- ``nse_kge``: NSE and KGE (with its components where the library returns them);
- ``all``: hydroml's full deterministic set (21 metrics, :data:`hydroml.evaluation.DEFAULT_METRICS`); for the
  peers, every metric of that set they implement (HydroErr 10, hydroeval 7, neuralhydrology 13 through
  ``calculate_all_metrics``).

Output: a readable table, or one JSON object per line with ``--json`` (fields ``impl``, ``metrics``, ``series``,
``steps``, ``seconds``, ``peak_rss_mb`` and more).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
from _proc import status_mb  # benchmarks/ is on sys.path when a script runs


def make_data(
    series: int, steps: int, nan_frac: float, dtype: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic obs/sim, generated in blocks of rows so that generation never exceeds the final arrays."""
    rng = np.random.default_rng(seed)
    obs = np.empty((series, steps), dtype=dtype)
    sim = np.empty((series, steps), dtype=dtype)
    block = max(1, 2**22 // max(steps, 1))
    for i in range(0, series, block):
        j = min(series, i + block)
        o = rng.gamma(2.0, 5.0, size=(j - i, steps))
        s = o * rng.normal(1.0, 0.3, size=o.shape) + rng.normal(0.0, 0.5, size=o.shape)
        o[rng.random(o.shape) < nan_frac] = np.nan
        s[rng.random(s.shape) < nan_frac / 5] = np.nan
        obs[i:j] = o
        sim[i:j] = s
    return obs, sim


# --------------------------------------------------------------------------------------------------------------
# implementations: f(obs, sim, metrics) -> None, on the rows given
ENGINE = ["auto"]


def run_hydroml(obs: np.ndarray, sim: np.ndarray, metrics: str) -> None:
    from hydroml.evaluation import evaluate, set_options

    set_options(engine=ENGINE[0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(obs, sim, ["nse", "kge"] if metrics == "nse_kge" else None)


def run_hydroerr(obs: np.ndarray, sim: np.ndarray, metrics: str) -> None:
    import HydroErr as H

    fns = [H.nse, H.kge_2009]
    if metrics == "all":
        fns += [H.kge_2012, H.rmse, H.mse, H.mae, H.me, H.pearson_r, H.spearman_r, H.r_squared]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(obs.shape[0]):
            for f in fns:
                f(sim[i], obs[i])


def run_hydroeval(obs: np.ndarray, sim: np.ndarray, metrics: str) -> None:
    import hydroeval as he

    calls = [(he.nse, {}), (he.kge, {})]
    if metrics == "all":
        calls += [
            (he.kgeprime, {}),
            (he.kgenp, {}),
            (he.rmse, {}),
            (he.pbias, {}),
            (he.nse, {"transform": "log"}),
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(obs.shape[0]):
            for f, kw in calls:
                he.evaluator(f, sim[i], obs[i], **kw)


def run_neuralhydrology(obs: np.ndarray, sim: np.ndarray, metrics: str) -> None:
    import pandas as pd
    import xarray as xr
    from neuralhydrology.evaluation import metrics as nh

    dates = pd.date_range("1990-01-01", periods=obs.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(obs.shape[0]):
            o = xr.DataArray(obs[i], dims=["date"], coords={"date": dates})
            s = xr.DataArray(sim[i], dims=["date"], coords={"date": dates})
            if metrics == "nse_kge":
                nh.nse(o, s)
                nh.kge(o, s)
            else:
                nh.calculate_all_metrics(o, s)


IMPLS = {
    "hydroml": run_hydroml,
    "hydroerr_loop": run_hydroerr,
    "hydroeval_loop": run_hydroeval,
    "neuralhydrology_per_basin": run_neuralhydrology,
}
PEER_MODULE = {
    "hydroerr_loop": "HydroErr",
    "hydroeval_loop": "hydroeval",
    "neuralhydrology_per_basin": "neuralhydrology",
}


def worker(args: argparse.Namespace) -> dict:
    ENGINE[0] = args.engine
    obs, sim = make_data(args.series, args.steps, args.nan_frac, args.dtype)
    input_mb = (obs.nbytes + sim.nbytes) / 2**20
    rows = args.series
    if args.impl == "neuralhydrology_per_basin":
        rows = min(args.series, args.nh_series)
    elif args.impl != "hydroml":
        rows = min(args.series, args.peer_series)
    fn = IMPLS[args.impl]
    fn(obs[:2], sim[:2], args.metrics)  # import and warm up outside the timing
    rss_before = status_mb("VmRSS")
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn(obs[:rows], sim[:rows], args.metrics)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "impl": args.impl,
        "metrics": args.metrics,
        "series": args.series,
        "steps": args.steps,
        "seconds": seconds * args.series / rows,
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
        "cpu_seconds": round(cpu * args.series / rows, 3),
        "load_avg_1min": os.getloadavg()[0],
        "measured_series": rows,
        "measured_seconds": round(seconds, 4),
        "extrapolated": rows < args.series,
        "input_mb": round(input_mb, 1),
        "rss_before_mb": round(rss_before, 1),
        "dtype": args.dtype,
        "nan_frac": args.nan_frac,
        "engine": _engine_used(args.engine) if args.impl == "hydroml" else None,
    }


def _engine_used(engine: str) -> str:
    if engine != "auto":
        return engine
    import importlib.util

    return "numba" if importlib.util.find_spec("numba") is not None else "numpy"


def _available(impl: str) -> bool:
    import importlib.util

    return impl == "hydroml" or importlib.util.find_spec(PEER_MODULE[impl]) is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=10000)
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--nan-frac", type=float, default=0.05, help="NaN fraction in obs (sim: a fifth of it)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--metrics", choices=("nse_kge", "all", "both"), default="both")
    p.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS))
    p.add_argument("--peer-series", type=int, default=1000, help="series measured for HydroErr/hydroeval")
    p.add_argument("--nh-series", type=int, default=20, help="series measured for neuralhydrology")
    p.add_argument(
        "--engine",
        choices=("auto", "numpy", "numba"),
        default="auto",
        help="hydroml's moment engine (default auto)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--impl", help=argparse.SUPPRESS)  # worker mode
    args = p.parse_args(argv)
    if args.impl:
        print(json.dumps(worker(args)))
        return 0
    sets = ["nse_kge", "all"] if args.metrics == "both" else [args.metrics]
    results = []
    for metrics in sets:
        for impl in args.impls:
            if not _available(impl):
                continue
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--impl", impl, "--metrics", metrics, "--series", str(args.series), "--steps", str(args.steps),
                "--nan-frac", str(args.nan_frac), "--dtype", args.dtype,
                "--peer-series", str(args.peer_series), "--nh-series", str(args.nh_series),
                "--engine", args.engine,
            ]  # fmt: skip
            env = dict(os.environ, HYDROML_PROGRESS="0")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.stderr.write(f"{impl} {metrics} failed:\n{proc.stderr[-2000:]}\n")
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(res)
            if args.json:
                print(json.dumps(res), flush=True)
    if not args.json:
        print(
            f"# {args.series} series x {args.steps} steps, {args.dtype}, NaN {args.nan_frac:.0%} obs / "
            f"{args.nan_frac / 5:.0%} sim; {platform.machine()} {os.cpu_count()} CPUs; python {platform.python_version()}"
        )
        hdr = (
            f"{'impl':28s} {'metrics':8s} {'seconds':>10s} {'cpu s':>10s} {'measured':>14s} "
            f"{'peak RSS MB':>12s} {'input MB':>9s} {'load':>5s}"
        )
        print(hdr)
        print("-" * len(hdr))
        for r in results:
            meas = f"{r['measured_series']} ser{'*' if r['extrapolated'] else ''}"
            impl = r["impl"] + (f" ({r['engine']})" if r.get("engine") else "")
            print(
                f"{impl:28s} {r['metrics']:8s} {r['seconds']:10.2f} {r['cpu_seconds']:10.2f} {meas:>14s} "
                f"{r['peak_rss_mb']:12.0f} {r['input_mb']:9.0f} {r['load_avg_1min']:5.1f}"
            )
        print("* measured on a subset of the series, time extrapolated linearly to all series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
