"""A registry of model factories, in the style of timm.

Register a factory with :func:`register_model`, build with :func:`create`, list with :func:`list_models`::

    @register_model("lstm")
    def lstm(**config) -> nn.Module: ...

    model = create("lstm", n_dynamic=5, n_static=20, hidden_size=128)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

from hydroml.exceptions import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory under ``name``.

    Parameters
    ----------
    name : str
        Registry name (``"lstm"``, ``"unet"``...). Registering a name twice is an error.
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def _ensure_loaded() -> None:
    # Import the modules that register the built-in models (kept lazy so importing the registry is cheap).
    import importlib
    import pkgutil

    import hydroml.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"hydroml.models.{info.name}")


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a glob ``pattern``, sorted.

    Parameters
    ----------
    pattern : str
        Shell-style pattern, e.g. ``"*lstm"``.

    Returns
    -------
    list of str
    """
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create(name: str, **config) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        Registry name; see :func:`list_models`.
    **config
        Keyword arguments of the model's factory.

    Returns
    -------
    torch.nn.Module
        The model; its ``forward(batch: dict) -> dict`` returns at least ``"y_hat"``.

    Raises
    ------
    ConfigError
        If ``name`` is not registered (the message lists the registered names).
    """
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**config)
