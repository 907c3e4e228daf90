"""A fused single-layer LSTM for CPU training (``LSTMModel(kernel="fused")``, the default on CPU).

Why
---
On CPU, ``nn.LSTM`` runs oneDNN's LSTM primitive. For the discharge models' shape (batch 256, 365 steps, hidden
128, 1 thread) its forward and backward take about twice the time of the matrix products they contain: the
backward materialises the gate gradients of every step and computes the weight gradients afterwards in separate
passes, and every call allocates (and page-faults) a fresh workspace of ``T * B * 4H`` floats.

What this kernel does (``csrc/fused_lstm.cpp``, compiled on first use with ``torch.utils.cpp_extension``)
-------------------------------------------------------------------------------------------------------
Forward, per step ``t``, one GEMM and one fused pass::

    g    = [x_t | h_{t-1}] @ [W_x | W_hh]^T                   (one GEMM, K = F + H)
    i, f, o = sigmoid(g_i + b_i), ...;  u = tanh(g_g + b_g)    (b: a per-sequence bias, see below)
    c_t  = f * c_{t-1} + i * u;         h_t = o * tanh(c_t)

keeping the activations ``(i, f, u, o)``, ``c_t`` and ``[x_t | h_{t-1}]`` (``h_t`` is written straight into the
next step's GEMM operand). Backward, per step from ``T - 1`` down, one fused pass and two GEMMs::

    dh = dL/dh_t + dh_next;  dc = dc_next + dh * o * (1 - tanh(c_t)^2)
    dg = [dc u i(1-i), dc c_{t-1} f(1-f), dc i (1-u^2), dh tanh(c_t) o(1-o)]    (db += dg in the same pass)
    dW += dg^T @ [x_t | h_{t-1}];   dh_next = dg @ W_hh;   dc_next = dc * f

so the gate gradients never leave the cache and no pass over all steps follows the loop.

GEMMs: the three per-step products (gates, ``dW``, ``dh``) run on hydroml's own register-blocked micro-kernels
(6 x 64 blocks with AVX-512, 6 x 16 with AVX2 + FMA), with the weights packed once per call instead of once per
step, and ``dW^T = [x_t | h_{t-1}]^T dg`` read row by row without packing. The path is picked at run time from
what the CPU and the build have (:func:`isa`; ``HYDROML_LSTM_ISA=avx512|avx2|blas`` or :func:`set_isa` to
choose); hidden sizes that are not a multiple of the vector width (16 / 8) use ATen's BLAS. The reason: MKL
takes its AVX2 code on AMD CPUs, half the FMA rate of an AVX-512 core, and BENCHMARKS.md ("roofline") has the
figures. ``HYDROML_LSTM_MARCH`` (default ``native``) sets the build's ``-march``, e.g. ``x86-64-v3`` to build
what an AVX2-only CPU would on an AVX-512 machine.

Threads split the batch, not the step: with ``n`` intra-op threads each runs the whole time loop on ``B / n``
sequences (at least 32) with single-threaded GEMMs, and the weight gradients of the parts are summed at the
end. A step therefore costs no synchronisation between threads (oneDNN's and a per-step parallel GEMM's do, and
stall whenever another process holds a core). The worker threads take the caller's flush-to-zero setting
(``torch.set_flush_denormal`` only sets the calling thread's) while they run the kernel. The large buffers
(activations, cell states, GEMM operands) come from a small pool and are reused by the next step once autograd
has released them (checked with the storage's reference count), so they are not page-faulted again each step.

The per-sequence bias folds the static attributes and the input projection in, exactly (see
:class:`hydroml.models.lstm.LSTMModel`)::

    W_ih (A_d x_t + A_s s + a) + b_ih + b_hh = (W_ih A_d) x_t + [W_ih (A_s s + a) + b_ih + b_hh]

``W_x = W_ih A_d`` (``[4H, F]``) and the bracket (``[B, 4H]``) are formed by autograd-tracked products of the
model's own parameters, so the parameters, their names and the state dict are those of ``nn.LSTM``; only the
order of floating-point operations differs (outputs and gradients equal ``nn.LSTM``'s to float32 round-off,
``tests/test_fused_lstm.py``).

bf16 (``fused_lstm(..., bf16=True)``, taken by ``LSTMModel`` under CPU bf16 autocast, i.e. ``train.bf16``): on CPUs
with AVX-512 BF16 the gate GEMM and ``dh = dg W_hh`` take bfloat16 operands (``vdpbf16ps``: pairs along the
reduction, float32 accumulation); the cell state, the element-wise passes, ``dW`` and everything kept for
backward stay float32. Skill against float32 on real basins is in BENCHMARKS.md.

Limits: float32 (or the bf16 path above) on CPU, one layer; the model falls back to ``nn.LSTM`` elsewhere (GPU:
cuDNN; other autocast; several layers; inference without gradients). If the kernel cannot be compiled (no C++ compiler or ninja) the
model logs why once and uses ``nn.LSTM``. ``HYDROML_FUSED_LSTM=0`` disables it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import tempfile
import threading
from pathlib import Path

import torch

logger = logging.getLogger("hydroml")

__all__ = ["available", "fused_lstm", "has_bf16", "isa", "set_isa", "unavailable_reason"]

_SOURCE = Path(__file__).with_name("csrc") / "fused_lstm.cpp"
_lock = threading.RLock()
_state: dict = {"ops": None, "error": None, "tried": False}


def _march() -> str:
    """The ``-march`` of the build: ``native`` unless ``HYDROML_LSTM_MARCH`` says otherwise (e.g. ``x86-64-v3``,
    AVX2 + FMA without AVX-512, to measure on an AVX-512 machine what an AVX2-only CPU compiles)."""
    return os.environ.get("HYDROML_LSTM_MARCH", "native")


def _build_dir() -> Path:
    """A cache folder per source, torch version, CPU and ``-march`` (the default build uses ``-march=native``)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        pass
    key = hashlib.sha256(
        _SOURCE.read_bytes()
        + torch.__version__.encode()
        + platform.machine().encode()
        + flags.encode()
        + _march().encode()
    ).hexdigest()[:16]
    root = Path(os.environ.get("HYDROML_CACHE", Path.home() / ".cache" / "hydroml"))
    return root / "extensions" / f"fused_lstm_{key}"


