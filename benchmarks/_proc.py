"""Process memory read from ``/proc/self/status`` (Linux), shared by the benchmark scripts.

``VmHWM`` is the process's peak resident size, ``VmRSS`` its current one; each benchmark measurement runs in a
fresh subprocess so that its peak is its own.
"""

from __future__ import annotations


def status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (e.g. ``"VmHWM"``, ``"VmRSS"``) in MiB; NaN when absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MiB
    return float("nan")
