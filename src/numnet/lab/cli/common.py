"""What the commands share: exit codes, the one-line usage error, and the options that mean
the same in every command (``--threads``, ``--device``, ``--kernels``, ``--protocol``, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
from typing import Any, NoReturn

from numnet.core import backend
from numnet.core.errors import NumnetError
from numnet.core.names import DATASET_NAMES, DEFAULT_KERNELS, DEVICES, KERNELS
from numnet.lab.protocol import BUILTIN_PROTOCOLS, Protocol

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process killed by it

BUILTINS = ", ".join(BUILTIN_PROTOCOLS)
#: Where the protocol is written down (in the repository; the help texts point to it).
PROTOCOL_DOC = "docs/protocol.md"


class UserError(NumnetError):
    """Bad command-line usage; printed as one line, exit code 2, no traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that every clean-up made for an interrupt
    (finished runs kept, worker processes stopped) runs for a ``kill`` too."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors add a "did you mean" for a mistyped subcommand, choice
    or option (difflib). Every numnet parser and subparser is one, so an error prints the usage
    of the command it is about (see :func:`usage_error`)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{did_you_mean(message, self)}\n")


def _close(word: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """``" (did you mean 'reproduce'?)"`` for an argparse error about an invalid choice or an
    unrecognised option of ``parser`` that is close to a valid one; else ``""``."""
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        options = [c.strip().strip("'\"") for c in choice.group(2).split(",")]
        close = _close(choice.group(1), options)
        return f" (did you mean {close!r}?)" if close else ""
    if message.startswith("unrecognized arguments:"):
        known = [s for s in parser._option_string_actions if s.startswith("--")]
        words = [w.split("=", 1)[0] for w in message.removeprefix("unrecognized arguments:")
                 .split() if w.startswith("--")]
        hints = {w: close for w in words if (close := _close(w, known))}
        if len(words) == 1 and hints:
            return f" (did you mean {hints[words[0]]}?)"
        return (" (did you mean " + ", ".join(f"{c} for {w}" for w, c in hints.items()) + "?)"
                if hints else "")
    return ""


def mark_subparsers(parser: argparse.ArgumentParser) -> None:
    """Record in each (sub)command's defaults which parser it is (``args.parser_``), so that an
    error found after parsing is told with that command's usage (:func:`usage_error`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(parser_=sub)
                mark_subparsers(sub)


def usage_error(args: argparse.Namespace, parser: argparse.ArgumentParser,
                extras: list[str]) -> NoReturn:
    """Refuse ``extras`` (arguments no parser took) with the usage of the subcommand that was
    given (``parse_args`` would show the top-level usage) and a "did you mean"."""
    target = getattr(args, "parser_", None) or parser
    target.error(f"unrecognized arguments: {' '.join(extras)}")


#: The options that mean the same in every command that has them: name -> add_argument's
#: keywords. Defined here once; :func:`add` adds them, and a test checks every subcommand.
SHARED: dict[str, dict[str, Any]] = {
    "--protocol": dict(
        default="assignment", metavar="NAME|PATH",
        help=f"built-in protocol ({BUILTINS}) or a TOML file (default: assignment); the "
             f"protocol is described in {PROTOCOL_DOC}"),
    "--models": dict(
        metavar="1,4",
        help="only these models, by number or name, e.g. 1,4 (default: all of the protocol)"),
    "--quick": dict(
        action="store_true",
        help="the protocol's [quick] smoke variant (1 epoch per setting, smaller evaluations); "
             "labelled QUICK in every output"),
    "--seed": dict(
        type=int, metavar="N",
        help="replace the protocol's seed by N (default: the protocol's); each run derives its "
             "own seed from it, its model and its setting, as reproduce does (a sweep's "
             "replicate r uses N+r)"),
    "--out": dict(
        metavar="DIR",
        help="output folder (default: a new folder runs/[<command>-]<protocol or "
             "model>-<YYYYmmdd-HHMMSS>)"),
    "--device": dict(
        choices=DEVICES, default="cpu",
        help='where numnet computes: "cpu" (default) or "cuda" (needs the numnet[gpu] extra)'),
    "--dataset": dict(
        choices=DATASET_NAMES,
        help=f"the data set, one of {', '.join(DATASET_NAMES)} (default: the protocol's "
             "[data] dataset; for data fetch mnist, for data info every one)"),
    "--data-dir": dict(
        metavar="DIR",
        help="folder holding the four IDX files (.gz or raw), e.g. TensorFlow's "
             "MNIST_data/ (default: $NUMNET_DATA_DIR, else numnet's data cache, filled "
             "on first use); a sweep's workers read it at the same path"),
    "--no-verify": dict(
        action="store_true",
        help="accept IDX files in --data-dir whose checksums differ from the pinned "
             "ones (the shapes must still be 28x28 images and labels 0-9)"),
    "--quiet": dict(
        action="store_true",
        help="no progress bars and no line per sweep task: plain log lines on stderr (a few "
             "per run), then the results"),
    # the default is the command's: 0 for reproduce and train, 1 where several jobs or two
    # libraries run at once (compare, sweep), set with the parser's set_defaults
    "--threads": dict(
        type=int, default=0, metavar="N",
        help="threads per process for numnet (an evaluation's threads, and one beside "
             "the training), the BLAS pools and PyTorch alike "
             "(numnet.core.runtime.threads); results do not depend on it; 0 leaves them "
             "as they are (default: %(default)s)"),
    "--kernels": dict(
        choices=KERNELS, default=DEFAULT_KERNELS,
        help=f"the core's kernels: fast (fused, buffered, threaded) or plain (the "
             f"readable path); default {DEFAULT_KERNELS}"),
}
SHARED_HELP = {name: keywords["help"] for name, keywords in SHARED.items()}
#: The shared options that also have a short form.
SHORT = {"--quiet": "-q"}
#: What every command that loads a data set takes.
DATA_OPTIONS = ("--dataset", "--data-dir", "--no-verify")


def add(p: argparse.ArgumentParser, *names: str) -> None:
    """Add the shared options ``names`` (keys of :data:`SHARED`) to ``p``, in that order."""
    for name in names:
        p.add_argument(*([SHORT[name]] if name in SHORT else []), name, **SHARED[name])


def with_dataset(protocol: Protocol, args: argparse.Namespace) -> Protocol:
    """``protocol`` on the data set ``--dataset`` names (unchanged when it names none)."""
    if getattr(args, "dataset", None) in (None, protocol.dataset):
        return protocol
    return dataclasses.replace(protocol, dataset=args.dataset)


def check_device(device: str) -> None:
    """A one-line usage error when ``device`` cannot be used here (CUDA without CuPy)."""
    try:
        backend.xp_for(device)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None


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
