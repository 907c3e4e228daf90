"""Checkpointing schedules under a memory budget: a dynamic programme over a chain of stages.

A model is seen as a chain ``s_0 -> s_1 -> ... -> s_{n-1}`` of stages (layers of a CNN, chunks of time steps of
an LSTM). For each stage :func:`hydroml.memory.profile` measures

- ``saved_bytes`` :math:`a_i`: what the stage keeps for backward when it runs normally (its "store" cost);
- ``input_bytes`` :math:`x_i`: the size of its input state (what a checkpoint at its start keeps);
- ``forward_s`` :math:`f_i`: its forward time (what recomputing it costs);
- ``discard_forward_s`` :math:`d_i` (default :math:`f_i`): its forward time when only its autograd graph is
  needed, not its output's values. The last stage of a recomputed segment is in that case (the segment's
  outputs only seed the backward); a fused stage that keeps just its input (``hydroml.memory.lean``) then skips
  its convolution, so a segment costs :math:`F(i, k) = \\sum_{i \\le l < k-1} f_l + d_{k-1}`.

A :class:`Schedule` is a sequence of items, each either :class:`Store` (run stage ``i`` normally and keep its
saved tensors) or :class:`Segment` (run stages ``[start, stop)`` without keeping anything but their input;
during backward, re-run them following the segment's own inner schedule, which may again contain segments:
multi-level, revolve-style nesting for budgets below what one level of checkpoints reaches).

Cost model
----------
Walking the items forward, item ``t`` holds :math:`h_t = a_i` (store) or :math:`x_{start}` (segment) until its
backward. Item ``t``'s backward runs while the items before it still hold their memory, so the peak of kept
activation bytes is

.. math::

    P = \\max_t \\Big(\\sum_{u<t} h_u + c_t\\Big),\\qquad c_t = a_i \\text{ (store)},\\quad
    c_t = x_{start} + P(\\text{inner}) \\text{ (segment)}

and the recomputation is :math:`R = \\sum_{\\text{segments}} \\big(\\sum_{i\\in[start,stop)} f_i +
R(\\text{inner})\\big)`. :func:`plan` minimises :math:`R` subject to :math:`P \\le` budget with the recurrence

.. math::

    C(i, j, m) = \\min\\Big( C(i+1, j, m - a_i)\\ [a_i \\le m],\\ \\min_{i<k<j} F(i,k) + C(i,k,m-x_i) +
    C(k,j,m-x_i) \\Big)

over segments ``[i, j)`` and memory ``m`` (discretised in ``slots`` steps, rounding costs up), the discrete
dynamic programme of optimal checkpointing for heterogeneous chains (Beaumont et al. 2019, the rotor
planner) restricted to nested segments; for homogeneous chains it reproduces revolve's binomial schedules
(Griewank & Walther 2000). Storing a whole segment is the ``store`` branch taken repeatedly.

Nested sub-chains (U-Net levels)
--------------------------------
A chain may declare ``nests``: stage ranges ``[p, q)`` whose input passes through every stage of the range (a
U-Net's skip connection, pushed by the pooling stage ``p`` and consumed by the up-sampling stage ``q``). The flat
programme above keeps such tensors whatever the schedule (``persistent_bytes``), which bounds what it can reach
for a U-Net. :func:`plan` then also runs a nested planner (:func:`plan_nested`): every level is one stage of
its parent level's chain, either run under its own schedule or checkpointed whole, keeping only its input, so
the skip connections of a checkpointed level are recomputed in backward instead of kept. Levels are planned
bottom-up with the same programme, each given a menu of (peak, held bytes, recomputation) options of the level
below; the plan with less recomputation of the two is returned. The nested model counts each skip connection
once, from its level's start to the backward of its consumer, and reserves the chain's output bytes (the loss
keeps them).

The model is conservative: tensors shared between two holders (a checkpoint's input that the first stored
stage of the segment also saves, a U-Net skip kept by several boundaries) are counted twice, so the measured
peak is at most the predicted one. Gradients, parameters and optimiser state are not activations and are not
in the budget.

References
----------
Griewank, A. and Walther, A.: Algorithm 799: revolve, ACM TOMS 26(1), 19-45, 2000.
Beaumont, O., Herrmann, J., Pallez, G. and Shilova, A.: Optimal memory-aware backpropagation of deep join
networks / Optimal checkpointing for heterogeneous chains, Inria RR-9302, 2019 (rotor).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hydroml.exceptions import ConfigError

__all__ = [
    "StageCost",
    "Store",
    "Segment",
    "Schedule",
    "plan",
    "min_budget",
    "sqrt_schedule",
    "store_all",
    "evaluate",
    "parse_bytes",
    "format_bytes",
    "plan_nested",
]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_bytes(value: str | int | float) -> int:
    """Parse a memory size such as ``"1.5GB"``, ``"512 MiB"`` or ``2_000_000``.

    Decimal units (``KB``, ``MB``, ``GB``, ``TB``, or ``K``, ``M``, ``G``, ``T``) are powers of 1000; binary units
    (``KiB``, ``MiB``, ``GiB``, ``TiB``) powers of 1024. Case and spaces are ignored.

    Parameters
    ----------
    value : str, int or float
        The size; numbers are bytes.

    Returns
    -------
    int
        Bytes (rounded down).

    Raises
    ------
    ConfigError
        If the text is not a non-negative number with a known unit.

    Examples
    --------
    >>> parse_bytes("1.5GB")
    1500000000
    >>> parse_bytes("2 GiB")
    2147483648
    """
    if isinstance(value, bool):
        raise ConfigError(f"memory size must be a number of bytes or a string like '1.5GB', got {value!r}")
    if isinstance(value, int | float | np.integer | np.floating):
        if not math.isfinite(float(value)) or value < 0:
            raise ConfigError(f"memory size must be a non-negative number of bytes, got {value!r}")
        return int(value)
    text = str(value).strip().replace("_", "")
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ConfigError(
            f"cannot read memory size {value!r}: expected a number and a unit among "
            "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. '1.5GB'"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(n: float) -> str:
    """Format a byte count with a binary unit, e.g. ``'1.50 GiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # pragma: no cover


