"""Reversible coupling blocks: exact reconstruction and gradients equal to stored activations (float64)."""

from __future__ import annotations

import torch
from torch import nn

from hydroml.memory import AdditiveCoupling, ReversibleSequence, SavedTensorCounter


def _stack(n=4, c=4, memory_saving=True):
    def f():
        return nn.Sequential(nn.Conv2d(c // 2, c // 2, 3, padding=1), nn.BatchNorm2d(c // 2), nn.ReLU())

    return ReversibleSequence([AdditiveCoupling(f(), f()) for _ in range(n)], memory_saving=memory_saving)


def test_inverse_reconstructs_input():
    torch.manual_seed(0)
    rev = _stack().double().eval()
    x = torch.randn(2, 4, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(rev.inverse(rev(x)), x, rtol=0, atol=1e-12)


def test_gradients_match_stored_activations_float64():
    torch.manual_seed(1)
    rev = _stack().double()
    ref = _stack(memory_saving=False).double()
    ref.load_state_dict(rev.state_dict())
    x = torch.randn(3, 4, 12, 12, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w = torch.randn(3, 4, 12, 12, dtype=torch.float64)
    ya, yb = rev(xa), ref(xb)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(ya, yb, rtol=0, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    for (n, p), q in zip(rev.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=n)
    # running statistics updated once, as with stored activations
    for a, b in zip(rev.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b)


def test_memory_does_not_grow_with_depth():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    peaks = {}
    for n in (2, 8):
        for saving in (True, False):
            rev = _stack(n, memory_saving=saving)
            with SavedTensorCounter(exclude=[rev]) as c:
                rev(x).sum().backward()
            peaks[n, saving] = c.peak_bytes
    assert peaks[8, True] == peaks[2, True]  # only the stack's output is kept
    assert peaks[8, False] > 3 * peaks[2, False] / 2
