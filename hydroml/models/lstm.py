"""Recurrent discharge models: ``lstm`` (cuDNN / oneDNN ``nn.LSTM``) and ``ealstm`` (entity-aware LSTM).

Both take a batch from :class:`hydroml.datasets.BasinDataset` (``x_dynamic`` ``[B, T, F]``, ``x_static``
``[B, S]``) and return ``{"y_hat": [B, T, n_targets], "h_n": [L, B, H], "c_n": [L, B, H], "state": (h_n, c_n)}``.
An optional ``batch["state"]`` (the ``(h_n, c_n)`` of a previous call) starts the recurrence from that state,
for stateful forecasting over long periods in chunks.

Static attributes are never copied along time
---------------------------------------------
neuralhydrology (and most LSTM rainfall-runoff code) concatenates the static attributes to every time step,
materialising a ``[B, T, F + S]`` input. hydroml instead projects the statics **once per sequence** and adds the
result as a per-sequence bias:

.. math::

    z_t = A_d\\, x^{dyn}_t + \\underbrace{(A_s\\, x^{stat} + a)}_{\\text{one } [B, E] \\text{ bias}}

``A_s x^{stat}`` is a ``[B, E]`` tensor broadcast over time (no ``[B, T, S]`` copy exists). ``z_t`` then enters
``nn.LSTM`` (the fused cuDNN kernel on GPU, oneDNN on CPU), whose input weights ``W_ih`` act on it. Because
``W_ih (A_d x_d + A_s x_s + a) = [W_ih A_d | W_ih A_s] [x_d; x_s] + W_ih a``, the model is exactly an LSTM on the
concatenated input with input weights ``[W_ih A_d | W_ih A_s]``; with the default ``embedding_size = F + S``
every such concatenated LSTM is representable (``tests/test_models_lstm.py`` checks the equivalence by copying
a naive concatenation LSTM into this layout). By default (``input_init``) the projection starts as the identity
``[A_d | A_s] = I``, so the untrained model is exactly an LSTM on the concatenated inputs with ``nn.LSTM``'s
initialisation, as neuralhydrology's ``cudalstm`` (``tests/test_models_lstm_init.py``).

Activation checkpointing over time
----------------------------------
``checkpointing=True`` (or :meth:`set_checkpoint_schedule`) splits the sequence into chunks of time steps.
Only the recurrent state at chunk boundaries and the (small) per-step outputs are kept; each chunk, including
the input projection and the regression head, is recomputed during backward
(``torch.utils.checkpoint`` with ``use_reentrant=False``). Outputs and gradients equal the unchunked model's to
float32 round-off. A schedule is a list whose items are ``int`` (a chunk of that many steps, recomputed),
``{"store": n}`` (a chunk of ``n`` steps whose activations are kept) or a nested list (a segment that is itself
checkpointed and, during its recomputation, chunked again: revolve-style nesting for budgets below one level of
chunking). ``hydroml.memory`` plans such schedules under a byte budget from :meth:`stages`.

With dropout > 0 in training mode the dropout masks depend on the chunking (they are drawn per chunk), so
outputs are identical between schedules only with ``dropout=0`` or in ``eval()`` mode.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hydroml.exceptions import ConfigError
from hydroml.models import _fused_lstm as _fused
from hydroml.models.registry import register_model

__all__ = ["LSTMModel", "EALSTMModel", "lstm", "ealstm"]

Schedule = list  # items: int | {"store": int} | nested list
_KERNELS = ("auto", "fused", "native")


def _cpu_autocast() -> bool:
    """Whether CPU autocast is on (any dtype)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _normalise_schedule(schedule: Any, seq_len: int) -> list:
    """Validate a checkpoint schedule against ``seq_len``; ``int`` = a uniform chunk length."""
    if isinstance(schedule, int) and not isinstance(schedule, bool):
        if schedule < 1:
            raise ConfigError(f"checkpoint chunk length must be >= 1, got {schedule}")
        n_full, rest = divmod(seq_len, schedule)
        return [schedule] * n_full + ([rest] if rest else [])

    def length(item: Any) -> int:
        if isinstance(item, dict):
            if set(item) != {"store"}:
                raise ConfigError(
                    f"checkpoint schedule item {item!r}: expected an int, {{'store': n}} or a list"
                )
            return int(item["store"])
        if isinstance(item, list | tuple):
            return sum(length(i) for i in item)
        return int(item)

    total = length(list(schedule))
    if total != seq_len:
        raise ConfigError(
            f"checkpoint schedule covers {total} time steps but the sequence has {seq_len} ({schedule!r})"
        )
    return list(schedule)