@dataclass(frozen=True)
class StageCost:
    """Measured (or estimated) costs of one stage of a chain.

    Attributes
    ----------
    name : str
        Stage name.
    saved_bytes : int
        Bytes the stage keeps for backward when run normally (deduplicated by storage, parameters excluded).
    input_bytes : int
        Bytes of the stage's input state (what a checkpoint at this stage keeps).
    forward_s : float
        Forward time in seconds (the recomputation cost).
    steps : int
        Time steps in the stage (time chains; 1 otherwise).
    shared_prev_bytes : int
        Part of ``saved_bytes`` also saved by the previous stage (a ReLU's output that the next layer saves
        as its input): not paid twice when both are stored.
    shared_input_bytes : int
        Part of ``saved_bytes`` that is the stage's input: free when a checkpoint already keeps that input.
    input_saved_prev_bytes : int
        Part of ``input_bytes`` the previous stage saves: a checkpoint here costs that much less after a stored
        stage.
    through_bytes : int
        Bytes of the input tensors the stage passes through unchanged (skip connections); excluded from
        ``saved_bytes`` and ``input_bytes``. Used by the nested planner (:func:`plan` with ``nests``).
    through_saved_prev_bytes : int
        Part of ``through_bytes`` that the previous stage saves (a skip connection that is also the previous
        activation's output).
    backward_extra_bytes : int
        Transient bytes above ``saved_bytes`` during the stage's backward (a stage that is itself a
        checkpointed sub-network peaks above what it holds between its forward and its backward; a lean
        stage's recomputed norm + ReLU).
    discard_forward_s : float, optional
        Forward time when the output's values are not needed, only its autograd graph (the last stage of a
        recomputed segment); ``None``: ``forward_s``.
    """

    name: str
    saved_bytes: int
    input_bytes: int
    forward_s: float = 1.0
    steps: int = 1
    shared_prev_bytes: int = 0
    shared_input_bytes: int = 0
    input_saved_prev_bytes: int = 0
    through_bytes: int = 0
    through_saved_prev_bytes: int = 0
    backward_extra_bytes: int = 0
    discard_forward_s: float | None = None

    @property
    def tail_s(self) -> float:
        """Recomputation time as the last stage of a segment (``discard_forward_s``, else ``forward_s``)."""
        return self.forward_s if self.discard_forward_s is None else self.discard_forward_s

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "saved_bytes": int(self.saved_bytes),
            "input_bytes": int(self.input_bytes),
            "forward_s": float(self.forward_s),
            "steps": int(self.steps),
            "shared_prev_bytes": int(self.shared_prev_bytes),
            "shared_input_bytes": int(self.shared_input_bytes),
            "input_saved_prev_bytes": int(self.input_saved_prev_bytes),
            "through_bytes": int(self.through_bytes),
            "through_saved_prev_bytes": int(self.through_saved_prev_bytes),
            "backward_extra_bytes": int(self.backward_extra_bytes),
            "discard_forward_s": None if self.discard_forward_s is None else float(self.discard_forward_s),
        }


@dataclass(frozen=True)
class Store:
    """Run stage ``stage`` normally, keeping what it saves for backward."""

    stage: int


@dataclass(frozen=True)
class Segment:
    """Checkpoint stages ``[start, stop)``: keep their input only; re-run them in backward following ``inner``."""

    start: int
    stop: int
    inner: tuple = ()


