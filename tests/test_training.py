"""Training: strict configs, a short training on the demo data, run directories, exact resume after SIGKILL,
and two processes under torchrun (gloo) matching one process."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from hydroml.exceptions import ConfigError
from hydroml.training import config_from_dict, load_checkpoint, load_run, train

TINY = {
    "name": "tiny",
    "seed": 7,
    "data": {
        "source": "demo",
        "product": "basins",
        "dynamic_inputs": ["pr", "tas", "evspsblpot"],
        "static_inputs": ["aridity", "frac_snow"],
        "targets": ["q_mm"],
        "basins": ["demo_01", "demo_03"],
        "train_period": ["2003-01-01", "2003-12-31"],
        "validation_period": ["2004-01-01", "2004-06-30"],
        "seq_len": 30,
        "predict_last_n": 2,
    },
    "model": {"name": "lstm", "hidden_size": 8},
    "optimiser": {"name": "adam", "lr": 0.01},
    "schedule": {"name": "step", "step_size": 2, "gamma": 0.5},
    "train": {
        "epochs": 3,
        "batch_size": 64,
        "loss": "nse",
        "progress": False,
        "threads": 1,
        "num_workers": 1,
    },
}


def _cfg(**overrides) -> dict:
    cfg = copy.deepcopy(TINY)
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    return cfg


def _metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _env() -> dict:
    env = dict(os.environ)
    env["HYDROML_PROGRESS"] = "0"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# -- strict configs -------------------------------------------------------------------------------------------


def test_unknown_keys_list_valid_keys():
    with pytest.raises(
        ConfigError, match=r"unknown key 'epoch' in section 'train'.*valid keys: epochs, batch_size"
    ):
        config_from_dict(_cfg(train__epoch=3))
    with pytest.raises(
        ConfigError, match=r"unknown key 'lerning_rate' in the top level.*valid keys: name, seed"
    ):
        config_from_dict({**_cfg(), "lerning_rate": 1})
    with pytest.raises(ConfigError, match=r"unknown key 'hiden_size' in section 'model'.*hidden_size"):
        config_from_dict(_cfg(model={"name": "lstm", "hiden_size": 8}))
    with pytest.raises(ConfigError, match=r"data.seq_len: expected an integer, found '30'"):
        config_from_dict(_cfg(data__seq_len="30"))
    with pytest.raises(ConfigError, match=r"optimiser.name: expected one of 'adam' \| 'adamw', found 'sgd'"):
        config_from_dict(_cfg(optimiser={"name": "sgd"}))
    with pytest.raises(ConfigError, match="unknown model 'gru'"):
        config_from_dict(_cfg(model={"name": "gru"}))
    with pytest.raises(ConfigError, match="train.memory_budget"):
        config_from_dict(_cfg(train__memory_budget="lots"))


def test_yaml_file_error_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**_cfg(), "extra": 1}))
    from hydroml.training import load_config

    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'extra'"):
        load_config(path)


def test_example_config_is_valid():
    from hydroml.training import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "demo_lstm.yaml")
    assert cfg.model.name == "lstm" and cfg.data.source == "demo"


# -- a short training -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(demo_cache, tmp_path_factory) -> Path:
    """An uninterrupted 3-epoch run of the tiny config (shared by the tests below)."""
    return train(_cfg(), runs_dir=tmp_path_factory.mktemp("runs"))


def test_training_reduces_loss_and_writes_run_dir(reference_run):
    run = reference_run
    assert run.name.startswith("tiny_") and len(run.name) == len("tiny_YYYYmmdd_HHMMSS")
    for name in [
        "config.yaml",
        "normalisation.json",
        "model.safetensors",
        "checkpoint.safetensors",
        "checkpoint.json",
        "metrics.csv",
        "train.log",
    ]:
        assert (run / name).is_file(), name
    rows = _metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    assert float(rows[-1]["val_nse"]) > float("-inf")
    assert [float(r["lr"]) for r in rows] == [0.01, 0.01, 0.005]
    # the resolved config round-trips and the normaliser is the training period's
    resolved = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert resolved.data.seq_len == 30 and resolved.train.loss == "nse"
    norm = json.loads((run / "normalisation.json").read_text())
    assert "q_mm" in norm["variables"]
    log = (run / "train.log").read_text()
    assert "epoch 3:" in log and "training samples" in log
    state = json.loads((run / "checkpoint.json").read_text())
    assert state["epoch"] == 3 and state["finished"] is True


def test_load_run_gives_the_trained_model(reference_run):
    model, cfg, normaliser = load_run(reference_run)
    assert cfg.name == "tiny" and not model.training
    weights = load_file(str(reference_run / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    out = model({"x_dynamic": torch.zeros(2, 30, 3), "x_static": torch.zeros(2, 2)})
    assert out["y_hat"].shape == (2, 30, 1)


def test_checkpoint_has_no_pickle(reference_run):
    model_state, optim_state, info = load_checkpoint(reference_run)
    assert info["epoch"] == 3 and set(optim_state) == {"state", "param_groups"}
    assert "rng/torch" in info["rng_tensors"]
    # safetensors + JSON only: the optimiser moments are tensors in the safetensors file
    keys = load_file(str(reference_run / "checkpoint.safetensors")).keys()
    assert any(k.startswith("optim/") and k.endswith("exp_avg") for k in keys)


def test_resume_after_sigkill_gives_identical_weights(reference_run, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg()))
    runs = tmp_path / "runs"
    env = _env()
    env["_HYDROML_TEST_BATCH_SLEEP"] = "0.05"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydroml", "-q", "train", str(cfg_path), "--runs-dir", str(runs)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    run_dir = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(runs.glob("tiny_*/checkpoint.json"))
            if found and json.loads(found[0].read_text())["epoch"] >= 1:
                time.sleep(0.2)  # now in the middle of epoch 2
                run_dir = found[0].parent
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run_dir is not None
    killed_epoch = json.loads((run_dir / "checkpoint.json").read_text())["epoch"]
    assert killed_epoch < 3
    # `hydroml train --resume RUN_DIR` through the command line's code path (in this process: saves a start-up)
    from hydroml.cli import main

    assert main(["-q", "train", "--resume", str(run_dir)]) == 0
    assert str(run_dir) in capsys.readouterr().out
    ref = load_file(str(reference_run / "checkpoint.safetensors"))
    got = load_file(str(run_dir / "checkpoint.safetensors"))
    for k, v in ref.items():
        if k.startswith(("model/", "optim/")):
            assert torch.equal(got[k], v), (k, float((got[k] - v).abs().max()))  # bit-identical
    ref_rows, rows = _metrics(reference_run), _metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    for a, b in zip(ref_rows, rows):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-6)


def test_two_processes_match_one(demo_cache, tmp_path):
    """torchrun with 2 gloo processes, each taking half of every global batch of 64, gives the per-epoch losses
    of one process with batches of 64 to 1e-5 relative (float32 summation order of the all-reduce)."""
    cfg = _cfg(train__epochs=2)
    cfg["data"]["validation_period"] = None
    single = train(cfg, runs_dir=tmp_path / "single")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "hydroml",
            "-q",
            "train",
            str(cfg_path),
            "--runs-dir",
            str(tmp_path / "ddp"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (ddp_run,) = list((tmp_path / "ddp").iterdir())  # only rank 0 wrote a run directory
    assert json.loads((ddp_run / "checkpoint.json").read_text())["world_size"] == 2
    single_loss = [float(r["train_loss"]) for r in _metrics(single)]
    ddp_loss = [float(r["train_loss"]) for r in _metrics(ddp_run)]
    assert ddp_loss == pytest.approx(single_loss, rel=1e-5)
    a = load_file(str(single / "model.safetensors"))
    b = load_file(str(ddp_run / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


def test_memory_budget_plans_checkpointing_without_changing_training(demo_cache, tmp_path):
    """``train.memory_budget`` runs the planner (hydroml.memory) and checkpoints over time; the training is the
    same computation, so the first epoch's loss matches a run that keeps every activation to round-off.

    Only the first epoch is compared: this tiny EA-LSTM's gradients are so sensitive to its weights that the
    1e-7 round-off of recomputation grows through Adam to about 1e-2 after 24 steps (measured; the gradients
    of the first step agree to 3e-7, see tests/test_models_lstm.py for exact gradient checks)."""
    cfg = _cfg(train__epochs=1, model={"name": "ealstm", "hidden_size": 8})
    cfg["data"]["validation_period"] = None
    plain = train(cfg, runs_dir=tmp_path / "plain")
    cfg["train"]["memory_budget"] = "200kB"
    budget = train(cfg, runs_dir=tmp_path / "budget")
    assert "planned for a 200kB activation budget" in (budget / "train.log").read_text()
    a = float(_metrics(plain)[0]["train_loss"])
    b = float(_metrics(budget)[0]["train_loss"])
    assert b == pytest.approx(a, rel=1e-5)


def test_early_stopping_keeps_the_best_epoch(demo_cache, tmp_path):
    """min_delta 10 makes every epoch after the first 'not better': patience 1 stops after epoch 2 of 5, and
    model.safetensors holds epoch 1's weights."""
    cfg = _cfg(train__epochs=5, early_stopping={"metric": "nse", "patience": 1, "min_delta": 10.0})
    run = train(cfg, runs_dir=tmp_path)
    assert [int(r["epoch"]) for r in _metrics(run)] == [1, 2]
    from safetensors import safe_open

    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["epoch"] == "1"
    state = json.loads((run / "checkpoint.json").read_text())
    assert state["finished"] is True and state["best_epoch"] == 1
    assert "early stopping after epoch 2" in (run / "train.log").read_text()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_on_cpu_only_where_the_cpu_has_native_bf16(demo_cache, tmp_path, monkeypatch, native):
    """``train.bf16`` autocasts the training forward pass to bfloat16 on a CPU with native bf16 (AVX-512 BF16 /
    AMX) and is ignored, with a log line, on one without; the support check is patched to test both branches on
    any machine (autocast itself works on every CPU, only its speed differs)."""
    import hydroml.training.loop as loop

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    seen: list[tuple[bool, torch.dtype]] = []
    from hydroml.models.lstm import LSTMModel

    forward = LSTMModel.forward

    def spy(self, batch):
        out = forward(self, batch)
        if torch.is_grad_enabled():  # training steps, not validation
            seen.append((torch.is_autocast_enabled("cpu"), out["y_hat"].dtype))
        return out

    monkeypatch.setattr(LSTMModel, "forward", spy)
    cfg = _cfg(train__epochs=3, train__bf16=True)
    run = train(cfg, runs_dir=tmp_path / "bf16")
    log_text = (run / "train.log").read_text()
    assert seen and all(s == ((True, torch.bfloat16) if native else (False, torch.float32)) for s in seen)
    assert ("train.bf16 ignored" in log_text) is (not native)
    losses = np.array([float(r["train_loss"]) for r in _metrics(run)])
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # bf16 follows the float32 training closely (measured: per-epoch losses within 0.3 % on this tiny run)
    cfg["train"]["bf16"] = False
    ref = np.array([float(r["train_loss"]) for r in _metrics(train(cfg, runs_dir=tmp_path / "fp32"))])
    if native:
        assert not np.array_equal(losses, ref)  # bf16 really ran
        np.testing.assert_allclose(losses, ref, rtol=0.03)
    else:
        np.testing.assert_array_equal(losses, ref)  # ignored: the float32 computation, bit for bit
