"""Training and evaluation speed: hydroml against neuralhydrology 1.13.0 (``cudalstm``), in the same run.

What is measured (wall-clock seconds, ``time.perf_counter``, same process, same threads):

``task=train``
    One epoch over ``--basins`` synthetic CAMELS-shaped basins (``benchmarks/_synthetic.py``: 5 dynamic inputs,
    20 static attributes, daily discharge target), batch 256, ``seq_len`` 365, hidden 128, MSE loss, Adam,
    gradient clipping 1.0, no validation. A sample is one (basin, day) window of the training period
    (``--train-days`` days per basin, the 364 days before the period serve as the first windows' history).

    - ``hydroml``: ``hydroml.training.train(config)`` end to end: open the NetCDF, fit the normaliser, build the
      dataset, train one epoch, write the run directory (config, normalisation, weights, checkpoint, metrics).
    - ``neuralhydrology``: its own trainer, ``BaseTrainer(cfg)`` + ``initialize_training()`` (per-basin NetCDF
      loading, scaler, lookup table, model, optimiser) + ``_train_epoch(1)`` + ``_save_weights_and_optimizer(1)``,
      on the same data written in its ``GenericDataset`` layout (``time_series/<basin>.nc``, ``attributes/``).

    ``samples_per_s`` = training samples / end-to-end seconds; ``epoch_samples_per_s`` counts only the epoch loop;
    ``samples_per_cpu_s`` = samples / CPU seconds of the process (user + system: less sensitive than wall time
    to other jobs on a shared machine). ``flush_denormal`` says whether denormal floats were flushed to zero:
    hydroml's trainer does it by default (``train.flush_denormal``), neuralhydrology does not; with
    ``--peer-ftz`` neuralhydrology is also trained with flush-to-zero (``impl`` ``neuralhydrology+ftz``) to show
    how much of the difference that one setting explains (LSTM backward through 365 steps produces denormal
    gradients, and x86 arithmetic on denormals is many times slower).
    With ``--bf16`` hydroml also trains with ``train.bf16`` (``impl`` ``hydroml+bf16``): bfloat16 autocast of
    the forward pass, used only on CPUs with native bf16 (``bf16_used``); a different precision, so a separate
    row, not the like-for-like comparison.

``task=evaluate``
    Predict one basin over ``--eval-years`` years (the days of the test period), after a forward run of each
    trained model:

    - ``neuralhydrology``: ``RegressionTester.evaluate`` on the test period: one ``seq_len`` window per day,
      batched (its evaluation, including loading the basin's data);
    - ``hydroml`` ``mode=sliding``: :func:`hydroml.forecast.forecast` with the same per-day windows;
    - ``hydroml`` ``mode=stateful``: one pass carrying the LSTM state (warm-up ``seq_len`` days), chunks of 1000.

Run ``python benchmarks/bench_train.py`` (table) or ``--json`` (one JSON object per line). Results with the
command and the machine go in ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._machine import cpu_isa, cpu_model  # noqa: E402

HIDDEN = 128  # --hidden
DYNAMIC = None  # filled from the synthetic data set
STATIC = None
TARGET = "q_mm"


def _synthetic(n_basins: int, start: str, end: str, seed: int):
    """CAMELS-shaped synthetic basins from ``benchmarks/_synthetic.py`` (shared with the other benchmarks)."""
    from benchmarks import _synthetic as syn

    n_years = pd.Timestamp(end).year - pd.Timestamp(start).year + 1
    return syn.make_camels_like(n_basins, n_years, n_dynamic=5, n_static=20, seed=seed, start=start)


def _write_nh_layout(ds, root: Path) -> Path:
    from benchmarks import _synthetic as syn

    syn.write_generic_dataset(ds, root)
    return root


def _fmt(date: pd.Timestamp) -> str:
    return pd.Timestamp(date).strftime("%d/%m/%Y")


def bench_hydroml_train(
    nc_path: Path, work: Path, args, dyn, static, periods, bf16: bool = False
) -> tuple[dict, Path]:
    from hydroml.training import train

    train_p, test_p = periods
    config = {
        "name": "bench",
        "seed": args.seed,
        "deterministic": False,
        "data": {
            "source": str(nc_path),
            "dynamic_inputs": dyn,
            "static_inputs": static,
            "targets": [TARGET],
            "train_period": [str(train_p[0].date()), str(train_p[1].date())],
            "test_period": [str(test_p[0].date()), str(test_p[1].date())],
            "seq_len": args.seq_len,
        },
        "model": {"name": "lstm", "hidden_size": args.hidden},
        "optimiser": {"name": "adam", "lr": 1e-3},
        "train": {
            "epochs": 1,
            "batch_size": args.batch_size,
            "loss": "mse",
            "clip_grad_norm": 1.0,
            "progress": False,
            "bf16": bf16,
        },
    }
    t0, c0 = time.perf_counter(), time.process_time()
    run_dir = train(config, runs_dir=work / "hydroml_runs", progress=False)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    metrics = pd.read_csv(run_dir / "metrics.csv")
    epoch_s = float(metrics["seconds"].iloc[-1])
    return {"seconds": total, "epoch_seconds": epoch_s, "cpu_seconds": cpu}, run_dir


def _nh_config(data_dir: Path, work: Path, args, dyn, static, periods, basin_files) -> object:
    from neuralhydrology.utils.config import Config

    train_p, test_p = periods
    return Config(
        {
            "experiment_name": "bench",
            "run_dir": str(work / "nh_runs"),
            "train_basin_file": str(basin_files[0]),
            "validation_basin_file": str(basin_files[1]),
            "test_basin_file": str(basin_files[1]),
            "train_start_date": _fmt(train_p[0]),
            "train_end_date": _fmt(train_p[1]),
            "validation_start_date": _fmt(test_p[0]),
            "validation_end_date": _fmt(test_p[1]),
            "test_start_date": _fmt(test_p[0]),
            "test_end_date": _fmt(test_p[1]),
            "device": "cpu",
            "validate_every": None,
            "model": "cudalstm",
            "head": "regression",
            "output_activation": "linear",
            "hidden_size": args.hidden,
            "initial_forget_bias": 3,
            "output_dropout": 0.0,
            "optimizer": "Adam",
            "loss": "MSE",
            "learning_rate": 1e-3,
            "batch_size": args.batch_size,
            "epochs": 1,
            "clip_gradient_norm": 1.0,
            "predict_last_n": 1,
            "seq_length": args.seq_len,
            "num_workers": 0,
            "log_interval": 0,
            "log_tensorboard": False,
            "log_n_figures": 0,
            "save_weights_every": 1,
            "dataset": "generic",
            "data_dir": str(data_dir),
            "dynamic_inputs": dyn,
            "static_attributes": static,
            "target_variables": [TARGET],
            "seed": args.seed,
            "verbose": 0,
            "metrics": ["NSE"],
        }
    )


def bench_nh_train(cfg, flush_denormal: bool = False) -> tuple[dict, object]:
    """neuralhydrology's trainer, end to end; ``flush_denormal`` sets flush-to-zero first (not its default)."""
    from neuralhydrology.training.basetrainer import BaseTrainer

    torch.set_flush_denormal(flush_denormal)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        trainer = BaseTrainer(cfg)
        trainer.initialize_training()
        t1 = time.perf_counter()
        trainer._train_epoch(epoch=1)
        t2 = time.perf_counter()
        trainer._save_weights_and_optimizer(1)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_flush_denormal(False)
    n = len(trainer.loader.dataset)
    return {"seconds": total, "epoch_seconds": t2 - t1, "samples": n, "cpu_seconds": cpu}, trainer