def as_costs(costs: Any) -> list[StageCost]:
    """Normalise stage costs: a :class:`Profile`, :class:`StageCost` objects, or dicts (``saved_bytes`` or
    ``activation_bytes``, ``input_bytes`` or ``state_bytes``, optional ``name``, ``forward_s``, ``steps``).

    Raises
    ------
    ConfigError
        If a stage lacks its sizes, or there is no stage.
    """
    if hasattr(costs, "stages") and not callable(costs.stages):
        costs = costs.stages
    out = []
    for k, c in enumerate(costs):
        if isinstance(c, StageCost):
            out.append(c)
        elif isinstance(c, dict):
            # Accept the models' ``stages()`` estimates (state_bytes / activation_bytes) as well as our names.
            try:
                saved = c.get("saved_bytes", c.get("activation_bytes"))
                inp = c.get("input_bytes", c.get("state_bytes"))
                if saved is None or inp is None:
                    raise KeyError("saved_bytes/input_bytes")
                out.append(
                    StageCost(
                        name=str(c.get("name", f"stage{k}")),
                        saved_bytes=int(saved),
                        input_bytes=int(inp),
                        forward_s=float(c.get("forward_s", 1.0)),
                        steps=int(c.get("steps", 1)),
                    )
                )
            except KeyError as err:
                raise ConfigError(
                    f"stage cost {k} ({c!r}) needs 'saved_bytes' (or 'activation_bytes') and 'input_bytes' "
                    "(or 'state_bytes')"
                ) from err
        else:
            raise ConfigError(f"stage cost {k} must be a StageCost or a dict, got {type(c).__name__}")
    if not out:
        raise ConfigError("cannot plan an empty chain (no stages)")
    return out


_NONE, _PREV, _CKPT = (
    0,
    1,
    2,
)  # what holds the input of the next item: nothing known, a stored stage, a checkpoint


def _store_cost(c: StageCost, p: int) -> int:
    if p == _PREV:
        return max(0, c.saved_bytes - c.shared_prev_bytes)
    if p == _CKPT:
        return max(0, c.saved_bytes - c.shared_input_bytes)
    return c.saved_bytes


def _ckpt_cost(c: StageCost, p: int) -> int:
    if p == _PREV:
        return max(0, c.input_bytes - c.input_saved_prev_bytes)
    if p == _CKPT:
        return 0  # the enclosing checkpoint keeps this very input
    return c.input_bytes


def evaluate(items: Sequence, costs: Sequence[StageCost], _p: int = _NONE) -> tuple[int, float]:
    """Predicted peak of kept activation bytes and recomputation time of a schedule's items.

    Parameters
    ----------
    items : sequence of Store / Segment
        The schedule.
    costs : sequence of StageCost
        Costs of the stages.

    Returns
    -------
    (int, float)
        Peak bytes (without the persistent bytes) and recomputed forward seconds under the cost model of this
        module.
    """
    peak, rec, _ = _evaluate(items, costs, _p)
    return peak, rec


def _segment_s(costs: Sequence[StageCost], start: int, stop: int) -> float:
    """Recomputation time of the segment ``[start, stop)``: its last stage's output values are not needed."""
    return float(sum(costs[i].forward_s for i in range(start, stop - 1)) + costs[stop - 1].tail_s)


def _evaluate(items: Sequence, costs: Sequence[StageCost], p: int = _NONE) -> tuple[int, float, int]:
    """``evaluate`` plus the bytes held after the forward pass (what the items keep until their backward)."""
    held = 0
    peak = 0
    rec = 0.0
    for it in items:
        if isinstance(it, Store):
            a = _store_cost(costs[it.stage], p)
            peak = max(peak, held + a + costs[it.stage].backward_extra_bytes)
            held += a
            p = _PREV
        else:
            x = _ckpt_cost(costs[it.start], p)
            ipeak, irec = evaluate(it.inner, costs, _CKPT)
            peak = max(peak, held + x + ipeak)
            held += x
            rec += _segment_s(costs, it.start, it.stop) + irec
            p = _NONE
    return peak, rec, held


