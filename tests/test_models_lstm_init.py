"""``lstm`` input projection initialisation: the identity default makes the untrained model exactly
neuralhydrology's ``cudalstm`` (an ``nn.LSTM`` on the concatenated inputs), ``"default"`` keeps PyTorch's
``nn.Linear`` initialisation (hydroml's behaviour before ``input_init`` existed)."""

from __future__ import annotations

import pytest
import torch
from neuralhydrology.modelzoo.cudalstm import CudaLSTM
from neuralhydrology.utils.config import Config

from hydroml.exceptions import ConfigError
from hydroml.models import create

F, S, H, B, T = 3, 4, 8, 5, 24

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x_dynamic": torch.randn(B, T, F, generator=g), "x_static": torch.randn(B, S, generator=g)}


def _lstm(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create("lstm", n_dynamic=F, n_static=S, n_targets=1, hidden_size=H, **kw)


def _cudalstm(seed: int = 0) -> CudaLSTM:
    cfg = Config(
        {
            "model": "cudalstm",
            "hidden_size": H,
            "dynamic_inputs": [f"d{i}" for i in range(F)],
            "static_attributes": [f"s{i}" for i in range(S)],
            "target_variables": ["q"],
            "initial_forget_bias": 3,
            "output_dropout": 0.0,
            "head": "regression",
            "output_activation": "linear",
        }
    )
    torch.manual_seed(seed)
    return CudaLSTM(cfg)


def test_identity_is_the_default_and_exact():
    m = _lstm()
    assert m.input_init == "identity"
    torch.testing.assert_close(m.input_dynamic.weight, torch.eye(F + S)[:, :F], rtol=0, atol=0)
    torch.testing.assert_close(m.input_static.weight, torch.eye(F + S)[:, F:], rtol=0, atol=0)
    assert not m.input_dynamic.bias.any()
    # wider projections: the identity on the first F + S rows, zero below
    w = _lstm(embedding_size=F + S + 2)
    assert w.input_init == "identity"
    torch.testing.assert_close(w.input_dynamic.weight, torch.eye(F + S + 2)[:, :F], rtol=0, atol=0)
    torch.testing.assert_close(w.input_static.weight, torch.eye(F + S + 2)[:, F : F + S], rtol=0, atol=0)


def test_identity_initialised_lstm_equals_neuralhydrology_cudalstm():
    """With the LSTM and head weights of an (untrained) nh ``cudalstm``, and the input projection as initialised
    (not copied), hydroml's ``lstm`` computes exactly what ``cudalstm`` computes: same inputs, same function."""
    nh = _cudalstm(seed=3)
    m = _lstm(seed=0)
    sd = nh.state_dict()
    with torch.no_grad():
        for name, p in m.lstm.named_parameters():
            p.copy_(sd[f"lstm.{name}"])
        m.head.weight.copy_(sd["head.net.0.weight"])
        m.head.bias.copy_(sd["head.net.0.bias"])
    batch = _batch()
    x_d = {f"d{i}": batch["x_dynamic"][..., i : i + 1] for i in range(F)}
    with torch.no_grad():
        ref = nh({"x_d": x_d, "x_s": batch["x_static"]})
        out = m(batch)
    torch.testing.assert_close(out["y_hat"], ref["y_hat"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out["h_n"][0], ref["h_n"][:, 0], rtol=1e-6, atol=1e-6)


def test_identity_init_draws_the_same_lstm_as_default():
    """Only the projection changes: the LSTM and head draws of a seed are those of ``input_init='default'``."""
    a, b = _lstm(seed=7), _lstm(seed=7, input_init="default")
    for (name, p), q in zip(a.lstm.named_parameters(), b.lstm.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(a.head.weight, b.head.weight, rtol=0, atol=0)
    assert b.input_init == "default"
    assert not torch.equal(b.input_dynamic.weight, a.input_dynamic.weight)
    # the old initialisation: nn.Linear's uniform(-1/sqrt(F), 1/sqrt(F))
    assert b.input_dynamic.weight.abs().max() <= F**-0.5


def test_narrow_projection_falls_back_or_refuses():
    assert _lstm(embedding_size=F + S - 1).input_init == "default"
    with pytest.raises(ConfigError, match="embedding_size >= n_dynamic \\+ n_static"):
        _lstm(embedding_size=F + S - 1, input_init="identity")
    with pytest.raises(ConfigError, match="input_init must be"):
        _lstm(input_init="xavier")


def test_identity_init_still_trains_the_projection():
    m = _lstm()
    m(_batch())["y_hat"].pow(2).mean().backward()
    for p in (m.input_dynamic.weight, m.input_dynamic.bias, m.input_static.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