def bench_nh_evaluate(cfg) -> dict:
    from neuralhydrology.evaluation import get_tester

    t0 = time.perf_counter()
    tester = get_tester(cfg=cfg, run_dir=cfg.run_dir, period="test", init_model=True)
    results = tester.evaluate(epoch=1, save_results=False, metrics=["NSE"])
    secs = time.perf_counter() - t0
    basin = next(iter(results))
    n = int(next(iter(results[basin].values()))["xr"].sizes["date"])
    return {"seconds": round(secs, 3), "days": n}


def bench_hydroml_evaluate(run_dir: Path, nc_path: Path, basin: str, test_p, mode: str) -> dict:
    from hydroml.forecast import forecast

    t0 = time.perf_counter()
    pred = forecast(
        run_dir,
        nc_path,
        str(test_p[0].date()),
        str(test_p[1].date()),
        mode=mode,
        basins=[basin],
        progress=False,
    )
    secs = time.perf_counter() - t0
    return {"seconds": round(secs, 3), "days": int(pred.sizes["time"])}


def _train_row(impl: str, res: dict, samples: int, **extra) -> dict:
    """One ``task=train`` result row from a timing dict (``seconds``, ``epoch_seconds``, ``cpu_seconds``)."""
    return {
        "impl": impl,
        "task": "train",
        "mode": None,
        "samples": samples,
        "seconds": round(res["seconds"], 3),
        "samples_per_s": round(samples / res["seconds"], 2),
        "epoch_samples_per_s": round(samples / res["epoch_seconds"], 2),
        "cpu_seconds": round(res["cpu_seconds"], 3),
        "samples_per_cpu_s": round(samples / res["cpu_seconds"], 2),
        **extra,
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "lstm_gemm": _kernel_path(),
    }