@dataclass
class Schedule:
    """A checkpointing schedule over a chain of stages, with its predicted costs.

    Attributes
    ----------
    items : tuple
        :class:`Store` and :class:`Segment` items covering stages ``0..n-1`` in order.
    costs : list of StageCost
        The stage costs it was planned with.
    budget_bytes : int or None
        The budget it was planned for.
    predicted_peak_bytes : int
        Peak of kept activation bytes under the cost model.
    recompute_s : float
        Recomputed forward seconds per training step.
    """

    items: tuple
    costs: list = field(repr=False)
    budget_bytes: int | None = None
    predicted_peak_bytes: int = 0
    recompute_s: float = 0.0
    persistent_bytes: int = 0

    @classmethod
    def from_items(
        cls, items: Sequence, costs: Any, budget_bytes: int | None = None, persistent_bytes: int | None = None
    ) -> Schedule:
        if persistent_bytes is None:
            persistent_bytes = int(getattr(costs, "persistent_bytes", 0) or 0)
        costs = as_costs(costs)
        items = tuple(items)
        _validate(items, 0, len(costs))
        peak, rec = evaluate(items, costs)
        return cls(items, costs, budget_bytes, int(peak) + persistent_bytes, float(rec), persistent_bytes)

    @property
    def n_stages(self) -> int:
        return len(self.costs)

    @property
    def forward_s(self) -> float:
        """Forward time of the whole chain (seconds)."""
        return float(sum(c.forward_s for c in self.costs))

    @property
    def recompute_ratio(self) -> float:
        """Recomputed forward time as a fraction of one forward pass (0 = no recomputation)."""
        return self.recompute_s / self.forward_s if self.forward_s > 0 else 0.0

    @property
    def store_all_bytes(self) -> int:
        """Kept activation bytes without checkpointing (predicted)."""
        return (
            int(evaluate([Store(i) for i in range(len(self.costs))], self.costs)[0]) + self.persistent_bytes
        )

    def describe(self) -> str:
        """The schedule in a compact text form: ``S`` = stored stage, ``[a..b: ...]`` = checkpointed segment."""
        return _describe(self.items, self.costs)

    def to_time_items(self) -> list:
        """The schedule in the time-chunk format of ``hydroml.models.lstm`` (``set_checkpoint_schedule``).

        Items are ``{"store": n}`` (``n`` steps kept), ``int`` ``n`` (a recomputed chunk of ``n`` steps, kept
        whole during its recomputation) or a nested list (a recomputed segment, chunked again).
        """
        return _time_items(self.items, self.costs)

    def to_dict(self) -> dict:
        return {
            "schedule": self.describe(),
            "budget_bytes": self.budget_bytes,
            "predicted_peak_bytes": self.predicted_peak_bytes,
            "store_all_bytes": self.store_all_bytes,
            "persistent_bytes": self.persistent_bytes,
            "recompute_s": self.recompute_s,
            "forward_s": self.forward_s,
            "recompute_ratio": self.recompute_ratio,
        }

    def summary(self) -> str:
        """A few lines: budget, predicted peak, recomputation overhead, schedule."""
        lines = [
            f"stages: {self.n_stages}; without checkpointing: {format_bytes(self.store_all_bytes)} kept",
            f"budget: {format_bytes(self.budget_bytes) if self.budget_bytes is not None else '-'}; "
            f"predicted peak: {format_bytes(self.predicted_peak_bytes)}",
            f"recomputation: {self.recompute_s * 1e3:.1f} ms per step "
            f"({100 * self.recompute_ratio:.0f}% of one forward pass)",
            f"schedule: {self.describe()}",
        ]
        return "\n".join(lines)


def _validate(items: Sequence, start: int, stop: int) -> None:
    pos = start
    for it in items:
        if isinstance(it, Store):
            if it.stage != pos:
                raise ConfigError(f"schedule stores stage {it.stage} where stage {pos} was expected")
            pos += 1
        elif isinstance(it, Segment):
            if it.start != pos or it.stop <= it.start:
                raise ConfigError(f"schedule segment [{it.start}, {it.stop}) where stage {pos} was expected")
            _validate(it.inner, it.start, it.stop)
            pos = it.stop
        else:
            raise ConfigError(f"schedule items are Store or Segment, got {type(it).__name__}")
    if pos != stop:
        raise ConfigError(f"schedule covers stages [{start}, {pos}) but the chain has [{start}, {stop})")


def _describe(items: Sequence, costs: Sequence[StageCost]) -> str:
    parts = []
    run = []

    def flush():
        if run:
            parts.append(f"S{run[0]}" if len(run) == 1 else f"S{run[0]}-{run[-1]}")
            run.clear()

    for it in items:
        if isinstance(it, Store):
            if run and run[-1] != it.stage - 1:
                flush()
            run.append(it.stage)
        else:
            flush()
            inner = _describe(it.inner, costs)
            if all(isinstance(i, Store) for i in it.inner):
                parts.append(f"C{it.start}-{it.stop - 1}")
            else:
                parts.append(f"C{it.start}-{it.stop - 1}[{inner}]")
    flush()
    return " ".join(parts)


def _time_items(items: Sequence, costs: Sequence[StageCost]) -> list:
    out: list = []
    for it in items:
        if isinstance(it, Store):
            n = costs[it.stage].steps
            if out and isinstance(out[-1], dict):
                out[-1] = {"store": out[-1]["store"] + n}
            else:
                out.append({"store": n})
        elif all(isinstance(i, Store) for i in it.inner):
            out.append(int(sum(costs[i].steps for i in range(it.start, it.stop))))
        else:
            out.append(_time_items(it.inner, costs))
    return out


