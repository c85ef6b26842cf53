"""``numnet sweep``: the parser (the handler is :mod:`numnet.lab.cli.commands.sweep`)."""

from __future__ import annotations

from typing import Any

from numnet.lab.cli import common


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep",
        help="many seeds (and a grid of settings) per cell, locally or on a Dask cluster",
        description=(
            "Make every (model, setting, seed) of a protocol as reproduce makes its runs, on "
            "--jobs local worker processes (each with --threads threads) or on the Dask "
            "distributed cluster at --scheduler, saving each finished run to OUT/runs/ and "
            "OUT/weights/ as reproduce does. Then write summary.json/.csv/.md, "
            "summary_table.png (mean ± std per cell) and learning_curves.png (mean curves with "
            "bands). Rerunning the same command with the same --out skips finished runs. "
            "Without --grid, seed r of a protocol seeded s is the run `numnet reproduce --seed "
            "s+r` makes. "
            f"Built-in protocols: {common.BUILTINS}."
        ),
    )
    common.add(p, "--protocol")
    p.add_argument("--seeds", type=int, default=5, metavar="N",
                   help="replicates per cell (default 5)")
    common.add(p, "--seed")
    p.add_argument("--grid", nargs="+", action="extend", default=None, metavar="KEY=V1,V2",
                   help="replace the protocol's settings by a grid, e.g. --grid lr=0.1,0.01 "
                        "epochs=5,10 (keys: lr, epochs, batch_size, reduction, bias_init, "
                        "conv_activation); fields not in the grid come from each protocol "
                        "setting")
    common.add(p, "--models")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="local worker processes (default: one per CPU; 1: in this process)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this Dask distributed scheduler instead (numnet[cluster]); "
                        "workers load the data from their own cache or --data-dir")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="retry a run that raised N times before reporting it (default 1)")
    common.add(p, "--out", "--quick")
    p.add_argument("--force", action="store_true",
                   help="redo runs already finished in --out, and replace the outputs of "
                        "another configuration there (refused without it)")
    common.add(p, "--device", *common.DATA_OPTIONS, "--threads", "--quiet")
    # --threads 1 by default: each of the --jobs worker processes gets 1 thread
    p.set_defaults(handler="sweep:sweep", threads=1)
