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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the option, what was expected, what was found)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_verbosity(parser: argparse.ArgumentParser, top: bool) -> None:
    """``-v``/``-q`` on ``parser`` and on its nested subcommands (after the subcommand too)."""
    default = {} if top else {"default": argparse.SUPPRESS}
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="count", help="more log output (-vv: debug)", **({"default": 0} | default)
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only warnings and errors, no progress bars",
        **({"default": False} | default),
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_verbosity(child, top=False)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``hydroml`` argument parser with every discovered subcommand.

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``args.func`` is the chosen subcommand's ``run``.
    """
    parser = _Parser(
        prog="hydroml",
        description=(
            "hydroml: deep learning for hydrology. Load gridded and basin data, train discharge LSTMs and "
            "evaporation CNNs, forecast, and evaluate with hydrological skill scores."
        ),
        epilog="Run `hydroml COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"hydroml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _subcommands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    _add_verbosity(parser, top=True)
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
    except KeyboardInterrupt:
        sys.stderr.write(f"hydroml {args.command}: interrupted\n")
        return 130
    except Exception as err:  # every failure is one line; -vv adds the traceback
        sys.stderr.write(f"hydroml {args.command}: error: {_one_line(err)}\n")
        log.debug("traceback", exc_info=True)
        return 1


def _one_line(err: BaseException) -> str:
    """The first line of an error message; unexpected error types keep their name."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    msg = lines[0] if lines else type(err).__name__
    if not isinstance(err, HydroMLError | FileNotFoundError | KeyError | ImportError | ValueError):
        msg = f"{type(err).__name__}: {msg} (run with -vv for the traceback)"
    return msg


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
