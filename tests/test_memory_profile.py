"""The saved-tensor counter and profile() against hand-computed sizes."""

from __future__ import annotations

import torch
from torch import nn

from hydroml.memory import SavedTensorCounter, profile

F32 = 4


def _saved(fn, *inputs, exclude=()):
    with SavedTensorCounter(exclude=exclude) as c:
        out = fn(*inputs)
    return c.window_bytes, out


def test_hand_computed_sizes():
    x = torch.randn(4, 8, requires_grad=True)
    lin = nn.Linear(8, 16)
    n, _ = _saved(lin, x, exclude=[lin])
    assert n == 4 * 8 * F32  # the input (the weight is a parameter, not counted)
    n, _ = _saved(torch.relu, x)
    assert n == 4 * 8 * F32  # ReLU keeps its output
    n, _ = _saved(torch.sigmoid, x)
    assert n == 4 * 8 * F32
    img = torch.randn(2, 3, 8, 8, requires_grad=True)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    n, _ = _saved(conv, img, exclude=[conv])
    assert n == 2 * 3 * 8 * 8 * F32
    n, _ = _saved(nn.MaxPool2d(2), img)
    assert n == 2 * 3 * 8 * 8 * F32 + 2 * 3 * 4 * 4 * 8  # input + int64 indices
    # deduplication by storage: x * x saves x twice, and a view of x is the same storage
    n, _ = _saved(lambda t: t * t[:, :4].repeat(1, 2), x)
    assert n == 4 * 8 * F32 + 4 * 8 * F32  # x once, the repeated copy once


def test_peak_and_release():
    seq = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(16, 8)
    with SavedTensorCounter(exclude=[seq]) as c:
        y = seq(x)
        assert c.current_bytes == 3 * 16 * 8 * F32  # x, tanh1 (= input of linear 2), tanh2
        y.sum().backward()
        del y
    assert c.peak_bytes == 3 * 16 * 8 * F32
    assert c.current_bytes == 0


def test_profile_stages_and_step():
    seq = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    p = profile(seq, torch.randn(4, 8))
    assert [s.saved_bytes for s in p.stages] == [128, 256, 256]
    assert [s.input_bytes for s in p.stages] == [128, 256, 256]
    assert p.stages[2].shared_prev_bytes == 256  # ReLU's output is Linear's input
    assert p.total_saved_bytes == 128 + 256
    assert p.peak_saved_bytes == 128 + 256 + 4 * 4 * F32  # + the loss keeps the output
    assert "measured peak" in p.table()
    assert all(q.grad is None for q in seq.parameters())


def test_profile_lstm_chunks():
    lstm = nn.LSTM(3, 8, batch_first=True)
    p = profile(lstm, torch.randn(2, 20, 3), chunk=5)
    assert len(p.stages) == 4 and [s.steps for s in p.stages] == [5, 5, 5, 5]
    assert p.stages[1].input_bytes == 2 * 1 * 2 * 8 * F32  # (h, c)
    assert p.persistent_bytes >= 2 * 20 * 3 * F32  # the input passes through every chunk
