"""Handlers of ``numnet reproduce``, ``train``, ``report`` and ``predict``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from numnet.core import backend
from numnet.core.errors import NumnetError
from numnet.core.io import check_output_dir
from numnet.lab import data as data_mod
from numnet.lab import experiments, predict, protocol, report
from numnet.lab.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UserError,
    check_seed,
    progress,
    threads,
)
from numnet.lab.experiments.collect import folder_results
from numnet.lab.progress import describe_run
from numnet.lab.records import default_out_dir
from numnet.lab.training import RunSpec

#: Training examples of ``numnet train`` (MNIST's 60,000 less the 5,000 of validation): the
#: size its plan is checked against before the data are loaded.
TRAIN_EXAMPLES = protocol.DATASET_SIZES["mnist"][0] - 5000


def check_device(device: str) -> None:
    """A one-line usage error when ``device`` cannot be used here (CUDA without CuPy)."""
    try:
        backend.xp_for(device)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None


def reproduce(args: argparse.Namespace) -> int:
    check_device(args.device)
    check_seed(args.seed)
    n_threads = threads(args)
    proto = protocol.load(args.protocol)
    try:
        models = experiments.parse_models(args.models)
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    if args.out is not None:  # before any work: a folder numnet cannot write is said now
        check_output_dir(args.out)
    outcome = experiments.reproduce(
        proto,
        out_dir=args.out,
        models=models,
        seed=args.seed,
        quick=args.quick,
        force=args.force,
        device=args.device,
        data_dir=args.data_dir,
        progress=progress(args),
        threads=n_threads,
        kernels=args.kernels,
        internals=not args.no_internals,
    )
    doc = outcome.results_json
    label = " (QUICK)" if doc.get("label") else ""
    print(f"Final test accuracy{label}, protocol {doc['protocol']['name']}:")
    print(report.format_summary(doc))
    print(f"Wall time {outcome.wall_time:.1f} s; outputs in {outcome.out_dir}/ "
          "(report.html, results.json, learning_curves.png, summary_table.png)")
    return EXIT_OK


def train(args: argparse.Namespace) -> int:
    check_device(args.device)
    try:
        model = experiments.parse_model(args.model)
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    for name in ("epochs", "batch_size", "eval_every", "eval_train_examples",
                 "eval_test_examples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be positive and finite, got {args.lr}")
    check_seed(args.seed)
    n_threads = threads(args)
    updates = protocol.planned_updates(args.epochs, args.batch_size, TRAIN_EXAMPLES)
    if updates > protocol.MAX_UPDATES_PER_RUN:
        raise UserError(f"--epochs {args.epochs} plans {updates:.3g} updates (batch "
                        f"{args.batch_size}), more than the {protocol.MAX_UPDATES_PER_RUN:.0e} "
                        "numnet allows in one run; use fewer epochs")
    out = (Path(args.out) if args.out is not None
           else default_out_dir(model, kind="train"))
    # before the data and the training: an unwritable --out is said now, not after the run
    check_output_dir(args.out if args.out is not None else out)
    data = data_mod.load("mnist", args.data_dir, progress=not args.quiet)
    if args.batch_size > data.train.num_examples:
        raise UserError(f"--batch-size {args.batch_size} is larger than the train split "
                        f"({data.train.num_examples} examples)")
    spec = RunSpec(
        model=model, epochs=args.epochs, lr=args.lr, reduction=args.reduction,
        batch_size=args.batch_size, eval_every=args.eval_every,
        eval_train_examples=min(args.eval_train_examples, data.train.num_examples),
        eval_test_examples=min(args.eval_test_examples, data.test.num_examples),
        seed=args.seed, dtype=args.dtype, bias_init=args.bias_init,
        conv_activation=args.conv_activation, kernels=args.kernels,
        internals=not args.no_internals,
    )
    result = experiments.train_one(spec, data, out, device=args.device,
                                   progress=progress(args), threads=n_threads,
                                   force=args.force)
    _, weights = experiments.run_paths(out, spec.run_id)
    print(f"{spec.run_id}: {describe_run(result)}")
    print(f"weights: {weights}")
    return EXIT_FAILED if result.diverged else EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    doc = folder_results(args.dir)  # results.json, else the run records there
    for path in report.write_report(args.dir, doc).values():
        print(path)
    return EXIT_OK


def predict_command(args: argparse.Namespace) -> int:
    predictions = predict.predict_files(args.weights, args.images, method=args.method)
    for pred in predictions:
        if args.json:
            print(json.dumps(pred.to_dict()))
            continue
        print(f"{pred.path}: {pred.label}  (probability {pred.confidence:.4f})")
        print("  " + "  ".join(f"{k}: {p:.4f}" for k, p in enumerate(pred.probabilities)))
    sys.stdout.flush()
    return EXIT_OK
