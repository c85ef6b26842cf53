"""The ``numnet`` command line.

Each group of subcommands lives in its own module under ``numnet.lab.cli`` and exposes
``register(subparsers)``, which adds its parsers and sets ``func`` (called with the parsed
arguments, returning the exit code). Heavy imports happen inside ``func``, so ``numnet --help``
stays fast.

Exit codes: 0 success; 1 a run failed or diverged where that is an error; 2 bad usage or bad
input (a protocol, a data file, a weights file); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from numnet import __version__
from numnet.core.errors import NumnetError

# Order = order in `numnet --help`.
COMMAND_MODULES = ("run", "data", "compare", "sweep")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(NumnetError):
    """Bad command-line usage; printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numnet",
        description="Neural networks from scratch on NumPy: the MNIST course protocol.",
    )
    parser.add_argument("--version", action="version", version=f"numnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"numnet.lab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"numnet.lab.cli.{name}":
                continue  # a command group not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``numnet`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except NumnetError as exc:  # includes UserError, DataError, ProtocolError, ...
        print(f"numnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("numnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
