"""Hessian-vector products of a model's loss, by double backward or ``torch.func`` (forward over reverse).

The loss is the mean over a fixed list of batches, ``L(theta) = (1/n) sum_i loss(model, batch_i)``, so

.. math::

    H v = \\nabla_\\theta (\\nabla_\\theta L \\cdot v) = \\frac{1}{n} \\sum_i \\nabla_\\theta
          (\\nabla_\\theta \\ell_i \\cdot v)

is computed one batch at a time (Pearlmutter, 1994): the memory is that of one batch's double backward, about
twice a backward pass, never the ``P x P`` Hessian. Models with activation checkpointing
(``torch.utils.checkpoint`` with ``use_reentrant=False``, as hydroml's LSTM and U-Net use) differentiate twice
through the recomputation, so a planned memory budget holds for the diagnostics too.

The fused CPU LSTM kernel (``hydroml.models._fused_lstm``) has a first-order backward only; it is used in
training mode, and :class:`HessianOperator` runs the model in ``eval()`` mode (no dropout, batch-norm running
statistics, the ``nn.LSTM`` path), which is the network that is deployed.

Reference: Pearlmutter, B. A. (1994): Fast exact multiplication by the Hessian, Neural Computation 6, 147-160.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["HessianOperator", "flatten", "unflatten"]

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(vector[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


class _LossModule(nn.Module):
    """``forward(batch) = loss(model, batch)``, so ``torch.func.functional_call`` can swap the parameters."""

    def __init__(self, model: nn.Module, loss: LossFn) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss(self.model, batch)


class HessianOperator:
    """The Hessian of a model's mean loss over fixed batches, as a matrix-free operator on flat vectors.

    Parameters
    ----------
    model : torch.nn.Module
        The network. It is put in ``eval()`` mode while the operator is used (restored by :meth:`close`).
    loss : callable
        ``loss(model, batch) -> scalar tensor``.
    batches : sequence
        The batches the loss averages over (equal weights).
    params : sequence of torch.nn.Parameter, optional
        The parameters (default: all that require gradients).
    method : {"double_backward", "func"}
        ``"double_backward"``: ``torch.autograd.grad`` twice; ``"func"``: ``torch.func.jvp`` of
        ``torch.func.grad`` (forward-over-reverse; needs forward-mode AD for every operation: ``nn.LSTM`` on
        CPU has it, the result equals double backward to round-off in ``tests/test_diagnostics.py``).

    Attributes
    ----------
    n : int
        Number of parameters (the Hessian is ``n x n``).
    matvecs : int
        Hessian-vector products computed so far (each costs one double backward per batch).

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> op = HessianOperator(lin, lambda m, b: (m(b) ** 2).mean(), [x])
    >>> op.matvec(torch.tensor([1.0, 1.0]))   # H = x^T x = diag(1, 4)
    tensor([1., 4.])
    """

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn,
        batches: Sequence[Any],
        params: Sequence[torch.Tensor] | None = None,
        method: str = "double_backward",
    ) -> None:
        from hydroml.exceptions import ConfigError

        if method not in ("double_backward", "func"):
            raise ConfigError(f"hessian method: expected 'double_backward' or 'func', found {method!r}")
        if not batches:
            raise ConfigError("HessianOperator: no batches given")
        self.model, self.loss, self.batches, self.method = model, loss, list(batches), method
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        if params is not None:
            ids = {id(p) for p in params}
            named = [(k, p) for k, p in named if id(p) in ids]
        self.names = [k for k, _ in named]
        self.params = [p for _, p in named]
        self.n = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.matvecs = 0
        self._was_training = model.training
        model.eval()

    def close(self) -> None:
        """Restore the model's training mode."""
        self.model.train(self._was_training)

    def __enter__(self) -> HessianOperator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def vector(self) -> torch.Tensor:
        """The current parameters as one flat vector (a copy)."""
        return flatten([p.detach() for p in self.params]).clone()

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """The mean loss and its gradient (flat) at the current parameters."""
        total, grad = 0.0, torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for batch in self.batches:
            loss = self.loss(self.model, batch)
            g = torch.autograd.grad(loss, self.params, allow_unused=True)
            grad += flatten([torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, self.params)])
            total += float(loss.detach())
        k = len(self.batches)
        return total / k, grad / k

    @torch.no_grad()
    def loss_value(self) -> float:
        """The mean loss at the current parameters."""
        return sum(float(self.loss(self.model, b)) for b in self.batches) / len(self.batches)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v`` of length :attr:`n`."""
        v = v.to(dtype=self.dtype, device=self.device)
        vs = unflatten(v, self.params)
        out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for batch in self.batches:
            hv = (
                self._hvp_double(batch, vs) if self.method == "double_backward" else self._hvp_func(batch, vs)
            )
            out += flatten(hv)
        self.matvecs += 1
        return out / len(self.batches)

    __call__ = matvec

    def _hvp_double(self, batch: Any, vs: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.enable_grad():
            loss = self.loss(self.model, batch)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
            pairs = [(g, v) for g, v in zip(grads, vs) if g is not None and g.requires_grad]
            if not pairs:
                return [torch.zeros_like(p) for p in self.params]
            dot = sum((g * v).sum() for g, v in pairs)
            hv = torch.autograd.grad(dot, self.params, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, self.params)]

    def _hvp_func(self, batch: Any, vs: list[torch.Tensor]) -> list[torch.Tensor]:
        from torch.func import functional_call, grad, jvp

        wrapper = _LossModule(self.model, self.loss)
        names = [f"model.{k}" for k in self.names]

        def loss_of(*ps: torch.Tensor) -> torch.Tensor:
            return functional_call(wrapper, dict(zip(names, ps)), (batch,))

        primals = tuple(p.detach() for p in self.params)
        _, hv = jvp(grad(loss_of, argnums=tuple(range(len(primals)))), primals, tuple(vs))
        return [h.detach() for h in hv]

    def dense(self) -> torch.Tensor:
        """The full ``n x n`` Hessian, column by column (``n`` products: for tiny models and tests only)."""
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.n)], dim=1)
