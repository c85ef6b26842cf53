"""The ``numnet`` command line.

Each group of subcommands has a parser module here (``run``, ``data``, ``compare``, ``sweep``)
with ``register(subparsers)``, and a handler module under ``numnet.lab.cli.commands`` holding
the functions that run them. Parsers name their handler as ``"<module>:<function>"`` (the
``handler`` default); :func:`main` imports that one module when the command runs -- the one
lazy import of the command line, so that ``numnet --help`` does not load the application.

Exit codes: 0 success; 1 a run failed or diverged where that is an error; 2 bad usage or bad
input (a protocol, a data file, a weights file); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from numnet import __version__
from numnet.core.errors import NumnetError
from numnet.lab.cli import compare, data, run, sweep
from numnet.lab.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROTOCOL_DOC,
    UserError,
)

#: The parser modules, in the order of ``numnet --help``.
COMMAND_MODULES = (run, data, compare, sweep)
HANDLERS = "numnet.lab.cli.commands"

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UserError",
           "build_parser", "handler", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numnet",
        description="Neural networks from scratch on NumPy: the MNIST course protocol.",
        epilog=f"The protocol (data, split, models, the 12 runs, evaluation, the questions) is "
               f"described in {PROTOCOL_DOC} of the numnet repository. "
               f"'numnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"numnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler ``"<module>:<function>"`` of ``numnet.lab.cli.commands``, imported now."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(f"{HANDLERS}.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``numnet`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(handler(args.handler)(args) or 0)
    except NumnetError as exc:  # includes UserError, DataError, ProtocolError, ...
        print(f"numnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("numnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