def _default_chunk(seq_len: int) -> int:
    # sqrt(T) chunks: keeps O(sqrt T) states and recomputes each step once.
    return max(1, int(math.ceil(math.sqrt(seq_len))))


class _RecurrentBase(nn.Module):
    """Shared machinery: initial state, chunked (optionally checkpointed) time loop, head and outputs."""

    hidden_size: int
    num_layers: int

    def __init__(self, checkpointing: bool | int | Sequence = False) -> None:
        super().__init__()
        self._schedule: Any = None
        self.set_checkpoint_schedule(checkpointing)

    # -- checkpointing -----------------------------------------------------------------------------------
    @property
    def checkpointing(self) -> bool:
        """Whether time-chunked activation checkpointing is on."""
        return self._schedule is not None

    def set_checkpoint_schedule(self, schedule: bool | int | Sequence | None) -> None:
        """Choose how the time loop is checkpointed.

        Parameters
        ----------
        schedule : bool, int, list or None
            ``False``/``None``: store every activation (fastest, most memory). ``True``: chunks of
            ``ceil(sqrt(T))`` steps. ``int``: chunks of that many steps. ``list``: an explicit schedule (see the
            module docstring) whose lengths must sum to the sequence length.
        """
        if schedule is False or schedule is None:
            self._schedule = None
        elif schedule is True:
            self._schedule = "sqrt"
        elif isinstance(schedule, int):
            if schedule < 1:
                raise ConfigError(f"checkpoint chunk length must be >= 1, got {schedule}")
            self._schedule = schedule
        else:
            self._schedule = list(schedule)

    def stages(self, seq_len: int, batch_size: int) -> list[dict]:
        """The model's chain of stages for the memory planner: one stage per time step.

        Parameters
        ----------
        seq_len : int
            Sequence length ``T``.
        batch_size : int
            Batch size ``B``.

        Returns
        -------
        list of dict
            ``T`` homogeneous stages with ``"name"``, ``"state_bytes"`` (the ``(h, c)`` kept at a chunk boundary)
            and ``"activation_bytes"`` (what one step keeps for backward in float32, ``B * H * 4`` bytes times
            :meth:`_saved_floats_per_step`, calibrated against ``hydroml.memory.profile``: the fused
            ``nn.LSTM`` kernel keeps a workspace of gates and states, not only the 4 gates and 3 states of the
            textbook cell). Measure with ``hydroml.memory.profile`` for exact figures.
        """
        h = self.hidden_size * self.num_layers
        state = 2 * batch_size * h * 4
        act = int(batch_size * h * 4 * self._saved_floats_per_step())
        return [
            {"name": f"t{t}", "kind": "time", "state_bytes": state, "activation_bytes": act}
            for t in range(seq_len)
        ]

    def _saved_floats_per_step(self) -> float:
        # Measured with hydroml.memory.profile (saved_tensors_hooks, deduplicated by storage) on torch 2.13 CPU:
        # 17.5 B*H floats per step for (H, B, T) in {(64, 32, 365), (128, 16, 100), (32, 64, 200)}, the same
        # within 0.1 % for each: the oneDNN LSTM workspace plus the projected inputs, outputs and head.
        return 17.5

    # -- forward -----------------------------------------------------------------------------------------
    def _initial_state(self, batch: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = batch.get("state")
        shape = (self.num_layers, x.shape[0], self.hidden_size)
        if state is None:
            z = x.new_zeros(shape)
            return z, z
        if isinstance(state, dict):
            h0, c0 = state["h_n"], state["c_n"]
        else:
            h0, c0 = state
        if tuple(h0.shape) != shape or tuple(c0.shape) != shape:
            raise ValueError(
                f"batch['state'] must be (h, c) of shape {shape}, got {tuple(h0.shape)} and {tuple(c0.shape)}"
            )
        return h0.to(x.dtype), c0.to(x.dtype)

    def _static_bias(self, batch: dict, x: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError

    def _chunk(
        self, x_dyn: torch.Tensor, sbias: torch.Tensor | None, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run ``x_dyn`` ``[B, t, F]`` from state ``(h, c)``; return ``(y_hat [B, t, n], h, c)``."""
        raise NotImplementedError

    def _run(self, items: list, x: torch.Tensor, sbias, h, c, start: int, nested: bool):
        ys = []
        for item in items:
            if isinstance(item, dict):
                n = int(item["store"])
                y, h, c = self._chunk(x[:, start : start + n], sbias, h, c)
            elif isinstance(item, list | tuple):
                n = _normalised_len(item)
                seg = list(item)
                y, h, c = checkpoint(
                    self._segment, seg, x[:, start : start + n], sbias, h, c, use_reentrant=False
                )
            else:
                n = int(item)
                y, h, c = checkpoint(self._chunk, x[:, start : start + n], sbias, h, c, use_reentrant=False)
            ys.append(y)
            start += n
        return torch.cat(ys, dim=1) if len(ys) > 1 else ys[0], h, c

    def _segment(self, items: list, x: torch.Tensor, sbias, h, c):
        y, h, c = self._run(items, x, sbias, h, c, 0, nested=True)
        return y, h, c

    def forward(self, batch: dict) -> dict:
        """Run the model on a batch.

        Parameters
        ----------
        batch : dict
            ``"x_dynamic"`` ``[B, T, F]``, ``"x_static"`` ``[B, S]`` (when ``n_static > 0``), optional
            ``"state"`` = ``(h_0, c_0)`` each ``[num_layers, B, hidden_size]``.

        Returns
        -------
        dict
            ``"y_hat"`` ``[B, T, n_targets]`` (every step), ``"h_n"`` and ``"c_n"`` ``[num_layers, B,
            hidden_size]`` (state after the last step), ``"state"`` = ``(h_n, c_n)``.
        """
        x = batch["x_dynamic"]
        if x.dim() != 3 or x.shape[-1] != self.n_dynamic:
            raise ValueError(f"x_dynamic must be [batch, time, {self.n_dynamic}], got shape {tuple(x.shape)}")
        sbias = self._static_bias(batch, x)
        h, c = self._initial_state(batch, x)
        seq_len = x.shape[1]
        use_ckpt = self._schedule is not None and torch.is_grad_enabled()
        if not use_ckpt:
            y, h, c = self._chunk(x, sbias, h, c)
        else:
            sched = self._schedule
            if sched == "sqrt":
                sched = _default_chunk(seq_len)
            items = _normalise_schedule(sched, seq_len)
            y, h, c = self._run(items, x, sbias, h, c, 0, nested=False)
        return {"y_hat": y, "h_n": h, "c_n": c, "state": (h, c)}


def _normalised_len(item: Any) -> int:
    if isinstance(item, dict):
        return int(item["store"])
    if isinstance(item, list | tuple):
        return sum(_normalised_len(i) for i in item)
    return int(item)


class LSTMModel(_RecurrentBase):
    """LSTM regression model on ``nn.LSTM`` with statics added as a per-sequence input bias.

    Parameters
    ----------
    n_dynamic : int
        Number of dynamic (time-varying) inputs ``F``.
    n_static : int
        Number of static attributes ``S`` (0 for none).
    n_targets : int
        Number of regression targets.
    hidden_size : int
        LSTM hidden size ``H``.
    num_layers : int
        Stacked LSTM layers (statics enter the first).
    embedding_size : int, optional
        Size ``E`` of the input projection fed to ``nn.LSTM``; defaults to ``F + S`` (as expressive as
        concatenating statics to every step).
    dropout : float
        Dropout on the hidden states before the head (and between stacked layers).
    initial_forget_bias : float, optional
        Initial forget-gate bias (3 keeps the gate open early in training, as in neuralhydrology).
    checkpointing : bool, int or list
        Time-chunked activation checkpointing; see :meth:`set_checkpoint_schedule`.
    input_init : {"identity", "default"}, optional
        Initialisation of the input projection (``input_dynamic``, ``input_static``). ``"identity"``: the
        projection starts as the identity on the concatenated inputs (``z_t = [x^{dyn}_t; x^{stat}]``, zero in
        any rows beyond ``F + S``, zero bias), so that at initialisation the model *is* an LSTM on the
        concatenated inputs with ``nn.LSTM``'s own initialisation (neuralhydrology's ``cudalstm``). Needs
        ``embedding_size >= F + S``. ``"default"``: PyTorch's ``nn.Linear`` initialisation (uniform
        ``+-1/sqrt(fan_in)``), which mixes the inputs and scales them by about ``sqrt(1/3)`` before ``W_ih``
        (the effective input weights ``W_ih A`` start ~0.58x as large as ``nn.LSTM``'s); the only behaviour
        before this option existed. It learns more slowly: on the Salmon River benchmark (8 epochs, 6 seeds,
        ``BENCHMARKS.md``) the test KGE averages 0.686 (variability ratio alpha 0.72) against 0.714 (alpha
        0.76) with ``"identity"``, and seed 1's training loss ends at 0.064 against 0.040. ``None`` (the default):
        ``"identity"`` when ``embedding_size >= F + S``, else ``"default"``. Only the initial values differ:
        parameter names and shapes are the same, so weights trained with either load into both.
    kernel : {"auto", "fused", "native"}
        The recurrence used for training on CPU. ``"native"``: ``nn.LSTM`` (oneDNN on CPU, cuDNN on GPU).
        ``"fused"``: hydroml's fused CPU kernel (:mod:`hydroml.models._fused_lstm`: one GEMM and one fused
        pass per step on hydroml's own AVX-512 / AVX2 GEMM micro-kernels, weight gradients accumulated inside the
        backward loop, reused buffers; speed and kept activations against oneDNN in BENCHMARKS.md, "roofline"
        and "fused CPU LSTM kernel"); an error if it cannot be compiled. ``"auto"`` (default): ``"fused"`` when
        the model trains on CPU in float32 (or under bf16 autocast on a CPU with AVX-512 BF16: the kernel's bf16
        path) with one layer and the kernel compiles (else ``nn.LSTM``, with one log line saying why).
        Inference without gradients, GPUs, other autocast and stacked layers always use ``nn.LSTM``. The
        parameters are ``nn.LSTM``'s in every case (same state dict); outputs and gradients agree to float32
        round-off.
    """

    def __init__(
        self,
        n_dynamic: int,
        n_static: int = 0,
        n_targets: int = 1,
        hidden_size: int = 64,
        num_layers: int = 1,
        embedding_size: int | None = None,
        dropout: float = 0.0,
        initial_forget_bias: float | None = 3.0,
        checkpointing: bool | int | Sequence = False,
        input_init: str | None = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__(checkpointing)
        if kernel not in _KERNELS:
            raise ConfigError(f"lstm: kernel must be one of {_KERNELS}, got {kernel!r}")
        self.kernel = kernel
        if n_dynamic < 1 or n_static < 0 or n_targets < 1 or hidden_size < 1 or num_layers < 1:
            raise ConfigError(
                f"lstm: need n_dynamic >= 1, n_static >= 0, n_targets >= 1, hidden_size >= 1, num_layers >= 1; "
                f"got {n_dynamic}, {n_static}, {n_targets}, {hidden_size}, {num_layers}"
            )
        self.n_dynamic, self.n_static, self.n_targets = n_dynamic, n_static, n_targets
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.embedding_size = embedding_size or (n_dynamic + n_static)
        self.input_dynamic = nn.Linear(n_dynamic, self.embedding_size, bias=True)
        self.input_static = nn.Linear(n_static, self.embedding_size, bias=False) if n_static else None
        self.lstm = nn.LSTM(
            self.embedding_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_targets)
        if initial_forget_bias is not None:
            with torch.no_grad():
                for layer in range(num_layers):
                    getattr(self.lstm, f"bias_hh_l{layer}")[hidden_size : 2 * hidden_size] = (
                        initial_forget_bias
                    )
        n_in = n_dynamic + n_static
        if input_init is None:
            input_init = "identity" if self.embedding_size >= n_in else "default"
        if input_init not in ("identity", "default"):
            raise ConfigError(f"lstm: input_init must be 'identity', 'default' or None, got {input_init!r}")
        if input_init == "identity":
            if self.embedding_size < n_in:
                raise ConfigError(
                    f"lstm: input_init='identity' needs embedding_size >= n_dynamic + n_static = {n_in}, got "
                    f"{self.embedding_size}; use input_init='default'"
                )
            self._identity_projection()
        self.input_init = input_init

    @torch.no_grad()
    def _identity_projection(self) -> None:
        """``z = [x_dyn; x_stat; 0]``: the input projection as the identity on the concatenated inputs."""
        f, s = self.n_dynamic, self.n_static
        self.input_dynamic.weight.zero_()
        self.input_dynamic.weight[:f, :f] = torch.eye(f)
        self.input_dynamic.bias.zero_()
        if self.input_static is not None:
            self.input_static.weight.zero_()
            self.input_static.weight[f : f + s, :s] = torch.eye(s)

    def _static_bias(self, batch: dict, x: torch.Tensor) -> torch.Tensor | None:
        if self.input_static is None:
            return None
        xs = batch["x_static"]
        if xs.shape != (x.shape[0], self.n_static):
            raise ValueError(f"x_static must be [batch, {self.n_static}], got shape {tuple(xs.shape)}")
        return self.input_static(xs).unsqueeze(1)  # [B, 1, E]: broadcast over time, never copied

    def _saved_floats_per_step(self) -> float:
        dev = next(self.parameters()).device
        if self.kernel == "native" or self.num_layers != 1 or dev.type != "cpu" or not _fused.available():
            return super()._saved_floats_per_step()
        # The fused kernel keeps the 4 gate activations, c_t and the GEMM operand [x_t | h_{t-1}] per step:
        # 5 + (F + H) / H floats per B*H, measured 6.08-6.40 with hydroml.memory.profile for (H, B, T) in
        # {(64, 32, 365), (128, 16, 100), (32, 64, 200), (128, 256, 100)} (the head and per-call buffers on top).
        return 5.0 + (self.n_dynamic + self.hidden_size) / self.hidden_size + 0.1

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.kernel == "native" or not torch.is_grad_enabled() or not self.training:
            return False
        if self.num_layers != 1 or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        autocast = _cpu_autocast()
        if autocast:  # bf16 autocast: the kernel's bf16 path where the CPU has it, else nn.LSTM
            return self._autocast_bf16() and _fused.has_bf16(self.hidden_size)
        if _fused.available():
            return True
        if self.kernel == "fused":
            raise ConfigError(f"lstm: kernel='fused' is unavailable: {_fused.unavailable_reason()}")
        return False

    @staticmethod
    def _autocast_bf16() -> bool:
        try:
            return torch.get_autocast_dtype("cpu") == torch.bfloat16
        except AttributeError:  # torch < 2.4
            return torch.get_autocast_cpu_dtype() == torch.bfloat16

    def _fused_chunk(self, x_dyn, sbias, h, c):
        lstm = self.lstm
        bf16 = (
            _cpu_autocast()
        )  # _use_fused admits CPU autocast only in bfloat16, where the kernel has a bf16 path
        # The small products that fold the input projection and the statics into the kernel's operands run in
        # float32 also under autocast: bf16 is used only inside the kernel's large GEMMs (float32 accumulation).
        with torch.autocast("cpu", enabled=False):
            w_ih = lstm.weight_ih_l0
            w_x = w_ih @ self.input_dynamic.weight  # [4H, F]: W_ih A_d
            z0 = self.input_dynamic.bias if sbias is None else sbias[:, 0].float() + self.input_dynamic.bias
            bias = torch.nn.functional.linear(z0, w_ih, lstm.bias_ih_l0 + lstm.bias_hh_l0)
            bias = bias.expand(x_dyn.shape[0], -1).contiguous()  # [B, 4H]
            w_cat = torch.cat([w_x, lstm.weight_hh_l0], dim=1)
            out, h_n, c_n = _fused.fused_lstm(
                x_dyn.float(), bias, w_cat, h[0].float(), c[0].float(), bf16=bf16
            )
        y = self.head(self.dropout(out)).transpose(0, 1)
        return y, h_n.unsqueeze(0), c_n.unsqueeze(0)

    def _chunk(self, x_dyn, sbias, h, c):
        if self._use_fused(x_dyn):
            return self._fused_chunk(x_dyn, sbias, h, c)
        z = self.input_dynamic(x_dyn)
        if sbias is not None:
            z = z + sbias
        out, (h, c) = self.lstm(z, (h, c))
        return self.head(self.dropout(out)), h, c


class EALSTMModel(_RecurrentBase):
    """Entity-aware LSTM (Kratzert et al., 2019): the input gate depends on the static attributes only.

    .. math::

        i &= \\sigma(W_i x^{stat} + b_i) \\quad\\text{(once per sequence)}\\\\
        f_t, o_t, g_t &= W_{d} x^{dyn}_t + W_h h_{t-1} + b\\\\
        c_t &= \\sigma(f_t) \\odot c_{t-1} + i \\odot \\tanh(g_t),\\quad h_t = \\sigma(o_t) \\odot \\tanh(c_t)

    The dynamic input projection is one matrix product over all steps of a chunk; the recurrence is a loop
    over time (no fused kernel exists for this cell).

    Parameters
    ----------
    n_dynamic, n_static, n_targets, hidden_size, dropout, initial_forget_bias, checkpointing
        As :class:`LSTMModel` (``n_static`` must be >= 1).

    References
    ----------
    Kratzert, F., Klotz, D., Shalev, G., Klambauer, G., Hochreiter, S., and Nearing, G.: Towards learning
    universal, regional, and local hydrological behaviors via machine learning applied to large-sample datasets,
    Hydrol. Earth Syst. Sci., 23, 5089-5110, https://doi.org/10.5194/hess-23-5089-2019, 2019.
    """

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        n_targets: int = 1,
        hidden_size: int = 64,
        dropout: float = 0.0,
        initial_forget_bias: float | None = 3.0,
        checkpointing: bool | int | Sequence = False,
    ) -> None:
        super().__init__(checkpointing)
        if n_dynamic < 1 or n_static < 1 or n_targets < 1 or hidden_size < 1:
            raise ConfigError(
                f"ealstm: need n_dynamic >= 1, n_static >= 1 (its input gate reads the statics), n_targets >= 1, "
                f"hidden_size >= 1; got {n_dynamic}, {n_static}, {n_targets}, {hidden_size}"
            )
        self.n_dynamic, self.n_static, self.n_targets = n_dynamic, n_static, n_targets
        self.hidden_size, self.num_layers = hidden_size, 1
        self.input_gate = nn.Linear(n_static, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(n_dynamic, 3 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 3 * hidden_size))
        self.bias = nn.Parameter(torch.zeros(3 * hidden_size))
        nn.init.orthogonal_(self.weight_ih)
        with torch.no_grad():
            self.weight_hh.copy_(torch.eye(hidden_size).repeat(1, 3))
            if initial_forget_bias is not None:
                self.bias[:hidden_size] = initial_forget_bias
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_targets)

    def _saved_floats_per_step(self) -> float:
        # The step-by-step EA-LSTM cell, measured as above: 7.1-7.2 B*H floats per step for (H, B, T) in
        # {(64, 32, 100), (32, 16, 50)}.
        return 7.2

    def _static_bias(self, batch: dict, x: torch.Tensor) -> torch.Tensor:
        xs = batch["x_static"]
        if xs.shape != (x.shape[0], self.n_static):
            raise ValueError(f"x_static must be [batch, {self.n_static}], got shape {tuple(xs.shape)}")
        return torch.sigmoid(self.input_gate(xs))  # the input gate, [B, H]

    def _chunk(self, x_dyn, i_gate, h, c):
        hs = []
        h_t, c_t = h[0], c[0]
        xg = torch.addmm(self.bias, x_dyn.reshape(-1, self.n_dynamic), self.weight_ih)
        xg = xg.view(x_dyn.shape[0], x_dyn.shape[1], -1)
        H = self.hidden_size
        for t in range(x_dyn.shape[1]):
            gates = torch.addmm(xg[:, t], h_t, self.weight_hh)
            f, o, g = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
            c_t = torch.sigmoid(f) * c_t + i_gate * torch.tanh(g)
            h_t = torch.sigmoid(o) * torch.tanh(c_t)
            hs.append(h_t)
        out = torch.stack(hs, dim=1)
        return self.head(self.dropout(out)), h_t.unsqueeze(0), c_t.unsqueeze(0)


@register_model("lstm")
def lstm(**config: Any) -> LSTMModel:
    """An ``nn.LSTM`` discharge model; keyword arguments as :class:`LSTMModel`."""
    return LSTMModel(**config)


@register_model("ealstm")
def ealstm(**config: Any) -> EALSTMModel:
    """An entity-aware LSTM (Kratzert et al., 2019); keyword arguments as :class:`EALSTMModel`."""
    return EALSTMModel(**config)


# Expose the real keyword arguments (config validation reads the factory's signature).
lstm.__signature__ = inspect.signature(LSTMModel)  # type: ignore[attr-defined]
ealstm.__signature__ = inspect.signature(EALSTMModel)  # type: ignore[attr-defined]
