"""The ``numnet`` command line.

Each group of subcommands has a parser module here (``run``, ``data``, ``export``, ``compare``,
``sweep``) with ``register(subparsers)``, and a handler module under
``numnet.lab.cli.commands`` holding the functions that run them. Parsers name their handler as
``"<module>:<function>"`` (the ``handler`` default); :func:`main` imports that one module when
the command runs -- the one lazy import of the command line, so that ``numnet --help`` does not
load the application.

Exit codes: 0 success (a diverged run inside ``reproduce`` or ``sweep`` is a result, not a
failure); 1 ``train``'s run diverged, a ``sweep`` run raised (its error is in OUT/errors/),
``compare``'s float64 agreement check failed, ``export``'s onnxruntime check failed, or a write
failed (:class:`~numnet.core.errors.OutputError`: no space, read-only, a file in the way); 2 bad
usage or bad input (a protocol, a data file, a weights file, an image, a results file, a busy or
foreign output folder, a missing optional package); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM), handled like Ctrl-C: finished runs are kept (the same command resumes), worker
processes are stopped. Every error is one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from numnet import __version__
from numnet.core import runtime
from numnet.core.errors import NumnetError, OutputError
from numnet.lab.cli import compare, data, export, run, sweep
from numnet.lab.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROTOCOL_DOC,
    Parser,
    Terminated,
    UserError,
    mark_subparsers,
    usage_error,
)

#: The parser modules, in the order of ``numnet --help``.
COMMAND_MODULES = (run, data, export, compare, sweep)
HANDLERS = "numnet.lab.cli.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    mark_subparsers(parser)
    return parser


def handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler ``"<module>:<function>"`` of ``numnet.lab.cli.commands``, imported now."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(f"{HANDLERS}.{module}"), function)


def check_environment() -> None:
    """A UserError (one line, exit 2) when ``NUMNET_THREADS`` is set but not a positive
    integer: the core ignores it at import (an import never fails), a command refuses it."""
    if runtime.environment_problem() is not None:
        value = os.environ.get(runtime.ENV_VAR)
        raise UserError(f"{runtime.ENV_VAR} must be a positive integer, got {value!r}; unset it "
                        f"or set it to e.g. {runtime.ENV_VAR}=1")


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), so a
    ``kill`` takes the path of Ctrl-C: finished work kept, workers stopped, one message. The
    previous handler comes back afterwards (``main`` may run inside a test or a program)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _error(message: object) -> None:
    print(f"numnet: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``numnet`` console script; returns the process exit code."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # refused with the usage of the command they were given to
        usage_error(args, parser, extras)
    if not getattr(args, "handler", None):  # no command, or ``numnet data`` without an action
        (getattr(args, "parser_", None) or parser).print_help()
        return EXIT_USAGE
    try:
        with sigterm_as_interrupt():
            check_environment()
            return int(handler(args.handler)(args) or 0)
    except OutputError as exc:  # a write failed: no space, read-only, a file in the way
        _error(exc)
        return EXIT_FAILED
    except NumnetError as exc:  # includes UserError, DataError, ProtocolError, ...
        _error(exc)
        return EXIT_USAGE
    except Terminated:
        print("numnet: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt as exc:
        if not getattr(exc, "__notes__", None):  # else the command said what was kept
            print("numnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file or folder the system refused that no check foresaw
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
