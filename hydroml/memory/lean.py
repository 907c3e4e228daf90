"""Lean fused stages: norm + ReLU (+ pooling or up-sampling) + convolution keeping only the pre-norm tensor.

In a convolutional network PyTorch keeps about two full tensors per convolution for backward: the convolution's
output (the normalisation's input) and the ReLU's output (the next convolution's input), plus, for a 2x2 max
pooling, its output and its int64 indices, and for a transposed convolution, its output. :func:`act_conv`
computes ``conv(mid(relu(norm(x))))`` (``mid``: nothing, a 2x2 max pooling or a transposed convolution) as one
autograd function that keeps only ``x`` (and batch norm's per-channel mean and inverse standard deviation). Its
backward recomputes the cheap part, ``a = relu(norm(x))`` (pointwise) and ``mid(a)`` (a pooling, or a 2x2
transposed convolution, much cheaper than the 3x3 convolution after it), then calls the same ATen backward
kernels as autograd (``convolution_backward``, ``max_pool2d_with_indices_backward``, ``threshold_backward``,
``native_batch_norm_backward``): the convolution itself is never recomputed.

Outputs are bitwise those of the unfused modules (the forward runs the same kernels in the same order) and
gradients equal theirs to float32 round-off. Batch-norm running statistics are updated by the forward exactly as
``nn.BatchNorm2d`` does (``update=True``), or not at all (``update=False``: a second consumer of the same
normalised tensor, e.g. a U-Net skip connection used by the pooling and by the decoder).

The tensors the backward recomputes are counted by every active
:class:`~hydroml.memory.profile.SavedTensorCounter` while they live (:func:`~hydroml.memory.profile.hold`), so
measured peaks include them, and :func:`backward_extra_bytes` gives their size for the planner's cost model
(``StageCost.backward_extra_bytes``).

Training mode only: in ``eval()`` batch norm uses its running statistics and the unfused modules should be used
(``hydroml.models.unet`` does). Under autocast (mixed precision) :func:`act_conv` runs the unfused modules with
ordinary autograd (same result, no memory saved).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from hydroml.memory.profile import hold

__all__ = ["act_conv", "backward_extra_bytes", "placeholder_sum", "CHUNK_BYTES"]

_MIDS = ("none", "pool", "up")


def _bn_factor(bn: nn.BatchNorm2d, update: bool) -> tuple:
    """Running buffers and averaging factor of a training-mode batch norm (as ``_BatchNorm.forward``)."""
    if not (update and bn.track_running_stats):
        return None, None, 0.0
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    return bn.running_mean, bn.running_var, factor


def _pad(conv: nn.Conv2d) -> tuple[list[int], tuple | None]:
    """Convolution padding and, for non-zero padding modes, the explicit ``F.pad`` amounts."""
    if conv.padding_mode == "zeros":
        return list(conv.padding), None
    return [0, 0], tuple(conv._reversed_padding_repeated_twice)


def _pad_backward(grad: torch.Tensor, inp: torch.Tensor, mode: str, pad: tuple) -> torch.Tensor:
    if mode == "replicate":
        return torch.ops.aten.replication_pad2d_backward(grad, inp, list(pad))
    if mode == "reflect":
        return torch.ops.aten.reflection_pad2d_backward(grad, inp, list(pad))
    raise NotImplementedError(f"lean stages: padding_mode {mode!r}")  # pragma: no cover - refused by the unet


def _act(
    x: torch.Tensor,
    bn: nn.Module | None,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    mean: torch.Tensor | None,
    invstd: torch.Tensor | None,
) -> torch.Tensor:
    """``relu(norm(x))`` from saved statistics (bitwise the training-mode batch-norm output)."""
    if bn is None:
        return torch.relu(x)
    scale = invstd if gamma is None else gamma * invstd
    shift = -mean * scale if beta is None else beta - mean * scale
    c = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(c), x, scale.view(c)).relu_()


CHUNK_BYTES = 8 * 2**20
"""The backward recomputes ``relu(norm(x))`` over chunks of the batch of about this many bytes of ``x`` (at
least one sample): what it holds at once is a fraction of ``x`` (the gradient it writes is whole, as without
fusion). Weight gradients are summed over the chunks (float32 round-off)."""


def _chunks(x: torch.Tensor) -> list[slice]:
    B = x.shape[0]
    per = max(1, x[0].numel() * x.element_size()) if B else 1
    size = max(1, min(B, CHUNK_BYTES // per)) if B else 1
    return [slice(i, min(B, i + size)) for i in range(0, max(B, 1), size)]


def _chunk_backward(
    grad: torch.Tensor, x: torch.Tensor, spec: tuple, saved: tuple, needs: tuple, gy: torch.Tensor
) -> dict:
    """One chunk of the batch: recompute ``relu(norm(x))`` and ``mid``, back-propagate through the
    convolution and ``mid`` into ``gy`` (the gradient at the norm's output); weight gradients returned.

    ``spec`` is ``(bn, mid, conv, up)``, ``saved`` ``(gamma, beta, mean, invstd, mid_w, mid_b, w, b)``.
    """
    bn, mid, conv, up = spec
    gamma, beta, mean, invstd, mid_w, mid_b, w, b = saved
    a = _act(x, bn, gamma, beta, mean, invstd)
    held_a = hold(a)  # recomputed tensors count as kept while they live (measured peaks include them)
    idx = None
    if mid == "pool":
        m, idx = torch.ops.aten.max_pool2d_with_indices(a, [2, 2], [2, 2], [0, 0], [1, 1], False)
    elif mid == "up":
        m = F.conv_transpose2d(
            a, mid_w, mid_b, up.stride, up.padding, up.output_padding, up.groups, up.dilation
        )
    else:
        m = a
    held_m = hold(m, idx) if mid != "none" else []
    padding, pad = _pad(conv)
    mp = F.pad(m, pad, mode=conv.padding_mode) if pad is not None else m
    held_p = hold(mp) if pad is not None else []
    gm, gw, gb = torch.ops.aten.convolution_backward(
        grad, mp, w, None if b is None else [b.shape[0]], list(conv.stride), padding, list(conv.dilation),
        False, [0, 0], conv.groups, [True, needs[6], b is not None and needs[7]],
    )  # fmt: skip
    if pad is not None:
        gm = _pad_backward(gm, m, conv.padding_mode, pad)
    del mp, held_p
    gmw = gmb = None
    if mid == "pool":
        ga = torch.ops.aten.max_pool2d_with_indices_backward(
            gm, a, [2, 2], [2, 2], [0, 0], [1, 1], False, idx
        )
    elif mid == "up":
        ga, gmw, gmb = torch.ops.aten.convolution_backward(
            gm, a, mid_w, None if mid_b is None else [mid_b.shape[0]], list(up.stride), list(up.padding),
            list(up.dilation), True, list(up.output_padding), up.groups,
            [True, needs[4], mid_b is not None and needs[5]],
        )  # fmt: skip
    else:
        ga = gm
    del m, idx, gm, held_m
    torch.ops.aten.threshold_backward.grad_input(ga, a, 0, grad_input=gy)
    del a, ga, held_a
    return {"w": gw, "b": gb, "mid_w": gmw, "mid_b": gmb}


def _out_shape(x: torch.Tensor, mid: str, conv: nn.Conv2d, up: nn.ConvTranspose2d | None) -> tuple:
    B, _, H, W = x.shape
    sizes = [H, W]
    if mid == "pool":
        sizes = [n // 2 for n in sizes]
    elif mid == "up":
        sizes = [
            (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, s, p, d, k, op in zip(
                sizes, up.stride, up.padding, up.dilation, up.kernel_size, up.output_padding
            )
        ]
    out = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, s, p, d, k in zip(sizes, conv.stride, conv.padding, conv.dilation, conv.kernel_size)
    ]
    return (B, conv.out_channels, *out)


def _batch_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mean and inverse standard deviation, bitwise those of ``native_batch_norm`` in training mode,
    without computing the normalised tensor."""
    mean, var = torch.ops.aten.batch_norm_update_stats(x, None, None, 0.0)
    return mean, (var.double() + eps).rsqrt().to(var.dtype)


def _placeholder(x: torch.Tensor, shape: tuple) -> torch.Tensor:
    """A zero-stride stand-in (no memory) for an output whose values are not needed."""
    return x.new_zeros(()).expand(shape)


class _ActConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, x, gamma, beta, mid_w, mid_b, w, b):  # noqa: D401
        bn, update, mid, conv, up, discard, stats, stats_out = spec
        ctx.spec = (bn, mid, conv, up)
        if discard:  # only the graph is needed (the last stage of a recomputation): no convolution
            mean = invstd = None
            if bn is not None:  # the batch statistics, bitwise as in the forward (running ones untouched)
                mean, invstd = stats if stats is not None else _batch_stats(x, bn.eps)
            ctx.save_for_backward(x, gamma, beta, mean, invstd, mid_w, mid_b, w, b)
            if stats_out is not None:
                stats_out.extend((mean, invstd))
            return _placeholder(x, _out_shape(x, mid, conv, up))
        if bn is not None and stats is not None:  # known batch statistics (running ones already updated)
            mean, invstd = stats
            a = _act(x, bn, gamma, beta, mean, invstd)
        elif bn is not None:
            rm, rv, factor = _bn_factor(bn, update)
            y, mean, invstd = torch.ops.aten.native_batch_norm(x, gamma, beta, rm, rv, True, factor, bn.eps)
            a = y.relu_()
        else:
            mean = invstd = None
            a = torch.relu(x)
        if mid == "pool":
            m = F.max_pool2d(a, 2)
        elif mid == "up":
            m = up(a)
        else:
            m = a
        del a
        out = conv(m)
        ctx.save_for_backward(x, gamma, beta, mean, invstd, mid_w, mid_b, w, b)
        if stats_out is not None:
            stats_out.extend((mean, invstd))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        bn, mid, conv, up = ctx.spec
        x, *saved = ctx.saved_tensors
        gamma, beta, mean, invstd, mid_w, mid_b, w, b = saved
        needs = ctx.needs_input_grad
        gy = torch.empty_like(x)
        sums: dict = {}
        for sl in _chunks(x):
            parts = _chunk_backward(grad[sl], x[sl], ctx.spec, saved, needs, gy[sl])
            for k, g in parts.items():
                if g is not None:
                    sums[k] = g if k not in sums else sums[k].add_(g)
        gw, gb, gmw, gmb = (sums.get(k) for k in ("w", "b", "mid_w", "mid_b"))
        gx = ggamma = gbeta = None
        if bn is None:
            gx = gy
        else:
            gx, ggamma, gbeta = torch.ops.aten.native_batch_norm_backward(
                gy, x, gamma, None, None, mean, invstd, True, bn.eps,
                [needs[1], gamma is not None and needs[2], beta is not None and needs[3]],
            )  # fmt: skip
        return None, gx, ggamma, gbeta, gmw, gmb, gw, gb