def _kernel_path() -> str:
    """hydroml's fused-LSTM GEMM path at this benchmark's hidden size (``avx512``, ``avx2``, ``blas``)."""
    from hydroml.models import _fused_lstm

    return _fused_lstm.isa(HIDDEN) if _fused_lstm.available() else "unavailable"


def machine() -> str:
    cpu = f"{cpu_model()} ({cpu_isa()})"
    return f"{cpu}; {os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()}; torch {torch.__version__}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--basins", type=int, default=100)
    p.add_argument(
        "--train-days", type=int, default=30, help="days of the training period per basin (default 30)"
    )
    p.add_argument("--eval-years", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=365)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeat", type=int, default=1, help="evaluation: run each N times and keep the fastest (default 1)"
    )
    p.add_argument("--skip-peer", action="store_true", help="hydroml only")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="also train hydroml with train.bf16 (bfloat16 autocast; used on CPUs with AVX-512 BF16 / AMX only)",
    )
    p.add_argument(
        "--peer-ftz",
        action="store_true",
        help="also train neuralhydrology with flush-to-zero of denormal floats (hydroml's default; "
        "neuralhydrology's is off) to show how much of the difference that setting explains",
    )
    p.add_argument("--only", choices=("train", "evaluate"), help="run one task only")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--workdir", help="keep the generated data and runs here (default: a temporary folder)")
    args = p.parse_args(argv)
    global HIDDEN
    HIDDEN = args.hidden
    logging.getLogger("hydroml").setLevel(logging.WARNING)
    os.environ["HYDROML_PROGRESS"] = "0"

    have_nh = False
    if not args.skip_peer:
        try:
            import neuralhydrology  # noqa: F401

            have_nh = True
        except ImportError:
            print("neuralhydrology is not installed: measuring hydroml only", file=sys.stderr)

    tmp = tempfile.TemporaryDirectory(prefix="hydroml_bench_") if not args.workdir else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    train_start = pd.Timestamp("2001-01-01")
    train_p = (train_start, train_start + pd.Timedelta(days=args.train_days - 1))
    test_start = pd.Timestamp("2003-01-01")
    test_p = (test_start, test_start + pd.DateOffset(years=args.eval_years) - pd.Timedelta(days=1))
    data_start = pd.Timestamp(f"{(train_start - pd.Timedelta(days=args.seq_len + 5)).year}-01-01")
    ds = _synthetic(args.basins, str(data_start.date()), str(test_p[1].date()), args.seed)
    dyn = [v for v in ds.data_vars if "time" in ds[v].dims and v not in {"q", "q_mm"}][:5]
    static = [v for v in ds.data_vars if ds[v].dims == ("basin",)][:20]
    nc_path = work / "synthetic_basins.nc"
    ds.to_netcdf(nc_path)
    basins = [str(b) for b in ds["basin"].values]
    eval_basin = basins[0]

    rows: list[dict] = []
    common = {
        "basins": args.basins,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "hidden": args.hidden,
        "n_dynamic": len(dyn),
        "n_static": len(static),
        "threads": torch.get_num_threads(),
    }

    def emit(row: dict) -> None:
        row = {**row, **common}
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)

    n_samples = args.basins * args.train_days
    hy_run = None
    nh_cfg = None
    if args.only in (None, "train", "evaluate"):
        res, hy_run = bench_hydroml_train(nc_path, work, args, dyn, static, (train_p, test_p))
        if args.only != "evaluate":
            emit(_train_row("hydroml", res, n_samples, flush_denormal=True))
        if args.bf16 and args.only != "evaluate":
            from hydroml.training.loop import cpu_has_native_bf16

            res, _ = bench_hydroml_train(nc_path, work, args, dyn, static, (train_p, test_p), bf16=True)
            emit(
                _train_row(
                    "hydroml+bf16", res, n_samples, flush_denormal=True, bf16_used=cpu_has_native_bf16()
                )
            )
        if have_nh:
            data_dir = _write_nh_layout(ds, work / "nh_data")
            files = (work / "train_basins.txt", work / "eval_basin.txt")
            files[0].write_text("\n".join(basins) + "\n")
            files[1].write_text(eval_basin + "\n")
            nh_cfg = _nh_config(data_dir, work, args, dyn, static, (train_p, test_p), files)
            variants = [("neuralhydrology", False)]
            if args.peer_ftz and args.only != "evaluate":
                variants.append(("neuralhydrology+ftz", True))
            for impl, ftz in variants:
                with contextlib.redirect_stdout(io.StringIO()):
                    res, _ = bench_nh_train(nh_cfg, flush_denormal=ftz)
                logging.getLogger().handlers.clear()  # neuralhydrology configures the root logger
                if res["samples"] != n_samples:
                    print(
                        f"note: neuralhydrology counted {res['samples']} samples, hydroml {n_samples}",
                        file=sys.stderr,
                    )
                if args.only != "evaluate":
                    emit(_train_row(impl, res, res["samples"], flush_denormal=ftz))
    if args.only in (None, "evaluate"):
        if have_nh:
            with contextlib.redirect_stdout(io.StringIO()):
                res = min((bench_nh_evaluate(nh_cfg) for _ in range(args.repeat)), key=lambda r: r["seconds"])
            emit(
                {
                    "impl": "neuralhydrology",
                    "task": "evaluate",
                    "mode": "sliding",
                    "repeat": args.repeat,
                    **res,
                }
            )
        for mode in ("sliding", "stateful"):
            res = min(
                (
                    bench_hydroml_evaluate(hy_run, nc_path, eval_basin, test_p, mode)
                    for _ in range(args.repeat)
                ),
                key=lambda r: r["seconds"],
            )
            emit({"impl": "hydroml", "task": "evaluate", "mode": mode, "repeat": args.repeat, **res})

    # the table: on stdout, or on stderr when stdout carries the --json lines
    out = sys.stderr if args.json else sys.stdout
    print(f"machine: {machine()}", file=out)
    print(
        f"{args.basins} synthetic basins, {len(dyn)} dynamic + {len(static)} static inputs, batch "
        f"{args.batch_size}, seq_len {args.seq_len}, hidden {args.hidden}; train period {args.train_days} days, "
        f"evaluation {args.eval_years} years of one basin",
        file=out,
    )
    print(
        f"{'impl':<20} {'task':<9} {'mode':<9} {'seconds':>9} {'samples/s':>10} {'epoch-only samples/s':>21} "
        f"{'samples/CPU s':>14}",
        file=out,
    )
    for r in rows:
        print(
            f"{r['impl']:<20} {r['task']:<9} {r['mode'] or '-':<9} {r['seconds']:>9.2f} "
            f"{r.get('samples_per_s', float('nan')):>10.1f} {r.get('epoch_samples_per_s', float('nan')):>21.1f} "
            f"{r.get('samples_per_cpu_s', float('nan')):>14.1f}",
            file=out,
        )
    by = {(r["impl"], r["task"], r["mode"]): r for r in rows}
    if ("neuralhydrology", "train", None) in by and ("hydroml", "train", None) in by:
        a, b = by[("hydroml", "train", None)], by[("neuralhydrology", "train", None)]
        print(
            f"train speed-up (end to end): {a['samples_per_s'] / b['samples_per_s']:.2f}x wall, "
            f"{a['samples_per_cpu_s'] / b['samples_per_cpu_s']:.2f}x per CPU second",
            file=out,
        )
    nh_eval = by.get(("neuralhydrology", "evaluate", "sliding"))
    if nh_eval:
        for mode in ("sliding", "stateful"):
            r = by.get(("hydroml", "evaluate", mode))
            if r:
                print(
                    f"evaluate speed-up, hydroml {mode}: {nh_eval['seconds'] / r['seconds']:.1f}x", file=out
                )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
