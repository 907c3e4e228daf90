"""``unet``: a fully convolutional encoder-decoder for gridded (monthly evaporation) maps.

Input ``batch["x"]`` ``[B, C, H, W]`` stacks the forcing channels and their lags and the static maps
(``in_channels = n_forcings * n_lags + n_static``); output ``{"y_hat": [B, out_channels, H, W]}``, one value per
cell.

Architecture
------------
``depth`` down-sampling levels (2x2 max pooling), widths ``base_width * 2**level`` (capped by ``max_width``).
Every level has a block of two ``kernel_size`` convolutions, each followed by a normalisation (``norm``) and a
ReLU. The decoder up-samples with a 2x2 transposed convolution and joins the skip connection: the first
decoder convolution is ``conv_a(up) + conv_b(skip)``, the same function as one convolution of the channel
concatenation ``[up, skip]`` but without materialising the concatenated tensor (less memory kept for
backward). A 1x1 convolution maps to ``out_channels``.

With ``reversible=True`` the second convolution of every block becomes ``reversible_blocks`` additive coupling
blocks (:mod:`hydroml.memory.reversible`, Hascoet et al. 2023) whose activations are reconstructed in backward
instead of stored.

Missing values and sizes
------------------------
NaN inputs are replaced by ``nan_fill`` (0, the mean of normalised inputs). ``H`` and ``W`` need not be
multiples of the total stride ``2**depth``: the input is padded at the bottom and right (``padding_mode``) to
the next multiple and the output cropped back. All convolutions pad with ``padding_mode`` (``"zeros"``,
``"replicate"`` or ``"reflect"``; ``"circular"`` is refused: it is not local and cannot be tiled).

Exact tiling
------------
:meth:`UNet.receptive_field` gives the radius ``R`` of input cells any output cell depends on (computed from
the configuration by interval arithmetic through the layers, pooling and up-sampling included), the total
stride ``S = 2**depth`` and the halo ``ceil(R / S) * S``. ``hydroml.memory.tiled_predict`` equals untiled
inference (to float round-off) when every tile window starts on a multiple of ``S`` (pooling windows align),
extends by the halo into the neighbours, and is clipped at the grid border instead of padded (so the
model's own per-layer border padding acts where it does untiled). Consequences: ``norm="batch"`` is exact in
``eval()`` mode only (in training mode it normalises with the statistics of each tile); ``norm="group"`` or
``"instance"`` are never tile-exact (statistics over the whole map).

Memory
------
:meth:`UNet.stages` lists the chain of stages (a convolution, a normalisation + activation, a reversible
stack...), :meth:`UNet.memory_chain` the chain applied to a batch, and :meth:`UNet.set_memory_schedule` runs a
schedule from ``hydroml.memory.plan``. The chain declares its levels (``Chain.nests``: from each pooling stage
to the up-sampling stage that consumes its skip connection), so the planner can checkpoint a whole level and
recompute its skip connection instead of keeping it (nested, level-wise checkpointing). ``checkpointing=True``
checkpoints every stage (only stage boundaries and skip connections are kept). Outputs are identical with and
without checkpointing.

Lean stages (``lean=True``)
---------------------------
With ordinary autograd every convolution costs about two full tensors of kept activations: its output (the
norm's input) and the ReLU's output (the next convolution's input); a 2x2 max pooling adds its output and int64
indices (another full tensor's bytes), the decoder's transposed convolution its output. With ``lean=True`` the
training chain is made of lean stages (:func:`hydroml.memory.lean.act_conv`): each applies the previous
convolution's norm + ReLU itself (and the pooling, or the 2x2 transposed convolution) and keeps only the
*pre-norm* tensor, skip connections included; its backward recomputes those cheap ops chunk by chunk over the
batch and never a 3x3 convolution. At depth 4, width 16 on 8 x 512 x 512 this keeps about half (1.05 GiB of
saved tensors instead of 2.4 GiB) for a few percent of step time, and it makes recomputation cheaper for the
planner: a recomputed segment's last lean stage skips its convolution (only its autograd graph is needed).
Outputs and batch-norm running statistics are bitwise those of the plain stages, gradients equal to float32
round-off; parameters and ``state_dict`` are the same (a model trained lean loads with ``lean=False`` and vice
versa). Eval and no-grad runs (inference, :func:`hydroml.memory.tiled_predict`, the first pass of catchment
training) always use the plain stages. A schedule set with :meth:`UNet.set_memory_schedule` is over
:meth:`UNet.stages`, the lean ones when ``lean=True``. ``norm`` "batch" or "none" only, not with ``reversible``.

The default is ``lean=False``: the plain stages are what the model has always computed, bit for bit in
gradients too, and the fastest when memory is not short; turn lean stages on (``model: {name: unet, lean:
true}`` in a training config) when activation memory limits the batch or the grid, alone or under a
planned schedule.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from hydroml.exceptions import ConfigError
from hydroml.memory.checkpoint import Chain, output_discarded, run_chain
from hydroml.memory.lean import act_conv, backward_extra_bytes, placeholder_sum
from hydroml.memory.plan import Schedule, Segment, Store
from hydroml.memory.reversible import AdditiveCoupling, ReversibleSequence
from hydroml.memory.tiling import ReceptiveField
from hydroml.models.registry import register_model

__all__ = ["UNet", "ReceptiveField", "unet"]

_PADDING_MODES = ("zeros", "replicate", "reflect")
_NORMS = ("batch", "group", "instance", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class _NormAct(nn.Module):
    def __init__(self, norm: str, channels: int) -> None:
        super().__init__()
        self.norm = _norm(norm, channels)
        self.inplace = norm != "none"  # the norm's output is fresh: ReLU in place keeps one tensor, not two

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(h), inplace=self.inplace)


class _Stage(nn.Module):
    """One stage of the chain. State: ``(h, skip_0, ..., skip_{l-1})``."""

    def __init__(self, kind: str, name: str, **mods: nn.Module) -> None:
        super().__init__()
        self.kind = kind
        self.name = name
        for k, m in mods.items():
            setattr(self, k, m)

    def forward(self, state: tuple) -> tuple:
        h, *skips = state
        if self.kind == "down":  # push the skip, pool, convolve
            return (self.conv(F.max_pool2d(h, 2)), *skips, h)
        if self.kind == "up":  # pop the skip, up-sample, convolve [up, skip] without concatenating
            s = skips.pop()
            return (self.conv_a(self.up(h)) + self.conv_b(s), *skips)
        return (self.op(h), *skips)


class _LeanStage(nn.Module):
    """A lean stage (``lean=True``): the previous convolution's norm + ReLU fused into this stage's operation
    (:func:`hydroml.memory.lean.act_conv`), so only pre-norm tensors are kept. State: ``(c, skip_0, ...)`` with
    ``c`` and the skips pre-norm. Kinds: ``"conv"`` (``conv(act(c))``), ``"down"`` (push ``c`` as the skip,
    ``conv(pool(act(c)))``), ``"up"`` (pop the skip ``s``, ``conv_a(up(act(c))) + conv_b(act_s(s))``; ``act_s``
    re-normalises the skip with the batch statistics without updating the running ones, the pooling stage did).

    Not registered in the unet (it holds the unet's own modules, so parameters and ``state_dict`` are those of
    the plain stages). ``backward_extra_bytes`` (set by each forward) is what its backward recomputes and holds.
    ``discardable``: as the last stage of a recomputed segment (``output_discarded()``) it skips its
    convolutions and returns a placeholder (the profile measures that time as ``discard_forward_s``).
    """

    discardable = True

    def __init__(self, kind: str, name: str, norm: nn.Module, **mods: nn.Module) -> None:
        super().__init__()
        self.kind, self.name, self.norm = kind, name, norm
        for k, m in mods.items():
            setattr(self, k, m)
        self.backward_extra_bytes = 0
        self._partner: list = []  # "up": the "down" stage that normalised the same skip connection first
        # "down": (weak reference to the skip, mean, invstd) of its last forward, for its "up" partner
        self._skip_stats: tuple | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_skip_stats"] = None  # a weak reference: not picklable, and only meaningful within one forward
        return state

    def forward(self, state: tuple) -> tuple:
        c, *skips = state
        discard = output_discarded()  # the last stage of a recomputed segment: only the graph is needed
        if self.kind == "up":
            s = skips.pop()
            u = act_conv(c, self.norm, self.conv_a, mid="up", up=self.up, discard=discard)
            # the pooling stage's batch statistics of this very skip tensor, when it is the same object (a
            # recomputed segment holds a detached copy: the statistics are computed again, bitwise equal)
            known = self._partner[0]._skip_stats if self._partner else None
            stats = known[1:] if known is not None and known[0]() is s and known[1] is not None else None
            if self._partner:
                self._partner[0]._skip_stats = None  # used once per forward; holds no tensor afterwards
            v = act_conv(s, self.skip_norm, self.conv_b, update=False, discard=discard, stats=stats)
            out = placeholder_sum(u, v) if discard else u + v
            extra = max(
                backward_extra_bytes(c, "up", self.up, self.conv_a.padding_mode, self.conv_a.padding[0]),
                backward_extra_bytes(s, "none", None, self.conv_b.padding_mode, self.conv_b.padding[0]),
            )
            self.backward_extra_bytes = extra
            return (out, *skips)
        mid = "pool" if self.kind == "down" else "none"
        st: list = []
        out = act_conv(c, self.norm, self.conv, mid=mid, discard=discard, stats_out=st)
        if self.kind == "down":
            self._skip_stats = (weakref.ref(c), *st)
        self.backward_extra_bytes = backward_extra_bytes(
            c, mid, None, self.conv.padding_mode, self.conv.padding[0]
        )
        return (out, *skips, c) if self.kind == "down" else (out, *skips)


def _conv(cin: int, cout: int, k: int, padding_mode: str, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode=padding_mode, bias=bias)


class UNet(nn.Module):
    """Fully convolutional U-Net for gridded targets (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Input channels (forcings x lags + static maps).
    out_channels : int
        Output channels.
    base_width : int
        Channels at full resolution; doubled at each level.
    depth : int
        Number of 2x down-samplings (total stride ``2**depth``); 1 to 6 (4-5 for 0.25 degree grids).
    kernel_size : int
        Odd convolution size.
    padding_mode : {"zeros", "replicate", "reflect"}
        Border padding of convolutions and of the stride padding.
    norm : {"batch", "group", "instance", "none"}
        Normalisation after each convolution ("batch" and "none" are tile-exact, "batch" in eval mode).
    reversible : bool
        Use reversible coupling blocks for the second half of every block.
    reversible_blocks : int
        Coupling blocks per level when ``reversible``.
    checkpointing : bool
        Checkpoint every stage (outputs unchanged).
    lean : bool
        Train with lean stages (see the module docstring): about half the activation memory, the norm + ReLU,
        pooling and up-sampling recomputed in backward. ``norm`` "batch" or "none", not with ``reversible``.
    max_width : int, optional
        Cap on the width of deep levels.
    nan_fill : float
        Value replacing NaN inputs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        base_width: int = 32,
        depth: int = 4,
        kernel_size: int = 3,
        padding_mode: str = "zeros",
        norm: str = "batch",
        reversible: bool = False,
        reversible_blocks: int = 1,
        checkpointing: bool = False,
        lean: bool = False,
        max_width: int | None = None,
        nan_fill: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or base_width < 1:
            raise ConfigError(
                f"unet: in_channels, out_channels and base_width must be >= 1, got {in_channels}, "
                f"{out_channels}, {base_width}"
            )
        if not 1 <= depth <= 6:
            raise ConfigError(f"unet: depth must be between 1 and 6, got {depth}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"unet: kernel_size must be odd and positive, got {kernel_size}")
        if padding_mode not in _PADDING_MODES:
            raise ConfigError(
                f"unet: padding_mode must be one of {', '.join(_PADDING_MODES)} (circular cannot be tiled), "
                f"got {padding_mode!r}"
            )
        if norm not in _NORMS:
            raise ConfigError(f"unet: norm must be one of {', '.join(_NORMS)}, got {norm!r}")
        widths = [min(base_width * 2**lvl, max_width or 10**9) for lvl in range(depth + 1)]
        if reversible and any(w % 2 for w in widths):
            raise ConfigError(f"unet: reversible blocks need even widths, got {widths}")
        if reversible and reversible_blocks < 1:
            raise ConfigError(f"unet: reversible_blocks must be >= 1, got {reversible_blocks}")
        if lean and (reversible or norm not in ("batch", "none")):
            raise ConfigError(
                f"unet: lean stages need norm 'batch' or 'none' and reversible=False, got norm={norm!r}, "
                f"reversible={reversible}"
            )
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "base_width": base_width,
            "depth": depth,
            "kernel_size": kernel_size,
            "padding_mode": padding_mode,
            "norm": norm,
            "reversible": reversible,
            "reversible_blocks": reversible_blocks,
            "checkpointing": checkpointing,
            "lean": lean,
            "max_width": max_width,
            "nan_fill": nan_fill,
        }
        self.depth, self.kernel_size, self.padding_mode = depth, kernel_size, padding_mode
        self.reversible, self.reversible_blocks, self.nan_fill = reversible, reversible_blocks, nan_fill
        self.widths = widths
        k, pm = kernel_size, padding_mode
        bias = norm == "none"
        stages: list[_Stage] = []

        def second_half(w: int, tag: str) -> list[_Stage]:
            if not reversible:
                return [
                    _Stage("op", f"{tag}.conv2", op=_conv(w, w, k, pm, bias)),
                    _Stage("op", f"{tag}.act2", op=_NormAct(norm, w)),
                ]
            blocks = [
                AdditiveCoupling(
                    nn.Sequential(_conv(w // 2, w // 2, k, pm, bias), _NormAct(norm, w // 2)),
                    nn.Sequential(_conv(w // 2, w // 2, k, pm, bias), _NormAct(norm, w // 2)),
                )
                for _ in range(reversible_blocks)
            ]
            return [_Stage("op", f"{tag}.rev", op=ReversibleSequence(blocks))]

        for lvl in range(depth + 1):
            w = widths[lvl]
            tag = f"enc{lvl}"
            if lvl == 0:
                stages.append(_Stage("op", f"{tag}.conv1", op=_conv(in_channels, w, k, pm, bias)))
            else:
                stages.append(
                    _Stage("down", f"{tag}.pool_conv1", conv=_conv(widths[lvl - 1], w, k, pm, bias))
                )
            stages.append(_Stage("op", f"{tag}.act1", op=_NormAct(norm, w)))
            stages.extend(second_half(w, tag))
        for lvl in range(depth - 1, -1, -1):
            w = widths[lvl]
            tag = f"dec{lvl}"
            stages.append(
                _Stage(
                    "up",
                    f"{tag}.up_conv1",
                    up=nn.ConvTranspose2d(widths[lvl + 1], w, 2, stride=2),
                    conv_a=_conv(w, w, k, pm, bias),
                    conv_b=_conv(w, w, k, pm, False),
                )
            )
            stages.append(_Stage("op", f"{tag}.act1", op=_NormAct(norm, w)))
            stages.extend(second_half(w, tag))
        stages.append(_Stage("op", "head", op=nn.Conv2d(widths[0], out_channels, 1)))
        self.chain = nn.ModuleList(stages)
        self.lean = bool(lean)
        # a plain list: the lean stages hold the chain's own modules and must not enter the state_dict twice
        self._lean_stages: list[nn.Module] = self._build_lean() if self.lean else []
        self._schedule: Schedule | list | None = None
        self.set_memory_schedule(checkpointing)

    def _build_lean(self) -> list[nn.Module]:
        """The lean chain over the plain stages' modules (see :class:`_LeanStage`)."""
        by = {s.name: s for s in self.chain}

        def norm(name: str) -> nn.Module:
            return by[name].op.norm

        d = self.depth
        lean: list[nn.Module] = [by["enc0.conv1"]]
        downs: dict[int, _LeanStage] = {}
        for lvl in range(d + 1):
            if lvl > 0:
                conv = by[f"enc{lvl}.pool_conv1"].conv
                downs[lvl - 1] = _LeanStage(
                    "down", f"enc{lvl}.pool_conv1", norm(f"enc{lvl - 1}.act2"), conv=conv
                )
                lean.append(downs[lvl - 1])
            lean.append(
                _LeanStage("conv", f"enc{lvl}.conv2", norm(f"enc{lvl}.act1"), conv=by[f"enc{lvl}.conv2"].op)
            )
        for lvl in range(d - 1, -1, -1):
            up = by[f"dec{lvl}.up_conv1"]
            below = f"enc{d}.act2" if lvl == d - 1 else f"dec{lvl + 1}.act2"
            stage = _LeanStage(
                "up", f"dec{lvl}.up_conv1", norm(below), skip_norm=norm(f"enc{lvl}.act2"),
                up=up.up, conv_a=up.conv_a, conv_b=up.conv_b,
            )  # fmt: skip
            stage._partner.append(downs[lvl])
            lean.append(stage)
            lean.append(
                _LeanStage("conv", f"dec{lvl}.conv2", norm(f"dec{lvl}.act1"), conv=by[f"dec{lvl}.conv2"].op)
            )
        lean.append(_LeanStage("conv", "head", norm("dec0.act2"), conv=by["head"].op))
        return lean

    def _lean_active(self) -> bool:
        """Lean stages run when training with gradients; eval and no-grad runs use the plain stages."""
        return self.lean and self.training and torch.is_grad_enabled()

    # ------------------------------------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """Total stride ``2**depth``."""
        return 2**self.depth

    def stages(self) -> list[nn.Module]:
        """The training chain of stages (``state -> state`` modules; state = ``(h, skip_0, ...)``) for the
        planner: the lean stages with ``lean=True``, else the plain ones."""
        return list(self._lean_stages) if self.lean else list(self.chain)

    def set_memory_schedule(self, schedule: Schedule | bool | None) -> None:
        """Run the stages under a checkpointing schedule.

        Parameters
        ----------
        schedule : Schedule, bool or None
            A plan from ``hydroml.memory.plan`` over :meth:`stages`; ``True`` checkpoints every stage;
            ``False``/``None`` stores every activation.
        """
        n = len(self.stages())
        if schedule is None or schedule is False:
            self._schedule = None
        elif schedule is True:
            self._schedule = [Segment(i, i + 1, (Store(i),)) for i in range(n - 1)] + [Store(n - 1)]
        elif isinstance(schedule, Schedule):
            if schedule.n_stages != n:
                raise ConfigError(f"unet: schedule has {schedule.n_stages} stages, the model has {n}")
            self._schedule = schedule
        else:
            raise ConfigError(f"unet: schedule must be a Schedule or a bool, got {type(schedule).__name__}")

    @property
    def checkpointing(self) -> bool:
        """Whether a checkpointing schedule is active."""
        return self._schedule is not None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(
                f"unet: batch['x'] must be [batch, {self.config['in_channels']}, H, W], got {tuple(x.shape)}"
            )
        x = torch.nan_to_num(x, nan=self.nan_fill)
        H, W = x.shape[-2:]
        s = self.stride
        ph, pw = (-H) % s, (-W) % s
        if ph or pw:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            if mode == "reflect" and (ph >= H or pw >= W):
                mode = "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    def memory_chain(self, batch: dict) -> Chain:
        """The model applied to ``batch`` as a chain of stages (see ``hydroml.memory.checkpoint.Chain``)."""
        x = batch["x"] if isinstance(batch, dict) else batch
        H, W = x.shape[-2:]
        xp = self._prepare(x)

        def finish(state: tuple) -> dict:
            return {"y_hat": state[0][..., :H, :W]}

        stages = self.stages() if self._lean_active() else list(self.chain)
        names = [s.name for s in stages]
        nests = [
            (names.index(f"enc{lvl + 1}.pool_conv1"), names.index(f"dec{lvl}.up_conv1"))
            for lvl in range(self.depth)
        ]
        if self._lean_active():
            desc = (
                "unet lean stages (lean=True): each stage applies the previous convolution's norm + ReLU itself and "
                "keeps only pre-norm tensors; its backward recomputes norm + ReLU, pooling and the 2x2 "
                "up-convolution (column backward+), never a 3x3 convolution"
            )
        else:
            desc = "unet plain stages" + (
                " (lean=True would keep about half: norm + ReLU, pooling and up-sampling recomputed in backward)"
                if not self.lean and not self.reversible and self.config["norm"] in ("batch", "none")
                else ""
            )
        return Chain(stages, (xp,), finish, names, nests=nests, description=desc)

    def forward(self, batch: dict) -> dict:
        """Predict every cell.

        Parameters
        ----------
        batch : dict
            ``"x"``: ``[B, in_channels, H, W]`` (NaN allowed).

        Returns
        -------
        dict
            ``"y_hat"``: ``[B, out_channels, H, W]``.
        """
        chain = self.memory_chain(batch)
        # a lean model's schedule is over its lean stages: eval and no-grad runs (plain stages) ignore it
        schedule = self._schedule if (self._lean_active() or not self.lean) else None
        return chain.output(run_chain(chain.stages, chain.input, schedule))

    # ------------------------------------------------------------------------------------------------------
    def _block_radius(self) -> int:
        r = self.kernel_size // 2
        return r * (1 + 2 * self.reversible_blocks) if self.reversible else 2 * r

    def receptive_field(self) -> ReceptiveField:
        """Radius, total stride and tiling halo, from the configuration (see the module docstring)."""
        rb = self._block_radius()
        depth = self.depth

        def enc(lvl: int, a: int, b: int) -> tuple[int, int]:
            a, b = a - rb, b + rb
            if lvl == 0:
                return a, b
            return enc(lvl - 1, 2 * a, 2 * b + 1)

        def dec(lvl: int, a: int, b: int) -> tuple[int, int]:
            if lvl == depth:
                return enc(depth, a, b)
            a, b = a - rb, b + rb
            lo1, hi1 = enc(lvl, a, b)
            lo2, hi2 = dec(lvl + 1, a // 2, b // 2)
            return min(lo1, lo2), max(hi1, hi2)

        radius = 0
        for p in range(self.stride):
            lo, hi = dec(0, p, p)
            radius = max(radius, p - lo, hi - p)
        s = self.stride
        return ReceptiveField(radius=radius, stride=s, halo=int(math.ceil(radius / s) * s))


@register_model("unet")
def unet(**config) -> UNet:
    """Build a :class:`UNet` (``hydroml.models.create("unet", in_channels=12, ...)``)."""
    import inspect

    valid = set(inspect.signature(UNet.__init__).parameters) - {"self"}
    unknown = set(config) - valid
    if unknown:
        raise ConfigError(f"unet: unknown config keys {sorted(unknown)}; valid keys: {sorted(valid)}")
    return UNet(**config)
