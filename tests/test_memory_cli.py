"""``hydroml memory plan CONFIG``."""

from __future__ import annotations

import json

from hydroml.cli import main


def test_memory_plan_unet(tmp_path, capsys):
    cfg = tmp_path / "plan.yaml"
    cfg.write_text(
        "model:\n  name: unet\n  in_channels: 3\n  base_width: 4\n  depth: 2\n"
        "batch:\n  x: [1, 3, 32, 32]\nmemory_budget: 200KB\n"
    )
    assert main(["memory", "plan", str(cfg), "--measure"]) == 0
    out = capsys.readouterr().out
    for text in (
        "enc0.conv1",
        "predicted peak",
        "schedule:",
        "recomputation",
        "sqrt(n) segments",
        "measured peak",
    ):
        assert text in out
    assert main(["memory", "plan", str(cfg), "--json", "--budget", "1GB"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["plan"]["recompute_s"] == 0  # everything fits: nothing recomputed


def test_memory_plan_training_config_and_errors(tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "model:\n  name: lstm\n  hidden_size: 8\n  n_dynamic: 2\ndata:\n  seq_len: 20\n"
        "train:\n  batch_size: 4\n  memory_budget: 60KB\n"
    )
    assert main(["memory", "plan", str(cfg), "--chunk", "4"]) == 0
    assert "time items" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  name: unet\n  in_channels: 3\n  depth: 2\n  base_width: 4\nbatch:\n  x: [2, 3, 16, 16]\n"
    )
    assert main(["memory", "plan", str(bad)]) == 0  # no budget: the profile, nothing checkpointed, and why
    assert "sets no memory_budget" in capsys.readouterr().out
    assert main(["memory", "plan", str(bad), "--budget", "5XB"]) == 1
    assert "--budget: expected a size" in capsys.readouterr().err
