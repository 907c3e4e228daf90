"""Streaming recurrent inference in time chunks equals one pass."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hydroml.memory import stream_predict


class _Tiny(nn.Module):
    """The stateful contract: batch["state"] = (h, c) optional; returns y_hat, h_n, c_n."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8 + 2, 1)

    def forward(self, batch):
        out, (h, c) = self.lstm(batch["x_dynamic"], batch.get("state"))
        s = batch["x_static"][:, None].expand(-1, out.shape[1], -1)
        return {"y_hat": self.head(torch.cat([out, s], -1)), "h_n": h, "c_n": c}


def test_chunks_equal_one_pass_and_outputs():
    torch.manual_seed(0)
    m = _Tiny().eval()
    batch = {"x_dynamic": torch.randn(2, 60, 3), "x_static": torch.randn(2, 2)}
    with torch.no_grad():
        ref = m(batch)
    res = stream_predict(m, batch, chunk=7)
    torch.testing.assert_close(res["y_hat"], ref["y_hat"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res["h_n"], ref["h_n"], rtol=1e-5, atol=1e-6)
    out = np.zeros((2, 60, 1), np.float32)
    seen = []
    res2 = stream_predict(
        m, {"x_dynamic": batch["x_dynamic"].numpy(), "x_static": batch["x_static"]}, chunk=25, out=out,
        on_chunk=lambda t0, t1, r: seen.append((t0, t1)),
    )  # fmt: skip
    assert res2["y_hat"] is out and seen == [(0, 25), (25, 50), (50, 60)]
    np.testing.assert_allclose(out, ref["y_hat"].numpy(), rtol=1e-5, atol=1e-6)


def test_with_registry_lstm():
    from hydroml.models import create

    torch.manual_seed(1)
    m = create("lstm", n_dynamic=3, n_static=2, hidden_size=8).eval()
    batch = {"x_dynamic": torch.randn(2, 40, 3), "x_static": torch.randn(2, 2)}
    with torch.no_grad():
        ref = m(batch)["y_hat"]
    torch.testing.assert_close(stream_predict(m, batch, chunk=9)["y_hat"], ref, rtol=1e-5, atol=1e-6)


def test_small_batches_run_on_one_thread_and_large_ones_keep_theirs(monkeypatch):
    """``recurrent_threads``: one intra-op thread while the per-step work is a small matrix-vector product,
    the caller's thread count for large batches, restored afterwards in both cases."""
    from hydroml.memory.streaming import SERIAL_STEP_MACS, recurrent_threads
    from hydroml.models import create

    m = create("lstm", n_dynamic=3, hidden_size=8).eval()
    seen: list[int] = []
    forward = m.forward
    monkeypatch.setattr(m, "forward", lambda b: (seen.append(torch.get_num_threads()), forward(b))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stream_predict(m, {"x_dynamic": torch.randn(2, 30, 3)}, chunk=10)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        big = SERIAL_STEP_MACS // (4 * 8 * 8)  # batch size at which the step is no longer "small"
        with recurrent_threads(m, big, "cpu"):
            assert torch.get_num_threads() == 2
        with recurrent_threads(m, big - 1, "cpu"):
            assert torch.get_num_threads() == 1
        with recurrent_threads(object(), 1, "cpu"):  # no hidden_size: left alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