@contextlib.contextmanager
def _ninja_on_path():
    """While building: the ``ninja`` wheel's binary on PATH when no ``ninja`` is (a fresh venv, or pyenv before a
    rehash). PATH is restored afterwards: using a model must not change the process's environment."""
    before = os.environ.get("PATH")
    try:
        if not shutil.which("ninja"):
            try:
                import ninja  # the PyPI package, a dependency of hydroml
            except ImportError:
                pass
            else:
                os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + (before or "")
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


def _load():
    with _lock:
        if _state["tried"]:
            return _state["ops"]
        _state["tried"] = True
        if os.environ.get("HYDROML_FUSED_LSTM", "1") == "0":
            _state["error"] = "disabled by HYDROML_FUSED_LSTM=0"
            return None
        try:
            from torch.utils.cpp_extension import load

            build = _build_dir()
            try:
                build.mkdir(parents=True, exist_ok=True)
            except OSError:  # read-only home: build in the temporary folder instead
                build = Path(tempfile.gettempdir()) / "hydroml-extensions" / build.name
                build.mkdir(parents=True, exist_ok=True)
            if not any(build.glob("*.so")):
                logger.info("compiling the CPU LSTM kernel (once, about 15-40 s; cached in %s)", build)
            with _ninja_on_path():
                load(
                    name="hydroml_fused_lstm",
                    sources=[str(_SOURCE)],
                    # -fopenmp at compile time only: ATen's parallel_for is inlined from its headers and
                    # runs serially without it. Not linked: the GOMP symbols resolve to the OpenMP runtime
                    # torch has already loaded, so there is one thread pool, not two.
                    extra_cflags=["-O3", f"-march={_march()}", "-ffast-math", "-fopenmp"],
                    build_directory=str(build),
                    is_python_module=False,
                    verbose=False,
                )
            _state["ops"] = torch.ops.hydroml_lstm
        except Exception as err:  # noqa: BLE001 - any build failure means: use nn.LSTM
            _state["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err) else ''}"
            logger.warning("fused CPU LSTM kernel unavailable (%s); using nn.LSTM", _state["error"])
        return _state["ops"]


def available() -> bool:
    """Whether the fused CPU kernel is (or can be) compiled and loaded; compiles it on the first call."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (``None`` when it is available or was not tried)."""
    _load()
    return _state["error"]


def isa(hidden: int) -> str:
    """The GEMM path the kernel takes for ``hidden`` units: ``"avx512"`` or ``"avx2"`` (hydroml's micro-kernels)
    or ``"blas"`` (ATen's BLAS; also where ``hidden`` is not a multiple of the vector width: 16 / 8).

    Compiles the kernel on first use. Raises ``RuntimeError`` when it is unavailable.
    """
    if not available():
        raise RuntimeError(f"fused CPU LSTM kernel unavailable: {unavailable_reason()}")
    return _state["ops"].isa(int(hidden))


def set_isa(name: str) -> str:
    """Choose the GEMM path for the rest of the process: ``"auto"`` (the best the CPU and the build have),
    ``"avx512"``, ``"avx2"`` or ``"blas"`` (capped at what is available). Returns the path now chosen.

    The environment variable ``HYDROML_LSTM_ISA`` sets the initial choice. For tests and benchmarks.
    """
    if not available():
        raise RuntimeError(f"fused CPU LSTM kernel unavailable: {unavailable_reason()}")
    return _state["ops"].set_isa(str(name))


def has_bf16(hidden: int) -> bool:
    """Whether the kernel's bfloat16 path runs for ``hidden`` units here: AVX-512 BF16 in the CPU and the build,
    the AVX-512 GEMM path selected and ``hidden`` a multiple of 16. False where the kernel is unavailable."""
    return available() and bool(_state["ops"].has_bf16(int(hidden)))


# ---- buffer pool ---------------------------------------------------------------------------------------
_POOL: dict[tuple, list[tuple[torch.Tensor, tuple[int, int]]]] = {}
_POOL_SHAPES = 6
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _refs(t: torch.Tensor) -> tuple[int, int]:
    # References to the tensor itself (autograd's saved tensors hold it) and to its storage (views hold it).
    return t._use_count(), _storage_use_count(t.untyped_storage()._cdata)


def _buffer(shape: tuple) -> torch.Tensor:
    """A float32 CPU buffer of ``shape``: a pooled one nobody else references, else a new one (pooled)."""
    if _storage_use_count is None:
        return torch.empty(shape)
    with _lock:
        return _pooled(shape)


def _pooled(shape: tuple) -> torch.Tensor:
    entries = _POOL.get(shape)
    if entries is None:
        if len(_POOL) >= _POOL_SHAPES:  # forget the oldest shape (batch sizes of a new run)
            _POOL.pop(next(iter(_POOL)))
        entries = _POOL[shape] = []
    for buf, base in entries:
        if _refs(buf) == base:
            # a view: it holds the storage (visible to _refs) from here on, before autograd saves anything
            return buf.view(shape)
    buf = torch.empty(shape)
    if len(entries) < 2:
        entries.append((buf, _refs(buf)))
        return buf.view(shape)
    return buf


class _FusedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, w_cat, h0, c0, bf16):  # noqa: D401
        ops = _state["ops"]
        B, T, F = x.shape
        H = h0.shape[-1]
        xh = _buffer((T + 1, B, F + H))
        acts = _buffer((T, B, 4 * H))
        cs = _buffer((T, B, H))
        xh[:T, :, :F].copy_(x.transpose(0, 1))
        xh[T, :, :F].zero_()
        ops.fwd(xh, bias.contiguous(), w_cat.contiguous(), h0.contiguous(), c0.contiguous(), acts, cs, bf16)
        ctx.save_for_backward(xh, w_cat, c0, acts, cs)
        ctx.n_in = F
        ctx.bf16 = bf16
        out = xh[1:, :, F:]
        return out, xh[T, :, F:].clone(), cs[T - 1].clone()

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn):  # noqa: D401
        xh, w_cat, c0, acts, cs = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        dx, db, dw, dh0, dc0 = _state["ops"].bwd(
            xh,
            w_cat,
            c0,
            acts,
            cs,
            g_out.contiguous(),
            g_hn.contiguous(),
            g_cn.contiguous(),
            need_dx,
            ctx.bf16,
        )
        return (dx.transpose(0, 1) if need_dx else None), db, dw, dh0, dc0, None


def fused_lstm(
    x: torch.Tensor,
    bias: torch.Tensor,
    w_cat: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the fused LSTM (call :func:`available` first).

    Parameters
    ----------
    x : Tensor
        ``[B, T, F]`` inputs.
    bias : Tensor
        ``[B, 4H]`` per-sequence gate bias (gate order i, f, g, o, as ``nn.LSTM``).
    w_cat : Tensor
        ``[4H, F + H]``: input weights ``W_x`` and recurrent weights ``W_hh`` side by side.
    h0, c0 : Tensor
        ``[B, H]`` initial state.
    bf16 : bool
        The gate and ``dh`` GEMMs in bfloat16 with float32 accumulation (AVX-512 BF16; see :func:`has_bf16`).
        All tensors stay float32, and so do the cell state, the weight gradients and what backward keeps.

    Returns
    -------
    out : Tensor
        ``[T, B, H]`` hidden states ``h_1 .. h_T`` (time-major; a view into the kernel's buffer).
    h_n, c_n : Tensor
        ``[B, H]`` final state.
    """
    return _FusedLSTM.apply(x, bias, w_cat, h0, c0, bool(bf16))
