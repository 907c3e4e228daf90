"""The fused CPU LSTM kernel (``LSTMModel(kernel="fused")``) against ``nn.LSTM``."""

from __future__ import annotations

import pytest
import torch

from hydroml.exceptions import ConfigError
from hydroml.models import _fused_lstm as fused
from hydroml.models import create


def _model(n_static: int = 6, hidden: int = 24, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = create("lstm", n_dynamic=4, n_static=n_static, hidden_size=hidden, **kw)
    with torch.no_grad():  # move away from the identity / zero initialisation so every path matters
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def _batch(b: int = 7, t: int = 33, n_static: int = 6, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"x_dynamic": torch.randn(b, t, 4, generator=g)}
    if n_static:
        batch["x_static"] = torch.randn(b, n_static, generator=g)
    return batch


def _step(m, batch, kernel: str):
    m.kernel = kernel
    m.zero_grad()
    out = m(batch)
    y = out["y_hat"]
    w = torch.linspace(-1, 1, y.shape[1]).view(1, -1, 1)
    loss = (y * w).pow(2).mean() + out["h_n"].sum() * 0.1 + out["c_n"].pow(2).sum() * 0.05
    loss.backward()
    return out, {n: p.grad.clone() for n, p in m.named_parameters()}


def test_kernel_compiles_here():
    # CI installs a compiler and ninja: the default training path must be the fused kernel, not a fallback.
    assert fused.available(), fused.unavailable_reason()


@pytest.mark.parametrize("n_static", [0, 6])
def test_outputs_and_gradients_equal_nn_lstm(n_static):
    m = _model(n_static=n_static)
    batch = _batch(n_static=n_static)
    h0 = torch.randn(1, 7, 24) * 0.5
    c0 = torch.randn(1, 7, 24) * 0.5
    batch["state"] = (h0, c0)
    ref, g_ref = _step(m, batch, "native")
    out, g = _step(m, batch, "fused")
    for key in ("y_hat", "h_n", "c_n"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-6)
    assert set(g) == set(g_ref)
    for name in g_ref:
        _close(g[name], g_ref[name], name)


def test_input_and_state_gradients():
    m = _model()
    base = _batch()
    grads = {}
    for kernel in ("native", "fused"):
        x = base["x_dynamic"].clone().requires_grad_()
        h0 = torch.full((1, 7, 24), 0.1, requires_grad=True)
        c0 = torch.full((1, 7, 24), -0.2, requires_grad=True)
        m.kernel = kernel
        out = m({"x_dynamic": x, "x_static": base["x_static"], "state": (h0, c0)})
        (out["y_hat"].pow(2).sum() + out["c_n"].sum()).backward()
        grads[kernel] = (x.grad, h0.grad, c0.grad)
    for a, b in zip(grads["native"], grads["fused"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def _close(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    # float32 round-off relative to the tensor's largest element (sums over batch and time)
    scale = max(expected.abs().max().item(), 1.0)
    assert (actual - expected).abs().max().item() <= 2e-5 * scale, name


def _grads(m) -> dict:
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def test_reused_buffers_never_corrupt_live_graphs():
    """Two forwards before their backwards, and a retained graph backpropagated twice, give exact grads."""
    m = _model()
    b1, b2 = _batch(seed=3), _batch(seed=4)

    def loss(batch):
        return m(batch)["y_hat"].pow(2).sum()

    m.kernel = "native"
    m.zero_grad()
    loss(b1).backward()
    ref_1 = _grads(m)
    loss(b2).backward()
    ref_12 = _grads(m)
    m.kernel = "fused"
    for _ in range(2):  # the second round runs on pooled buffers
        m.zero_grad()
        l1 = loss(b1)
        l2 = loss(b2)  # b1's graph is alive: its buffers must not be reused
        l2.backward()
        l1.backward(retain_graph=True)
        both = _grads(m)
        l1.backward()  # again, on the retained graph: the kernel's saved buffers are still intact
        again = _grads(m)
        for n in ref_12:
            _close(both[n], ref_12[n], n)
            _close(again[n], ref_12[n] + ref_1[n], n)


def test_auto_uses_nn_lstm_where_the_kernel_does_not_apply(monkeypatch):
    calls = []
    real = fused.fused_lstm
    monkeypatch.setattr(fused, "fused_lstm", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    batch = _batch()
    m = _model()
    m(batch)["y_hat"].sum().backward()
    assert calls == [1]  # training on CPU in float32: fused
    with torch.no_grad():
        m(batch)
    m.eval()
    m(batch)
    m.train()
    _model(num_layers=2)(batch)
    native = _model(kernel="native")
    native(batch)["y_hat"].sum().backward()
    assert calls == [1]


def test_unavailable_kernel(monkeypatch):
    monkeypatch.setitem(fused._state, "tried", True)
    monkeypatch.setitem(fused._state, "ops", None)
    monkeypatch.setitem(fused._state, "error", "no compiler")
    batch = _batch()
    auto = _model()
    auto(batch)["y_hat"].sum().backward()  # falls back to nn.LSTM
    forced = _model(kernel="fused")
    with pytest.raises(ConfigError, match="no compiler"):
        forced(batch)
    with pytest.raises(ConfigError, match="kernel must be one of"):
        _model(kernel="cuda")


def test_batch_split_between_threads_gives_the_same_gradients():
    """With 2 threads and >= 64 sequences the kernel splits the batch between threads (dW summed after)."""
    before = torch.get_num_threads()
    m = _model(hidden=16)
    batch = _batch(b=70, t=21)
    try:
        torch.set_num_threads(1)
        one, g_one = _step(m, batch, "fused")
        torch.set_num_threads(2)
        two, g_two = _step(m, batch, "fused")
        ref, g_ref = _step(m, batch, "native")
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(two["y_hat"], one["y_hat"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(two["y_hat"], ref["y_hat"], rtol=1e-5, atol=1e-6)
    for name in g_ref:
        _close(g_two[name], g_one[name], name)
        _close(g_two[name], g_ref[name], name)


@pytest.fixture
def gemm_path():
    """Select a GEMM path of the kernel for one test, and restore the automatic choice after it."""
    chosen = []

    def select(name: str) -> str:
        got = fused.set_isa(name)
        chosen.append(got)
        return got

    yield select
    fused.set_isa("auto")


@pytest.mark.parametrize("path", ["avx512", "avx2", "blas"])
@pytest.mark.parametrize("hidden,b", [(32, 7), (48, 70), (24, 13), (20, 9)])
def test_every_gemm_path_equals_nn_lstm(gemm_path, path, hidden, b):
    """hydroml's AVX-512 and AVX2 micro-kernels (and the BLAS path) against nn.LSTM: outputs and all gradients.

    Hidden sizes: a multiple of 16 (both micro-kernels), of 8 only (AVX2 micro-kernel; AVX-512 falls back to
    AVX2), of neither (BLAS); 70 sequences with 2 threads split the batch; odd row counts exercise the partial
    register blocks (rows not a multiple of 6, the reduction over rows in the dW product)."""
    got = gemm_path(path)
    want = {"avx512": 2, "avx2": 1, "blas": 0}
    expected = min(want[path], want[fused.set_isa("auto")])  # capped at what this CPU and build have
    fused.set_isa(path)
    assert want[got] == expected
    width = {"avx512": 16, "avx2": 8}
    runs = fused.isa(hidden)
    if runs != "blas":
        assert hidden % width[runs] == 0
    if got == "avx512" and hidden % 16:
        assert runs == ("avx2" if hidden % 8 == 0 else "blas")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        m = _model(hidden=hidden)
        batch = _batch(b=b, t=29)
        batch["state"] = (torch.randn(1, b, hidden) * 0.5, torch.randn(1, b, hidden) * 0.5)
        ref, g_ref = _step(m, batch, "native")
        out, g = _step(m, batch, "fused")
    finally:
        torch.set_num_threads(before)
    for key in ("y_hat", "h_n", "c_n"):
        _close(out[key], ref[key], key)
    for name in g_ref:
        _close(g[name], g_ref[name], name)


def test_isa_names_and_errors(gemm_path):
    best = fused.set_isa("auto")
    assert fused.isa(20) == "blas"  # not a multiple of the vector width of either micro-kernel
    assert fused.isa(24) == ("blas" if best == "blas" else "avx2")  # a multiple of 8, not of 16
    assert fused.isa(64) == best
    assert gemm_path("blas") == "blas"
    assert fused.isa(128) == "blas"
    with pytest.raises(RuntimeError, match="unknown ISA 'sse'"):
        fused.set_isa("sse")


def _bf16_reference(x, bias, w_cat, h0, c0):
    """The LSTM with its GEMM operands rounded to bfloat16 and float32 arithmetic otherwise (what the kernel's
    bf16 path computes, up to the order of the float32 sums)."""

    def rb(t):
        return t.bfloat16().float()

    h, c, outs = h0, c0, []
    for t in range(x.shape[1]):
        g = torch.cat([rb(x[:, t]), rb(h)], 1) @ rb(w_cat).t() + bias
        i, f, u, o = g.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(u)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), h, c


def _kernel_args(b=37, t=23, f=5, h=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, t, f, generator=g),
        0.3 * torch.randn(b, 4 * h, generator=g),
        0.2 * torch.randn(4 * h, f + h, generator=g),
        0.5 * torch.randn(b, h, generator=g),
        0.5 * torch.randn(b, h, generator=g),
    )


def test_bf16_path_computes_bf16_operands_with_float32_accumulation():
    """Where the CPU has AVX-512 BF16, the bf16 path equals an LSTM whose GEMM operands are rounded to bf16; its
    gradients are the float32 kernel's to bf16 precision. Elsewhere it refuses, and autocast uses nn.LSTM."""
    args = _kernel_args()
    if not fused.has_bf16(32):
        with pytest.raises(RuntimeError, match="bf16 path needs AVX-512 BF16"):
            fused.fused_lstm(*args, bf16=True)
        return
    assert not fused.has_bf16(24)  # not a multiple of 16
    out, h_n, c_n = fused.fused_lstm(*args, bf16=True)
    ref, h_ref, c_ref = _bf16_reference(*args)
    torch.testing.assert_close(out, ref, rtol=0, atol=5e-4)  # float32 sums in another order, then rounded
    torch.testing.assert_close(c_n, c_ref, rtol=0, atol=5e-4)
    exact, _, _ = fused.fused_lstm(*args, bf16=False)
    assert 1e-3 < (out - exact).abs().max() < 3e-2  # bf16 operands: visibly not float32, still close

    grads = {}
    for bf16 in (False, True):
        leaves = [a.clone().requires_grad_() for a in args]
        o, h, c = fused.fused_lstm(*leaves, bf16=bf16)
        (o.pow(2).sum() + h.sum() + c.pow(2).sum()).backward()
        grads[bf16] = [leaf.grad for leaf in leaves]
    for name, g32, g16 in zip(("x", "bias", "w_cat", "h0", "c0"), grads[False], grads[True]):
        rel = ((g16 - g32).norm() / g32.norm()).item()
        assert rel < 1e-2, (name, rel)


def test_bf16_autocast_trains_on_the_kernel(monkeypatch):
    calls = []
    real = fused.fused_lstm
    monkeypatch.setattr(fused, "fused_lstm", lambda *a, bf16=False: calls.append(bf16) or real(*a, bf16=bf16))
    m = _model(hidden=32)
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(batch)["y_hat"]
    y.float().pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert calls == ([True] if fused.has_bf16(32) else [])  # else nn.LSTM under autocast
