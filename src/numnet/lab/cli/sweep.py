"""``numnet sweep``: every (model, setting, seed) of a protocol (or a grid) as independent tasks,
on local worker processes or a Dask distributed cluster, aggregated per cell (mean ± std).

Exit codes: 0 every task finished (a diverged run is a result, not a failure); 1 some task
failed (its error is in OUT/errors/ and in the summary; rerunning the same command retries
only the unfinished tasks); 2 bad usage or input; 130 interrupted (finished tasks are kept).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand."""
    from numnet.lab.protocol import BUILTIN_PROTOCOLS

    builtins = ", ".join(BUILTIN_PROTOCOLS)
    p = subparsers.add_parser(
        "sweep",
        help="many seeds (and a grid of settings) per cell, locally or on a Dask cluster",
        description=(
            "Run every (model, setting, seed) of a protocol as an independent task, on --jobs "
            "local worker processes (BLAS pinned to 1 thread each) or on the Dask distributed "
            "cluster at --scheduler, streaming each finished task to OUT/tasks/. Then write "
            "summary.json/.csv/.md, summary_table.png (mean ± std per cell) and "
            "learning_curves.png (mean curves with bands). Rerunning the same command with the "
            "same --out skips finished tasks. Without --grid, seed r of a protocol seeded s is "
            "the run `numnet reproduce --seed s+r` makes. "
            f"Built-in protocols: {builtins}."
        ),
    )
    p.add_argument("--protocol", default="assignment", metavar="NAME|PATH",
                   help=f"built-in protocol ({builtins}) or a TOML file (default: assignment)")
    p.add_argument("--seeds", type=int, default=5, metavar="N",
                   help="replicates per cell (default 5)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="base seed (default: the protocol's); replicate r uses S+r")
    p.add_argument("--grid", nargs="+", action="extend", default=None, metavar="KEY=V1,V2",
                   help="replace the protocol's settings by a grid, e.g. --grid lr=0.1,0.01 "
                        "epochs=5,10 (keys: lr, epochs, batch_size, reduction, bias_init, "
                        "conv_activation); fields not in the grid come from each protocol "
                        "setting")
    p.add_argument("--models", default=None, metavar="1,4",
                   help="only these models, by number or name (default: all of the protocol)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="local worker processes (default: the cores available)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this Dask distributed scheduler instead (numnet[cluster]); "
                        "workers load the data from their own cache or --data-dir")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="resubmit a task that raised N times before reporting it (default 1)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: runs/sweep-<protocol>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--quick", action="store_true",
                   help="the protocol's [quick] smoke variant (labelled QUICK everywhere)")
    p.add_argument("--force", action="store_true", help="redo tasks already finished in --out")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help='compute device of every task: "cpu" (default) or "cuda" (numnet[gpu])')
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the four IDX files, at this path on every worker "
                        "(default: each worker's numnet data cache, fetched on first use)")
    p.add_argument("--no-verify", action="store_true",
                   help="accept IDX files in --data-dir that are not the official ones")
    p.add_argument("--quiet", action="store_true", help="no per-task log lines")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from numnet.core.errors import NumnetError
    from numnet.lab import experiments, protocol
    from numnet.lab import sweep as sweep_mod
    from numnet.lab.cli import EXIT_FAILED, EXIT_OK, UserError

    if args.seeds < 1:
        raise UserError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.retries < 0:
        raise UserError(f"--retries must be >= 0, got {args.retries}")
    if args.scheduler and args.jobs is not None:
        raise UserError("--jobs and --scheduler exclude each other: the Dask cluster's "
                        "workers set the parallelism")
    try:
        models = experiments.parse_models(args.models)
        grid = sweep_mod.parse_grid(args.grid)
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    proto = protocol.resolve(args.protocol, args.seed, args.quick)
    data = sweep_mod.DataRef(proto.dataset, args.data_dir,
                             validation_size=proto.validation_size, verify=not args.no_verify)

    def log(text: str) -> None:
        if not args.quiet or not text.startswith("["):
            sweep_mod._stderr_log(text)

    result = sweep_mod.sweep(proto, args.seeds, grid=grid, models=models, out_dir=args.out,
                             jobs=args.jobs, scheduler=args.scheduler, device=args.device,
                             data=data, retries=args.retries, force=args.force, log=log)
    print(sweep_mod.summary_markdown(result.summary))
    return EXIT_OK if result.ok else EXIT_FAILED
