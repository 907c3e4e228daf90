"""The nested planner: U-Net levels checkpointed whole, so skip connections are recomputed, not kept."""

from __future__ import annotations

import pytest
import torch

from hydroml.exceptions import ConfigError
from hydroml.memory import SavedTensorCounter, apply, min_budget, plan, profile
from hydroml.memory.plan import Segment, plan_nested
from hydroml.models import create


def _step(model, x):
    model.zero_grad(set_to_none=True)
    y = model({"x": x})["y_hat"]
    (y.square().mean() + y.mean()).backward()
    return y.detach(), [p.grad.detach().clone() for p in model.parameters()]


def _unet(**kw):
    torch.manual_seed(3)
    return create("unet", in_channels=3, base_width=4, depth=3, **kw)


def test_unet_profile_has_levels_and_skip_sizes():
    m = _unet()
    x = torch.randn(2, 3, 32, 32)
    prof = profile(m, {"x": x})
    names = [s.name for s in prof.stages]
    assert prof.nests == [
        (names.index(f"enc{lvl + 1}.pool_conv1"), names.index(f"dec{lvl}.up_conv1")) for lvl in range(3)
    ]
    p0 = prof.nests[0][0]
    # the level-0 skip connection (4 channels at full size) enters the pass-through bytes at the first pooling
    assert prof.stages[p0].through_bytes - prof.stages[p0 - 1].through_bytes == 2 * 4 * 32 * 32 * 4
    assert prof.output_bytes == 2 * 1 * 32 * 32 * 4


def test_nested_plan_beats_flat_minimum_with_exact_gradients():
    m = _unet()
    x = torch.randn(2, 3, 32, 32)
    ref = _unet()
    y0, g0 = _step(ref, x)
    prof = profile(m, {"x": x})
    flat_min = min_budget(prof.stages, persistent_bytes=prof.persistent_bytes)  # skips kept: the flat bound
    budget = min_budget(prof)
    assert budget < flat_min
    with_levels = plan(prof, budget)

    # some level is checkpointed whole (its skip connection is recomputed)
    def segments(items):
        for it in items:
            if isinstance(it, Segment):
                yield it
                yield from segments(it.inner)

    assert set(prof.nests) & {(s.start, s.stop) for s in segments(with_levels.items)}
    apply(m, with_levels)
    with SavedTensorCounter(exclude=[m]) as c:
        y1, g1 = _step(m, x)
    assert c.peak_bytes <= with_levels.predicted_peak_bytes <= budget
    assert c.peak_bytes < prof.peak_saved_bytes / 3
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the flat planner alone cannot meet this budget
    with pytest.raises(ConfigError):
        plan(prof.stages, budget, persistent_bytes=prof.persistent_bytes)


def test_nested_predictions_bound_measurements_across_budgets():
    m = _unet()
    x = torch.randn(1, 3, 48, 48)
    prof = profile(m, {"x": x})
    lo = min_budget(prof)
    recs = []
    for frac in (1.0, 1.3, 1.8, 2.5):
        sched = plan_nested(prof, int(lo * frac))
        assert sched is not None and sched.predicted_peak_bytes <= int(lo * frac)
        apply(m, sched)
        with SavedTensorCounter(exclude=[m]) as c:
            _step(m, x)
        assert c.peak_bytes <= sched.predicted_peak_bytes
        recs.append(sched.recompute_s)
    # recomputation falls as the budget grows
    assert recs[-1] <= recs[0]
