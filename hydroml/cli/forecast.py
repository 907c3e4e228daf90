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


def parse_date(value: str | None, option: str) -> str | None:
    """Check a date option; a one-line :class:`~hydroml.exceptions.ConfigError` names it when invalid.

    Parameters
    ----------
    value : str or None
        The option's value.
    option : str
        The option, e.g. ``"--start"``.

    Returns
    -------
    str or None
        ``value`` unchanged.
    """
    if value is None:
        return None
    import pandas as pd

    from hydroml.exceptions import ConfigError

    try:
        pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{option}: expected a date such as 2014-01-31, found {value!r} ({err})") from err
    return value


def check_device(device: str, option: str = "--device") -> str:
    """Check a torch device option (known type, CUDA/MPS present); one line when not.

    Parameters
    ----------
    device : str
        E.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    option : str
        The option named in the error.

    Returns
    -------
    str
    """
    import torch

    from hydroml.exceptions import ConfigError

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(
            f"{option}: expected a torch device such as cpu or cuda:0, found {device!r}"
        ) from err
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(
                f"{option}: {device!r} requested but this torch ({torch.__version__}) sees no CUDA GPU; use cpu"
            )
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"{option}: {device!r} requested but only {n} CUDA device(s) are visible")
    elif dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"{option}: 'mps' requested but this torch sees no Apple GPU; use cpu")
    return device


def data_for_model(data: str, config: dict, option: str = "--data") -> str:
    """A catalog name without a product gets the product the model was trained on.

    ``--data demo`` with a model trained on ``demo`` product ``monthly`` (its run config or zoo card) reads
    ``demo:monthly``; paths, ``name:product`` and other catalog names are returned unchanged.

    Parameters
    ----------
    data : str
        The option's value.
    config : dict
        The model's training configuration.
    option : str
        The option named in log lines.

    Returns
    -------
    str
    """
    import logging
    from pathlib import Path

    if Path(data).exists():
        return data
    from hydroml import catalog
    from hydroml.exceptions import ConfigError

    name = data.partition(":")[0]
    entries = catalog.list_entries()
    if name not in entries:
        raise ConfigError(
            f"{option}: {data!r} is neither a file nor a data catalog name; catalog entries: {', '.join(entries)}"
        )
    if ":" in data:
        return data
    d = (config or {}).get("data") or {}
    if d.get("product") and d.get("source") == data:
        logging.getLogger("hydroml.cli").info(
            "%s %s: using product %r, the one the model was trained on", option, data, d["product"]
        )
        return f"{data}:{d['product']}"
    return data


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml forecast``."""
    import time
    from pathlib import Path

    from hydroml.exceptions import ConfigError
    from hydroml.forecast import _resolve_model, forecast, write_forecast

    parse_date(args.start, "--start")
    parse_date(args.end, "--end")
    check_device(args.device)
    for option in ("batch_size", "chunk_size"):
        if getattr(args, option) < 1:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"{flag}: expected a positive integer, found {getattr(args, option)}")
    if not str(args.out).endswith((".nc", ".nc4")):
        raise ConfigError(f"--out: expected a NetCDF file name ending in .nc, found {args.out!r}")
    path = Path(args.model)
    if path.is_dir():
        target = path
    else:
        from hydroml import zoo

        target = zoo.load(args.model, device=args.device)
    fm = _resolve_model(target)
    data = data_for_model(args.data, fm.config)
    t0 = time.perf_counter()
    pred = forecast(
        fm,
        data,
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
