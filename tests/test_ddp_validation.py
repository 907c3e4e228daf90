"""Validation under DistributedDataParallel: each process evaluates its own block of the validation windows, the
scores are rank 0's reduction of all of them (equal to a single process's), and every process takes the same
early-stopping decision.

The two gloo processes are forked from the test process (no interpreter and import start-up, which is most of a
torchrun launch on a shared 2-core machine; tests/test_training.py covers the ``torchrun -m hydroml train``
path). Each process wraps ``hydroml.training.loop._validate`` to record the windows it evaluated and the scores
it got, and reports them as JSON.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import socket
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hydroml.training import train
from tests.test_training import TINY, _metrics

WORLD = 2


def _config() -> dict:
    """TINY with early stopping that stops after epoch 2 of 3 (min_delta 10: only epoch 1 is 'better')."""
    cfg = copy.deepcopy(TINY)
    cfg["name"] = "ddpval"
    cfg["train"]["epochs"] = 3
    cfg["early_stopping"] = {"metric": "nse", "patience": 1, "min_delta": 10.0}
    return cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, cfg: dict, runs_dir: str, report: str) -> None:
    """One process of the group: train with a spy on validation, write what it saw to ``report``."""
    try:
        os.environ.update(
            RANK=str(rank),
            WORLD_SIZE=str(WORLD),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            HYDROML_PROGRESS="0",
        )
        from hydroml.training import loop

        real = loop._validate
        calls: list[dict] = []

        def spy(model, data, *args, **kwargs):
            seen: list[int] = []
            get = data.get_batch

            def recording(idx):
                seen.extend(int(i) for i in np.asarray(idx))
                return get(idx)

            data.get_batch = recording
            try:
                out = real(model, data, *args, **kwargs)
            finally:
                del data.get_batch
            calls.append({"windows": seen, "n": len(data), **out})
            return out

        loop._validate = spy
        run = train(cfg, runs_dir=runs_dir)
        Path(report).write_text(json.dumps({"run": str(run), "calls": calls}))
    except BaseException:  # noqa: BLE001 - reported to the parent
        Path(report).write_text(json.dumps({"error": traceback.format_exc()}))
        raise


def test_ddp_validation_is_split_reduced_and_stops_together(demo_cache, tmp_path):
    cfg = _config()
    single = train(cfg, runs_dir=tmp_path / "single")
    torch.set_num_threads(1)  # the forked processes inherit it (and train.threads is 1)

    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    reports = [tmp_path / f"rank{r}.json" for r in range(WORLD)]
    procs = [
        ctx.Process(target=_rank_main, args=(r, port, cfg, str(tmp_path / "ddp"), str(reports[r])))
        for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(120)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
    got = [json.loads(r.read_text()) if r.is_file() else {"error": "no report"} for r in reports]
    for r, g in enumerate(got):
        assert "error" not in g, f"rank {r}: {g['error']}"
    assert [p.exitcode for p in procs] == [0] * WORLD

    (ddp,) = list((tmp_path / "ddp").iterdir())  # only rank 0 wrote a run directory
    rows, ref_rows = _metrics(ddp), _metrics(single)

    # (b) both processes validated epochs 1 and 2 and stopped there (early stopping, 3 epochs configured), with
    # the same scores, and rank 0 checked that they agree on the last and best epoch and the weights
    assert [int(r["epoch"]) for r in ref_rows] == [1, 2]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    calls0, calls1 = got[0]["calls"], got[1]["calls"]
    assert len(calls0) == len(calls1) == 2
    for a, b in zip(calls0, calls1):
        assert (a["val_loss"], a["val_nse"], a["val_kge"]) == (b["val_loss"], b["val_nse"], b["val_kge"])
    log = (ddp / "train.log").read_text()
    assert "all 2 processes stopped after epoch 2 with best epoch 1 and identical weights" in log
    assert "early stopping after epoch 2" in log
    state = json.loads((ddp / "checkpoint.json").read_text())
    assert state["best_epoch"] == 1 and state["finished"] is True and state["world_size"] == 2

    # (c) no window is validated twice: the two processes' windows are disjoint, cover the validation set,
    # and are half of it each; rank 0 logs the split
    for a, b in zip(calls0, calls1):
        n = a["n"]
        assert set(a["windows"]).isdisjoint(b["windows"])
        assert sorted(a["windows"] + b["windows"]) == list(range(n))
        assert abs(len(a["windows"]) - len(b["windows"])) <= 1
    half = len(calls0[0]["windows"])
    assert f"evaluated by 2 process(es) as {half} + {calls0[0]['n'] - half}" in log

    # (a) the per-epoch scores equal the single-process run's: to 1e-4 against the separately trained single
    # run (its weights differ from the DDP ones by the all-reduce's float32 round-off), and to 1e-6 against a
    # single-process validation of the DDP run's own weights (epoch 1: model.safetensors, the best epoch;
    # epoch 2: the checkpoint)
    keys = ["val_loss", "val_nse", "val_kge"]
    for a, b in zip(rows, ref_rows):
        assert [float(a[k]) for k in keys] == pytest.approx([float(b[k]) for k in keys], rel=1e-4, abs=1e-6)
    for row, call in zip(rows, calls0):
        assert [float(row[k]) for k in keys] == [call[k] for k in keys]  # the CSV holds the broadcast scores

    from hydroml.training import load_run
    from hydroml.training._data import prepare_data
    from hydroml.training.loop import _validate

    model, config, normaliser = load_run(ddp)
    data = prepare_data(config, normaliser=normaliser)
    ckpt = {
        k[len("model/") :]: v
        for k, v in load_file(str(ddp / "checkpoint.safetensors")).items()
        if "model/" in k
    }
    for row, weights in [(rows[0], None), (rows[1], ckpt)]:
        if weights is not None:
            model.load_state_dict(weights)
        one = _validate(
            model,
            data.validation,
            config,
            torch.device("cpu"),
            config.train.loss,
            data.val_basin_std,
            data.normaliser,
        )
        assert [one[k] for k in keys] == pytest.approx([float(row[k]) for k in keys], rel=1e-6, abs=1e-7)
