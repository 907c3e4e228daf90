"""The ``hydroml`` command line: one command with subcommands.

Each subcommand lives in its own module of this package (``hydroml/cli/<name>.py``) and defines

- ``NAME`` (str): the subcommand, e.g. ``"catalog"``;
- ``HELP`` (str): a one-line summary shown by ``hydroml --help``;
- ``add_arguments(parser)``: adds its options to an :class:`argparse.ArgumentParser`;
- ``run(args) -> int``: does the work and returns the exit code.

Modules are discovered automatically, so adding a subcommand never edits this file. Keep module-level imports
light (import heavy libraries inside ``run``) so that ``hydroml --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from hydroml import __version__
from hydroml.exceptions import HydroMLError

log = logging.getLogger("hydroml")


def _subcommands() -> list:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``hydroml`` argument parser with every discovered subcommand.

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``args.func`` is the chosen subcommand's ``run``.
    """
    parser = argparse.ArgumentParser(
        prog="hydroml",
        description=(
            "hydroml: deep learning for hydrology. Load gridded and basin data, train discharge LSTMs and "
            "evaporation CNNs, forecast, and evaluate with hydrological skill scores."
        ),
        epilog="Run `hydroml COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"hydroml {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _subcommands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [h for h in log.handlers if isinstance(h, logging.NullHandler)] + [handler]
    log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hydroml`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit code: 0 on success, 1 on a reported error, 2 on a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _configure_logging(args.verbose, args.quiet)
    if args.quiet:
        import os

        os.environ.setdefault("HYDROML_PROGRESS", "0")
    try:
        return int(args.func(args) or 0)
    except (HydroMLError, FileNotFoundError, KeyError, ImportError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.stderr.write(f"hydroml {args.command}: error: {msg}\n")
        log.debug("traceback", exc_info=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
