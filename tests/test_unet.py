"""The ``unet`` model: shapes, gradients, checkpointing and reversible options, receptive field."""

from __future__ import annotations

import copy

import pytest
import torch

from hydroml.exceptions import ConfigError
from hydroml.memory import SavedTensorCounter, apply, plan, probe_receptive_field, profile
from hydroml.models import create, list_models


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def _step(model, x):
    model.zero_grad(set_to_none=True)
    y = model({"x": x})["y_hat"]
    (y.square().mean() + y.mean()).backward()
    return y.detach(), _grads(model)


def test_registered_and_strict_config():
    assert "unet" in list_models()
    with pytest.raises(ConfigError, match="unknown config keys"):
        create("unet", in_channels=3, widht=8)
    with pytest.raises(ConfigError, match="padding_mode"):
        create("unet", in_channels=3, padding_mode="circular")
    with pytest.raises(ConfigError, match="depth"):
        create("unet", in_channels=3, depth=9)


@pytest.mark.parametrize("shape", [(2, 4, 37, 45), (1, 4, 16, 16), (1, 4, 9, 70)])
def test_forward_shape_any_size(shape):
    m = create("unet", in_channels=4, out_channels=3, base_width=4, depth=3)
    y = m({"x": torch.randn(*shape)})["y_hat"]
    assert y.shape == (shape[0], 3, *shape[2:])
    assert torch.isfinite(y).all()


def test_nan_inputs_filled():
    m = create("unet", in_channels=2, base_width=4, depth=2).eval()
    x = torch.randn(1, 2, 20, 20)
    x[..., 3:7, 3:7] = float("nan")
    y = m({"x": x})["y_hat"]
    assert torch.isfinite(y).all()
    assert torch.equal(y, m({"x": torch.nan_to_num(x)})["y_hat"])


@pytest.mark.parametrize("reversible", [False, True])
def test_checkpointing_does_not_change_outputs_or_grads(reversible):
    torch.manual_seed(0)
    m = create("unet", in_channels=3, out_channels=2, base_width=4, depth=3, reversible=reversible)
    x = torch.randn(1, 3, 16, 20)
    start = copy.deepcopy(m.state_dict())
    y0, g0 = _step(m, x)
    stats0 = [b.running_mean.clone() for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    m.load_state_dict(start)
    m.set_memory_schedule(True)
    assert m.checkpointing
    y1, g1 = _step(m, x)
    stats1 = [b.running_mean.clone() for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # batch-norm running statistics move once per step, recomputed or not
    assert len(stats0) > 0
    for a, b in zip(stats1, stats0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_planned_schedule_same_grads_and_less_memory():
    torch.manual_seed(1)
    m = create("unet", in_channels=3, base_width=4, depth=2)
    x = torch.randn(1, 3, 24, 24)
    y0, g0 = _step(m, x)
    prof = profile(m, {"x": x})
    sched = plan(prof, int(prof.peak_saved_bytes * 0.6))
    apply(m, sched)
    with SavedTensorCounter(exclude=[m]) as c:
        y1, g1 = _step(m, x)
    assert c.peak_bytes <= sched.predicted_peak_bytes <= sched.budget_bytes
    assert c.peak_bytes < prof.peak_saved_bytes
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_reversible_uses_less_memory_than_same_network_stored():
    torch.manual_seed(2)
    m = create("unet", in_channels=3, base_width=8, depth=2, reversible=True, reversible_blocks=3)
    x = torch.randn(1, 3, 24, 24)
    with SavedTensorCounter(exclude=[m]) as c_rev:
        y0, g0 = _step(m, x)
    for mod in m.modules():
        if hasattr(mod, "memory_saving"):
            mod.memory_saving = False
    with SavedTensorCounter(exclude=[m]) as c_std:
        y1, g1 = _step(m, x)
    assert c_rev.peak_bytes < 0.75 * c_std.peak_bytes
    torch.testing.assert_close(y0, y1, rtol=0, atol=1e-6)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("config", [dict(depth=1), dict(depth=2, kernel_size=5)])
def test_receptive_field_matches_probe(config):
    torch.manual_seed(3)
    m = create("unet", in_channels=2, base_width=4, **config).eval()
    rf = m.receptive_field()
    assert rf.stride == 2 ** config["depth"]
    assert rf.halo % rf.stride == 0 and rf.halo >= rf.radius
    probed = probe_receptive_field(m, 2, stride=rf.stride, trials=rf.stride)
    assert probed.stride == rf.stride
    # the configuration's radius is an upper bound that the probe reaches (it is tight)
    assert rf.radius - 2 <= probed.radius <= rf.radius


def test_receptive_field_reversible_is_an_upper_bound():
    m = create("unet", in_channels=2, base_width=4, depth=1, reversible=True, reversible_blocks=2).eval()
    rf = m.receptive_field()
    probed = probe_receptive_field(m, 2, stride=rf.stride, size=64)
    assert probed.stride == rf.stride
    assert probed.radius <= rf.radius
