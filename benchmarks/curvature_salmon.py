"""Sharpness along training on a real basin: the Salmon River LSTM at several learning rates (issue 15, part 2).

For each Adam learning rate, trains the ``data_catalog/recipes/salmon_river_lstm.yaml`` LSTM (Salmon River near
Prince George, WSC 08KC001, 1954-1989; hidden 32, seq_len 365, NSE loss) for a few epochs with
``train.keep_checkpoints: true``, then runs :func:`hydroml.diagnostics.diagnose_run` on every epoch: the top
Hessian eigenvalue (Lanczos) and the Hutch++ trace of the training loss on a fixed sample of training windows,
and, for the first and last epochs of the middle learning rate, the SLQ density and loss slices. Draws one figure (sharpness over epochs
with the 2/lr lines, final sharpness against the learning rate, density, slices).

Run (about 20-30 minutes on 2 shared cores)::

    HYDROML_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 python benchmarks/curvature_salmon.py \\
        --out benchmarks/results [--json]

With ``--json``: one object per line and epoch (``lr``, ``epoch``, ``lambda_max``, ``two_over_lr``, ``trace``,
``loss``...).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lrs", default="0.001,0.003,0.01,0.03", help="comma-separated Adam learning rates")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--windows", type=int, default=256, help="training windows in the fixed loss sample")
    p.add_argument("--lanczos-steps", type=int, default=15)
    p.add_argument("--trace-samples", type=int, default=12)
    p.add_argument("--slice-radius", type=float, default=0.2)
    p.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results"), help="folder of the figure and JSON"
    )
    p.add_argument("--runs-dir", default=None, help="keep the run directories here (default: a temp folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch
    import yaml

    from hydroml.diagnostics import diagnose_run
    from hydroml.training import train

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.environ.setdefault("HYDROML_DATA_ROOT", str(REPO.parent / "shared" / "data"))
    recipe = yaml.safe_load((REPO / "data_catalog" / "recipes" / "salmon_river_lstm.yaml").read_text())
    lrs = [float(x) for x in args.lrs.split(",")]
    runs_root = Path(args.runs_dir or tempfile.mkdtemp(prefix="hydroml_curvature_"))
    results = {}
    lines = []
    for i, lr in enumerate(lrs):
        cfg = json.loads(json.dumps(recipe))
        cfg["name"] = f"salmon_curvature_lr{lr:g}"
        cfg["optimiser"]["lr"] = lr
        cfg["train"].update(
            epochs=args.epochs, keep_checkpoints=True, progress=False, threads=1, num_workers=1
        )
        t0 = time.perf_counter()
        run = train(cfg, runs_dir=runs_root)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = diagnose_run(
            run,
            k=1,
            lanczos_steps=args.lanczos_steps,
            trace_samples=args.trace_samples,
            n_batches=2,
            batch_size=args.windows // 2,
        )
        if i == len(lrs) // 2:  # density and slices of the first and last epochs of the middle learning rate
            rich = diagnose_run(
                run,
                epochs=[1, args.epochs],
                k=1,
                lanczos_steps=args.lanczos_steps,
                trace_samples=0,
                density_vectors=2,
                density_steps=30,
                slices=True,
                slice_points=15,
                slice_radius=args.slice_radius,
                n_batches=2,
                batch_size=args.windows // 2,
                out=run / "rich",
            )
        t_diag = time.perf_counter() - t0
        results[lr] = (run, ds)
        if i == len(lrs) // 2:
            results["rich"] = (lr, rich)
        for e in ds["epoch"].values:
            row = ds.sel(epoch=e)
            rec = {
                "bench": "curvature_salmon",
                "lr": lr,
                "epoch": int(e),
                "lambda_max": float(row["eigenvalues"].sel(rank=1)),
                "eigen_residual": float(row["eigen_residual"].sel(rank=1)),
                "two_over_lr": float(row["edge_of_stability"]),
                "trace": float(row["trace"]),
                "trace_stderr": float(row["trace_stderr"]),
                "loss": float(row["loss"]),
                "grad_norm": float(row["grad_norm"]),
                "diag_s": float(row["seconds"]),
                "train_s": round(t_train, 1),
                "diagnose_s": round(t_diag, 1),
                "n_params": int(ds.attrs["n_params"]),
                "windows": int(ds.attrs["n_windows"]),
            }
            lines.append(rec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from hydroml._io import write_text_atomic

    write_text_atomic(out / "curvature_salmon_river.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    if args.json:
        for r in lines:
            print(json.dumps(r))
    else:
        print(
            f"{'lr':>8} {'epoch':>5} {'lambda_max':>11} {'2/lr':>8} {'trace':>10} {'loss':>8} {'diag s':>7}"
        )
        for r in lines:
            print(
                f"{r['lr']:8g} {r['epoch']:5d} {r['lambda_max']:11.4g} {r['two_over_lr']:8.4g} "
                f"{r['trace']:10.4g} {r['loss']:8.4f} {r['diag_s']:7.1f}"
            )
    _figure(results, lrs, out / "curvature_salmon_river.png")
    print(f"figure: {out / 'curvature_salmon_river.png'}; runs in {runs_root}")


def _figure(results: dict, lrs: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from hydroml.plot import hessian_density, loss_slice, sharpness

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    for lr in lrs:
        sharpness(results[lr][1], ax=axes[0, 0], label=f"lr {lr:g}")
    axes[0, 0].set_title("top Hessian eigenvalue over epochs (dashed: 2/lr)")
    last = [float(results[lr][1]["eigenvalues"].sel(rank=1).values[-1]) for lr in lrs]
    ax = axes[0, 1]
    ax.loglog(lrs, last, "o-", label="lambda_max, last epoch")
    grid = np.geomspace(min(lrs) / 1.5, max(lrs) * 1.5, 50)
    ax.loglog(grid, 2 / grid, "k--", label="2/lr")
    ax.set_xlabel("Adam learning rate")
    ax.set_ylabel("top Hessian eigenvalue")
    ax.set_title("sharpness after training against the learning rate")
    ax.legend(fontsize="small")
    mid, rich = results["rich"]
    hessian_density(rich, ax=axes[1, 0])
    axes[1, 0].set_ylim(bottom=float(rich["density"].max()) * 1e-7)
    axes[1, 0].set_title(f"eigenvalue density (SLQ), lr {mid:g}")
    loss_slice(rich, ax=axes[1, 1])
    axes[1, 1].set_title(f"1-D loss slices, lr {mid:g}, epoch {int(rich['epoch'].values[-1])}")
    fig.suptitle("Salmon River LSTM (WSC 08KC001, 1954-1989): curvature of the NSE training loss")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
