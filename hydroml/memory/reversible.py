"""Reversible residual coupling blocks: activation memory that does not grow with depth.

An additive coupling block splits its input channels in two halves :math:`x = (x_1, x_2)` and computes

.. math::

    y_1 = x_1 + F(x_2), \\qquad y_2 = x_2 + G(y_1),

whose inverse is exact in exact arithmetic:

.. math::

    x_2 = y_2 - G(y_1), \\qquad x_1 = y_1 - F(x_2).

:class:`ReversibleSequence` runs a stack of such blocks through a custom autograd function that keeps **only
the output of the whole stack**; in backward it walks the blocks in reverse, reconstructs each block's input
from its output, re-runs the block with gradients and back-propagates through it. Memory for the stack is one
block's activations instead of all of them, for one extra forward of ``F`` and ``G`` per block. ``F`` and ``G``
must be deterministic (no dropout); batch-norm running statistics are restored after the reconstruction so
they are updated once per step. In floating point the reconstructed inputs differ from the true ones by
round-off, so gradients match stored-activation training to float32 round-off (exactly up to ~1e-12 in
float64, which the tests check).

References
----------
Hascoet, T., Febvre, Q., Zhuang, W., Ariki, Y. and Takiguchi, T.: Reversible designs for extreme memory cost
reduction of CNN training, EURASIP Journal on Image and Video Processing 2023:1, 2023.
https://doi.org/10.1186/s13640-022-00599-6

Gomez, A. N., Ren, M., Urtasun, R. and Grosse, R. B.: The reversible residual network: backpropagation without
storing activations, NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hydroml.memory.checkpoint import _keep_bn_stats

__all__ = ["AdditiveCoupling", "ReversibleSequence"]


class AdditiveCoupling(nn.Module):
    """``y1 = x1 + F(x2); y2 = x2 + G(y1)`` on the two channel halves of ``x`` (dimension 1).

    Parameters
    ----------
    f, g : nn.Module
        Maps from ``C/2`` channels to ``C/2`` channels with the same spatial shape.
    """

    def __init__(self, f: nn.Module, g: nn.Module) -> None:
        super().__init__()
        self.f = f
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.chunk(x, 2, dim=1)
        y1 = x1 + self.f(x2)
        y2 = x2 + self.g(y1)
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input whose output is ``y``."""
        y1, y2 = torch.chunk(y, 2, dim=1)
        x2 = y2 - self.g(y1)
        x1 = y1 - self.f(x2)
        return torch.cat([x1, x2], dim=1)


class _ReversibleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, blocks, _dummy, x):
        ctx.blocks = blocks
        with torch.no_grad():
            y = x
            for b in blocks:
                y = b(y)
        ctx.save_for_backward(y)
        ctx.x_requires_grad = x.requires_grad
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        y = y.detach()
        blocks = ctx.blocks
        with _keep_bn_stats(blocks):
            for b in reversed(blocks):
                with torch.no_grad():
                    x = b.inverse(y)
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    out = b(x)
                torch.autograd.backward(out, grad)
                grad = x.grad
                y = x.detach()
                del out, x
        return None, None, grad


class ReversibleSequence(nn.Module):
    """A stack of reversible blocks kept in memory by its output only.

    Parameters
    ----------
    blocks : sequence of AdditiveCoupling
        Blocks with ``forward`` and ``inverse``.
    memory_saving : bool
        ``True``: reconstruct activations in backward (the custom autograd function). ``False``: ordinary
        autograd storing every activation (the reference the tests compare with).
    """

    def __init__(self, blocks: Sequence[nn.Module], memory_saving: bool = True) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.memory_saving = memory_saving

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_saving and torch.is_grad_enabled():
            dummy = torch.empty(0, requires_grad=True)
            return _ReversibleFn.apply(list(self.blocks), dummy, x)
        for b in self.blocks:
            x = b(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for b in reversed(self.blocks):
            y = b.inverse(y)
        return y
