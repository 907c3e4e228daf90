"""The unet's lean stages (``lean=True``): same outputs, gradients and running statistics as the plain model,
about half the kept activations, planner schedules on top, eval and tiled inference unchanged."""

from __future__ import annotations

import pytest
import torch

import hydroml.memory.lean as lean_mod
from hydroml.exceptions import ConfigError
from hydroml.memory import SavedTensorCounter, apply, min_budget, plan, profile, tiled_predict
from hydroml.models import create


def _pair(out_channels=2, **kw):
    torch.manual_seed(0)
    plain = create("unet", in_channels=3, out_channels=out_channels, base_width=4, **kw)
    lean = create("unet", in_channels=3, out_channels=out_channels, base_width=4, lean=True, **kw)
    lean.load_state_dict(plain.state_dict())
    return plain, lean


def _step(model, x):
    model.zero_grad(set_to_none=True)
    with SavedTensorCounter(exclude=[model]) as counter:
        y = model({"x": x})["y_hat"]
        (y.square().mean() + y.mean()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    bufs = {n: b.detach().clone() for n, b in model.named_buffers()}
    return y.detach(), grads, bufs, counter.peak_bytes


def _assert_same(ref, got):
    y0, g0, b0, _ = ref
    y1, g1, b1, _ = got
    assert torch.equal(y0, y1)  # the forward runs the same kernels in the same order: bitwise
    assert g0.keys() == g1.keys()
    # float32 round-off, relative to each gradient and to the model's largest (some are 0 up to round-off: an
    # up-sampling bias before a batch norm with replicate padding)
    top = max(float(g.abs().max()) for g in g0.values())
    for n in g0:
        scale = float(g0[n].abs().max())
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-5 * scale + 1e-6 * top, msg=n)
    assert b0.keys() == b1.keys()
    for n in b0:  # batch-norm running statistics updated once per step, bitwise as the plain modules do
        assert torch.equal(b0[n], b1[n]), n


