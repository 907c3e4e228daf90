"""Catalog reader ``demo``: the built-in synthetic demo data (:mod:`hydroml.data.demo`)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from hydroml.data.readers import register_reader


@register_reader("demo")
def read_demo(
    path: Path | None = None,
    product: str = "basins",
    seed: int = 42,
    cache_dir: str | None = None,
    **_: object,
) -> xr.Dataset:
    """Read the synthetic demo (generated on first use into the cache directory).

    Parameters
    ----------
    path : pathlib.Path, optional
        Ignored (the demo lives in the cache directory, ``HYDROML_CACHE`` or ``~/.cache/hydroml``); accepted
        so the catalog can call every reader alike.
    product : {"basins", "grid", "monthly"}
        Which product (see :func:`hydroml.data.demo.load_demo`).
    seed : int
        Generator seed (42 is the built-in demo).
    cache_dir : str, optional
        Cache directory overriding ``HYDROML_CACHE``.

    Returns
    -------
    xarray.Dataset
        Already in canonical names and units.
    """
    from hydroml.data.demo import load_demo

    return load_demo(product=product, cache_dir=cache_dir, seed=seed)
