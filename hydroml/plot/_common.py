"""Helpers shared by the plot functions: lazy matplotlib, axes creation, series coercion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hydroml.exceptions import DataError, require


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an error naming the ``maps`` extra."""
    return require("matplotlib.pyplot", "maps")


def get_ax(ax: Any = None, figsize: tuple[float, float] = (8.0, 4.0)) -> Any:
    """``ax``, or new axes on a new figure."""
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def as_mapping(x: Any, labels: Any = None, default: str = "series") -> dict[str, Any]:
    """``{label: series}`` from one series or a mapping of them."""
    if x is None:
        return {}
    if isinstance(x, Mapping):
        return {str(k): v for k, v in x.items()}
    if labels is not None:
        return {str(labels): x}
    name = getattr(x, "name", None)
    return {str(name) if name is not None else default: x}


def series(
    x: Any, *, time: Any = None, basin: Any = None, what: str = "series"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(t, values)`` of a 1-D series.

    ``x`` may be an :class:`xarray.DataArray` (a ``basin`` dimension is selected with ``basin``), a
    :class:`pandas.Series` (its index is the time) or an array (``time`` gives its time axis, default
    ``0..n-1``).
    """
    if hasattr(x, "dims") and hasattr(x, "values"):  # xarray
        da = x
        if basin is not None and "basin" in da.dims:
            da = da.sel(basin=basin)
        extra = [d for d in da.dims if d != "time"] if "time" in da.dims else list(da.dims)[1:]
        if extra or da.ndim != 1:
            raise DataError(
                f"{what} {getattr(x, 'name', '') or ''!s}: a 1-D series over time is needed; found dimensions "
                f"{dict(da.sizes)} (select one basin or cell, e.g. basin=...)"
            )
        dim = da.dims[0]
        t = np.asarray(da[dim].values) if dim in da.coords else np.arange(da.sizes[dim])
        return t, np.asarray(da.values, dtype=float)
    if hasattr(x, "index") and hasattr(x, "to_numpy"):  # pandas Series
        return np.asarray(x.index), np.asarray(x.to_numpy(), dtype=float)
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise DataError(f"{what}: a 1-D series is needed; found an array of shape {v.shape}")
    t = np.arange(v.size) if time is None else np.asarray(time)
    if t.shape != v.shape:
        raise DataError(f"{what}: time has {t.size} values but the series has {v.size}")
    return t, v


def units_of(x: Any, default: str | None = None) -> str | None:
    """The ``units`` attribute of an xarray object, else ``default``."""
    attrs = getattr(x, "attrs", None)
    if isinstance(attrs, Mapping) and attrs.get("units"):
        return str(attrs["units"])
    return default
