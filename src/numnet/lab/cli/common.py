"""What the commands share: exit codes, the one-line usage error, and the options that mean
the same in every command (``--threads``, ``--device``, ``--kernels``, ``--protocol``, ...)."""

from __future__ import annotations

import argparse

from numnet.core.errors import NumnetError
from numnet.core.names import DEFAULT_KERNELS, DEVICES, KERNELS
from numnet.lab.protocol import BUILTIN_PROTOCOLS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process killed by it

BUILTINS = ", ".join(BUILTIN_PROTOCOLS)
#: Where the protocol is written down (in the repository; the help texts point to it).
PROTOCOL_DOC = "docs/protocol.md"
THREADS_HELP = ("threads for numnet (its conv fast path), the BLAS pools and PyTorch alike "
                "(numnet.core.runtime.threads); results do not depend on it; 0 leaves them as "
                "they are")


class UserError(NumnetError):
    """Bad command-line usage; printed as one line, exit code 2, no traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that every clean-up made for an interrupt
    (finished runs kept, worker processes stopped) runs for a ``kill`` too."""


def add_protocol(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="assignment", metavar="NAME|PATH",
                   help=f"built-in protocol ({BUILTINS}) or a TOML file (default: assignment)")


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None, metavar="1,4",
                   help="only these models, by number or name (default: all of the protocol)")


def add_quick(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--quick", action="store_true", help=help)


def add_threads(p: argparse.ArgumentParser, default: int, why: str) -> None:
    """``--threads N``: ``numnet.core.runtime.threads(N)`` in every command."""
    p.add_argument("--threads", type=int, default=default, metavar="N",
                   help=f"{THREADS_HELP} ({why})")


def add_device(p: argparse.ArgumentParser, what: str = "compute device") -> None:
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help=f'{what}: "cpu" (default) or "cuda" (needs the numnet[gpu] extra)')


def add_kernels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernels", choices=KERNELS, default=DEFAULT_KERNELS,
                   help=f"the core's kernels: fast (fused, buffered, threaded) or plain (the "
                        f"readable path); default {DEFAULT_KERNELS}")


def add_internals(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-internals", action="store_true",
                   help="do not record the training internals (weight and gradient norms, "
                        "update/weight ratios, dead ReLUs, logit scale at each evaluation; the "
                        "final model's confusion matrix): they cost about 1-3%% of the time "
                        "and never change the results")


def threads(args: argparse.Namespace) -> int | None:
    """The ``--threads`` value for ``numnet.core.runtime.threads``: None for 0."""
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    return args.threads or None


def check_seed(seed: int | None, option: str = "--seed") -> None:
    """A UserError unless ``seed`` (when given) is an integer in [0, 2**63): numpy's
    SeedSequence refuses negative seeds, and a record must hold the seed as a JSON integer."""
    if seed is not None and not 0 <= seed < 2**63:
        raise UserError(f"{option} must be an integer from 0 to 2**63-1, got {seed}")


def progress(args: argparse.Namespace) -> str:
    """``--quiet``: log lines instead of progress bars."""
    return "log" if args.quiet else "auto"
