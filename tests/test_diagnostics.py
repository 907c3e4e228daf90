"""hydroml.diagnostics: estimators on a quadratic with a known Hessian (float64, to 1e-6), Hessian-vector
products against the explicit Hessian of tiny networks (with and without activation checkpointing), a cross-check
against PyHessian, and ``diagnose_run`` / ``hydroml diagnose`` on the per-epoch checkpoints of a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hydroml.diagnostics import (
    HessianOperator,
    density,
    diagnose_run,
    filter_normalised_direction,
    flatten,
    hutchinson_trace,
    list_checkpoints,
    loss_slice_1d,
    loss_slice_2d,
    power_iteration,
    read_diagnostics,
    slq,
    top_eigenvalues,
)
from hydroml.exceptions import ConfigError

N = 12


class Quadratic(nn.Module):
    """``L(x) = 1/2 x^T A x + b^T x`` with a fixed symmetric ``A``: the Hessian is ``A`` everywhere."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.x = nn.Parameter(x0.clone())

    def forward(self, batch=None) -> torch.Tensor:
        return 0.5 * self.x @ (self.a @ self.x) + self.b @ self.x


def _quad_loss(model, batch):
    return model(batch)


def _quadratic(eigs: np.ndarray, seed: int = 0, at_minimum: bool = False) -> tuple[Quadratic, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    n = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ q.T
    a = 0.5 * (a + a.T)
    b = (
        torch.zeros(n, dtype=torch.float64)
        if at_minimum
        else torch.randn(n, generator=g, dtype=torch.float64)
    )
    x0 = (
        torch.zeros(n, dtype=torch.float64)
        if at_minimum
        else torch.randn(n, generator=g, dtype=torch.float64)
    )
    return Quadratic(a, b, x0), a.numpy()


EIGS = np.array([10.0, 7.0, 5.0, 3.5, 2.0, 1.5, 1.0, 0.5, 0.2, -0.3, -1.0, -2.5])


@pytest.mark.parametrize("method", ["double_backward", "func"])
def test_hvp_of_quadratic_is_its_matrix(method):
    model, a = _quadratic(EIGS)
    op = HessianOperator(model, _quad_loss, [None], method=method)
    np.testing.assert_allclose(op.dense().numpy(), a, rtol=0, atol=1e-12)
    assert op.n == N and op.matvecs == N


def test_top_eigenvalues_lanczos_and_power_on_known_quadratic():
    model, _ = _quadratic(EIGS)
    op = HessianOperator(model, _quad_loss, [None])
    eig = top_eigenvalues(op, op.n, k=3)
    np.testing.assert_allclose(eig.values, EIGS[:3], rtol=0, atol=1e-6)
    assert (eig.residuals < 1e-6).all()
    np.testing.assert_allclose(np.abs(eig.vectors @ eig.vectors.T).numpy(), np.eye(3), atol=1e-8)
    # power iteration (largest magnitude; this spectrum's top 3 are also the largest in magnitude)
    pw = power_iteration(op, op.n, k=3, tol=1e-14, iters=2000)
    np.testing.assert_allclose(pw.values, EIGS[:3], rtol=0, atol=1e-6)
    for u, lam in zip(pw.vectors, pw.values):
        np.testing.assert_allclose(op.matvec(u).numpy(), (lam * u).numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="eigenvalue method"):
        top_eigenvalues(op, op.n, method="arnoldi")


def test_lanczos_finds_top_of_spectrum_with_large_negative_eigenvalues():
    eigs = np.array([4.0, 3.0, 1.0, 0.5, -2.0, -9.0])  # power iteration would converge to -9
    model, _ = _quadratic(eigs, seed=2)
    op = HessianOperator(model, _quad_loss, [None])
    np.testing.assert_allclose(top_eigenvalues(op, op.n, k=2).values, [4.0, 3.0], atol=1e-6)
    assert abs(power_iteration(op, op.n, k=1, tol=1e-14, iters=3000).values[0] + 9.0) < 1e-6


def test_trace_estimators_on_known_quadratic():
    model, a = _quadratic(EIGS)
    op = HessianOperator(model, _quad_loss, [None])
    true = float(EIGS.sum())
    exact = hutchinson_trace(op, op.n, samples=3 * N, method="hutch++")
    assert abs(exact.value - true) < 1e-6 and exact.stderr == 0.0
    hutch = hutchinson_trace(op, op.n, samples=400, method="hutchinson", seed=1)
    assert abs(hutch.value - true) < 4 * hutch.stderr and hutch.stderr > 0
    # Rademacher probes are exact for a diagonal Hessian
    diag = Quadratic(
        torch.diag(torch.as_tensor(EIGS)),
        torch.zeros(N, dtype=torch.float64),
        torch.zeros(N, dtype=torch.float64),
    )
    d_op = HessianOperator(diag, _quad_loss, [None])
    assert abs(hutchinson_trace(d_op, N, samples=3, method="hutchinson").value - true) < 1e-12
    # Hutch++ is exact for a low-rank Hessian whose rank fits the sketch (rank 3, n 40, 12 products)
    low = np.zeros(40)
    low[:3] = [6.0, -2.0, 1.0]
    lr_model, _ = _quadratic(low, seed=5)
    lr_op = HessianOperator(lr_model, _quad_loss, [None])
    est = hutchinson_trace(lr_op, 40, samples=12, method="hutch++", seed=3)
    assert abs(est.value - 5.0) < 1e-6 and est.matvecs <= 12


def test_slq_nodes_are_the_eigenvalues_and_density_integrates_to_one():
    model, _ = _quadratic(EIGS)
    op = HessianOperator(model, _quad_loss, [None])
    res = slq(op, op.n, n_vectors=3, m=N)
    np.testing.assert_allclose(res.weights.sum(axis=1), 1.0, atol=1e-10)
    for nodes, weights in zip(res.nodes, res.weights):
        used = nodes[weights > 1e-10]
        assert np.abs(used[:, None] - EIGS[None]).min(axis=1).max() < 1e-6
    # quadrature of f(t) = t: n sum_j w_j theta_j = z^T H z for the (unnormalised) Rademacher probe z
    z = (torch.randint(0, 2, (N,), generator=torch.Generator().manual_seed(0)) * 2 - 1).double()
    assert abs(N * float(res.weights[0] @ res.nodes[0]) - float(z @ op.matvec(z))) < 1e-8
    grid, rho = density(res, np.linspace(-4.0, 12.0, 8001), sigma=0.05)
    assert abs(np.trapezoid(rho, grid) - 1.0) < 1e-6
    assert abs(N * np.trapezoid(grid * rho, grid) - res.trace()) < 1e-6  # the smoothing keeps the mean


def test_slices_along_eigenvector_are_parabolas_with_the_eigenvalue():
    model, _ = _quadratic(EIGS, at_minimum=True)
    op = HessianOperator(model, _quad_loss, [None])
    eig = top_eigenvalues(op, op.n, k=2)
    alphas = np.linspace(-2, 2, 9)
    s = loss_slice_1d(op, eig.vectors[0], alphas)
    np.testing.assert_allclose(s, 0.5 * EIGS[0] * alphas**2, atol=1e-9)
    grid = loss_slice_2d(op, eig.vectors[0], eig.vectors[1], alphas, alphas[:3])
    np.testing.assert_allclose(
        grid, 0.5 * (EIGS[0] * alphas[:, None] ** 2 + EIGS[1] * alphas[None, :3] ** 2), atol=1e-9
    )
    assert float(model.x.abs().max()) == 0.0  # parameters restored


def test_filter_normalised_direction_matches_filter_norms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4))
    params = list(net.parameters())
    d = filter_normalised_direction(params, seed=1)
    i = 0
    for p in params:
        piece = d[i : i + p.numel()].view_as(p)
        i += p.numel()
        if p.dim() == 1:
            assert float(piece.abs().max()) == 0.0
        else:
            dims = tuple(range(1, p.dim()))
            vn = torch.linalg.vector_norm
            torch.testing.assert_close(vn(piece, dim=dims), vn(p.detach(), dim=dims))


