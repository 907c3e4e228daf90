"""``torch.compile`` with a logged fallback: :func:`compile_model` and :class:`CompiledModel`."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger("hydroml.export")

__all__ = ["COMPILE_MODES", "CompiledModel", "compile_model"]

#: ``torch.compile`` modes accepted by :func:`compile_model` (and ``train.compile``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def _graph_breaks() -> dict[str, int]:
    """Dynamo's running graph-break counters (reason -> count)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return {}
    return dict(counters.get("graph_break", {}))


class CompiledModel(nn.Module):
    """A model run through ``torch.compile``, falling back to eager execution when it cannot compile.

    ``torch.compile`` is lazy: tracing and code generation happen on the first call. If that call raises (an
    unsupported operation under ``fullgraph=True``, a missing C++ compiler for Inductor...), the model logs
    one line with the reason and runs eagerly from then on; the outputs are the eager model's. After the first
    compiled call it logs how many graph breaks dynamo took and why (a break runs that part eagerly: e.g.
    ``nn.LSTM`` is never traced by dynamo and the fused CPU LSTM kernel's buffer lock is not traceable).

    The wrapped model is ``self.module``; ``state_dict`` keys gain a ``module.`` prefix, so save
    ``compiled.module`` (the training loop does).

    Parameters
    ----------
    model : torch.nn.Module
        The model (``forward(batch: dict) -> dict``).
    mode : {"default", "reduce-overhead", "max-autotune"}
        ``torch.compile`` mode.
    name : str, optional
        Name used in log lines (default: the class name).
    **kwargs
        Passed to ``torch.compile`` (``fullgraph``, ``dynamic``, ``backend``...).
    """

    def __init__(self, model: nn.Module, mode: str = "default", name: str | None = None, **kwargs: Any):
        super().__init__()
        if mode not in COMPILE_MODES:
            from hydroml.exceptions import ConfigError

            raise ConfigError(f"compile mode: expected one of {', '.join(COMPILE_MODES)}, found {mode!r}")
        self.module = model
        self.name = name or type(model).__name__
        self.hidden_size = getattr(model, "hidden_size", None)
        self._compiled = torch.compile(model, mode=mode, **kwargs)
        self.compiled: bool | None = None  # None: not called yet; False: fell back to eager
        self.fallback_reason: str | None = None
        self.graph_breaks: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "module" not in modules:
                raise
            return getattr(modules["module"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the compiled model (the eager one after a failed compilation)."""
        if self.compiled is False:
            return self.module(*args, **kwargs)
        if self.compiled is True:
            return self._compiled(*args, **kwargs)
        before = _graph_breaks()
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as err:  # any compilation failure: fall back, once, with the reason
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            self.compiled, self.fallback_reason = False, reason[:300]
            log.warning("%s cannot be compiled (%s); running it eagerly", self.name, self.fallback_reason)
            return self.module(*args, **kwargs)
        self.compiled = True
        after = _graph_breaks()
        self.graph_breaks = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
        if self.graph_breaks:
            reasons = "; ".join(f"{k.splitlines()[0][:120]} (x{v})" for k, v in self.graph_breaks.items())
            log.info(
                "%s compiled with %d graph break(s), those parts run eagerly: %s",
                self.name,
                sum(self.graph_breaks.values()),
                reasons,
            )
        else:
            log.info("%s compiled as one graph", self.name)
        return out


def compile_model(model: nn.Module, mode: str | bool = "default", name: str | None = None, **kwargs: Any):
    """``torch.compile`` a hydroml model, with a one-line logged fallback to eager execution.

    Parameters
    ----------
    model : torch.nn.Module
        Any registered model (:func:`hydroml.models.list_models`).
    mode : str or bool
        ``torch.compile`` mode (``True`` = ``"default"``).
    name : str, optional
        Name used in log lines.
    **kwargs
        Passed to ``torch.compile``.

    Returns
    -------
    CompiledModel
        Call it like the model; ``.module`` is the original.

    Examples
    --------
    >>> from hydroml.models import create
    >>> from hydroml.export import compile_model
    >>> fast = compile_model(create("unet", in_channels=2, base_width=4, depth=1))  # doctest: +SKIP
    """
    if mode is True:
        mode = "default"
    return CompiledModel(model, mode=str(mode), name=name, **kwargs)
