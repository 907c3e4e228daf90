"""Exceptions raised by hydroml.

All errors about user input subclass :class:`HydroMLError`, itself a :class:`ValueError`, so callers can catch
one type. Messages name the file, variable or key, what was expected and what was found.
"""

from __future__ import annotations


class HydroMLError(ValueError):
    """Base class of hydroml's input errors."""


class DataError(HydroMLError):
    """A data file or dataset is missing, malformed or inconsistent."""


class UnitError(DataError):
    """A unit is unknown or cannot be converted into the canonical unit."""


class CatalogError(HydroMLError):
    """A data catalog entry is invalid, unknown, or points at missing files."""


class ConfigError(HydroMLError):
    """A configuration is invalid (unknown key, wrong type, out of range)."""


class WriteError(HydroMLError):
    """An output file could not be written (full disk, read-only folder...); nothing partial was left."""


class OptionalDependencyError(ImportError):
    """An optional dependency is needed; the message says which extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency or raise a message that says what to install.

    Parameters
    ----------
    module : str
        Module name to import, e.g. ``"matplotlib.pyplot"``.
    extra : str
        The hydroml extra that provides it, e.g. ``"maps"``.

    Returns
    -------
    module
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - message path tested in tests/test_package.py
        raise OptionalDependencyError(
            f"{module!r} is needed for this feature: install it with `pip install 'hydroml[{extra}]'`"
        ) from err
