"""Curvature along a training run: :func:`diagnose_run` on the saved per-epoch checkpoints of a run directory.

Train with ``train.keep_checkpoints: true`` to keep every epoch's weights (``checkpoints/epoch_NNNN.safetensors``);
without them only the final ``model.safetensors`` is diagnosed. The loss is the run's training loss (``mse`` or the
basin-weighted ``nse``, on the last ``predict_last_n`` steps) on a fixed, seeded sample of training windows, the
same for every epoch, with the model in ``eval()`` mode. The run's ``train.memory_budget`` /
``train.checkpointing`` apply, so the double backward fits where training did.

Edge of stability: full-batch gradient descent with step ``lr`` is unstable along directions of curvature above
``2 / lr``; Cohen et al. (2021) found the top eigenvalue rising to and hovering at ``2 / lr``. hydroml trains with
Adam, whose threshold applies to the preconditioned Hessian (Cohen et al. 2022: ``38 / lr`` for ``beta1 = 0.9``),
so the raw top eigenvalue is reported next to ``2 / lr`` for reference, not as a bound.

References: Cohen, J. M., Kaur, S., Li, Y., Kolter, J. Z., Talwalkar, A. (2021): Gradient descent on neural
networks typically occurs at the edge of stability, ICLR 2021. Cohen, J. M. et al. (2022): Adaptive gradient
methods at the edge of stability, arXiv:2207.14484.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from hydroml._io import write_json_atomic, write_netcdf_atomic
from hydroml._progress import tqdm
from hydroml.diagnostics.hessian import HessianOperator
from hydroml.diagnostics.landscape import filter_normalised_direction, loss_slice_1d, loss_slice_2d
from hydroml.diagnostics.spectrum import density, hutchinson_trace, slq, top_eigenvalues
from hydroml.exceptions import ConfigError

log = logging.getLogger("hydroml.diagnostics")

__all__ = ["list_checkpoints", "diagnose_run", "read_diagnostics"]

_CKPT = re.compile(r"epoch_(\d+)\.safetensors$")


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the per-epoch weights of a run (``checkpoints/epoch_NNNN.safetensors``), sorted.

    Without per-epoch checkpoints: ``[(epoch, model.safetensors)]`` (the kept weights; epoch from their
    metadata), or ``[]`` when the run has no weights yet.
    """
    from safetensors import safe_open

    run_dir = Path(run_dir)
    found = []
    folder = run_dir / "checkpoints"
    if folder.is_dir():
        for p in folder.iterdir():
            m = _CKPT.search(p.name)
            if m:
                found.append((int(m.group(1)), p))
    if found:
        return sorted(found)
    final = run_dir / "model.safetensors"
    if not final.is_file():
        return []
    with safe_open(str(final), framework="pt") as f:
        epoch = int((f.metadata() or {}).get("epoch", 0))
    return [(epoch, final)]


def _batches(cfg, data, n_batches: int, batch_size: int, seed: int, device) -> list[dict]:
    n = len(data.train)
    rng = np.random.default_rng(seed)
    take = min(n, n_batches * batch_size)
    idx = np.sort(rng.choice(n, size=take, replace=False))
    return [
        {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in data.train.get_batch(chunk).items()
        }
        for chunk in np.array_split(idx, max(1, int(np.ceil(take / batch_size))))
    ]


def _loss_fn(cfg, basin_std: torch.Tensor):
    from hydroml.evaluation.losses import mse_loss, nse_loss

    n_last, kind = cfg.data.predict_last_n, cfg.train.loss

    def loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        y_hat = model(batch)["y_hat"][:, -n_last:]
        y = batch["y"].to(y_hat.dtype)
        if kind == "nse":
            return nse_loss(y, y_hat, basin_std[batch["basin"]].unsqueeze(1).to(y_hat.dtype))
        return mse_loss(y, y_hat)

    return loss


