"""Handler of ``numnet sweep``."""

from __future__ import annotations

import argparse

from numnet.core.errors import NumnetError
from numnet.lab import protocol
from numnet.lab import sweep as sweep_mod
from numnet.lab.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UserError,
    progress,
    threads,
    with_dataset,
)
from numnet.lab.experiments import parse_models
from numnet.lab.progress import stderr_log


def sweep(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise UserError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.retries < 0:
        raise UserError(f"--retries must be >= 0, got {args.retries}")
    if args.scheduler and args.jobs is not None:
        raise UserError("--jobs and --scheduler exclude each other: the Dask cluster's "
                        "workers set the parallelism")
    n_threads = threads(args)
    proto = with_dataset(protocol.resolve(args.protocol, args.seed, args.quick), args)
    try:
        if args.scheduler is not None:
            sweep_mod.check_scheduler(args.scheduler)
        models = parse_models(args.models, [m.name for m in proto.models])
        grid = sweep_mod.parse_grid(args.grid)
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    data = sweep_mod.DataRef(proto.dataset, args.data_dir,
                             validation_size=proto.validation_size, verify=not args.no_verify)

    def log(text: str) -> None:  # --quiet: no line per run
        if not args.quiet or not text.startswith("["):
            stderr_log(text)

    result = sweep_mod.sweep(proto, args.seeds, grid=grid, models=models, out_dir=args.out,
                             jobs=args.jobs, scheduler=args.scheduler, device=args.device,
                             data=data, retries=args.retries, force=args.force,
                             progress=progress(args), log=log, threads=n_threads)
    print(sweep_mod.summary_markdown(result.summary))
    return EXIT_OK if result.ok else EXIT_FAILED
