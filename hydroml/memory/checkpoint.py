"""Executing checkpointing schedules on chains of stages, and time-chunked LSTM checkpointing.

The chain protocol
------------------
A :class:`Chain` is a list of stages (callables, usually ``nn.Module``\\ s) that map a *state* to the next state,
an initial state and a ``finish`` function turning the last state into the model's output. A state is a tensor
or a tuple of tensors; tensors a stage passes through unchanged (a U-Net's skip connections, the outputs of
earlier LSTM chunks) are recognised by identity and are not copied or recomputed.

:func:`as_chain` builds one from

- a model with ``memory_chain(batch) -> Chain`` (``hydroml.models.unet`` has one);
- an ``nn.Sequential`` (each child is a stage; the batch is the input tensor);
- an ``nn.LSTM`` (``batch = x`` or ``(x, (h0, c0))``), cut into chunks of ``chunk`` time steps;
- any *stateful* model (``forward(batch)`` accepting ``batch["state"] = (h, c)`` and returning ``"y_hat"``,
  ``"h_n"``, ``"c_n"``, like ``hydroml.models.lstm``) with ``chunk=``: chunks of time steps of ``x_dynamic``.

Execution
---------
:func:`run_chain` runs a :class:`~hydroml.memory.plan.Schedule`'s items: stored stages run normally, segments
run through :func:`checkpoint`, a custom autograd function (re-entrant style) that keeps only the segment's
input, re-runs the segment in backward with gradients (following its inner schedule, so nested segments work),
restores the RNG state (dropout masks match) and the running statistics of batch-norm layers (they are not
updated twice). In that recomputation the segment's outputs only seed the backward, so its last stage runs under
:func:`discarding` (:func:`output_discarded` is true): a stage that can may then build its autograd graph without
computing its output's values (the lean stages of :mod:`hydroml.memory.lean` skip their convolution). Its recomputation happens inside ``saved_tensors_hooks`` like any forward, so
:func:`hydroml.memory.profile` sees the true peak. Like ``use_reentrant=True`` checkpoints it supports
``loss.backward()`` but not ``torch.autograd.grad``; for that use ``impl="torch"``
(``torch.utils.checkpoint(use_reentrant=False)``).

LSTM over time
--------------
:func:`checkpoint_lstm` runs an ``nn.LSTM`` chunk by chunk (each chunk one call of the fused cuDNN/oneDNN
kernel), keeping only ``(h, c)`` at segment boundaries and recomputing chunks in backward::

    out, (h_n, c_n) = checkpoint_lstm(lstm, x, (h0, c0), chunk=20)            # sqrt(T)-style, one level
    costs = profile(lstm, (x, (h0, c0)), chunk=5)                              # measure 5-step chunks
    sched = plan(costs, "200MB")                                               # optimal nested schedule
    out, (h_n, c_n) = checkpoint_lstm(lstm, x, (h0, c0), chunk=5, schedule=sched)

For ``hydroml.models.lstm`` models, ``apply(model, sched)`` converts the schedule into the model's own
time-chunk format (:meth:`~hydroml.memory.plan.Schedule.to_time_items`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hydroml.exceptions import ConfigError
from hydroml.memory.plan import Schedule, Segment, Store

__all__ = [
    "Chain",
    "as_chain",
    "checkpoint",
    "run_chain",
    "apply",
    "CheckpointedChain",
    "checkpoint_lstm",
    "lstm_chain",
    "stateful_chain",
    "discarding",
    "output_discarded",
]

_DISCARD = [False]


@contextlib.contextmanager
def discarding(active: bool = True):
    """Run a stage whose output values will not be used, only its autograd graph (the last stage of a
    recomputed segment): inside, :func:`output_discarded` is ``active``."""
    prev = _DISCARD[0]
    _DISCARD[0] = bool(active)
    try:
        yield
    finally:
        _DISCARD[0] = prev


def output_discarded() -> bool:
    """Whether the stage now running may return placeholder output values (see :func:`discarding`)."""
    return _DISCARD[0]


@dataclass
class Chain:
    """A model as a chain of stages.

    Attributes
    ----------
    stages : list of callables
        ``state -> state`` functions (``nn.Module``\\ s for parameters, RNG and batch-norm handling).
    input : tensor or tuple of tensors
        The first stage's input state.
    finish : callable, optional
        Turns the last state into the model's output (identity if ``None``).
    names : list of str, optional
        Stage names for tables.
    steps : list of int, optional
        Time steps per stage (time chains).
    nests : list of (int, int), optional
        Nested sub-chains ``[p, q)`` (well nested): the state entering stage ``p`` passes through stages
        ``p..q-1`` (a skip connection) and is consumed by stage ``q``; a U-Net level. A checkpoint over
        exactly such a range keeps only its input, so the planner can recompute the skip connection.
    description : str
        One line on what the stages are (shown by ``Profile.table`` and ``hydroml memory plan``).
    """

    stages: list
    input: Any
    finish: Callable | None = None
    names: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    nests: list = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [
                f"{k}:{type(s).__name__}" if isinstance(s, nn.Module) else f"{k}"
                for k, s in enumerate(self.stages)
            ]
        if not self.steps:
            self.steps = [1] * len(self.stages)

    def output(self, state: Any) -> Any:
        return self.finish(state) if self.finish is not None else state


# --------------------------------------------------------------------------------------------------------------
# the checkpoint function


def _as_tuple(state: Any) -> tuple[tuple, bool]:
    if isinstance(state, torch.Tensor):
        return (state,), True
    if isinstance(state, tuple | list):
        for t in state:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"chain states are tensors or tuples of tensors, found {type(t).__name__}")
        return tuple(state), False
    raise TypeError(f"chain states are tensors or tuples of tensors, found {type(state).__name__}")


@contextlib.contextmanager
def _keep_bn_stats(modules: Sequence):
    """Restore batch-norm running statistics after a recomputation (so they are updated once per step)."""
    saved = []
    for mod in modules:
        if not isinstance(mod, nn.Module):
            continue
        for m in mod.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
                saved.append((m, [b.clone() if b is not None else None for b in _bn_buffers(m)]))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, bufs in saved:
                for b, s in zip(_bn_buffers(m), bufs):
                    if b is not None:
                        # through .data: autograd nodes that saved the buffer must not see a version change
                        b.data.copy_(s)


def _bn_buffers(m: nn.Module) -> list:
    return [m.running_mean, m.running_var, m.num_batches_tracked]


class _CheckpointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run, info, _dummy, *inputs):  # noqa: D401
        ctx.run = run
        ctx.info = info
        if info["preserve_rng"]:
            ctx.cpu_rng = torch.get_rng_state()
            ctx.cuda_devices = sorted(
                {t.device.index for t in inputs if t.is_cuda and t.device.index is not None}
            )
            ctx.cuda_rng = [torch.cuda.get_rng_state(d) for d in ctx.cuda_devices]
        with torch.no_grad():
            outs = run(inputs, info.get("discard", False))
        ids = {id(t): k for k, t in enumerate(inputs)}
        passthrough = [ids.get(id(o), -1) for o in outs]
        info["passthrough"] = passthrough
        new = tuple(o for o, p in zip(outs, passthrough) if p < 0)
        ctx.save_for_backward(*inputs)
        return new

    @staticmethod
    def backward(ctx, *grads):
        inputs = ctx.saved_tensors
        info = ctx.info
        detached = tuple(t.detach().requires_grad_(t.requires_grad) for t in inputs)
        rng = (
            torch.random.fork_rng(devices=ctx.cuda_devices)
            if info["preserve_rng"]
            else contextlib.nullcontext()
        )
        with rng, _keep_bn_stats(info["modules"]):
            if info["preserve_rng"]:
                torch.set_rng_state(ctx.cpu_rng)
                for d, s in zip(ctx.cuda_devices, ctx.cuda_rng):
                    torch.cuda.set_rng_state(s, d)
            with torch.enable_grad():
                outs = ctx.run(detached, True)  # the outputs only seed the backward: values not needed
        new = [o for o, p in zip(outs, info["passthrough"]) if p < 0]
        pairs = [(o, g) for o, g in zip(new, grads) if g is not None and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        del outs, new, pairs
        return (None, None, None, *(d.grad if d.requires_grad else None for d in detached))


def checkpoint(
    fn: Callable,
    state: Any,
    *,
    modules: Sequence = (),
    preserve_rng: bool = True,
    impl: str = "function",
    fn_discard: Callable | None = None,
    discard: bool = False,
) -> Any:
    """Run ``fn(state)`` keeping only ``state`` for backward; re-run ``fn`` during backward.

    Parameters
    ----------
    fn : callable
        ``state -> state``; a state is a tensor or a tuple of tensors. Output tensors that are input tensors
        (same object) pass through without being recomputed.
    state : tensor or tuple of tensors
        Input state.
    modules : sequence of nn.Module
        Modules ``fn`` runs (their batch-norm running statistics are restored after the recomputation).
    preserve_rng : bool
        Replay the forward's RNG state during recomputation (dropout masks match).
    impl : {"function", "torch"}
        ``"function"``: this module's autograd function (re-entrant style, visible to ``saved_tensors_hooks``
        during recomputation; ``backward()`` only). ``"torch"``: ``torch.utils.checkpoint.checkpoint`` with
        ``use_reentrant=False``.
    fn_discard : callable, optional
        ``fn`` for when its output values are not needed, only its autograd graph (:func:`discarding`); used for
        the recomputation (``impl="function"``). Default ``fn``.
    discard : bool
        The caller does not need this call's output values either (it is itself the last step of a
        recomputation): the first run uses ``fn_discard`` too.

    Returns
    -------
    tensor or tuple of tensors
        ``fn(state)``.
    """
    if not torch.is_grad_enabled():
        return fn(state)
    if impl == "torch":
        from torch.utils.checkpoint import checkpoint as _tc

        return _tc(fn, state, use_reentrant=False, preserve_rng_state=preserve_rng)
    if impl != "function":
        raise ConfigError(f"checkpoint impl must be 'function' or 'torch', got {impl!r}")
    ins, _ = _as_tuple(state)
    info: dict = {"preserve_rng": preserve_rng, "modules": list(modules), "discard": discard}

    def run(args: tuple, discard_out: bool = False) -> tuple:
        f = fn_discard if (discard_out and fn_discard is not None) else fn
        out = f(args[0] if isinstance(state, torch.Tensor) else tuple(args))
        outs, is_tensor = _as_tuple(out)
        info["out_is_tensor"] = is_tensor
        return outs

    dummy = torch.empty(0, requires_grad=True)
    new = _CheckpointFn.apply(run, info, dummy, *ins)
    if isinstance(new, torch.Tensor):
        new = (new,)
    it = iter(new)
    full = tuple(ins[p] if p >= 0 else next(it) for p in info["passthrough"])
    return full[0] if info["out_is_tensor"] else full


def run_chain(
    stages: Sequence,
    state: Any,
    items: Sequence | Schedule | None = None,
    *,
    impl: str = "function",
    discard: bool = False,
) -> Any:
    """Run a chain of stages following a schedule.

    Parameters
    ----------
    stages : sequence of callables
        The chain's stages.
    state : tensor or tuple of tensors
        Input of the first stage.
    items : Schedule or sequence of Store / Segment, optional
        The schedule; ``None`` stores every stage. Without gradients (``torch.no_grad``/``inference_mode``)
        stages simply run in order.
    impl : {"function", "torch"}
        Checkpoint implementation, see :func:`checkpoint`.
    discard : bool
        The last state's values are not needed, only its autograd graph (a recomputed segment): the last stage
        runs under :func:`discarding`.

    Returns
    -------
    tensor or tuple of tensors
        The last state.
    """
    if isinstance(items, Schedule):
        items = items.items
    if items is None:
        for k, s in enumerate(stages):
            with discarding(discard and k == len(stages) - 1):
                state = s(state)
        return state
    if not torch.is_grad_enabled():
        last = (
            len(stages) - 1
            if not items
            else (items[-1].stage if isinstance(items[-1], Store) else items[-1].stop - 1)
        )
        for it in items:
            lo, hi = (it.stage, it.stage + 1) if isinstance(it, Store) else (it.start, it.stop)
            for k in range(lo, hi):
                with discarding(discard and k == last):
                    state = stages[k](state)
        return state
    for n, it in enumerate(items):
        tail = discard and n == len(items) - 1
        if isinstance(it, Store):
            with discarding(tail):
                state = stages[it.stage](state)
        elif isinstance(it, Segment):
            inner = it.inner

            def seg(s, inner=inner, d=False):
                return run_chain(stages, s, inner, impl=impl, discard=d)

            state = checkpoint(
                seg, state, modules=stages[it.start : it.stop], impl=impl,
                fn_discard=lambda s, seg=seg: seg(s, d=True), discard=tail,
            )  # fmt: skip
        else:
            raise ConfigError(f"schedule items are Store or Segment, got {type(it).__name__}")
    return state


class CheckpointedChain(nn.Module):
    """An ``nn.Sequential`` (or list of stage modules) run under a schedule.

    Parameters
    ----------
    stages : nn.Sequential or sequence of nn.Module
        The chain.
    schedule : Schedule, optional
        The schedule (``None``: store everything).
    impl : {"function", "torch"}
        Checkpoint implementation.
    """

    def __init__(self, stages: Sequence[nn.Module], schedule: Schedule | None = None, impl: str = "function"):
        super().__init__()
        self.stages = nn.ModuleList(list(stages))
        if schedule is not None and schedule.n_stages != len(self.stages):
            raise ConfigError(f"schedule has {schedule.n_stages} stages but the chain has {len(self.stages)}")
        self.schedule = schedule
        self.impl = impl

    def forward(self, x: Any) -> Any:
        return run_chain(list(self.stages), x, self.schedule, impl=self.impl)


# --------------------------------------------------------------------------------------------------------------
# LSTM time chains


class _LSTMChunk(nn.Module):
    """Stage ``(x, [h, c,] *ys) -> (x, h, c, *ys, y)`` running ``lstm`` on steps ``[t0, t1)``."""

    def __init__(self, lstm: nn.LSTM, t0: int, t1: int, has_state: bool):
        super().__init__()
        self.lstm = lstm
        self.t0, self.t1, self.has_state = t0, t1, has_state

    def forward(self, state: tuple) -> tuple:
        if self.has_state:
            x, h, c, *ys = state
            hc = (h, c)
        else:
            x, *ys = state
            hc = None
        xs = x[:, self.t0 : self.t1] if self.lstm.batch_first else x[self.t0 : self.t1]
        y, (h, c) = self.lstm(xs, hc)
        return (x, h, c, *ys, y)


def _chunk_bounds(total: int, chunk: int) -> list[tuple[int, int]]:
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1 time step, got {chunk}")
    return [(t, min(total, t + chunk)) for t in range(0, total, chunk)]


def lstm_chain(lstm: nn.LSTM, x: torch.Tensor, state: tuple | None = None, chunk: int | None = None) -> Chain:
    """An ``nn.LSTM`` over ``x`` as a chain of time chunks.

    Parameters
    ----------
    lstm : nn.LSTM
        The recurrent layer (any ``num_layers``, ``batch_first`` either way; unidirectional).
    x : Tensor
        Input ``[B, T, F]`` (``batch_first``) or ``[T, B, F]``.
    state : (h0, c0), optional
        Initial state.
    chunk : int, optional
        Time steps per stage; default ``ceil(sqrt(T))``.

    Returns
    -------
    Chain
        Its ``finish`` returns ``(output, (h_n, c_n))`` like ``nn.LSTM``.
    """
    if lstm.bidirectional:
        raise ConfigError("time-chunked checkpointing needs a unidirectional LSTM (bidirectional=False)")
    T = x.shape[1] if lstm.batch_first else x.shape[0]
    chunk = chunk or max(1, math.ceil(math.sqrt(T)))
    bounds = _chunk_bounds(T, chunk)
    stages = [
        _LSTMChunk(lstm, a, b, has_state=(k > 0 or state is not None)) for k, (a, b) in enumerate(bounds)
    ]
    init = (x,) if state is None else (x, state[0], state[1])
    dim = 1 if lstm.batch_first else 0

    def finish(s: tuple):
        _, h, c, *ys = s
        return torch.cat(ys, dim=dim) if len(ys) > 1 else ys[0], (h, c)

    return Chain(stages, init, finish, [f"t{a}-{b - 1}" for a, b in bounds], [b - a for a, b in bounds])


def checkpoint_lstm(
    lstm: nn.LSTM,
    x: torch.Tensor,
    state: tuple | None = None,
    *,
    chunk: int | None = None,
    schedule: Schedule | Sequence | None = None,
    impl: str = "function",
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run ``lstm(x, state)`` with activation checkpointing over time.

    Parameters
    ----------
    lstm : nn.LSTM
        The layer.
    x : Tensor
        Input (``[B, T, F]`` if ``batch_first``).
    state : (h0, c0), optional
        Initial state.
    chunk : int, optional
        Steps per chunk; default ``ceil(sqrt(T))``.
    schedule : Schedule or items, optional
        A plan over the chunks (from :func:`hydroml.memory.plan` on ``profile(lstm, (x, state), chunk=chunk)``);
        default: every chunk but the last checkpointed (one level, ``sqrt(T)`` style when ``chunk`` is default).
    impl : {"function", "torch"}
        Checkpoint implementation.

    Returns
    -------
    (Tensor, (Tensor, Tensor))
        ``output, (h_n, c_n)`` equal to ``lstm(x, state)`` (gradients to float32 round-off).
    """
    chain = lstm_chain(lstm, x, state, chunk)
    n = len(chain.stages)
    if schedule is None:
        items: Sequence = [Segment(i, i + 1, (Store(i),)) for i in range(n - 1)] + [Store(n - 1)]
    else:
        items = schedule.items if isinstance(schedule, Schedule) else schedule
        if isinstance(schedule, Schedule) and schedule.n_stages != n:
            raise ConfigError(f"schedule has {schedule.n_stages} stages but the LSTM chain has {n} chunks")
    return chain.output(run_chain(chain.stages, chain.input, items, impl=impl))


