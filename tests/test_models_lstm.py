"""Recurrent models: forward/backward for every registered recurrent model, checkpointing leaves outputs and
gradients unchanged, statics-as-bias equals naive concatenation along time, stateful chunking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hydroml.exceptions import ConfigError
from hydroml.models import create, list_models

RECURRENT = [m for m in list_models() if m in {"lstm", "ealstm"}]
F, S, N, H, B, T = 3, 4, 2, 8, 5, 24


# tiny models: one thread is faster than two, and much faster on a shared CPU
pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x_dynamic": torch.randn(B, T, F, generator=g), "x_static": torch.randn(B, S, generator=g)}


def _model(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create(name, n_dynamic=F, n_static=S, n_targets=N, hidden_size=H, **kw)


def test_registry_has_both():
    assert set(RECURRENT) == {"lstm", "ealstm"}


@pytest.mark.parametrize("name", RECURRENT)
def test_forward_backward_shapes(name):
    m = _model(name)
    out = m(_batch())
    assert out["y_hat"].shape == (B, T, N)
    assert out["h_n"].shape == (1, B, H) and out["c_n"].shape == (1, B, H)
    out["y_hat"].pow(2).mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize("schedule", [True, 5, [7, {"store": 6}, [4, 3, [2, 2]]]])
def test_checkpointing_keeps_outputs_and_grads(name, schedule):
    batch = _batch()
    ref = _model(name)
    y_ref = ref(batch)["y_hat"]
    y_ref.pow(2).mean().backward()
    m = _model(name, checkpointing=schedule)
    assert m.checkpointing
    y = m(batch)["y_hat"]
    y.pow(2).mean().backward()
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    for (pname, p), q in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=pname)


def test_checkpoint_schedule_must_cover_sequence():
    m = _model("lstm", checkpointing=[5, 5])
    with pytest.raises(ConfigError, match="covers 10 time steps but the sequence has 24"):
        m(_batch())


def test_lstm_statics_equal_naive_concatenation():
    """Our per-sequence static bias equals an nn.LSTM fed [x_dynamic, x_static repeated along time]."""
    torch.manual_seed(1)
    naive = nn.LSTM(F + S, H, batch_first=True)
    head = nn.Linear(H, N)
    m = _model("lstm", initial_forget_bias=None)
    with torch.no_grad():
        m.input_dynamic.weight.copy_(torch.eye(F + S)[:, :F])
        m.input_dynamic.bias.zero_()
        m.input_static.weight.copy_(torch.eye(F + S)[:, F:])
        for pname, p in naive.named_parameters():
            getattr(m.lstm, pname).copy_(p)
        m.head.load_state_dict(head.state_dict())
    batch = _batch()
    x_cat = torch.cat([batch["x_dynamic"], batch["x_static"][:, None, :].expand(B, T, S)], dim=-1)
    out_naive, (h_naive, _) = naive(x_cat)
    out = m(batch)
    torch.testing.assert_close(out["y_hat"], head(out_naive), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out["h_n"], h_naive, rtol=1e-6, atol=1e-6)


def test_ealstm_input_gate_reads_statics_only():
    m = _model("ealstm", initial_forget_bias=None)
    batch = _batch()
    # A hand-written EA-LSTM step (Kratzert et al. 2019, eq. 1-6) from the same parameters.
    i = torch.sigmoid(batch["x_static"] @ m.input_gate.weight.T + m.input_gate.bias)
    h = torch.zeros(B, H)
    c = torch.zeros(B, H)
    for t in range(T):
        gates = batch["x_dynamic"][:, t] @ m.weight_ih + h @ m.weight_hh + m.bias
        f, o, g = gates.chunk(3, dim=1)
        c = torch.sigmoid(f) * c + i * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    out = m(batch)
    torch.testing.assert_close(out["h_n"][0], h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["y_hat"][:, -1], m.head(h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", RECURRENT)
def test_stateful_chunks_equal_one_pass(name):
    m = _model(name).eval()
    batch = _batch()
    with torch.no_grad():
        full = m(batch)
        a = m({"x_dynamic": batch["x_dynamic"][:, :10], "x_static": batch["x_static"]})
        b = m({"x_dynamic": batch["x_dynamic"][:, 10:], "x_static": batch["x_static"], "state": a["state"]})
    torch.testing.assert_close(torch.cat([a["y_hat"], b["y_hat"]], 1), full["y_hat"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b["c_n"], full["c_n"], rtol=1e-6, atol=1e-6)


def test_bad_shapes_are_clear():
    m = _model("lstm")
    with pytest.raises(ValueError, match=r"x_dynamic must be \[batch, time, 3\]"):
        m({"x_dynamic": torch.randn(2, 5, 4), "x_static": torch.randn(2, S)})
    with pytest.raises(ConfigError, match="n_static >= 1"):
        create("ealstm", n_dynamic=2, n_static=0)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create("nope")


def test_stages_describe_time_chain():
    m = _model("lstm")
    st = m.stages(seq_len=T, batch_size=B)
    assert len(st) == T and st[0]["state_bytes"] == 2 * B * H * 4
