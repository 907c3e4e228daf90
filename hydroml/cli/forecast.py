"""``hydroml forecast``: run a trained model or a zoo model over a period and write CF NetCDF."""

from __future__ import annotations

import argparse

NAME = "forecast"
HELP = "predict with a run directory or a zoo model over a period, into CF NetCDF"
DESCRIPTION = (
    "Predict with a trained model over [--start, --end] and write CF-compliant NetCDF (units, standard_name, "
    "history, source, model name and version, config hash). No observations are needed: only the model's "
    "inputs are read. --mode sliding predicts each day from its own seq_len window (as neuralhydrology "
    "evaluates); --mode stateful makes one pass carrying the LSTM state, in time chunks, after a warm-up of "
    "seq_len days before --start (much faster). Gridded models (unet) predict every cell of every month."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hydroml forecast``."""
    parser.add_argument(
        "model", metavar="RUN_DIR_OR_ZOO_NAME", help="a run directory or a zoo name (hydroml zoo list)"
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="CATALOG_NAME_OR_PATH",
        help="input data: a NetCDF/zarr path or a data catalog name (name:product for multi-product sources, "
        "e.g. demo:basins)",
    )
    parser.add_argument("--start", help="first predicted day (default: first day with enough history)")
    parser.add_argument("--end", help="last predicted day (default: end of the data)")
    parser.add_argument(
        "--out", required=True, metavar="PRED.nc", help="output NetCDF file (written atomically)"
    )
    parser.add_argument(
        "--mode", choices=("sliding", "stateful"), default="sliding", help="(default: sliding)"
    )
    parser.add_argument("--basins", nargs="+", help="only these basin ids")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="windows/basins/months per batch (default 256)"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=1000, help="stateful: time steps per chunk (default 1000)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml forecast``."""
    import time
    from pathlib import Path

    from hydroml.forecast import forecast, write_forecast

    path = Path(args.model)
    if path.is_dir():
        target = path
    else:
        from hydroml import zoo

        target = zoo.load(args.model, device=args.device)
    t0 = time.perf_counter()
    pred = forecast(
        target,
        args.data,
        args.start,
        args.end,
        mode=args.mode,
        basins=args.basins,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
    )
    out = write_forecast(pred, args.out)
    dims = ", ".join(f"{k}={v}" for k, v in pred.sizes.items())
    print(f"wrote {out} ({', '.join(pred.data_vars)}; {dims}) in {time.perf_counter() - t0:.1f} s")
    return 0