class _StatefulChunk(nn.Module):
    """Stage ``([h, c,] *ys) -> (h, c, *ys, y)`` running a stateful model on steps ``[t0, t1)``."""

    def __init__(
        self, model: nn.Module, batch: dict, t0: int, t1: int, time_keys: Sequence[str], first: bool
    ):
        super().__init__()
        self.model = model
        self.batch = batch
        self.t0, self.t1, self.time_keys, self.first = t0, t1, tuple(time_keys), first

    def forward(self, state: tuple) -> tuple:
        sub = {
            k: (v[:, self.t0 : self.t1] if k in self.time_keys else v)
            for k, v in self.batch.items()
            if k != "state"
        }
        if self.first:
            ys = list(state)
            if "state" in self.batch and self.batch["state"] is not None:
                sub["state"] = self.batch["state"]
        else:
            h, c, *ys = state
            sub["state"] = (h, c)
        out = self.model(sub)
        return (out["h_n"], out["c_n"], *ys, out["y_hat"])


def stateful_chain(
    model: nn.Module, batch: dict, chunk: int, time_keys: Sequence[str] = ("x_dynamic",)
) -> Chain:
    """A stateful model (``batch["state"]`` in, ``"h_n"``/``"c_n"`` out) as a chain of time chunks.

    Parameters
    ----------
    model : nn.Module
        E.g. ``hydroml.models.create("lstm", ...)``.
    batch : dict
        Its batch; ``time_keys`` entries are ``[B, T, ...]``.
    chunk : int
        Time steps per stage.
    time_keys : sequence of str
        Batch entries sliced along time.

    Returns
    -------
    Chain
        Its ``finish`` returns the model's dict (``"y_hat"`` concatenated over time, ``"h_n"``, ``"c_n"``).
    """
    T = batch[time_keys[0]].shape[1]
    bounds = _chunk_bounds(T, chunk)
    stages = [_StatefulChunk(model, batch, a, b, time_keys, k == 0) for k, (a, b) in enumerate(bounds)]

    def finish(s: tuple) -> dict:
        h, c, *ys = s
        y = torch.cat(ys, dim=1) if len(ys) > 1 else ys[0]
        return {"y_hat": y, "h_n": h, "c_n": c, "state": (h, c)}

    return Chain(stages, (), finish, [f"t{a}-{b - 1}" for a, b in bounds], [b - a for a, b in bounds])


