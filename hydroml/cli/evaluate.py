"""``hydroml evaluate``: score predictions against observations; metrics per basin/cell, summary, figures."""

from __future__ import annotations

import argparse
import textwrap

NAME = "evaluate"
HELP = "score predictions against observations: metrics per basin/cell (NetCDF, CSV), summary, figures"
DESCRIPTION = (
    "Score PRED.nc against observations: all deterministic metrics (NSE, log-NSE, KGE and its components, "
    "KGE', non-parametric KGE, RMSE, MAE, bias, correlations, FDC biases, peak metrics) per basin or grid cell, "
    "and the NSE skill over a benchmark (climatology by default: day-of-year mean for daily data, "
    "month-of-year for monthly). Observations come from --obs OBS.nc (variables of the same names), or from "
    "the prediction file itself (X_obs next to X_sim, X_pred or X), or --pair OBS_VAR:SIM_VAR. An ensemble "
    "dimension 'member' adds CRPS and 90% interval coverage/width. Writes metrics_<var>.nc/.csv and "
    "summary.csv (median and quartiles across basins) into --out, and with the maps extra: CDF of NSE/KGE, "
    "hydrographs of the best/median/worst basins, and a skill map for gridded outputs. Conventions: "
    "docs/metrics.md."
)
DESCRIPTION = textwrap.fill(DESCRIPTION, 100)  # the help keeps line breaks (RawDescriptionHelpFormatter)


