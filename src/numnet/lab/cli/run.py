"""``numnet reproduce``, ``train``, ``report`` and ``predict``: the parsers (the handlers are
in :mod:`numnet.lab.cli.commands.run`)."""

from __future__ import annotations

import argparse
from typing import Any

from numnet.core.models import WEIGHT_INITS
from numnet.core.names import DEFAULT_DTYPE, DTYPES
from numnet.lab.cli import common
from numnet.lab.protocol import BIAS_INITS, CONV_ACTIVATIONS, REDUCTIONS


def register(subparsers: Any) -> None:
    """Add the ``train``, ``reproduce``, ``report`` and ``predict`` subcommands."""
    p = subparsers.add_parser(
        "reproduce",
        help="run the whole course protocol: 12 runs, figures, table, HTML report",
        description=(
            "Run every (model, setting) of a protocol as the protocol's loop does, then write "
            "results.json/.csv, learning_curves.png, summary_table.png, report.html and "
            "report.md into --out, and runs/<run>.json, runs/<run>.metrics.csv and "
            "weights/<run>.npz per run. Finished runs are saved as they complete; rerunning "
            "the same command with the same --out skips them (same protocol hash) and does "
            f"the rest. Built-in protocols: {common.BUILTINS}; the protocol itself is "
            f"described in {common.PROTOCOL_DOC} of the numnet repository."
        ),
    )
    common.add(p, "--protocol", "--out", "--seed", "--models", "--quick")
    p.add_argument("--force", action="store_true",
                   help="retrain runs already finished in --out, and replace the outputs of "
                        "another configuration there (refused without it)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes training runs at once, longest first (default: one "
                        "per CPU; 1: one run after the other in this process). Each worker "
                        "has 1 thread unless --threads says. Results do not depend on it")
    _training_options(p)
    p.set_defaults(handler="run:reproduce")

    t = subparsers.add_parser(
        "train",
        help="train one model (one run of the protocol's loop) and save its weights",
        description=(
            "One run: the protocol's loop, evaluations, divergence check; saves "
            "weights/<run>.npz, runs/<run>.json and runs/<run>.metrics.csv in --out. "
            "--setting K takes the epochs and learning rate of the protocol's setting K for "
            "the model, and every other option from the protocol too: `train --model 4 "
            "--setting 2` is exactly reproduce's model4-setting2 run. Without --setting give "
            "--epochs and --lr; the other options still come from the protocol (--protocol, "
            "default assignment), and --seed N is then the run's own seed (default: the "
            "protocol's). Any option given overrides the protocol's value. The same command "
            "again with the same --out reuses the finished run."
        ),
    )
    t.add_argument("--model", required=True, metavar="MODEL",
                   help="model1..model4 (or 1..4)")
    t.add_argument("--setting", type=int, default=None, metavar="K",
                   help="the protocol's setting K (1-based) of this model: its epochs and "
                        "learning rate")
    common.add(t, "--protocol")
    t.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="epochs to train (default: the setting's; required without --setting)")
    t.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="learning rate (default: the setting's; required without --setting)")
    t.add_argument("--reduction", choices=REDUCTIONS, default=None,
                   help="loss over the batch: sum or mean (default: the protocol's, sum for "
                        "assignment)")
    for name, what, default in (("--batch-size", "examples per update", 100),
                                ("--eval-every", "evaluate every N updates", 200),
                                ("--eval-train-examples", "evaluate on the first N train "
                                 "examples", 11000),
                                ("--eval-test-examples", "evaluate on the first N test "
                                 "examples", 10000)):
        t.add_argument(name, type=int, default=None, metavar="N",
                       help=f"{what} (default: the protocol's, {default})")
    common.add(t, "--seed")
    t.add_argument("--weight-init", choices=WEIGHT_INITS, default=None,
                   help="weights: xavier_uniform (Glorot everywhere) or conv_uniform_fan_sum "
                        "(conv kernels +-sqrt(6/(kh*kw*c_in*c_out + c_out))); default: the "
                        "protocol's")
    t.add_argument("--bias-init", choices=BIAS_INITS, default=None,
                   help="biases: zeros or uniform_sqrt3 (+-sqrt(3/n_out)); default: the "
                        "protocol's")
    t.add_argument("--conv-activation", choices=CONV_ACTIVATIONS, default=None,
                   help="activation after each convolution of model 4 (default: the "
                        "protocol's, none)")
    t.add_argument("--dtype", choices=DTYPES, default=None,
                   help=f"floating-point type of the model (default: the protocol's, "
                        f"{DEFAULT_DTYPE})")
    common.add(t, "--out")
    t.add_argument("--force", action="store_true",
                   help="retrain even if --out holds this run finished, and replace another "
                        "run's outputs there (refused without it)")
    _training_options(t)
    t.set_defaults(handler="run:train")

    r = subparsers.add_parser(
        "report",
        help="build the figures and the report of any folder of runs",
        description="Draw learning_curves.png and summary_table.png and write report.html "
                    "and report.md into DIR, from DIR/results.json (a reproduce output) or, "
                    "without one, from the run records in DIR/runs/ or DIR itself (a train "
                    "output, an interrupted reproduce, a folder of runs/<run>.json files).",
    )
    r.add_argument("dir", metavar="DIR",
                   help="a folder of runs: the --out DIR of reproduce or train, or runs/")
    r.set_defaults(handler="run:report_command")

    q = subparsers.add_parser(
        "predict",
        help="classify digit images (PNG) with saved weights",
        description=(
            "Classify grayscale digit images (28x28 or larger). Dark-on-light images are "
            "inverted; larger ones are cropped to the digit, fitted in 20x20 and centred by "
            "mass in 28x28 as MNIST was made (--method). Prints the class and the 10 "
            "probabilities of each image."
        ),
    )
    q.add_argument("--weights", required=True, metavar="FILE",
                   help="a weights file saved by train/reproduce (weights/<run>.npz)")
    q.add_argument("images", nargs="+", metavar="IMAGE", help="PNG image files")
    q.add_argument("--method", choices=("auto", "mnist", "area"), default="auto",
                   help="how to bring an image to 28x28 (default auto: 28x28 as is, larger "
                        "ones like MNIST)")
    q.add_argument("--json", action="store_true", help="print one JSON object per image")
    q.set_defaults(handler="run:predict_command")


def _training_options(p: argparse.ArgumentParser) -> None:
    common.add(p, "--device", *common.DATA_OPTIONS, "--quiet", "--threads", "--kernels")
    p.add_argument("--no-internals", action="store_true",
                   help="do not record the training internals (weight and gradient norms, "
                        "update/weight ratios, dead ReLUs, logit scale at each evaluation; the "
                        "final model's confusion matrix): they cost about 1-3%% of the time "
                        "and never change the results")