def act_conv(
    x: torch.Tensor,
    norm: nn.Module | None,
    conv: nn.Conv2d,
    *,
    mid: str = "none",
    up: nn.ConvTranspose2d | None = None,
    update: bool = True,
    discard: bool = False,
    stats: tuple | None = None,
    stats_out: list | None = None,
) -> torch.Tensor:
    """``conv(mid(relu(norm(x))))`` keeping only ``x`` for backward (see the module docstring).

    Parameters
    ----------
    x : Tensor
        ``[B, C, H, W]``: the output of the previous convolution (before its normalisation).
    norm : nn.BatchNorm2d or None
        The normalisation (training mode); ``None`` or ``nn.Identity`` for ReLU alone.
    conv : nn.Conv2d
        The convolution (any padding mode but ``"circular"``).
    mid : {"none", "pool", "up"}
        Between the ReLU and the convolution: nothing, a 2x2 max pooling, or the transposed convolution ``up``.
    up : nn.ConvTranspose2d, optional
        With ``mid="up"``.
    update : bool
        Update the batch norm's running statistics (once per normalised tensor and step).
    discard : bool
        Only the autograd graph is needed, not the output's values (the last stage of a recomputed segment,
        ``hydroml.memory.checkpoint.output_discarded``): the convolution is skipped and a zero-stride placeholder
        returned; the backward is the same.
    stats : (Tensor, Tensor), optional
        The batch norm's batch mean and inverse standard deviation of ``x`` when already known (a second
        consumer of the same normalised tensor, ``update=False``): the normalisation reuses them, bitwise the
        same result without a second pass over ``x`` for the statistics.
    stats_out : list, optional
        Receives ``[mean, invstd]`` of this call (``None`` entries without batch norm).

    Returns
    -------
    Tensor
        Bitwise equal to the unfused modules' output (a placeholder with ``discard``).
    """
    if mid not in _MIDS:
        raise ValueError(f"act_conv: mid must be one of {_MIDS}, got {mid!r}")
    bn = None if norm is None or isinstance(norm, nn.Identity) else norm
    if bn is not None and not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise TypeError(f"act_conv: norm must be a batch norm or None, got {type(norm).__name__}")
    gamma = beta = None
    if bn is not None:
        gamma, beta = bn.weight, bn.bias
    if torch.is_autocast_enabled(x.device.type):
        # mixed precision (e.g. train.bf16): the fused backward would see other dtypes than its forward; run
        # the unfused modules instead (same result, ordinary stored activations)
        return _unfused(x, bn, conv, mid, up, update, stats_out)
    mid_w = up.weight if mid == "up" else None
    mid_b = up.bias if mid == "up" else None
    spec = (bn, update, mid, conv, up, bool(discard), stats, stats_out)
    return _ActConv.apply(spec, x, gamma, beta, mid_w, mid_b, conv.weight, conv.bias)