def _explicit_hessian(model: nn.Module, loss, batch) -> torch.Tensor:
    from torch.func import functional_call

    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = flatten([p.detach() for p in model.parameters()])

    def f(flat):
        parts, i = {}, 0
        for k, s in zip(names, shapes):
            n = int(np.prod(s))
            parts[k] = flat[i : i + n].view(s)
            i += n
        return loss(lambda b: functional_call(model, parts, (b,)), batch)

    return torch.autograd.functional.hessian(f, flat0)


def _mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_hvp_equals_explicit_hessian_of_tiny_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    batches = [
        (torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)) for _ in range(2)
    ]
    explicit = sum(_explicit_hessian(net, _mse, b) for b in batches) / 2
    for method in ("double_backward", "func"):
        op = HessianOperator(net, _mse, batches, method=method)
        np.testing.assert_allclose(op.dense().numpy(), explicit.numpy(), rtol=0, atol=1e-10)
    top = np.linalg.eigvalsh(explicit.numpy())[::-1][:2]
    np.testing.assert_allclose(top_eigenvalues(op, op.n, k=2).values, top, atol=1e-6)


def test_hvp_of_lstm_with_and_without_checkpointing_equals_explicit_hessian():
    from hydroml.models import create

    torch.manual_seed(0)
    model = create("lstm", n_dynamic=2, n_targets=1, hidden_size=3).double().eval()
    x = torch.randn(4, 12, 2, dtype=torch.float64)
    y = torch.randn(4, 1, dtype=torch.float64)

    def loss(m, batch):
        return ((m({"x_dynamic": batch[0]})["y_hat"][:, -1] - batch[1]) ** 2).mean()

    explicit = _explicit_hessian(model, loss, (x, y)).numpy()
    plain = HessianOperator(model, loss, [(x, y)]).dense().numpy()
    np.testing.assert_allclose(plain, explicit, rtol=0, atol=1e-10)
    forward_over_reverse = HessianOperator(model, loss, [(x, y)], method="func").dense().numpy()
    np.testing.assert_allclose(forward_over_reverse, explicit, rtol=0, atol=1e-10)
    model.set_checkpoint_schedule(4)  # three time chunks, recomputed in the double backward
    chunked = HessianOperator(model, loss, [(x, y)]).dense().numpy()
    np.testing.assert_allclose(chunked, explicit, rtol=0, atol=1e-10)