EXAMPLES = """examples:
  hydroml evaluate runs/demo_lstm_20250101_120000                 # a run's test period on its own data
  hydroml evaluate pred.nc --obs demo:basins --out eval/          # observations from the data catalog
  hydroml evaluate pred.nc --obs camels_obs.nc --out eval/        # variables matched by name (e.g. q_mm)
  hydroml evaluate Raven_q_sim.nc --pair q_obs:q_sim --out eval/  # observations inside the prediction file
  hydroml evaluate et_pred.nc --obs et_obs.nc --ref-period 2001-01-01 2010-12-31 --period 2011 2019 --out eval/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hydroml evaluate``."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "pred",
        metavar="PRED.nc|RUN_DIR",
        help="predictions (NetCDF or zarr, e.g. from hydroml forecast), or a run directory: its model is run "
        "over the config's test period on the config's data and scored against them (like nh-run evaluate)",
    )
    parser.add_argument(
        "--obs",
        metavar="OBS.nc|CATALOG_NAME",
        help="observations: a NetCDF/zarr path or a data catalog name (name:product, e.g. demo:basins); "
        "default: inside PRED.nc",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output directory (required for PRED.nc; default RUN_DIR/evaluation)"
    )
    parser.add_argument(
        "--pair",
        action="append",
        metavar="OBS_VAR:SIM_VAR",
        help="pair these variables explicitly (repeatable); default: match by name",
    )
    parser.add_argument("--metrics", nargs="+", metavar="NAME", help="deterministic metrics (default: all)")
    parser.add_argument(
        "--reference",
        choices=("climatology", "persistence", "mean_flow", "none"),
        default="climatology",
        help="benchmark for the NSE skill (default: climatology)",
    )
    parser.add_argument(
        "--ref-period", nargs=2, metavar=("START", "END"), help="reference period of the benchmark"
    )
    parser.add_argument("--period", nargs=2, metavar=("START", "END"), help="evaluation period")
    parser.add_argument("--dim", default="time", help="time dimension (default: time)")
    parser.add_argument("--min-pairs", type=int, help="minimum number of valid pairs (default 2)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")


def _open(path: str, option: str):
    """A NetCDF file, a zarr store or a catalog name (``name`` or ``name:product``)."""
    from pathlib import Path

    import xarray as xr

    from hydroml.exceptions import ConfigError

    p = Path(path)
    if p.exists():
        try:
            return xr.open_zarr(p) if p.suffix == ".zarr" or p.is_dir() else xr.open_dataset(p)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{option}: cannot read {path} as NetCDF or zarr ({err})") from err
    from hydroml import catalog

    name, _, product = str(path).partition(":")
    if "/" in path or path.endswith((".nc", ".nc4", ".zarr")) or name not in catalog.list_entries():
        raise FileNotFoundError(
            f"{option}: {path!r} is neither a file nor a data catalog name (hydroml catalog list)"
        )
    return catalog.open(name, product=product or None)


def _run_dir_predictions(run_dir, args):
    """Forecast a run's test period on its own data: (predictions, observations, reference period)."""
    from hydroml._io import load_yaml
    from hydroml.exceptions import ConfigError
    from hydroml.forecast import forecast

    cfg = load_yaml((run_dir / "config.yaml").read_text()) or {}
    data = cfg.get("data") or {}
    test = data.get("test_period")
    if not test:
        raise ConfigError(f"{run_dir / 'config.yaml'}: data.test_period is not set; nothing to evaluate")
    source = str(data.get("source") or "")
    if not source:
        raise ConfigError(
            f"{run_dir / 'config.yaml'}: data.source is not set; give PRED.nc and --obs instead"
        )
    name = f"{source}:{data['product']}" if data.get("product") and ":" not in source else source
    obs = _open(args.obs, "--obs") if args.obs else _open(name, "data.source")
    pred = forecast(run_dir, obs, test[0], test[1], mode="sliding")
    keep = [t for t in pred.data_vars if t in obs.data_vars]
    return pred, obs[keep], tuple(data["train_period"]) if data.get("train_period") else None


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml evaluate``."""
    import logging
    import sys
    from pathlib import Path

    from hydroml.cli.forecast import parse_date
    from hydroml.evaluation import report
    from hydroml.exceptions import ConfigError

    log = logging.getLogger("hydroml.evaluation")
    for option, value in (("--ref-period", args.ref_period), ("--period", args.period)):
        for v in value or ():
            parse_date(v, option)
    if args.min_pairs is not None and args.min_pairs < 1:
        raise ConfigError(f"--min-pairs: expected a positive integer, found {args.min_pairs}")
    run_dir = Path(args.pred)
    ref_period = tuple(args.ref_period) if args.ref_period else None
    if run_dir.is_dir() and (run_dir / "config.yaml").is_file():
        pred, obs, train_period = _run_dir_predictions(run_dir, args)
        ref_period = ref_period or train_period  # the benchmark of the demo: the training period
        out_dir = args.out or str(run_dir / "evaluation")
    else:
        if args.out is None:
            raise ConfigError("--out: required with PRED.nc (only a RUN_DIR has a default output folder)")
        pred = _open(args.pred, "PRED.nc")
        obs = _open(args.obs, "--obs") if args.obs else None
        out_dir = args.out
    pairs = None
    if args.pair:
        pairs = {}
        for item in args.pair:
            ov, sep, sv = item.partition(":")
            if not sep or not ov or not sv:
                raise ConfigError(f"--pair expects OBS_VAR:SIM_VAR; found {item!r}")
            pairs[sv] = (ov, sv)
    results = report.evaluate_datasets(
        obs,
        pred,
        pairs=pairs,
        metrics=args.metrics,
        dim=args.dim,
        reference=None if args.reference == "none" else args.reference,
        ref_period=ref_period,
        period=tuple(args.period) if args.period else None,
        min_pairs=args.min_pairs,
    )
    from hydroml._cf import data_label

    written = report.write_report(
        results,
        out_dir,
        obs=obs,
        pred=pred,
        pairs=pairs,
        dim=args.dim,
        figures=not args.no_figures,
        input_data=", ".join(
            x for x in (data_label(args.pred), data_label(args.obs) if args.obs else None) if x
        ),
    )
    for name, res in results.items():
        sm = report.summarize(res)
        keep = [
            k
            for k in ("nse", "kge", "log_nse", "rmse", "pbias", f"nse_skill_{args.reference}")
            if k in sm.index
        ]
        sys.stdout.write(f"{name} ({int(sm.loc[keep[0], 'n']) if keep else 0} basins/cells)\n")
        sys.stdout.write(
            sm.loc[keep, ["median", "q25", "q75"]].to_string(float_format=lambda v: f"{v:.3f}") + "\n"
        )
    log.info("wrote %d files to %s", len(written), out_dir)
    return 0
