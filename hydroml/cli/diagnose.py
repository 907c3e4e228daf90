"""``hydroml diagnose``: Hessian curvature of each saved epoch of a run (hydroml.diagnostics)."""

from __future__ import annotations

import argparse

NAME = "diagnose"
HELP = "Hessian curvature per saved epoch of a run: top eigenvalues, trace, density, loss slices"
DESCRIPTION = (
    "Loss-landscape curvature along training. For each per-epoch checkpoint of RUN_DIR (train with "
    "train.keep_checkpoints: true; otherwise only model.safetensors), on a fixed seeded sample of training "
    "windows: the top-k Hessian eigenvalues (Lanczos), the trace (Hutch++), optionally the eigenvalue density "
    "(stochastic Lanczos quadrature) and 1-D/2-D loss slices (filter-normalised random and top-eigenvector "
    "directions). Writes diagnostics.nc and diagnostics.json into RUN_DIR (or --out) and prints the top "
    "eigenvalue next to 2/lr. Plot with hydroml.plot.sharpness / hessian_density / loss_slice."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hydroml diagnose``."""
    parser.add_argument("run", metavar="RUN_DIR", help="run directory")
    parser.add_argument("--epochs", default=None, help="comma-separated epochs (default: every saved one)")
    parser.add_argument("--k", type=int, default=1, help="top eigenvalues per epoch (default 1)")
    parser.add_argument("--eig-method", choices=("lanczos", "power"), default="lanczos")
    parser.add_argument(
        "--lanczos-steps", type=int, default=None, help="Lanczos steps (default max(3k+20, 40))"
    )
    parser.add_argument("--trace-samples", type=int, default=30, help="products for the trace (0: none)")
    parser.add_argument("--trace-method", choices=("hutch++", "hutchinson"), default="hutch++")
    parser.add_argument(
        "--density", type=int, default=0, metavar="N", help="SLQ probe vectors (0: no density)"
    )
    parser.add_argument("--density-steps", type=int, default=40, help="Lanczos steps per SLQ probe")
    parser.add_argument("--slices", action="store_true", help="1-D and 2-D loss slices")
    parser.add_argument("--slice-points", type=int, default=21)
    parser.add_argument("--slice-radius", type=float, default=1.0)
    parser.add_argument("--batches", type=int, default=4, help="batches in the fixed loss sample (default 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's train.batch_size")
    parser.add_argument("--float64", action="store_true", help="run the diagnostics in float64")
    parser.add_argument("--hvp", choices=("double_backward", "func"), default="double_backward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for diagnostics.nc/.json (default: RUN_DIR)")


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml diagnose``."""
    from hydroml.diagnostics import diagnose_run
    from hydroml.exceptions import ConfigError

    epochs = None
    if args.epochs:
        try:
            epochs = [int(e) for e in args.epochs.split(",") if e.strip()]
        except ValueError as err:
            raise ConfigError(f"--epochs: expected comma-separated integers, found {args.epochs!r}") from err
    ds = diagnose_run(
        args.run,
        epochs=epochs,
        k=args.k,
        eig_method=args.eig_method,
        lanczos_steps=args.lanczos_steps,
        trace_samples=args.trace_samples,
        trace_method=args.trace_method,
        density_vectors=args.density,
        density_steps=args.density_steps,
        slices=args.slices,
        slice_points=args.slice_points,
        slice_radius=args.slice_radius,
        n_batches=args.batches,
        batch_size=args.batch_size,
        dtype="float64" if args.float64 else "float32",
        hvp=args.hvp,
        seed=args.seed,
        out=args.out,
    )
    ranks = [f"lambda_{r}" for r in ds["rank"].values]
    print(
        f"{'epoch':>5} {'lr':>10} {'2/lr':>10} "
        + " ".join(f"{r:>11}" for r in ranks)
        + f" {'trace':>11} {'loss':>9}"
    )
    for e in ds["epoch"].values:
        row = ds.sel(epoch=e)
        eig = " ".join(f"{float(v):11.4g}" for v in row["eigenvalues"].values)
        print(
            f"{int(e):5d} {float(row['lr']):10.4g} {float(row['edge_of_stability']):10.4g} {eig} "
            f"{float(row['trace']):11.4g} {float(row['loss']):9.4g}"
        )
    print(f"wrote {ds.attrs['run'] if args.out is None else args.out}/diagnostics.nc and diagnostics.json")
    return 0
