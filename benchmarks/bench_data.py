"""Benchmark the basin sequence dataset: hydroml's BasinDataset against neuralhydrology's GenericDataset.

Same synthetic CAMELS-shaped data (``benchmarks/_synthetic.py``: 5 dynamic inputs, 20 static attributes, daily
``q_mm`` target) for both; each implementation runs in a fresh subprocess so its peak RSS (``VmHWM``) is its own.

Measured per implementation
    ``build_s``: from the files on disk to a dataset ready to sample (imports and xarray's one-time backend
    discovery excluded for both) (hydroml: open the NetCDF file lazily and build ``BasinDataset``, which reads one
    variable at a time into its float32 storage; neuralhydrology: ``GenericDataset(cfg, is_train=True, period="train")``, which reads the
    per-basin NetCDF files, normalises and builds its lookup table; numba's JIT compilation of its validation
    function is done before the clock starts and reported apart as ``jit_s``).
    ``peak_rss_mb``: the process's peak resident memory after building and iterating (``baseline_rss_mb``: its
    resident memory after imports, before building: torch alone is about 260 MB of it).
    ``index_bytes_per_sample``: hydroml: bytes of the sample index array; neuralhydrology: its ``lookup_table``
    dict counted with ``sys.getsizeof`` (the dict, each key, each ``(basin, [index])`` tuple, list and index
    object; basin strings shared, counted once).
    ``samples_per_s``: samples delivered by the DataLoader (shuffled batches of ``--batch``; hydroml whole-batch
    gather with ``batch_size=None``; neuralhydrology ``DataLoader(batch_size=..., collate_fn=ds.collate_fn)``),
    ``num_workers=0``, timed over ``--seconds`` (at least 20 batches, at most one epoch), first batch excluded.
    ``build_cpu_s`` and ``samples_per_cpu_s``: the same per CPU second of the worker process (user + system), less
    sensitive than wall time to other jobs on a shared machine.

Usage::

    python benchmarks/bench_data.py --basins 531 --years 9 --seq-len 365 --batch 256 --peer
    python benchmarks/bench_data.py --basins 6800 --years 30 --json        # Caravan scale, hydroml only
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _proc import status_mb  # noqa: E402

FIELDS = ["impl", "build_s", "peak_rss_mb", "index_bytes_per_sample", "samples_per_s"]


def _data_dir(args) -> Path:
    base = Path(args.workdir) if args.workdir else Path(tempfile.gettempdir()) / "hydroml_bench_data"
    return base / (
        f"camels_like_b{args.basins}_y{args.years}_d{args.dynamic}_s{args.static}_seed{args.seed}_{args.dtype}"
    )


def _prepare(args) -> Path:
    """Generate the data once (cached in the work directory): one NetCDF file, and the generic layout if needed."""
    from _synthetic import make_camels_like, write_generic_dataset

    from hydroml._io import write_netcdf_atomic

    root = _data_dir(args)
    nc = root / "lumped.nc"
    generic = root / "generic" / "basins.txt"
    need_nc = not nc.is_file()
    need_generic = args.peer and not generic.is_file()
    if need_nc or need_generic:
        t0 = time.perf_counter()
        ds = make_camels_like(
            args.basins, args.years, args.dynamic, args.static, seed=args.seed, dtype=args.dtype
        )
        if need_nc:
            write_netcdf_atomic(ds, nc)
        if need_generic:
            write_generic_dataset(ds, root / "generic")
        print(f"# generated synthetic data in {root} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        del ds
    return root


def _iterate(loader, seconds: float, n_total_batches: int) -> tuple[float, int, float]:
    """Samples per second over ``seconds`` (first batch excluded), at least 20 batches, at most one epoch.

    Returns samples per wall-clock second, batches timed, and samples per CPU second of this process (less
    sensitive to other jobs sharing the machine).
    """
    it = iter(loader)
    next(it)
    n = 0
    batches = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for batch in it:
        x = batch["x_dynamic"] if "x_dynamic" in batch else batch["x_d"]
        n += (x if not isinstance(x, dict) else next(iter(x.values()))).shape[0]
        batches += 1
        if batches >= 20 and time.perf_counter() - t0 >= seconds:
            break
        if batches >= n_total_batches - 1:
            break
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return n / dt, batches, n / cpu


def _warm_xarray() -> None:
    """Pay xarray's one-time costs (backend discovery, lazy imports of dask etc., ~2-3 s) outside the clock."""
    import numpy as np
    import xarray as xr

    with tempfile.TemporaryDirectory() as tmp:
        xr.Dataset({"a": ("t", np.zeros(3))}).to_netcdf(Path(tmp) / "warm.nc")
        with xr.open_dataset(Path(tmp) / "warm.nc") as f:
            f.load()


