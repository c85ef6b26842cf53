"""``numnet compare``: run a protocol with numnet and with the PyTorch reference, side by side.

Exit codes: 0 everything ran and numnet and PyTorch agree in float64; 1 they disagree (the
float64 loss differs by more than the tolerance over the first updates of some run: a bug in
one of the two; compare.json and the report are still written); 2 bad usage or input,
including PyTorch not installed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def register(subparsers: Any) -> None:
    """Add the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="run a protocol with numnet and with PyTorch (same weights, same batches)",
        description=(
            "Run every run of a protocol twice, with numnet and with a plain PyTorch "
            "implementation of the same model (torch.nn + torch.optim.SGD), from the same "
            "initial weights and the same batch order. Writes compare.json, "
            "compare_curves.png (numnet vs PyTorch per panel), compare.html and compare.md "
            "(the Q2 answers). Also checks, in float64 over the first updates of every run, "
            "that the two losses agree to 1e-9 relative (in a run that amplifies rounding: up "
            "to the update where numnet starts to differ from itself, and in lockstep at every "
            "update); exit code 1 if they do not. Needs the optional extra: "
            'pip install "numnet[reference]".'
        ),
    )
    p.add_argument("--protocol", default="assignment", metavar="NAME|PATH",
                   help="built-in protocol name or a TOML file (default: assignment)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: runs/compare-<protocol>-<timestamp>)")
    p.add_argument("--models", default=None, metavar="1,4",
                   help="only these models, by number or name (default: all of the protocol)")
    p.add_argument("--quick", action="store_true",
                   help="the protocol's reduced smoke variant (labelled QUICK in every output)")
    p.add_argument("--seed", type=int, default=None, help="override the protocol seed")
    p.add_argument("--agreement-updates", type=int, default=200, metavar="N",
                   help="float64 agreement check over the first N updates of each run "
                        "(default: 200; 0 skips it)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="skip the extra PyTorch channels_last timing run of the CNN")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="threads for numnet's BLAS and for PyTorch, the same for both so the "
                        "time ratio is fair (default 1: robust when other processes share the "
                        "cores; 0 leaves both libraries' defaults)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where the MNIST files are (default: numnet's data cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, one log line per run")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from numnet.lab.cli import UserError
    from numnet.lab.reference_torch import import_torch

    import_torch()  # fail fast, one line, before any data is loaded
    if args.agreement_updates < 0:
        raise UserError(f"--agreement-updates must be >= 0, got {args.agreement_updates}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    from numnet.lab import compare
    from numnet.lab.experiments import parse_models

    try:
        result = compare.run_compare(
            args.protocol,
            out_dir=args.out,
            models=parse_models(args.models),
            quick=args.quick,
            seed=args.seed,
            agreement_updates=args.agreement_updates,
            channels_last=not args.no_channels_last,
            threads=args.threads or None,
            data_dir=args.data_dir,
            progress="log" if args.quiet else "auto",
        )
    except compare.AgreementError as exc:
        print(f"numnet: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(compare.format_table(result))
    print(f"wrote {result.out_dir}")
    return EXIT_OK