def store_all(costs: Any) -> Schedule:
    """The schedule without checkpointing (every stage stored)."""
    pers = int(getattr(costs, "persistent_bytes", 0) or 0)
    costs = as_costs(costs)
    return Schedule.from_items([Store(i) for i in range(len(costs))], costs, persistent_bytes=pers)


def sqrt_schedule(costs: Any, segments: int | None = None) -> Schedule:
    """The rule of thumb of ``torch.utils.checkpoint.checkpoint_sequential``: equal segments, all but the last
    checkpointed (one level), the last run normally.

    Parameters
    ----------
    costs : Profile, list of StageCost or dicts
        The chain.
    segments : int, optional
        Number of segments; default ``round(sqrt(n))``.
    """
    pers = int(getattr(costs, "persistent_bytes", 0) or 0)
    costs = as_costs(costs)
    n = len(costs)
    segments = max(1, min(n, segments or int(round(math.sqrt(n)))))
    size = math.ceil(n / segments)
    items: list = []
    bounds = list(range(0, n, size))
    for b in bounds[:-1]:
        e = min(n, b + size)
        items.append(Segment(b, e, tuple(Store(i) for i in range(b, e))))
    items.extend(Store(i) for i in range(bounds[-1], n))
    return Schedule.from_items(items, costs, persistent_bytes=pers)


def _dp(costs: list, budget: float, slots: int, no_cut: int | None = None):
    """The dynamic programme; returns the cost array of the whole chain and the schedule builder.

    ``no_cut``: no checkpointed segment may end at stage ``no_cut`` unless it is the single stage
    ``no_cut - 1`` (the nested planner: a segment ending with a sub-chain would hand its skip connection to
    the next stage, which the level's cost model charges to the sub-chain)."""
    n = len(costs)
    unit = budget / slots
    S = slots

    def q(v: float) -> int:
        return int(math.ceil(v / unit))

    a = [[q(_store_cost(c, p)) for p in range(3)] for c in costs]
    e = [q(c.backward_extra_bytes) for c in costs]
    x = [[q(_ckpt_cost(c, p)) for p in range(3)] for c in costs]
    f = np.array([c.forward_s for c in costs], dtype=float)
    tail = np.array([c.tail_s for c in costs], dtype=float)
    fcum = np.concatenate([[0.0], np.cumsum(f)])
    inf = np.inf
    ms = np.arange(S + 1)
    # C[i, j, p][m]: least recomputation for stages [i, j) within m slots, the input held as told by p. Two
    # preallocated arrays rather than thousands of small ones: large allocations are returned to the operating
    # system when the planner is done (small ones fragment the heap and stay resident in the training process).
    C = np.full((n, n + 1, 3, S + 1), inf)
    choice = np.full((n, n + 1, 3, S + 1), -1, dtype=np.int16 if n < 2**15 else np.int32)

    def shifted(arr: np.ndarray, sft: int) -> np.ndarray:
        out = np.full(S + 1, inf)
        if sft <= S:
            out[sft:] = arr[: S + 1 - sft]
        return out

    for i in range(n):
        for p in range(3):
            C[i, i + 1, p] = np.where(ms >= a[i][p] + e[i], 0.0, inf)
    for length in range(2, n + 1):
        for i in range(0, n - length + 1):
            j = i + length
            # checkpointed prefix [i, k) then the rest [k, j): both shifted by the same input cost, so the best
            # k per memory level is shared by every p
            ks = np.arange(i + 1, j)
            if no_cut is not None and i < no_cut - 1 and i + 1 <= no_cut < j:
                ks = ks[ks != no_cut]
            tot = np.stack(
                [(fcum[k - 1] - fcum[i] + tail[k - 1]) + C[i, k, _CKPT] + C[k, j, _NONE] for k in ks]
            )
            arg = np.argmin(tot, axis=0)
            seg_best = tot[arg, ms]
            seg_k = ks[arg].astype(np.int32)
            for p in range(3):
                best = shifted(C[i + 1, j, _PREV], a[i][p])
                if e[i]:
                    best = np.where(ms >= a[i][p] + e[i], best, inf)
                cand = shifted(seg_best, x[i][p])
                kk = shifted(seg_k.astype(float), x[i][p])
                better = cand < best - 1e-12
                best = np.where(better, cand, best)
                C[i, j, p] = best
                choice[i, j, p] = np.where(better, kk, -1)

    def build(i: int, j: int, m: int, p: int) -> list:
        items: list = []
        while i < j:
            k = int(choice[i, j, p][m])
            if k < 0:
                items.append(Store(i))
                m -= a[i][p]
                i, p = i + 1, _PREV
            else:
                xs = x[i][p]
                items.append(Segment(i, k, tuple(build(i, k, m - xs, _CKPT))))
                m -= xs
                i, p = k, _NONE
        return items

    return C[0, n, _NONE].copy(), build