def test_against_pyhessian_on_small_model():
    """PyHessian (Yao et al. 2020) on the same float32 MLP and batch: its power iteration stops at a relative
    change of 1e-3, so agreement is to that tolerance; ours matches the explicit Hessian to float32 round-off."""
    from pyhessian import hessian as pyhessian_hessian

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    torch.manual_seed(1)
    ph = pyhessian_hessian(net, nn.MSELoss(), data=(x, y), cuda=False)
    ph_top, _ = ph.eigenvalues(top_n=2, maxIter=500, tol=1e-6)
    torch.manual_seed(2)
    ph_trace = float(np.mean(ph.trace(maxIter=400, tol=1e-9)))
    op = HessianOperator(net, _mse, [(x, y)])
    ours = top_eigenvalues(op, op.n, k=2)
    np.testing.assert_allclose(ours.values, ph_top, rtol=1e-3)
    exact_trace = float(torch.trace(op.dense()))
    ours_trace = hutchinson_trace(op, op.n, samples=3 * op.n).value  # sketch covers every dimension: exact
    assert abs(ours_trace - exact_trace) < 1e-3 * abs(exact_trace)
    assert abs(ph_trace - exact_trace) < 0.1 * abs(exact_trace)  # PyHessian's plain Hutchinson, 400 probes


# -- run directories -----------------------------------------------------------------------------------------
TINY = {
    "name": "tiny_diag",
    "seed": 5,
    "data": {
        "source": "demo",
        "product": "basins",
        "dynamic_inputs": ["pr", "tas"],
        "targets": ["q_mm"],
        "basins": ["demo_02"],
        "train_period": ["2003-01-01", "2003-12-31"],
        "seq_len": 15,
    },
    "model": {"name": "lstm", "hidden_size": 3},
    "optimiser": {"lr": 0.02},
    "schedule": {"name": "step", "step_size": 1, "gamma": 0.5},
    "train": {"epochs": 2, "batch_size": 32, "progress": False, "threads": 1, "keep_checkpoints": True},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo_cache, one_thread):
    from hydroml.training import train

    return train(TINY, runs_dir=tmp_path_factory.mktemp("runs"))