def worker_hydroml(args) -> dict:
    import numpy as np
    import xarray as xr
    from _synthetic import dynamic_names, static_names

    from hydroml.datasets import BasinDataset

    root = _data_dir(args)
    _warm_xarray()
    baseline = status_mb("VmRSS")
    c0 = time.process_time()
    t0 = time.perf_counter()
    # opened lazily: BasinDataset reads one variable at a time straight into its float32 storage
    ds = xr.open_dataset(root / "lumped.nc", cache=False)
    t1 = time.perf_counter()
    bd = BasinDataset(
        ds, dynamic_names(args.dynamic), static_names(args.static), ["q_mm"], args.seq_len, progress=False
    )
    t2 = time.perf_counter()
    build_cpu = time.process_time() - c0
    ds.close()
    del ds
    loader = bd.loader(args.batch, shuffle=True, seed=0)
    loader.sampler.set_epoch(0)
    sps, nb, sps_cpu = _iterate(loader, args.seconds, len(loader))
    return {
        "impl": "hydroml",
        "build_s": round(t2 - t0, 3),
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
        "index_bytes_per_sample": bd.index_bytes_per_sample,
        "samples_per_s": round(sps, 1),
        "samples_per_cpu_s": round(sps_cpu, 1),
        "build_cpu_s": round(build_cpu, 3),
        "baseline_rss_mb": round(baseline, 1),
        "load_s": round(t1 - t0, 3),
        "index_build_s": round(t2 - t1, 3),
        "n_samples": len(bd),
        "batches_timed": nb,
        "dynamic_array_mb": round(bd.dynamic.nbytes / 2**20, 1),
        "numpy": np.__version__,
    }


def _nh_lookup_bytes(lookup: dict) -> int:
    size = sys.getsizeof(lookup)
    seen_basins = set()
    for k, (basin, idx) in lookup.items():
        size += sys.getsizeof(k) + sys.getsizeof((basin, idx)) + sys.getsizeof(idx)
        size += sum(sys.getsizeof(i) for i in idx)
        if basin not in seen_basins:
            seen_basins.add(basin)
            size += sys.getsizeof(basin)
    return size


def worker_neuralhydrology(args) -> dict:
    import numpy as np
    import torch
    from _synthetic import dynamic_names, static_names
    from neuralhydrology.datasetzoo import basedataset
    from neuralhydrology.datasetzoo.genericdataset import GenericDataset
    from neuralhydrology.utils.config import Config

    root = _data_dir(args) / "generic"
    bf = root / "basins.txt"
    import pandas as pd
    import xarray as xr

    _warm_xarray()
    with xr.open_dataset(next((root / "time_series").glob("*.nc"))) as one:
        dates = pd.DatetimeIndex(one["date"].values)
    fmt = lambda ts: ts.strftime("%d/%m/%Y")  # noqa: E731
    run_dir = Path(tempfile.mkdtemp(prefix="nh_bench_"))
    cfg = Config(
        {
            "experiment_name": "bench_data",
            "run_dir": str(run_dir),
            "dataset": "generic",
            "data_dir": str(root),
            "train_basin_file": str(bf),
            "validation_basin_file": str(bf),
            "test_basin_file": str(bf),
            "train_start_date": fmt(dates[0]),
            "train_end_date": fmt(dates[-1]),
            "validation_start_date": fmt(dates[0]),
            "validation_end_date": fmt(dates[-1]),
            "test_start_date": fmt(dates[0]),
            "test_end_date": fmt(dates[-1]),
            "dynamic_inputs": dynamic_names(args.dynamic),
            "target_variables": ["q_mm"],
            "static_attributes": static_names(args.static),
            "seq_length": args.seq_len,
            "predict_last_n": 1,
            "loss": "NSE",
            "model": "cudalstm",
            "head": "regression",
            "hidden_size": 64,
            "output_activation": "linear",
            "optimizer": "Adam",
            "learning_rate": 1e-3,
            "batch_size": args.batch,
            "epochs": 1,
            "num_workers": 0,
            "verbose": 0,
            "device": "cpu",
        }
    )
    cfg.train_dir = run_dir / "train_data"
    # numba JIT of the sample validation, outside the timed build (a fresh process pays it every time)
    tj = time.perf_counter()
    z = np.zeros((400, 2), dtype=np.float32)
    basedataset._validate_samples(
        x_d=[z], x_s=None, y=[z[:, :1]], seq_length=[365], predict_last_n=[1], frequency_maps=[np.arange(400)]
    )
    jit_s = time.perf_counter() - tj
    baseline = status_mb("VmRSS")
    c0 = time.process_time()
    t0 = time.perf_counter()
    nh = GenericDataset(cfg, is_train=True, period="train")
    build = time.perf_counter() - t0
    build_cpu = time.process_time() - c0
    lookup_bytes = _nh_lookup_bytes(nh.lookup_table)
    loader = torch.utils.data.DataLoader(
        nh, batch_size=args.batch, shuffle=True, num_workers=0, collate_fn=nh.collate_fn
    )
    sps, nb, sps_cpu = _iterate(loader, args.seconds, len(loader))
    return {
        "impl": "neuralhydrology",
        "build_s": round(build, 3),
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
        "index_bytes_per_sample": round(lookup_bytes / len(nh), 1),
        "samples_per_s": round(sps, 1),
        "samples_per_cpu_s": round(sps_cpu, 1),
        "build_cpu_s": round(build_cpu, 3),
        "baseline_rss_mb": round(baseline, 1),
        "jit_s": round(jit_s, 3),
        "n_samples": len(nh),
        "batches_timed": nb,
        "version": importlib.metadata.version("neuralhydrology"),
    }