def _unfused(
    x: torch.Tensor,
    bn: nn.Module | None,
    conv: nn.Conv2d,
    mid: str,
    up: nn.ConvTranspose2d | None,
    update: bool,
    stats_out: list | None,
) -> torch.Tensor:
    """``conv(mid(relu(norm(x))))`` with the modules and ordinary autograd."""
    if bn is None:
        a = torch.relu(x)
    elif update:
        a = torch.relu(bn(x))
    else:  # batch statistics, running ones untouched
        a = torch.relu(F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps))
    if stats_out is not None:
        stats_out.extend((None, None))
    m = F.max_pool2d(a, 2) if mid == "pool" else up(a) if mid == "up" else a
    return conv(m)


class _PlaceholderSum(torch.autograd.Function):
    """``u + v`` for placeholders whose values are not needed: a placeholder, gradients passed to both."""

    @staticmethod
    def forward(ctx, u, v):  # noqa: D401
        return _placeholder(u, torch.broadcast_shapes(u.shape, v.shape))

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def placeholder_sum(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The sum of two discarded outputs of :func:`act_conv` (same shapes) as a placeholder with both graphs."""
    return _PlaceholderSum.apply(u, v)


def backward_extra_bytes(
    x: torch.Tensor,
    mid: str = "none",
    up: nn.ConvTranspose2d | None = None,
    padding_mode: str = "zeros",
    pad: int = 0,
) -> int:
    """Bytes :func:`act_conv`'s backward recomputes and holds at once (one chunk of the batch,
    :data:`CHUNK_BYTES`): ``relu(norm(x))``, plus the pooled tensor and its int64 indices or the transposed
    convolution's output, plus a padded copy for non-zero padding modes.

    Parameters
    ----------
    x : Tensor
        The input of :func:`act_conv`.
    mid : {"none", "pool", "up"}
        As for :func:`act_conv`.
    up : nn.ConvTranspose2d, optional
        With ``mid="up"``.
    padding_mode : str
        The convolution's padding mode.
    pad : int
        The convolution's padding (per side).

    Returns
    -------
    int
    """
    B = len(range(*_chunks(x)[0].indices(x.shape[0]))) if x.shape[0] else 0  # samples per backward chunk
    _, C, H, W = x.shape
    es = x.element_size()
    total = B * C * H * W * es
    h, w, c = H, W, C
    if mid == "pool":
        h, w = H // 2, W // 2
        total += B * C * h * w * (es + 8)
    elif mid == "up":
        c, h, w = up.out_channels, H * up.stride[0], W * up.stride[1]
        total += B * c * h * w * es
    if padding_mode != "zeros" and pad:
        total += B * c * (h + 2 * pad) * (w + 2 * pad) * es
    return int(total)
