"""Two-pass tiled training on catchment sums equals whole-grid training (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hydroml.exceptions import ConfigError
from hydroml.memory import SavedTensorCounter, catchment_backward, catchment_sums
from hydroml.models import create


def _problem(H=40, W=52, K=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, size=(H, W))
    labels[:, :6] = -1  # cells outside every catchment (ocean)
    rows, cols = np.nonzero(labels >= 0)
    area = rng.uniform(0.5, 1.5, size=rows.size)
    w = sp.csr_matrix((area, (labels[rows, cols], rows * W + cols)), shape=(K, H * W))
    x = rng.normal(size=(2, 3, H, W))
    x[:, :, :3, 10:20] = np.nan
    target = torch.from_numpy(rng.normal(size=(2, 1, K)) * 50)
    return x, w, target


def _model(depth=2):
    torch.manual_seed(0)
    return create("unet", in_channels=3, out_channels=1, base_width=4, depth=depth, norm="none").double()


def test_gradients_equal_whole_grid_float64():
    x, w, target = _problem(36, 44)
    m = _model()

    def loss_fn(s):
        return ((s - target) ** 2).mean()

    step = catchment_backward(m, x, w, loss_fn, tile=16)
    g_tiled = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    y = m({"x": torch.from_numpy(np.nan_to_num(x))})["y_hat"]  # whole grid
    wt = torch.from_numpy(w.toarray())
    sums = y.flatten(2) @ wt.T  # [B, O, K]
    loss = loss_fn(sums)
    loss.backward()
    assert step.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    torch.testing.assert_close(step.sums, sums.detach(), rtol=1e-12, atol=1e-10)
    for a, p in zip(g_tiled, m.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-9, atol=1e-11)


def test_pass_one_sums_and_memory_bounded_by_tile():
    x, w, target = _problem(48, 48)
    m = _model(depth=1)
    with torch.no_grad():
        whole = (
            m({"x": torch.from_numpy(np.nan_to_num(x))})["y_hat"].flatten(2) @ torch.from_numpy(w.toarray()).T
        )
    torch.testing.assert_close(catchment_sums(m, x, w, tile=16), whole, rtol=1e-12, atol=1e-10)
    with SavedTensorCounter(exclude=[m]) as c_tiled:
        catchment_backward(m, x, w, lambda s: ((s - target) ** 2).mean(), tile=16)
    with SavedTensorCounter(exclude=[m]) as c_whole:
        y = m({"x": torch.from_numpy(np.nan_to_num(x))})["y_hat"]
        ((y.flatten(2) @ torch.from_numpy(w.toarray()).T - target) ** 2).mean().backward()
    assert c_tiled.peak_bytes < c_whole.peak_bytes / 1.5


def test_refuses_batch_norm_in_training_mode():
    x, w, target = _problem(16, 16)
    m = create("unet", in_channels=3, base_width=4, depth=2).double()
    with pytest.raises(ConfigError, match="batch norm"):
        catchment_backward(m, x, w, lambda s: s.sum(), tile=16)


@pytest.mark.parametrize("batch_tile", [1, 2])
def test_batch_tiles_give_the_same_gradients(batch_tile):
    x, w, target = _problem(36, 44)
    x = np.concatenate([x, x[:1] * 0.5])  # 3 samples: chunks of 1 and of 2 (+1)
    target = torch.cat([target, target[:1]])

    def loss_fn(s):
        return ((s - target) ** 2).mean()

    m = _model()
    ref = catchment_backward(m, x, w, loss_fn, tile=16)
    g_ref = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    step = catchment_backward(m, x, w, loss_fn, tile=16, batch_tile=batch_tile)
    torch.testing.assert_close(step.sums, ref.sums, rtol=1e-12, atol=1e-10)
    for a, p in zip(g_ref, m.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-10, atol=1e-12)


def test_equal_tiles_are_one_shape_aligned_and_cover_their_halo():
    from hydroml.memory import tiles

    for shape, tile, halo, stride in [
        ((720, 1440), 192, 112, 16),
        ((37, 45), 16, 8, 4),
        ((30, 200), 64, 12, 4),
    ]:
        ts = tiles(shape, tile, halo, stride, equal=True)
        H, W = shape
        covered = np.zeros(shape, int)
        for t in ts:
            covered[t.r0 : t.r1, t.c0 : t.c1] += 1
            assert t.wr0 % stride == 0 and t.wc0 % stride == 0
            assert t.wr0 == 0 or t.wr0 <= t.r0 - halo
            assert t.wc0 == 0 or t.wc0 <= t.c0 - halo
            assert t.wr1 == H or t.wr1 >= t.r1 + halo
            assert t.wc1 == W or t.wc1 >= t.c1 + halo
        assert (covered == 1).all()
        sizes = {(t.wr1 - t.wr0, t.wc1 - t.wc0) for t in ts}
        assert max(s[0] for s in sizes) - min(s[0] for s in sizes) < stride
        assert max(s[1] for s in sizes) - min(s[1] for s in sizes) < stride
