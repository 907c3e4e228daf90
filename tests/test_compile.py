"""torch.compile: every registered model compiles (or falls back with one log line) and gives the eager
outputs; ``train.compile`` trains like the eager loop; ``forecast(compile=True)`` forecasts like eager."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hydroml.exceptions import ConfigError
from hydroml.export import compile_model
from hydroml.models import create, list_models


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# Small instances of each registered model and a batch for it.
CASES = {
    "lstm": (
        dict(n_dynamic=3, n_targets=1, hidden_size=8),
        lambda g: {"x_dynamic": torch.randn(4, 20, 3, generator=g)},
    ),
    "ealstm": (
        dict(n_dynamic=3, n_static=2, n_targets=1, hidden_size=8),
        lambda g: {
            "x_dynamic": torch.randn(4, 20, 3, generator=g),
            "x_static": torch.randn(4, 2, generator=g),
        },
    ),
    "unet": (
        dict(in_channels=2, base_width=4, depth=1),
        lambda g: {"x": torch.randn(1, 2, 16, 16, generator=g)},
    ),
    "closure": (dict(in_channels=3, hidden=4), lambda g: {"x": torch.randn(1, 3, 12, 12, generator=g)}),
    "cnn_lstm": (
        dict(n_inputs=3, n_static_maps=0, conv_width=4, conv_layers=1, hidden_size=8),
        lambda g: {
            "x_grid": torch.randn(2, 6, 3, 8, 8, generator=g),
            "cell_weight": torch.full((2, 8, 8), 1 / 64),
        },
    ),
}


def test_cases_cover_the_registry():
    assert sorted(CASES) == list_models()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_registered_model_compiles_to_eager_outputs(name, one_thread, caplog):
    kwargs, make = CASES[name]
    torch.manual_seed(0)
    model = create(name, **kwargs).eval()
    batch = make(_gen())
    with torch.no_grad():
        ref = model(batch)["y_hat"]
        fast = compile_model(model, name=name)
        with caplog.at_level(logging.INFO, logger="hydroml"):
            got = fast(batch)["y_hat"]
            again = fast(make(torch.Generator().manual_seed(1)))["y_hat"]  # a second call reuses the graph
    assert fast.compiled is True, fast.fallback_reason
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert again.shape == ref.shape
    lines = [r.getMessage() for r in caplog.records if r.name == "hydroml.export"]
    assert len(lines) == 1 and name in lines[0]
    if name == "lstm":  # measured: dynamo does not trace nn.LSTM, which runs eagerly
        assert "LSTM" in lines[0] and "graph break" in lines[0]


def test_uncompilable_model_falls_back_with_one_log_line(one_thread, caplog):
    """The fused CPU LSTM kernel (training) is a custom autograd function behind a lock: with fullgraph=True
    dynamo refuses it, and the wrapper runs the model eagerly, logging the reason once."""
    torch.manual_seed(0)
    model = create("lstm", n_dynamic=3, n_targets=1, hidden_size=8).train()
    batch = CASES["lstm"][1](_gen())
    ref = model(batch)["y_hat"]
    fast = compile_model(model, fullgraph=True, name="lstm")
    with caplog.at_level(logging.INFO, logger="hydroml"):
        out1 = fast(batch)["y_hat"]
        out2 = fast(batch)["y_hat"]
    assert fast.compiled is False and fast.fallback_reason
    lines = [r for r in caplog.records if r.name == "hydroml.export"]
    assert (
        len(lines) == 1
        and lines[0].levelno == logging.WARNING
        and "running it eagerly" in lines[0].getMessage()
    )
    torch.testing.assert_close(out1, ref, rtol=0, atol=0)
    out2.sum().backward()  # the eager fallback trains
    assert model.lstm.weight_hh_l0.grad is not None
    with pytest.raises(ConfigError, match="compile mode"):
        compile_model(model, "fastest")


def test_train_compile_matches_eager_training(tmp_path, demo_cache, one_thread):
    from hydroml.training import config_from_dict, load_run, train

    cfg = {
        "name": "tiny_compile",
        "seed": 1,
        "data": {
            "source": "demo",
            "product": "basins",
            "dynamic_inputs": ["pr", "tas", "evspsblpot"],
            "targets": ["q_mm"],
            "basins": ["demo_01"],
            "train_period": ["2003-01-01", "2003-06-30"],
            "seq_len": 20,
        },
        "model": {"name": "lstm", "hidden_size": 8, "kernel": "native"},
        "train": {"epochs": 2, "batch_size": 64, "progress": False, "threads": 1},
    }
    eager = train(cfg, runs_dir=tmp_path / "eager")
    cfg["train"]["compile"] = True
    cfg["train"]["keep_checkpoints"] = True
    compiled = train(cfg, runs_dir=tmp_path / "compiled")
    assert "lstm compiled" in (compiled / "train.log").read_text()
    for (k, a), b in zip(
        load_run(eager)[0].state_dict().items(), load_run(compiled)[0].state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    assert sorted(p.name for p in (compiled / "checkpoints").iterdir()) == [
        "epoch_0001.safetensors",
        "epoch_0002.safetensors",
    ]
    assert not (eager / "checkpoints").exists()
    with pytest.raises(ConfigError, match="train.compile"):
        config_from_dict({**cfg, "train": {"compile": "fast"}})
    with pytest.raises(ConfigError, match="train.keep_checkpoints"):
        config_from_dict({**cfg, "train": {"keep_checkpoints": "yes"}})


def test_forecast_compile_equals_eager(demo_cache, one_thread):
    import hydroml.zoo
    from hydroml.data.demo import load_demo
    from hydroml.forecast import forecast

    ds = load_demo("basins")
    model = hydroml.zoo.load("lstm.demo_discharge")
    ref = forecast(model, ds, "2013-01-01", "2013-03-31", mode="stateful", chunk_size=30)
    got = forecast(model, ds, "2013-01-01", "2013-03-31", mode="stateful", chunk_size=30, compile=True)
    np.testing.assert_allclose(got["q_mm"].values, ref["q_mm"].values, rtol=0, atol=1e-6)
