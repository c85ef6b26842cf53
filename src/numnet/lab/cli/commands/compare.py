"""Handler of ``numnet compare``."""

from __future__ import annotations

import argparse
import sys

from numnet.core.errors import NumnetError
from numnet.lab import compare as compare_mod
from numnet.lab import protocol
from numnet.lab.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UserError,
    check_device,
    progress,
    threads,
    with_dataset,
)
from numnet.lab.experiments import parse_models
from numnet.lab.reference_torch import import_torch


def compare(args: argparse.Namespace) -> int:
    import_torch()  # fail fast, one line, before any data is loaded
    check_device(args.device)
    if args.agreement_updates < 0:
        raise UserError(f"--agreement-updates must be >= 0, got {args.agreement_updates}")
    proto = with_dataset(protocol.load(args.protocol), args)
    try:
        models = parse_models(args.models, [m.name for m in proto.models])
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    try:
        result = compare_mod.run_compare(
            proto,
            out_dir=args.out,
            models=models,
            quick=args.quick,
            seed=args.seed,
            agreement_updates=args.agreement_updates,
            channels_last=not args.no_channels_last,
            threads=threads(args),
            data_dir=args.data_dir,
            progress=progress(args),
            device=args.device,
            verify=not args.no_verify,
        )
    except compare_mod.AgreementError as exc:
        print(f"numnet: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(compare_mod.format_table(result.doc))
    print(f"wrote {result.out_dir}")
    return EXIT_OK