def min_budget(costs: Any, *, slots: int = 400, persistent_bytes: int | None = None) -> int:
    """About the smallest budget any schedule fits (to ``store-all / slots`` resolution).

    Parameters
    ----------
    costs : Profile, list of StageCost, or list of dict
        Stage costs.
    slots : int
        Resolution of the search.
    persistent_bytes : int, optional
        As for :func:`plan`.

    Returns
    -------
    int
        Bytes; :func:`plan` succeeds with this budget.
    """
    pers = (
        int(getattr(costs, "persistent_bytes", 0) or 0) if persistent_bytes is None else int(persistent_bytes)
    )
    nests = list(getattr(costs, "nests", None) or [])
    reserve = int(getattr(costs, "output_bytes", 0) or 0)
    costs = as_costs(costs)
    total, _ = evaluate([Store(i) for i in range(len(costs))], costs)
    unit = max(total, 1) / slots
    C_all, _ = _dp(costs, max(total, 1), slots)
    ok = np.flatnonzero(np.isfinite(C_all))
    flat = pers + int(math.ceil((ok[0] + 1) * unit)) if ok.size else pers + total
    if not nests:
        return flat
    # nested levels: bisect on the budget (feasibility is monotone in the budget); the levels' menus are shared
    planner = _NestedPlanner(costs, nests, slots)

    def fits(b: int) -> bool:
        return planner.best(0, len(costs), b - reserve) is not None

    lo, hi = 0, flat
    if not fits(hi):
        return flat
    while hi - lo > max(1, flat // (4 * slots)):
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _group(costs: list[StageCost], size: int) -> tuple[list[StageCost], list[int]]:
    """Merge runs of ``size`` consecutive stages (costs of storing/recomputing them together)."""
    groups, starts = [], []
    for g0 in range(0, len(costs), size):
        part = costs[g0 : g0 + size]
        saved = part[0].saved_bytes + sum(c.saved_bytes - c.shared_prev_bytes for c in part[1:])
        groups.append(
            StageCost(
                f"{part[0].name}..{part[-1].name}" if len(part) > 1 else part[0].name,
                saved,
                part[0].input_bytes,
                sum(c.forward_s for c in part),
                sum(c.steps for c in part),
                part[0].shared_prev_bytes,
                part[0].shared_input_bytes,
                part[0].input_saved_prev_bytes,
                backward_extra_bytes=max(c.backward_extra_bytes for c in part),
                discard_forward_s=sum(c.forward_s for c in part[:-1]) + part[-1].tail_s,
            )
        )
        starts.append(g0)
    return groups, starts + [len(costs)]


def _expand(items: Sequence, starts: list[int]) -> list:
    out: list = []
    for it in items:
        if isinstance(it, Store):
            out.extend(Store(i) for i in range(starts[it.stage], starts[it.stage + 1]))
        else:
            out.append(Segment(starts[it.start], starts[it.stop], tuple(_expand(it.inner, starts))))
    return out


def plan(
    costs: Any,
    budget_bytes: int | str,
    *,
    slots: int = 400,
    persistent_bytes: int | None = None,
    max_stages: int = 80,
) -> Schedule:
    """The schedule with the least recomputation whose predicted peak fits ``budget_bytes``.

    Parameters
    ----------
    costs : Profile, list of StageCost, or list of dict
        Stage costs, from :func:`hydroml.memory.profile` or a model's ``stages()`` estimates (dicts with
        ``saved_bytes``/``activation_bytes``, ``input_bytes``/``state_bytes`` and optional ``forward_s``,
        ``steps``).
    budget_bytes : int or str
        Budget for kept activations, e.g. ``"1.5GB"`` (see :func:`parse_bytes`).
    slots : int
        Memory discretisation of the dynamic programme (costs are rounded up to ``budget / slots``).
    persistent_bytes : int, optional
        Bytes kept whatever the schedule (tensors passed through stages: skip connections, the LSTM input);
        default ``costs.persistent_bytes`` for a :class:`~hydroml.memory.profile.Profile`, else 0. They are
        subtracted from the budget.
    max_stages : int
        Longer chains (e.g. one stage per time step of a 365-day window) are planned over groups of
        consecutive stages (the programme costs O(n^3) time and O(n^2 slots) memory); the schedule is then
        expanded back to the original stages.

    Returns
    -------
    Schedule
        Every stage stored when that fits; otherwise the optimal nested checkpointing schedule of the model
        in this module's docstring.

    Raises
    ------
    ConfigError
        If no schedule fits the budget.
    """
    pers = (
        int(getattr(costs, "persistent_bytes", 0) or 0) if persistent_bytes is None else int(persistent_bytes)
    )
    nests = list(getattr(costs, "nests", None) or [])
    reserve = int(getattr(costs, "output_bytes", 0) or 0)
    costs = as_costs(costs)
    full_budget = parse_bytes(budget_bytes)
    budget = full_budget - pers
    n = len(costs)
    total, _ = evaluate([Store(i) for i in range(n)], costs)
    if total <= budget:
        return Schedule.from_items([Store(i) for i in range(n)], costs, full_budget, pers)
    if nests:
        nested = plan_nested(costs, full_budget, nests, slots=slots, reserve_bytes=reserve)
        try:
            flat = plan(costs, full_budget, slots=slots, persistent_bytes=pers, max_stages=max_stages)
        except ConfigError:
            if nested is None:
                raise
            return nested
        if nested is not None and nested.recompute_s < flat.recompute_s - 1e-12:
            return nested
        return flat
    if n > max_stages:
        groups, starts = _group(costs, math.ceil(n / max_stages))
        coarse = plan(groups, full_budget, slots=slots, persistent_bytes=pers, max_stages=max_stages)
        return Schedule.from_items(_expand(coarse.items, starts), costs, full_budget, pers)
    if budget <= 0:
        raise ConfigError(
            f"memory budget {format_bytes(full_budget)} is below the {format_bytes(pers)} the chain keeps "
            "whatever the schedule (inputs and tensors passed through stages, e.g. skip connections)"
        )
    C0, build = _dp(costs, budget, slots)
    if not np.isfinite(C0[slots]):
        largest = max(c.saved_bytes for c in costs)
        C_all, _ = _dp(costs, max(total, 1), slots)
        ok = np.flatnonzero(np.isfinite(C_all))
        need = pers + (int(ok[0] * max(total, 1) / slots) if ok.size else total)
        raise ConfigError(
            f"no checkpointing schedule fits a budget of {format_bytes(full_budget)}: the smallest that fits is "
            f"about {format_bytes(need)} (the largest stage alone keeps {format_bytes(largest)} during its "
            f"backward and {format_bytes(pers)} are kept whatever the schedule); raise memory_budget or cut the "
            "model into finer stages"
        )
    items = build(0, n, slots, _NONE)
    return Schedule.from_items(items, costs, full_budget, pers)


# --------------------------------------------------------------------------------------------------------------
# nested sub-chains (U-Net levels): skip connections recomputed, not kept


@dataclass(frozen=True)
class _Option:
    """A schedule of a range of stages: peak, bytes held after its forward, recomputation, flat items."""

    peak: int
    held: int
    rec: float
    items: tuple


def _inner_nest(lo: int, hi: int, nests: Sequence) -> tuple[int, int] | None:
    inside = [(p, q) for p, q in nests if lo < p and q <= hi]
    if not inside:
        return None
    outer = [n for n in inside if not any(m != n and m[0] <= n[0] and n[1] <= m[1] for m in inside)]
    return min(outer)


class _NestedPlanner:
    """Plans a chain with nested sub-chains (``nests``: stage ranges ``[p, q)`` whose input passes through them,
    a U-Net level below ``p``'s skip connection): each range is one stage of its parent's chain, either run
    under its own schedule (stored) or checkpointed as a whole, so the skip connection of a checkpointed level
    is recomputed in backward instead of kept. Levels are planned bottom-up: the dynamic programme of this
    module over each level's chain, given a menu of (peak, held, recomputation) options of the level below."""

    def __init__(self, costs: list[StageCost], nests: Sequence, slots: int, grid: int = 40) -> None:
        self.costs, self.nests, self.slots, self.grid = costs, [tuple(n) for n in nests], slots, grid
        self._menus: dict[tuple[int, int], list[_Option]] = {}

    def _flat(self, lo: int, hi: int, budget: float) -> _Option | None:
        costs = self.costs[lo:hi]
        base = costs[0].through_bytes
        extra = max(c.through_bytes for c in costs) - base  # skips pushed and popped inside, kept throughout
        return self._solve(
            costs, budget - extra, lambda items: _expand(items, list(range(lo, hi + 1))), extra
        )

    def _solve(self, costs: list[StageCost], budget: float, expand, extra: int = 0, sub=None, no_cut=None):
        if budget <= 0:
            return None
        items = [Store(i) for i in range(len(costs))]
        peak, rec, held = _evaluate(items, costs)
        if peak > budget:
            C0, build = _dp(costs, budget, self.slots, no_cut)
            if not np.isfinite(C0[self.slots]):
                return None
            items = build(0, len(costs), self.slots, _NONE)
            peak, rec, held = _evaluate(items, costs)
        if sub is not None:
            rec += sub.rec
        return _Option(int(peak) + extra, int(held) + extra, float(rec), tuple(expand(items)))

    def best(self, lo: int, hi: int, budget: float) -> _Option | None:
        """The least-recomputation schedule of stages ``[lo, hi)`` within ``budget``."""
        nest = _inner_nest(lo, hi, self.nests)
        if nest is None:
            return self._flat(lo, hi, budget)
        p, q = nest
        c = self.costs
        skip = max(0, c[p].through_bytes - c[p - 1].through_bytes)
        tsp = min(skip, c[p].through_saved_prev_bytes)
        fwd = float(sum(s.forward_s for s in c[p:q]))
        fwd_tail = fwd - c[q - 1].forward_s + c[q - 1].tail_s  # the level as a segment's last stage
        up = c[q]
        best: _Option | None = None
        for opt in self.menu(p, q):
            ends_stored = (
                bool(opt.items) and isinstance(opt.items[-1], Store) and opt.items[-1].stage == q - 1
            )
            sub = StageCost(
                f"{c[p].name}..{c[q - 1].name}", skip + opt.held, skip, fwd,
                shared_prev_bytes=tsp, shared_input_bytes=skip, input_saved_prev_bytes=tsp,
                backward_extra_bytes=max(0, opt.peak - opt.held), discard_forward_s=fwd_tail,
            )  # fmt: skip
            up2 = StageCost(
                up.name, max(0, up.saved_bytes - skip), max(0, up.input_bytes - skip), up.forward_s, up.steps,
                up.shared_prev_bytes if ends_stored else 0, max(0, up.shared_input_bytes - skip),
                up.input_saved_prev_bytes if ends_stored else 0,
                backward_extra_bytes=up.backward_extra_bytes, discard_forward_s=up.discard_forward_s,
            )  # fmt: skip
            level = [*c[lo:p], sub, up2, *c[q + 1 : hi]]
            k = p - lo

            def expand(items, opt=opt, k=k, p=p, q=q, lo=lo):
                return _expand_level(items, opt.items, k, lo, p, q)

            cand = self._solve(level, budget, expand, sub=opt, no_cut=k + 1)
            if cand is not None and (best is None or cand.rec < best.rec - 1e-12):
                best = cand
        return best

    def menu(self, lo: int, hi: int) -> list[_Option]:
        """Pareto options (peak against recomputation) of the range ``[lo, hi)`` over a grid of budgets."""
        key = (lo, hi)
        if key in self._menus:
            return self._menus[key]
        full = self.best(lo, hi, float(2**62))
        opts: list[_Option] = []
        if full is not None:
            top = max(full.peak, 1)
            for f in np.geomspace(1.0, 1 / 40, self.grid):
                o = self.best(lo, hi, top * f)
                if o is not None:
                    opts.append(o)
        pareto: list[_Option] = []
        for o in sorted(opts, key=lambda o: (o.peak, o.rec)):
            if not pareto or o.rec < pareto[-1].rec - 1e-12:
                pareto.append(o)
        self._menus[key] = pareto
        return pareto


def _expand_level(items: Sequence, sub_items: Sequence, k: int, lo: int, p: int, q: int) -> list:
    """Level-chain items (stage ``k`` = the sub-chain ``[p, q)``) back to the original stage indices."""

    def idx(i: int) -> int:
        return lo + i if i <= k else q + (i - k - 1)

    out: list = []
    for it in items:
        if isinstance(it, Store):
            if it.stage == k:
                out.extend(sub_items)  # the sub-chain runs under its own schedule
            else:
                out.append(Store(idx(it.stage)))
        else:
            out.append(
                Segment(idx(it.start), idx(it.stop), tuple(_expand_level(it.inner, sub_items, k, lo, p, q)))
            )
    return out


def plan_nested(
    costs: Any,
    budget_bytes: int | str,
    nests: Sequence | None = None,
    *,
    slots: int = 400,
    reserve_bytes: int | None = None,
) -> Schedule | None:
    """The nested planner (see :class:`_NestedPlanner`): the least-recomputation schedule within the budget
    when levels (``nests``, default ``costs.nests``) may be checkpointed whole, or ``None`` when none fits.

    Parameters
    ----------
    costs : Profile or list of StageCost
        Stage costs with ``through_bytes`` (from :func:`hydroml.memory.profile`).
    budget_bytes : int or str
        Budget for kept activations.
    nests : sequence of (int, int), optional
        Nested stage ranges ``[p, q)``: the input of stage ``p`` passes through the range (a skip connection
        popped by stage ``q``).
    slots : int
        Memory discretisation of the dynamic programme.
    reserve_bytes : int, optional
        Bytes kept besides the chain's activations (default ``costs.output_bytes``: the model output, which the
        loss keeps for its backward).

    Returns
    -------
    Schedule or None
    """
    nests = list(getattr(costs, "nests", None) or []) if nests is None else list(nests)
    reserve = int(getattr(costs, "output_bytes", 0) or 0) if reserve_bytes is None else int(reserve_bytes)
    costs = as_costs(costs)
    budget = parse_bytes(budget_bytes)
    opt = _NestedPlanner(costs, nests, slots).best(0, len(costs), budget - reserve)
    if opt is None:
        return None
    items = tuple(opt.items)
    _validate(items, 0, len(costs))
    return Schedule(items, costs, budget, int(opt.peak) + reserve, float(opt.rec), 0)
