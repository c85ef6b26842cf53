"""``numnet compare``: the parser (the handler is :mod:`numnet.lab.cli.commands.compare`)."""

from __future__ import annotations

from typing import Any

from numnet.lab.cli import common


def register(subparsers: Any) -> None:
    """Add the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="run a protocol with numnet and with PyTorch (same weights, same batches)",
        description=(
            "Run every run of a protocol twice, with numnet and with a plain PyTorch "
            "implementation of the same model (torch.nn built layer by layer from numnet's "
            "model, built-in or defined by its layers; torch.optim with the run's optimiser "
            "and numnet's learning-rate schedule), from the same initial weights, the same "
            "batch order and the same dropout masks. Writes compare.json, "
            "compare_curves.png (numnet vs PyTorch per panel), compare.html and compare.md "
            "(the Q2 answers). Also checks, in float64 over the first updates of every run, "
            "that the two losses agree to 1e-9 relative (in a run that amplifies rounding: up "
            "to the update where numnet starts to differ from itself, and in lockstep at every "
            "update); exit code 1 if they do not. Needs the optional extra: "
            'pip install "numnet[reference]".'
        ),
    )
    common.add(p, "--protocol", "--out", "--models", "--quick", "--seed")
    p.add_argument("--agreement-updates", type=int, default=200, metavar="N",
                   help="float64 agreement check over the first N updates of each run "
                        "(default: 200; 0 skips it)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="skip the extra PyTorch channels_last timing run of each "
                        "convolutional model")
    common.add(p, "--threads", "--device", *common.DATA_OPTIONS, "--quiet")
    # --threads 1 by default: numnet and PyTorch get the same threads, so the time ratio is
    # fair, and it stays robust when other processes share the cores.
    p.set_defaults(handler="compare:compare", threads=1)