def _run_worker(impl: str, argv: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, *argv]
    env = {**os.environ, "HYDROML_PROGRESS": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--basins", type=int, default=531)
    p.add_argument("--years", type=int, default=9)
    p.add_argument("--seq-len", type=int, default=365)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dynamic", type=int, default=5)
    p.add_argument("--static", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="storage type of the data files (float64 like CAMELS/Caravan files; both read the same files)",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="iteration time per implementation")
    p.add_argument("--peer", action="store_true", help="also run neuralhydrology's GenericDataset")
    p.add_argument("--json", action="store_true", help="one JSON object per line per implementation")
    p.add_argument(
        "--workdir", help="where the synthetic data are generated (cached); default: a temp folder"
    )
    p.add_argument("--worker", choices=["hydroml", "neuralhydrology"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        fn = worker_hydroml if args.worker == "hydroml" else worker_neuralhydrology
        print(json.dumps(fn(args)))
        return 0

    if args.peer:
        try:
            import neuralhydrology  # noqa: F401
        except ImportError:
            print("# neuralhydrology is not installed: --peer ignored", file=sys.stderr)
            args.peer = False
    _prepare(args)
    passthrough = [
        f"--basins={args.basins}", f"--years={args.years}", f"--seq-len={args.seq_len}", f"--batch={args.batch}",
        f"--dynamic={args.dynamic}", f"--static={args.static}", f"--seed={args.seed}", f"--seconds={args.seconds}",
        f"--dtype={args.dtype}",
    ]  # fmt: skip
    if args.workdir:
        passthrough.append(f"--workdir={args.workdir}")
    results = [_run_worker("hydroml", passthrough)]
    if args.peer:
        results.append(_run_worker("neuralhydrology", passthrough))
    if args.json:
        for r in results:
            print(json.dumps(r))
    _table(args, results, sys.stderr if args.json else sys.stdout)
    return 0


def _table(args, results: list[dict], out) -> None:
    """The readable table (on stderr when --json prints the JSON lines on stdout)."""
    p = lambda *a, **k: print(*a, **k, file=out)  # noqa: E731
    p(
        f"basin sequence dataset: {args.basins} basins x {args.years} years, {args.dynamic} dynamic + "
        f"{args.static} static inputs, seq_len {args.seq_len}, batch {args.batch}"
    )
    head = (
        f"{'impl':<16}{'build s':>10}{'build CPU s':>13}{'peak RSS MB':>13}{'index B/sample':>16}"
        f"{'samples/s':>12}{'samples/CPU s':>15}{'samples':>11}"
    )
    p(head)
    p("-" * len(head))
    for r in results:
        p(
            f"{r['impl']:<16}{r['build_s']:>10.2f}{r['build_cpu_s']:>13.2f}{r['peak_rss_mb']:>13.0f}"
            f"{r['index_bytes_per_sample']:>16.1f}{r['samples_per_s']:>12.0f}{r['samples_per_cpu_s']:>15.0f}"
            f"{r['n_samples']:>11d}"
        )
    if len(results) == 2:
        h, n = results
        p(
            f"hydroml vs neuralhydrology: build {n['build_s'] / h['build_s']:.1f}x faster (target >= 10x), "
            f"index {h['index_bytes_per_sample']:.0f} B/sample (target <= 16), peak RSS "
            f"{h['peak_rss_mb'] / n['peak_rss_mb']:.2f} of the peer's (target <= 0.25), "
            f"{h['samples_per_s'] / n['samples_per_s']:.1f}x samples/s (target >= 20x)"
        )
        p(
            f"per CPU second: build {n['build_cpu_s'] / h['build_cpu_s']:.1f}x, "
            f"samples {h['samples_per_cpu_s'] / n['samples_per_cpu_s']:.1f}x"
        )


if __name__ == "__main__":
    raise SystemExit(main())