def as_chain(model: Any, batch: Any, *, chunk: int | None = None) -> Chain:
    """Describe ``model`` applied to ``batch`` as a :class:`Chain` (see the module docstring).

    Parameters
    ----------
    model : nn.Module or Chain
        The model.
    batch : Any
        Its input: a dict batch, a tensor (``nn.Sequential``), or ``x``/``(x, (h0, c0))`` (``nn.LSTM``).
    chunk : int, optional
        Time steps per stage for recurrent models.

    Returns
    -------
    Chain
    """
    if isinstance(model, Chain):
        return model
    if hasattr(model, "memory_chain"):
        return model.memory_chain(batch)
    if isinstance(model, nn.LSTM):
        if isinstance(batch, tuple | list):
            x, state = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            x, state = batch, None
        return lstm_chain(model, x, state, chunk)
    if isinstance(model, nn.Sequential | nn.ModuleList):
        return Chain(list(model), batch)
    if isinstance(batch, dict) and chunk is not None:
        return stateful_chain(model, batch, chunk)
    raise ConfigError(
        f"cannot cut a {type(model).__name__} into a chain of stages: give it a memory_chain(batch) method, "
        "use nn.Sequential, or pass chunk= for a stateful recurrent model"
    )


def apply(model: Any, schedule: Schedule, *, impl: str = "function") -> Any:
    """Make ``model`` run under ``schedule``.

    Parameters
    ----------
    model : nn.Module
        A model with ``set_memory_schedule`` (the ``unet``: set in place and returned), a model with
        ``set_checkpoint_schedule`` (``hydroml.models.lstm``: the schedule is converted to its time-chunk
        items), or an ``nn.Sequential`` (wrapped in a :class:`CheckpointedChain`).
    schedule : Schedule
        From :func:`hydroml.memory.plan`.
    impl : {"function", "torch"}
        Checkpoint implementation (for the wrappers of this module).

    Returns
    -------
    nn.Module
        The model to train.
    """
    if hasattr(model, "set_memory_schedule"):
        model.set_memory_schedule(schedule)
        return model
    if hasattr(model, "set_checkpoint_schedule"):
        model.set_checkpoint_schedule(schedule.to_time_items())
        return model
    if isinstance(model, nn.Sequential | nn.ModuleList):
        return CheckpointedChain(list(model), schedule, impl=impl)
    raise ConfigError(
        f"cannot apply a schedule to a {type(model).__name__}: use nn.Sequential, a model with "
        "set_memory_schedule/set_checkpoint_schedule, run_chain(chain.stages, ...) or checkpoint_lstm"
    )
