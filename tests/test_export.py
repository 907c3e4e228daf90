"""Export: ONNX and TorchScript files reproduce a trained run's forecasts to 1e-5, carry the normalisation and
inputs, run through ``forecast(engine="onnxruntime")`` and ``hydroml export``; the U-Net through ONNX Runtime
in tiled inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hydroml.exceptions import ConfigError, DataError
from hydroml.export import export_model, load_exported, read_metadata
from hydroml.forecast import forecast, from_run
from tests.test_training import TINY as _TRAINING_TINY

# The training tests' tiny demo run, for one epoch, with log-transformed targets (the export must carry them).
TINY = {
    **_TRAINING_TINY,
    "name": "tiny_export",
    "data": {**_TRAINING_TINY["data"], "log_targets": True, "validation_period": None, "predict_last_n": 1},
    "train": {**_TRAINING_TINY["train"], "epochs": 1},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo_cache, one_thread):
    from hydroml.training import train

    return train(TINY, runs_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def demo_basins(demo_cache):
    from hydroml.data.demo import load_demo

    return load_demo("basins").sel(basin=["demo_01", "demo_03"])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("mode", ["stateful", "sliding"])
def test_exported_model_reproduces_run_forecast(run_dir, demo_basins, tmp_path, fmt, mode):
    path = export_model(run_dir, tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}", fmt)
    ref = forecast(run_dir, demo_basins, "2004-01-01", "2004-04-30", mode=mode, chunk_size=50)
    got = forecast(load_exported(path), demo_basins, "2004-01-01", "2004-04-30", mode=mode, chunk_size=50)
    assert np.isfinite(ref["q_mm"].values).all()
    np.testing.assert_allclose(got["q_mm"].values, ref["q_mm"].values, rtol=0, atol=1e-5)
    assert got["q_mm"].attrs["units"] == ref["q_mm"].attrs["units"]


def test_metadata_carries_normalisation_and_inputs(run_dir, tmp_path):
    path = export_model(run_dir, tmp_path / "m.onnx")
    meta = read_metadata(path)
    norm = json.loads((run_dir / "normalisation.json").read_text())
    assert meta["inputs"] == TINY["data"]["dynamic_inputs"]
    assert meta["static_inputs"] == TINY["data"]["static_inputs"]
    assert meta["targets"] == ["q_mm"] and meta["seq_len"] == 30
    assert meta["normalisation"]["variables"] == norm["variables"]
    assert meta["normalisation"]["log_transform"] == ["q_mm"]
    assert meta["input_names"] == ["x_dynamic", "x_static", "h0", "c0"]
    assert meta["config_hash"] == from_run(run_dir).config_hash
    import onnx

    keys = [p.key for p in onnx.load(str(path)).metadata_props]
    assert keys == ["hydroml"]


def test_engine_onnxruntime_in_forecast(run_dir, demo_basins):
    ref = forecast(run_dir, demo_basins, "2004-01-01", "2004-02-28", mode="stateful")
    got = forecast(run_dir, demo_basins, "2004-01-01", "2004-02-28", mode="stateful", engine="onnxruntime")
    np.testing.assert_allclose(got["q_mm"].values, ref["q_mm"].values, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="engine"):
        forecast(run_dir, demo_basins, "2004-01-01", "2004-02-28", engine="tvm")


def test_cli_export_writes_into_run_dir(run_dir, capsys):
    from hydroml.cli import main

    assert main(["export", str(run_dir), "--format", "torchscript"]) == 0
    assert (run_dir / "model.pt").is_file()
    assert "model.pt" in capsys.readouterr().out
    assert read_metadata(run_dir / "model.pt")["architecture"] == "lstm"


def test_unsupported_architecture_and_missing_metadata(tmp_path):
    import hydroml.zoo

    with pytest.raises(ConfigError, match="ealstm.*exportable architectures: lstm, unet, closure"):
        export_model(hydroml.zoo.load("ealstm.demo_discharge"), tmp_path / "e.onnx")
    with pytest.raises(ConfigError, match="export format"):
        export_model("lstm.demo_discharge", tmp_path / "x.bin", "tflite")
    bare = tmp_path / "bare.onnx"
    torch.onnx.export(torch.nn.Linear(2, 1), (torch.zeros(1, 2),), str(bare), dynamo=False)
    with pytest.raises(DataError, match="without hydroml metadata"):
        read_metadata(bare)


def test_unet_onnxruntime_tiled_prediction(tmp_path):
    """The zoo U-Net through ONNX Runtime, tile by tile with hydroml.memory.tiled_predict, equals eager."""
    import hydroml.zoo
    from hydroml.memory import tiled_predict

    model = hydroml.zoo.load("unet.demo_evaporation")
    path = export_model(model, tmp_path / "u.onnx")
    ort_model = load_exported(path).model
    c = model.card.model_params["in_channels"]
    x = torch.randn(c, 100, 84, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model({"x": x[None]})["y_hat"][0].numpy()
    got = tiled_predict(ort_model, x, tile=32, halo=model.receptive_field().halo, stride=model.stride)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-5)