def test_diagnose_run_per_epoch(run_dir):
    from safetensors.torch import load_file

    from hydroml.training import load_run

    ckpts = list_checkpoints(run_dir)
    assert [e for e, _ in ckpts] == [1, 2]
    final = load_file(str(run_dir / "model.safetensors"))
    for k, v in load_file(str(ckpts[-1][1])).items():
        torch.testing.assert_close(v, final[k], rtol=0, atol=0)
    ds = diagnose_run(
        run_dir,
        k=2,
        trace_samples=12,
        density_vectors=2,
        density_steps=10,
        slices=True,
        slice_points=5,
        n_batches=2,
        batch_size=16,
        dtype="float64",
    )
    assert ds.sizes["epoch"] == 2 and ds.sizes["rank"] == 2
    np.testing.assert_allclose(ds["lr"].values, [0.02, 0.01])
    np.testing.assert_allclose(ds["edge_of_stability"].values, [100.0, 200.0])
    assert (ds["eigenvalues"].sel(rank=1) >= ds["eigenvalues"].sel(rank=2)).all()
    assert np.isfinite(ds["trace"]).all() and np.isfinite(ds["density"]).all()
    # the reported top eigenvalue of epoch 2 is the top eigenvalue of the explicit Hessian of that loss
    from hydroml.diagnostics.run import _batches, _loss_fn
    from hydroml.training._data import load_normaliser, prepare_data

    model, cfg, _ = load_run(run_dir)
    model = model.double()
    data = prepare_data(cfg, normaliser=load_normaliser(run_dir / "normalisation.json"))
    batches = _batches(cfg, data, 2, 16, 0, torch.device("cpu"))
    for b in batches:
        for key in ("x_dynamic", "y"):
            b[key] = b[key].double()
    dense = HessianOperator(model, _loss_fn(cfg, data.basin_std), batches).dense().numpy()
    np.testing.assert_allclose(
        ds["eigenvalues"].sel(epoch=2).values, np.linalg.eigvalsh(dense)[::-1][:2], rtol=1e-6
    )
    # the centre of every slice is the loss itself
    mid = ds.sizes["alpha"] // 2
    np.testing.assert_allclose(ds["slice_random"].values[:, mid], ds["loss"].values, rtol=1e-12)
    np.testing.assert_allclose(ds["slice_2d"].values[:, mid, mid], ds["loss"].values, rtol=1e-12)
    back = read_diagnostics(run_dir)
    np.testing.assert_allclose(back["eigenvalues"].values, ds["eigenvalues"].values)
    summary = json.loads((run_dir / "diagnostics.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert not list(run_dir.rglob("*.pkl")) and not list(run_dir.rglob("*.pickle"))


def test_cli_diagnose_and_plots(run_dir, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    from hydroml.cli import main
    from hydroml.plot import hessian_density, loss_slice, sharpness

    assert (
        main(
            [
                "diagnose",
                str(run_dir),
                "--epochs",
                "2",
                "--trace-samples",
                "6",
                "--density",
                "2",
                "--slices",
                "--slice-points",
                "5",
                "--batches",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "lambda_1" in out and "2/lr" in out and "200" in out
    ds = read_diagnostics(tmp_path)
    assert list(ds["epoch"].values) == [2]
    for fn, kw in ((sharpness, {}), (hessian_density, {}), (loss_slice, {}), (loss_slice, {"kind": "2d"})):
        ax = fn(ds, **kw)
        assert ax.has_data()
    with pytest.raises(ConfigError, match="no checkpoint for epoch"):
        diagnose_run(run_dir, epochs=[7])


def test_run_without_per_epoch_checkpoints_uses_final_weights(run_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("checkpoints"))
    assert list_checkpoints(bare) == [(2, bare / "model.safetensors")]
    (bare / "model.safetensors").unlink()
    assert list_checkpoints(bare) == []
    with pytest.raises(FileNotFoundError, match="no weights yet"):
        diagnose_run(bare)
