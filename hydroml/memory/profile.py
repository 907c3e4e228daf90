"""Measuring what a model keeps for backward, stage by stage, on any machine.

:class:`SavedTensorCounter` installs ``torch.autograd.graph.saved_tensors_hooks`` and tracks every tensor
autograd saves for backward, **deduplicated by storage** (two views of one buffer count once) and excluding the
model's parameters and buffers (they are not activations). It knows when a saved tensor is released (the
packed handle is dropped by autograd), so it reports both the bytes saved in a window and the **peak of live
saved bytes** over a whole training step, including recomputation inside
:func:`hydroml.memory.checkpoint.checkpoint`.

It does not see kernel workspaces outside tensors saved through autograd (e.g. oneDNN's LSTM buffers), nor
the recomputation of ``torch.utils.checkpoint(use_reentrant=False)`` (which swaps in its own hooks); for those
use ``torch.profiler`` (``profile_memory=True``), ``torch.cuda.max_memory_allocated`` or the process peak, as
``benchmarks/bench_memory.py`` does.

Hand-checkable sizes (float32): ``nn.Linear`` saves its input (``4 B * batch * in``); ``nn.Conv2d`` its input;
``nn.ReLU``, ``torch.sigmoid`` and ``torch.tanh`` their output; ``nn.MaxPool2d`` its input and the int64 indices
of its output.

Example
-------
>>> import torch
>>> from torch import nn
>>> from hydroml.memory import profile
>>> p = profile(nn.Sequential(nn.Linear(8, 16), nn.ReLU()), torch.randn(4, 8))
>>> [s.saved_bytes for s in p.stages]
[128, 256]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hydroml.memory.checkpoint import Chain, as_chain, discarding
from hydroml.memory.plan import StageCost, format_bytes

__all__ = ["SavedTensorCounter", "Profile", "profile", "storage_key", "state_bytes", "hold"]

_ACTIVE: list = []  # the SavedTensorCounters entered and not yet exited (innermost last)


def storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    """``(data_ptr, nbytes)`` of the storage behind ``t`` (``None`` for storage-less tensors).

    Sparse tensors count the bytes of their values and indices (keyed by the tensor's identity).
    """
    if t.layout != torch.strided:
        total = 0
        for name in ("values", "crow_indices", "col_indices", "ccol_indices", "row_indices", "_indices"):
            try:
                part = getattr(t, name)()
            except (RuntimeError, AttributeError, NotImplementedError):
                continue
            total += part.numel() * part.element_size()
        return id(t), total
    try:
        st = t.untyped_storage()
        return st.data_ptr(), st.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        try:
            return id(t), t.numel() * t.element_size()
        except Exception:  # pragma: no cover - exotic tensor subclasses
            return None


def state_bytes(state: Any, exclude: set | None = None) -> int:
    """Bytes of the distinct storages of the tensors in ``state`` (a tensor, or nested tuples/lists/dicts)."""
    seen: dict[int, int] = {}
    for t in _tensors(state):
        key = storage_key(t)
        if key is None or (exclude and key[0] in exclude):
            continue
        seen[key[0]] = max(seen.get(key[0], 0), key[1])
    return int(sum(seen.values()))


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, tuple | list):
        for v in obj:
            yield from _tensors(v)


class _Packed:
    __slots__ = ("tensor", "key", "counter", "__weakref__")

    def __init__(self, tensor: torch.Tensor, key: int | None, counter: SavedTensorCounter):
        self.tensor = tensor
        self.key = key
        self.counter = counter

    def __del__(self) -> None:
        if self.key is not None:
            self.counter._release(self.key)


class SavedTensorCounter:
    """Context manager counting tensors saved for backward, deduplicated by storage.

    Parameters
    ----------
    exclude : iterable of nn.Module or Tensor, optional
        Modules / tensors whose storages are not counted (parameters and buffers).

    Attributes
    ----------
    current_bytes : int
        Bytes of the distinct storages held by live saved tensors now.
    peak_bytes : int
        Peak of ``current_bytes`` while the counter was active.
    window_bytes : int
        Bytes of the distinct storages saved since the last :meth:`reset_window`.
    """

    def __init__(self, exclude: Iterable = ()) -> None:
        self._exclude: set[int] = set()
        for obj in exclude:
            tensors = (
                list(obj.parameters()) + list(obj.buffers())
                if isinstance(obj, nn.Module)
                else list(_tensors(obj))
            )
            for t in tensors:
                key = storage_key(t)
                if key is not None:
                    self._exclude.add(key[0])
        self._live: dict[int, list[int]] = {}  # ptr -> [refcount, nbytes]
        self.current_bytes = 0
        self.peak_bytes = 0
        self._window: dict[int, int] = {}
        self._hooks = None

    def _pack(self, t: torch.Tensor) -> Any:
        # keep a detached alias (same storage and version counter): holding ``t`` itself would make a reference
        # cycle through its grad_fn when autograd saves an output, freed only by the garbage collector
        t = t.detach()
        key = storage_key(t)
        if key is None or key[0] in self._exclude or key[1] == 0:
            return _Packed(t, None, self)
        ptr, nbytes = key
        entry = self._live.get(ptr)
        if entry is None:
            self._live[ptr] = [1, nbytes]
            self.current_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        else:
            entry[0] += 1
        self._window[ptr] = nbytes
        return _Packed(t, ptr, self)

    @staticmethod
    def _unpack(p: _Packed) -> torch.Tensor:
        return p.tensor

    def _release(self, ptr: int) -> None:
        entry = self._live.get(ptr)
        if entry is None:  # pragma: no cover
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current_bytes -= entry[1]
            del self._live[ptr]

    @property
    def window_bytes(self) -> int:
        return int(sum(self._window.values()))

    def reset_window(self) -> None:
        """Start a new window for :attr:`window_bytes`."""
        self._window = {}

    def reset_peak(self) -> None:
        """Set the peak to the current level."""
        self.peak_bytes = self.current_bytes

    def __enter__(self) -> SavedTensorCounter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None
        if self in _ACTIVE:
            _ACTIVE.remove(self)


def hold(*tensors: torch.Tensor | None) -> list:
    """Count tensors that a custom backward recomputes (not saved through autograd) as kept activations.

    Every active :class:`SavedTensorCounter` counts them (deduplicated by storage, as saved tensors) until the
    returned handles are dropped, so measured peaks include what a backward rematerialises (e.g.
    :mod:`hydroml.memory.lean`). Without an active counter this costs nothing.

    Parameters
    ----------
    *tensors : Tensor or None
        The recomputed tensors (``None`` entries are ignored).

    Returns
    -------
    list
        Handles; drop them (``del``) when the tensors are freed.
    """
    return [c._pack(t) for c in _ACTIVE for t in tensors if t is not None]


@dataclass
class Profile:
    """Per-stage costs of a model and the peak of one training step.

    Attributes
    ----------
    stages : list of StageCost
        Per stage: saved bytes, input-state bytes, forward seconds, time steps.
    peak_saved_bytes : int
        Peak of live saved-for-backward bytes during one unchanged forward + backward step.
    total_saved_bytes : int
        Distinct bytes saved by the whole forward.
    step_s : float
        Wall time of that step.
    cuda_max_allocated : int or None
        ``torch.cuda.max_memory_allocated`` during the step (CUDA only).
    persistent_bytes : int
        Largest size of the tensors a stage passes through unchanged (skip connections, the LSTM input):
        kept whatever the flat schedule; stage ``saved_bytes`` and ``input_bytes`` exclude them.
    nests : list of (int, int)
        Nested stage ranges of the chain (``Chain.nests``, a U-Net's levels): :func:`hydroml.memory.plan`
        may checkpoint them whole, recomputing their skip connection instead of keeping it.
    output_bytes : int
        Bytes of the chain's last state (the model output, which a loss usually keeps for its backward; the
        nested planner reserves them).
    description : str
        The chain's own description (``Chain.description``, e.g. the unet's lean stages), shown by
        :meth:`table`.
    """

    stages: list = field(default_factory=list)
    peak_saved_bytes: int = 0
    total_saved_bytes: int = 0
    step_s: float = 0.0
    cuda_max_allocated: int | None = None
    persistent_bytes: int = 0
    nests: list = field(default_factory=list)
    output_bytes: int = 0
    description: str = ""

    def table(self) -> str:
        """The per-stage table as text (``backward+``: bytes a stage's backward recomputes and holds)."""
        w = max([len(s.name) for s in self.stages] + [5])
        lines = [self.description] if self.description else []
        lines.append(f"{'stage':<{w}}  {'saved':>12}  {'input':>12}  {'backward+':>12}  {'forward ms':>10}")
        for s in self.stages:
            lines.append(
                f"{s.name:<{w}}  {format_bytes(s.saved_bytes):>12}  {format_bytes(s.input_bytes):>12}  "
                f"{format_bytes(s.backward_extra_bytes):>12}  {s.forward_s * 1e3:>10.2f}"
            )
        lines.append(
            f"{'total':<{w}}  {format_bytes(sum(s.saved_bytes for s in self.stages)):>12}  {'':>12}  {'':>12}  "
            f"{sum(s.forward_s for s in self.stages) * 1e3:>10.2f}"
        )
        lines.append(
            f"kept whatever the schedule (passed through stages): {format_bytes(self.persistent_bytes)}"
        )
        lines.append(f"measured peak of saved bytes in one step: {format_bytes(self.peak_saved_bytes)}")
        if self.cuda_max_allocated is not None:
            lines.append(f"cuda max_memory_allocated: {format_bytes(self.cuda_max_allocated)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "peak_saved_bytes": self.peak_saved_bytes,
            "total_saved_bytes": self.total_saved_bytes,
            "step_s": self.step_s,
            "cuda_max_allocated": self.cuda_max_allocated,
            "persistent_bytes": self.persistent_bytes,
            "nests": [list(n) for n in self.nests],
            "output_bytes": self.output_bytes,
            "description": self.description,
        }


def _default_loss(out: Any) -> torch.Tensor:
    if isinstance(out, dict):
        out = out["y_hat"]
    if isinstance(out, tuple | list):
        out = out[0]
    return out.float().square().mean()


def _device_of(model: Any, batch: Any) -> torch.device:
    for t in _tensors(batch):
        return t.device
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def profile(
    model: Any,
    batch: Any,
    *,
    chunk: int | None = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    step: bool = True,
    warmup: bool = True,
    repeat: int = 2,
) -> Profile:
    """Measure a model stage by stage (see the module docstring).

    Parameters
    ----------
    model : nn.Module or Chain
        The model; cut into stages by :func:`hydroml.memory.checkpoint.as_chain` (the ``unet``'s stages, an
        ``nn.Sequential``'s children, chunks of time steps of an ``nn.LSTM`` or of a stateful model).
    batch : Any
        Its input.
    chunk : int, optional
        Time steps per stage for recurrent models.
    loss_fn : callable, optional
        Output -> scalar for the measured training step; default mean square of ``y_hat`` (or of the output).
    step : bool
        Also measure one unchanged forward + backward step (peak of saved bytes, time, CUDA peak).
    warmup : bool
        Run the chain once before timing the stages.
    repeat : int
        Runs of each stage; the fastest time is kept (shared machines are noisy).

    Returns
    -------
    Profile
    """
    chain: Chain = as_chain(model, batch, chunk=chunk)
    exclude = [model] if isinstance(model, nn.Module) else list(chain.stages)
    exclude += [s for s in chain.stages if isinstance(s, nn.Module)]
    device = _device_of(model, batch)
    loss_fn = loss_fn or _default_loss
    if warmup:
        with torch.no_grad():
            state = chain.input
            for s in chain.stages:
                state = s(state)
        del state
    costs = []
    with torch.enable_grad(), SavedTensorCounter(exclude=exclude) as counter:
        excl = counter._exclude
        state = chain.input
        persistent = 0
        prev_window: dict[int, int] = {}
        for name, steps, s in zip(chain.names, chain.steps, chain.stages):
            ins = list(_tensors(state))
            dt = math.inf
            for _ in range(max(1, repeat)):
                out = None
                counter.reset_window()
                _sync(device)
                t0 = time.perf_counter()
                out = s(state)
                _sync(device)
                dt = min(dt, time.perf_counter() - t0)
            extra = int(getattr(s, "backward_extra_bytes", 0) or 0)  # declared by lean stages
            out_ids = {id(t) for t in _tensors(out)}
            through = [t for t in ins if id(t) in out_ids]
            through_keys = {k[0] for k in map(storage_key, through) if k is not None}
            kept = [t for t in ins if id(t) not in out_ids]
            inp = state_bytes(kept, excl | through_keys)
            window = {ptr: b for ptr, b in counter._window.items() if ptr not in through_keys}
            in_keys = {k[0]: k[1] for k in map(storage_key, kept) if k is not None and k[0] not in excl}
            through_b = state_bytes(through, excl)
            persistent = max(persistent, through_b)
            discard_s = None
            if getattr(s, "discardable", False):  # its time as the last stage of a recomputed segment
                with torch.no_grad(), discarding():
                    _sync(device)
                    t0 = time.perf_counter()
                    s(state)
                    _sync(device)
                    discard_s = min(dt, time.perf_counter() - t0)  # never above the full forward
            costs.append(
                StageCost(
                    name,
                    int(sum(window.values())),
                    inp,
                    dt,
                    steps,
                    shared_prev_bytes=int(sum(b for ptr, b in window.items() if ptr in prev_window)),
                    shared_input_bytes=int(sum(b for ptr, b in window.items() if ptr in in_keys)),
                    input_saved_prev_bytes=int(sum(b for ptr, b in in_keys.items() if ptr in prev_window)),
                    through_bytes=through_b,
                    through_saved_prev_bytes=state_bytes(
                        [t for t in through if (k := storage_key(t)) is not None and k[0] in prev_window],
                        excl,
                    ),
                    backward_extra_bytes=extra,
                    discard_forward_s=discard_s,
                )
            )
            prev_window = window
            state = out
        total = counter.current_bytes
        out_bytes = state_bytes(state, excl)
        del state, out, ins, kept, through
    result = Profile(
        stages=costs,
        total_saved_bytes=int(total),
        persistent_bytes=int(persistent),
        nests=[tuple(n) for n in getattr(chain, "nests", [])],
        output_bytes=int(out_bytes),
        description=str(getattr(chain, "description", "") or ""),
    )
    if step:
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        with torch.enable_grad(), SavedTensorCounter(exclude=exclude) as counter:
            _sync(device)
            t0 = time.perf_counter()
            state = chain.input
            for s in chain.stages:
                state = s(state)
            loss = loss_fn(chain.output(state))
            del state
            loss.backward()
            _sync(device)
            result.step_s = time.perf_counter() - t0
            result.peak_saved_bytes = int(counter.peak_bytes)
        if isinstance(model, nn.Module):
            model.zero_grad(set_to_none=True)
        if cuda:
            result.cuda_max_allocated = int(torch.cuda.max_memory_allocated(device))
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
