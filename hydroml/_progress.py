"""Progress bars that users can switch off.

``HYDROML_PROGRESS=0`` in the environment (or ``hydroml -q``) disables every bar; functions with long loops also
take ``progress: bool | None`` where ``None`` defers to the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show a progress bar.

    Parameters
    ----------
    progress : bool, optional
        Explicit choice; ``None`` reads ``HYDROML_PROGRESS`` (default on).

    Returns
    -------
    bool
    """
    if progress is not None:
        return bool(progress)
    return os.environ.get("HYDROML_PROGRESS", "1").lower() not in {"0", "false", "no", "off"}


def tqdm(iterable: Iterable | None = None, *, progress: bool | None = None, **kwargs: Any):
    """A :func:`tqdm.auto.tqdm` bar that respects :func:`progress_enabled`.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate.
    progress : bool, optional
        Explicit on/off; ``None`` defers to the environment.
    **kwargs
        Passed to tqdm (``desc``, ``total``, ...).
    """
    from tqdm.auto import tqdm as _tqdm

    return _tqdm(iterable, disable=not progress_enabled(progress), **kwargs)
