"""The machine a benchmark ran on: CPU model and vector ISA, printed with every row."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo(key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The vector extensions hydroml's kernels care about that this CPU has, comma-separated
    (of avx2, fma, avx512f, avx512_bf16, amx_bf16, amx_tile)."""
    flags = set(_cpuinfo("flags").split())
    return ",".join(f for f in _ISA_FLAGS if f in flags) or "none"
