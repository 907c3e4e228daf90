"""Readers: parse one file layout (CAMELS-US text files, Caravan, per-basin NetCDF, station CSV...) into xarray.

A reader knows a layout, not its semantics: it returns an :class:`xarray.Dataset` with the *source* variable
names, decoded times and standardised coordinates (``time``, ``lat``, ``lon``, ``basin``), missing values as NaN.
The catalog entry's variable mapping then renames and converts into canonical names and units
(:mod:`hydroml.data.variables`). Readers register themselves by name::

    @register_reader("camels_us")
    def read_camels_us(path: Path, **options) -> xr.Dataset: ...

``path`` is the dataset's location resolved under the data root (a file, a folder, or a glob pattern);
``options`` are the ``reader_options`` of the catalog entry plus any keyword given to ``catalog.open``.
"""

from __future__ import annotations

from collections.abc import Callable

from hydroml.exceptions import CatalogError

_READERS: dict[str, Callable] = {}


def register_reader(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a reader function under ``name``."""

    def deco(fn: Callable) -> Callable:
        _READERS[name] = fn
        return fn

    return deco


def _ensure_loaded() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def get_reader(name: str) -> Callable:
    """Return the reader registered as ``name``.

    Raises
    ------
    CatalogError
        If no reader has that name; the message lists the known readers.
    """
    _ensure_loaded()
    if name not in _READERS:
        raise CatalogError(f"unknown reader {name!r}; known readers: {', '.join(sorted(_READERS))}")
    return _READERS[name]


def list_readers() -> list[str]:
    """Names of the registered readers, sorted."""
    _ensure_loaded()
    return sorted(_READERS)
