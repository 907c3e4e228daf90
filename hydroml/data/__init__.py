"""hydroml.data: open files, convert into canonical names and units, aggregate in time, map grids to basins.

The public functions are imported lazily (on first use), so ``import hydroml.data`` stays cheap:

- :func:`open_dataset` (:mod:`hydroml.data.io`): one or many NetCDF / zarr files, standardised and checked;
- :func:`to_canonical`, :func:`convert_units`, :func:`variables_table` (:mod:`hydroml.data.variables`);
- :func:`to_monthly` (:mod:`hydroml.data.time`): daily -> monthly with cell methods and month lengths;
- :func:`load_demo` (:mod:`hydroml.data.demo`): the synthetic demo data.

Datasets described in ``data_catalog/`` open with :func:`hydroml.catalog.open`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "open_dataset": "hydroml.data.io",
    "standardise_coords": "hydroml.data.io",
    "mask_sentinels": "hydroml.data.io",
    "to_canonical": "hydroml.data.variables",
    "convert_units": "hydroml.data.variables",
    "variables_table": "hydroml.data.variables",
    "get_variable": "hydroml.data.variables",
    "canonical_units": "hydroml.data.variables",
    "to_monthly": "hydroml.data.time",
    "load_demo": "hydroml.data.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hydroml.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