def diagnose_run(
    run_dir: str | os.PathLike,
    *,
    epochs: list[int] | None = None,
    k: int = 1,
    eig_method: str = "lanczos",
    lanczos_steps: int | None = None,
    trace_samples: int = 30,
    trace_method: str = "hutch++",
    density_vectors: int = 0,
    density_steps: int = 40,
    slices: bool = False,
    slice_points: int = 21,
    slice_radius: float = 1.0,
    n_batches: int = 4,
    batch_size: int | None = None,
    dtype: str = "float32",
    hvp: str = "double_backward",
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Hessian diagnostics of each saved epoch of a run: top eigenvalues, trace, optionally density and slices.

    Parameters
    ----------
    run_dir : path-like
        A run directory (:func:`hydroml.training.train`), ideally trained with ``train.keep_checkpoints``.
    epochs : list of int, optional
        Only these epochs (default: every saved one).
    k : int
        Top eigenvalues per epoch.
    eig_method : {"lanczos", "power"}
        See :func:`hydroml.diagnostics.top_eigenvalues`.
    lanczos_steps : int, optional
        Lanczos steps for the eigenvalues.
    trace_samples : int
        Hessian-vector products for the trace (0: no trace).
    trace_method : {"hutch++", "hutchinson"}
    density_vectors : int
        Probe vectors of the SLQ density (0: no density).
    density_steps : int
        Lanczos steps per probe.
    slices : bool
        1-D slices along a filter-normalised random direction and the top eigenvector, and a 2-D slice along
        two filter-normalised random directions, each over ``[-slice_radius, slice_radius]`` with
        ``slice_points`` points.
    n_batches, batch_size : int
        The fixed training sample the loss averages over (default batch size: ``train.batch_size``).
    dtype : {"float32", "float64"}
        Precision of the diagnostics (the model is copied to it).
    hvp : {"double_backward", "func"}
        How Hessian-vector products are computed.
    seed : int
        Seeds the sample, the probe vectors and the directions (the same for every epoch).
    out : path-like, optional
        Folder for ``diagnostics.nc`` and ``diagnostics.json`` (default: the run directory).
    progress : bool, optional
        Progress bar over epochs.

    Returns
    -------
    xarray.Dataset
        On ``epoch``: ``eigenvalues`` ``[epoch, rank]``, ``eigen_residual``, ``trace``, ``trace_stderr``,
        ``loss``, ``grad_norm``, ``lr``, ``edge_of_stability`` (``2 / lr``), ``seconds``, ``matvecs``; with a
        density ``density`` ``[epoch, eigenvalue]`` (and the SLQ ``slq_nodes``/``slq_weights``); with slices
        ``slice_random``/``slice_eigen`` ``[epoch, alpha]`` and ``slice_2d`` ``[epoch, alpha, beta]``.
    """
    from safetensors.torch import load_file

    from hydroml._io import load_yaml
    from hydroml.training import config_from_dict
    from hydroml.training._data import load_normaliser, prepare_data
    from hydroml.training.loop import _configure_checkpointing, build_model, lr_at

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a hydroml run directory (no config.yaml)")
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"diagnose dtype: expected 'float32' or 'float64', found {dtype!r}")
    cfg = config_from_dict(load_yaml((run_dir / "config.yaml").read_text()))
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise FileNotFoundError(f"{run_dir} has no weights yet (no checkpoints/ and no model.safetensors)")
    if ckpts[0][1].name == "model.safetensors":
        log.info(
            "%s keeps no per-epoch checkpoints (train with train.keep_checkpoints: true); diagnosing "
            "model.safetensors (epoch %d) only",
            run_dir,
            ckpts[0][0],
        )
    if epochs is not None:
        have = {e for e, _ in ckpts}
        missing = [e for e in epochs if e not in have]
        if missing:
            raise ConfigError(
                f"diagnose --epochs: no checkpoint for epoch(s) {missing} in {run_dir}; saved: {sorted(have)}"
            )
        ckpts = [(e, p) for e, p in ckpts if e in set(epochs)]
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    device = torch.device("cpu")
    data = prepare_data(cfg, normaliser=load_normaliser(run_dir / "normalisation.json"))
    bs = int(batch_size or cfg.train.batch_size)
    batches = _batches(cfg, data, n_batches, bs, seed, device)
    for b in batches:
        for key in ("x_dynamic", "x_static", "y"):
            if key in b:
                b[key] = b[key].to(torch_dtype)
    loss = _loss_fn(cfg, data.basin_std.to(device))
    model = build_model(cfg).to(device)
    ckpt_desc = _configure_checkpointing(model, cfg, bs)
    model = model.to(torch_dtype)
    log.info(
        "diagnosing %d checkpoint(s) of %s on %d training windows (%d batches), %s, checkpointing %s",
        len(ckpts),
        run_dir.name,
        sum(len(b["y"]) for b in batches),
        len(batches),
        dtype,
        ckpt_desc,
    )
    rows: list[dict[str, Any]] = []
    alphas = np.linspace(-slice_radius, slice_radius, slice_points)
    for epoch, path in tqdm(ckpts, progress=progress, desc="diagnose", unit="epoch"):
        t0 = time.perf_counter()
        state = load_file(str(path))
        model.load_state_dict({k2: v.to(torch_dtype) for k2, v in state.items()})
        row: dict[str, Any] = {"epoch": epoch, "lr": lr_at(cfg, epoch) if epoch > 0 else cfg.optimiser.lr}
        with HessianOperator(model, loss, batches, method=hvp) as op:
            value, grad = op.loss_and_grad()
            row.update(loss=value, grad_norm=float(grad.norm()))
            eig = top_eigenvalues(op, op.n, k, method=eig_method, m=lanczos_steps, seed=seed)
            row.update(eigenvalues=eig.values, eigen_residual=eig.residuals)
            if trace_samples:
                tr = hutchinson_trace(op, op.n, trace_samples, method=trace_method, seed=seed + 1)
                row.update(trace=tr.value, trace_stderr=tr.stderr)
            if density_vectors:
                row["slq"] = slq(op, op.n, density_vectors, density_steps, seed=seed + 2)
            if slices:
                rand1 = filter_normalised_direction(op.params, seed=seed + 3)
                rand2 = filter_normalised_direction(op.params, seed=seed + 4)
                row["slice_random"] = loss_slice_1d(op, rand1, alphas)
                row["slice_eigen"] = loss_slice_1d(op, eig.vectors[0], alphas)
                row["slice_2d"] = loss_slice_2d(op, rand1, rand2, alphas, alphas)
            row["matvecs"] = op.matvecs
            row["n_params"] = op.n
        row["seconds"] = time.perf_counter() - t0
        log.info(
            "epoch %d: lambda_max %.4g (2/lr %.4g), trace %s, loss %.4g, %d Hessian-vector products, %.1f s",
            epoch,
            row["eigenvalues"][0],
            2 / row["lr"],
            f"{row['trace']:.4g}" if "trace" in row else "-",
            value,
            row["matvecs"],
            row["seconds"],
        )
        rows.append(row)
    ds = _dataset(rows, alphas, slices, density_vectors)
    ds.attrs.update(
        {
            "title": "Hessian diagnostics along a training run (hydroml.diagnostics)",
            "run": str(run_dir.resolve()),
            "model": cfg.model.name,
            "loss": cfg.train.loss,
            "optimiser": cfg.optimiser.name,
            "n_windows": int(sum(len(b["y"]) for b in batches)),
            "n_batches": len(batches),
            "eig_method": eig_method,
            "trace_method": trace_method if trace_samples else "none",
            "hvp": hvp,
            "dtype": dtype,
            "seed": seed,
            "slice_directions": "filter-normalised random (Li et al. 2018), unit top eigenvector",
            "edge_of_stability": "2 / lr (gradient descent; for Adam see Cohen et al. 2022)",
        }
    )
    folder = Path(out) if out is not None else run_dir
    write_netcdf_atomic(ds, folder / "diagnostics.nc")
    write_json_atomic(folder / "diagnostics.json", _summary(ds))
    log.info("wrote %s and %s", folder / "diagnostics.nc", folder / "diagnostics.json")
    return ds


def _dataset(rows: list[dict], alphas: np.ndarray, slices: bool, density_vectors: int) -> xr.Dataset:
    epochs = [r["epoch"] for r in rows]
    kk = len(rows[0]["eigenvalues"])

    def col(key: str) -> np.ndarray:
        return np.array([r.get(key, np.nan) for r in rows], dtype=float)

    ds = xr.Dataset(
        {
            "eigenvalues": (("epoch", "rank"), np.array([r["eigenvalues"] for r in rows])),
            "eigen_residual": (("epoch", "rank"), np.array([r["eigen_residual"] for r in rows])),
            "trace": ("epoch", col("trace")),
            "trace_stderr": ("epoch", col("trace_stderr")),
            "loss": ("epoch", col("loss")),
            "grad_norm": ("epoch", col("grad_norm")),
            "lr": ("epoch", col("lr")),
            "edge_of_stability": ("epoch", 2.0 / col("lr")),
            "matvecs": ("epoch", np.array([r["matvecs"] for r in rows])),
            "seconds": ("epoch", col("seconds")),
        },
        coords={"epoch": epochs, "rank": np.arange(1, kk + 1)},
    )
    ds["eigenvalues"].attrs["long_name"] = "largest Hessian eigenvalues of the training loss"
    ds["eigen_residual"].attrs["long_name"] = "||H u - lambda u|| of each eigenpair"
    ds["trace"].attrs["long_name"] = "Hessian trace (stochastic estimate)"
    ds["edge_of_stability"].attrs["long_name"] = "2 / learning rate"
    ds.attrs["n_params"] = int(rows[0]["n_params"])
    if density_vectors:
        s = [r["slq"] for r in rows]
        lo = min(float(x.nodes.min()) for x in s)
        hi = max(float(x.nodes.max()) for x in s)
        sigma = max(0.01 * (hi - lo), 1e-12)
        grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, 400)
        ds = ds.assign_coords(eigenvalue=grid)
        ds["density"] = (("epoch", "eigenvalue"), np.array([density(x, grid, sigma)[1] for x in s]))
        ds["density"].attrs.update(long_name="Hessian eigenvalue density (SLQ, Gaussian kernel)", sigma=sigma)
        ds["slq_nodes"] = (("epoch", "probe", "node"), np.array([x.nodes for x in s]))
        ds["slq_weights"] = (("epoch", "probe", "node"), np.array([x.weights for x in s]))
    if slices:
        ds = ds.assign_coords(alpha=alphas, beta=alphas)
        ds["slice_random"] = (("epoch", "alpha"), np.array([r["slice_random"] for r in rows]))
        ds["slice_eigen"] = (("epoch", "alpha"), np.array([r["slice_eigen"] for r in rows]))
        ds["slice_2d"] = (("epoch", "alpha", "beta"), np.array([r["slice_2d"] for r in rows]))
        ds["slice_random"].attrs["long_name"] = "loss along a filter-normalised random direction"
        ds["slice_eigen"].attrs["long_name"] = "loss along the top Hessian eigenvector (unit norm)"
        ds["slice_2d"].attrs["long_name"] = "loss on the plane of two filter-normalised random directions"
    return ds


def _summary(ds: xr.Dataset) -> dict:
    return {
        "attrs": {k: (v.item() if hasattr(v, "item") else v) for k, v in ds.attrs.items()},
        "epochs": [
            {
                "epoch": int(e),
                "lr": float(ds["lr"].sel(epoch=e)),
                "two_over_lr": float(ds["edge_of_stability"].sel(epoch=e)),
                "eigenvalues": [float(x) for x in ds["eigenvalues"].sel(epoch=e).values],
                "trace": float(ds["trace"].sel(epoch=e)),
                "trace_stderr": float(ds["trace_stderr"].sel(epoch=e)),
                "loss": float(ds["loss"].sel(epoch=e)),
                "grad_norm": float(ds["grad_norm"].sel(epoch=e)),
            }
            for e in ds["epoch"].values
        ],
    }


def read_diagnostics(path: str | os.PathLike) -> xr.Dataset:
    """Open ``diagnostics.nc`` (a file, or a run directory holding one), loaded into memory."""
    path = Path(path)
    if path.is_dir():
        path = path / "diagnostics.nc"
    if not path.is_file():
        raise FileNotFoundError(f"no diagnostics at {path}: run `hydroml diagnose RUN_DIR` first")
    with xr.open_dataset(path) as ds:
        return ds.load()
