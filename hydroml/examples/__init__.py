"""Example training configurations shipped inside the package.

They work from any directory after a plain ``pip install hydroml`` (no clone needed)::

    hydroml train --example demo_lstm          # the same as `hydroml train <path printed below>`
    hydroml train --list-examples

>>> from hydroml.examples import example_path, list_examples
>>> "demo_lstm" in list_examples()
True
>>> example_path("demo_lstm").name
'demo_lstm.yaml'
"""

from __future__ import annotations

from pathlib import Path

from hydroml.exceptions import ConfigError

_HERE = Path(__file__).resolve().parent


def list_examples() -> list[str]:
    """Names of the shipped example configurations.

    Returns
    -------
    list of str
        Sorted names (file names without ``.yaml``).
    """
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


def example_path(name: str) -> Path:
    """Path of a shipped example configuration.

    Parameters
    ----------
    name : str
        Example name, e.g. ``"demo_lstm"`` (a trailing ``.yaml`` is accepted).

    Returns
    -------
    pathlib.Path
        The YAML file inside the installed package.

    Raises
    ------
    ConfigError
        No example of that name; the message lists the available ones.
    """
    stem = name[:-5] if name.endswith(".yaml") else name
    path = _HERE / f"{stem}.yaml"
    if not path.is_file():
        raise ConfigError(f"no example config {name!r}; available: {', '.join(list_examples())}")
    return path