@pytest.mark.parametrize("chunk_bytes", [None, 2000])
@pytest.mark.parametrize(
    "config",
    [
        dict(depth=2, norm="batch"),
        dict(depth=3, norm="batch"),
        dict(depth=3, norm="none"),
        dict(depth=2, norm="batch", padding_mode="replicate"),
        dict(depth=2, norm="none", padding_mode="reflect"),
    ],
)
def test_lean_equals_plain(config, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:  # the backward's chunks over the batch (several per step at this size)
        monkeypatch.setattr(lean_mod, "CHUNK_BYTES", chunk_bytes)
    plain, lean = _pair(**config)
    x = torch.randn(3, 3, 37, 45)  # odd sizes: padded to the stride and cropped back
    x[0, 1, 5:9, 7:12] = float("nan")
    for _ in range(2):  # two steps: the running statistics keep agreeing
        ref, got = _step(plain, x), _step(lean, x)
        _assert_same(ref, got)
    if config["norm"] == "batch":
        assert got[3] < 0.6 * ref[3]  # about half the kept activations


def test_lean_with_planner_schedule():
    plain, lean = _pair(depth=3)
    x = torch.randn(2, 3, 48, 40)
    prof = profile(lean, {"x": x})
    assert "lean stages" in prof.description
    assert len(prof.stages) == len(lean.stages()) < len(plain.stages())
    assert any(s.backward_extra_bytes > 0 for s in prof.stages)  # the recomputed norm + ReLU, in the model
    ref_plain = _step(plain, x)
    ref_lean = _step(lean, x)
    assert abs(ref_lean[3] - prof.peak_saved_bytes) <= 0.05 * prof.peak_saved_bytes
    for frac in (2.5, 4.0):
        budget = max(int(ref_plain[3] / frac), min_budget(prof))
        sched = plan(prof, budget)
        assert sched.recompute_s > 0
        plain2, lean2 = _pair(depth=3)
        apply(lean2, sched)
        ref, got = _step(plain2, x), _step(lean2, x)
        _assert_same(ref, got)
        # the measured peak (recomputed tensors included) stays within the predicted one
        assert got[3] <= sched.predicted_peak_bytes <= budget


def test_lean_checkpoint_every_stage():
    plain, lean = _pair(depth=2)
    lean.set_memory_schedule(True)
    x = torch.randn(2, 3, 20, 24)
    _assert_same(_step(plain, x), _step(lean, x))


def test_lean_eval_and_tiling_unchanged():
    plain, lean = _pair(depth=2)
    plain.eval(), lean.eval()
    x = torch.randn(1, 3, 70, 52)
    with torch.no_grad():
        y0 = plain({"x": x})["y_hat"]
        y1 = lean({"x": x})["y_hat"]
    assert torch.equal(y0, y1)
    tiled = tiled_predict(lean, x[0], tile=32, progress=False)
    assert float((torch.as_tensor(tiled) - y0[0]).abs().max()) <= 1e-5
    # in training mode without gradients (e.g. the first pass of catchment training) the plain stages run
    plain.train(), lean.train()
    with torch.no_grad():
        assert torch.equal(plain({"x": x})["y_hat"], lean({"x": x})["y_hat"])


def test_lean_config():
    with pytest.raises(ConfigError, match="lean"):
        create("unet", in_channels=3, lean=True, reversible=True)
    with pytest.raises(ConfigError, match="lean"):
        create("unet", in_channels=3, lean=True, norm="group")
    m = create("unet", in_channels=3, base_width=4, depth=2, lean=True)
    assert m.config["lean"] is True
    assert create("unet", in_channels=3).config["lean"] is False  # the default: plain stages
    plain = create("unet", in_channels=3, base_width=4, depth=2)
    assert list(m.state_dict()) == list(plain.state_dict())
    with pytest.raises(ConfigError, match="stages"):
        m.set_memory_schedule(plan(profile(plain, {"x": torch.randn(1, 3, 16, 16)}), 10**12))


def test_recomputed_segment_skips_its_last_convolution():
    """Checkpointing every lean stage: each recomputation is a segment's last stage, whose output values are not
    needed, so no lean stage runs a convolution in backward (only the plain first convolution is recomputed)."""
    plain, lean = _pair(depth=2)
    lean.set_memory_schedule(True)
    calls: dict = {}
    for name, mod in lean.named_modules():
        if isinstance(mod, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            mod.register_forward_hook(
                lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1)
            )
    x = torch.randn(2, 3, 20, 24)
    _assert_same(_step(plain, x), _step(lean, x))
    assert calls.pop("chain.0.op") == 2  # enc0.conv1 is a plain stage: run again in backward
    assert set(calls.values()) == {1}  # every other convolution ran once, in the forward


def test_memory_plan_cli_shows_lean(tmp_path, capsys):
    from hydroml.cli import main

    cfg = tmp_path / "plan.yaml"
    cfg.write_text(
        "model:\n  name: unet\n  in_channels: 3\n  base_width: 4\n  depth: 2\n  lean: true\n"
        "batch:\n  x: [1, 3, 32, 32]\nmemory_budget: 100KB\n"
    )
    assert main(["memory", "plan", str(cfg), "--measure"]) == 0
    out = capsys.readouterr().out
    assert "lean stages (lean=True)" in out and "backward+" in out and "measured peak" in out
    cfg.write_text(cfg.read_text().replace("  lean: true\n", ""))
    assert main(["memory", "plan", str(cfg)]) == 0
    assert "lean=True would keep about half" in capsys.readouterr().out


def test_lean_catchment_training_float64():
    """Tiled catchment-sum training (no-grad pass one on plain stages, pass two on lean ones) in float64 equals
    the plain model's whole-grid gradients to float64 round-off."""
    import numpy as np
    import scipy.sparse as sp

    from hydroml.memory import catchment_backward

    rng = np.random.default_rng(0)
    H, W, K = 36, 44, 4
    labels = rng.integers(0, K, size=(H, W))
    rows, cols = np.nonzero(labels >= 0)
    w = sp.csr_matrix((np.ones(rows.size), (labels[rows, cols], rows * W + cols)), shape=(K, H * W))
    x = rng.normal(size=(2, 3, H, W))
    target = torch.from_numpy(rng.normal(size=(2, 1, K)) * 50)
    plain, lean = _pair(out_channels=1, depth=2, norm="none")
    plain.double(), lean.double()

    def loss_fn(s):
        return ((s - target) ** 2).mean()

    catchment_backward(lean, x, w, loss_fn, tile=16)
    y = plain({"x": torch.from_numpy(x)})["y_hat"]
    loss_fn(y.flatten(2) @ torch.from_numpy(w.toarray()).T).backward()
    for (n, a), b in zip(plain.named_parameters(), lean.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-11, msg=n)


def test_lean_under_autocast_falls_back_to_plain_ops():
    plain, lean = _pair(depth=2)
    x = torch.randn(2, 3, 20, 24)
    res = []
    for m in (plain, lean):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m({"x": x})["y_hat"]
        y.float().square().mean().backward()
        res.append((y.detach(), [p.grad.clone() for p in m.parameters()]))
    assert torch.equal(res[0][0], res[1][0])
    for a, b in zip(res[0][1], res[1][1]):
        torch.testing.assert_close(b, a, rtol=1e-2, atol=1e-3)
