"""Progress bars that users can switch off, and that are off where nobody watches.

With ``progress=None`` (the default everywhere) a bar is shown only when standard error is a terminal, and
never when ``HYDROML_PROGRESS=0`` (or ``hydroml -q``) or tqdm's own ``TQDM_DISABLE=1`` is set; so a redirected
log (``hydroml train cfg.yaml 2> log``, a batch job, CI) holds log lines, not escape-code frames. Functions
with long loops take ``progress: bool | None``; an explicit ``True`` shows the bar anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

_OFF = {"0", "false", "no", "off"}
_ON = {"1", "true", "yes", "on"}


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show a progress bar.

    Parameters
    ----------
    progress : bool, optional
        Explicit choice; ``None`` means: on when standard error is a terminal, unless ``HYDROML_PROGRESS``
        is off (``0``/``false``/``no``/``off``) or ``TQDM_DISABLE`` is on (``1``/``true``/``yes``/``on``).
        ``HYDROML_PROGRESS=1`` forces bars on even when standard error is not a terminal.

    Returns
    -------
    bool
    """
    if progress is not None:
        return bool(progress)
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in _ON:
        return False
    env = os.environ.get("HYDROML_PROGRESS", "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


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
