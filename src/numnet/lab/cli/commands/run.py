"""Handlers of ``numnet reproduce``, ``train``, ``report`` and ``predict``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from numnet.core.errors import NumnetError
from numnet.core.io import check_output_dir
from numnet.lab import data as data_mod
from numnet.lab import experiments, predict, protocol, report
from numnet.lab.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UserError,
    check_device,
    check_seed,
    progress,
    threads,
    with_dataset,
)
from numnet.lab.experiments.collect import folder_results
from numnet.lab.experiments.store import run_paths
from numnet.lab.metrics import metrics_path
from numnet.lab.progress import describe_run
from numnet.lab.protocol import MODEL_OPTION_DEFAULTS, Protocol, Setting
from numnet.lab.records import default_out_dir
from numnet.lab.results import check_folder_records
from numnet.lab.training import RunSpec

#: Training examples of ``numnet train`` (MNIST's 60,000 less the 5,000 of validation): the
#: size its plan is checked against before the data are loaded.
TRAIN_EXAMPLES = protocol.DATASET_SIZES["mnist"][0] - 5000

#: ``train`` options that override a field of the run spec when given (None: the protocol's).
SPEC_OVERRIDES = ("epochs", "lr", "reduction", "batch_size", "eval_every",
                  "eval_train_examples", "eval_test_examples", "dtype", "weight_init",
                  "bias_init", "conv_activation")


def reproduce(args: argparse.Namespace) -> int:
    check_device(args.device)
    check_seed(args.seed)
    n_threads = threads(args)
    proto = with_dataset(protocol.load(args.protocol), args)
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    try:
        models = experiments.parse_models(args.models, [m.name for m in proto.models])
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
        verify=not args.no_verify,
        jobs=args.jobs,
    )
    doc = outcome.results_json
    label = " (QUICK)" if doc.get("label") else ""
    print(f"Final test accuracy{label}, protocol {doc['protocol']['name']}:")
    print(report.format_summary(doc))
    print(f"Wall time {outcome.wall_time:.1f} s; outputs in {outcome.out_dir}/ "
          "(report.html, results.json, learning_curves.png, summary_table.png)")
    return EXIT_OK


def train_spec(args: argparse.Namespace, proto: Protocol, model: str) -> RunSpec:
    """The run ``numnet train`` makes: the protocol's setting ``--setting K`` of ``model``
    (exactly the run reproduce makes), or an ad hoc run with ``--epochs`` and ``--lr`` and the
    protocol's other options; then every option given on the command line overrides. A run
    that differs from the protocol's setting is named ad hoc (``model4-e3-lr0.01``)."""
    if args.seed is not None:
        proto = proto.with_seed(args.seed)
    names = [m.name for m in proto.models]
    if args.setting is not None:
        if model not in names:
            raise UserError(f"--setting: protocol {proto.name!r} has no {model}; it has "
                            f"{', '.join(names)}")
        specs = experiments.plan_runs(proto, [model], args.kernels, not args.no_internals)
        if not 1 <= args.setting <= len(specs):
            raise UserError(f"--setting must be 1..{len(specs)} for {model} in protocol "
                            f"{proto.name!r}, got {args.setting}")
        base = specs[args.setting - 1]
    else:
        missing = [f"--{k}" for k in ("epochs", "lr") if getattr(args, k) is None]
        if missing:
            raise UserError(f"give --setting K (the protocol's epochs and learning rate) or "
                            f"{' and '.join(missing)}")
        plan = proto.model(model) if model in names else None
        options = {k: getattr(plan, k) if plan else v for k, v in MODEL_OPTION_DEFAULTS.items()}
        if plan is not None:  # the model's own: a custom model's layers, optimiser, schedule
            options = experiments.plan.setting_options(plan, Setting(args.epochs, args.lr))
            del options["weight_decay"]  # in the optimiser's table
        base = RunSpec(
            model=model, epochs=args.epochs, lr=args.lr, batch_size=proto.batch_size,
            eval_every=proto.eval_every, eval_train_examples=proto.eval_train_examples,
            eval_test_examples=proto.eval_test_examples, eval_batch_size=proto.eval_batch_size,
            seed=proto.seed, dtype=proto.dtype, kernels=args.kernels,
            internals=not args.no_internals, **options,
        )
    given = {k: getattr(args, k) for k in SPEC_OVERRIDES if getattr(args, k) is not None}
    spec = dataclasses.replace(base, **given)
    if spec != base:
        spec = dataclasses.replace(spec, setting=None)
    return spec


def train(args: argparse.Namespace) -> int:
    check_device(args.device)
    proto = with_dataset(protocol.load(args.protocol), args)
    try:
        model = experiments.parse_model(args.model, known=[m.name for m in proto.models])
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    for name in ("epochs", "batch_size", "eval_every", "eval_train_examples",
                 "eval_test_examples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be positive and finite, got {args.lr}")
    check_seed(args.seed)
    n_threads = threads(args)
    spec = train_spec(args, proto, model)
    updates = protocol.planned_updates(spec.epochs, spec.batch_size, TRAIN_EXAMPLES)
    if updates > protocol.MAX_UPDATES_PER_RUN:
        raise UserError(f"--epochs {spec.epochs} plans {updates:.3g} updates (batch "
                        f"{spec.batch_size}), more than the {protocol.MAX_UPDATES_PER_RUN:.0e} "
                        "numnet allows in one run; use fewer epochs")
    out = (Path(args.out) if args.out is not None
           else default_out_dir(model, kind="train"))
    # before the data and the training: an unwritable --out is said now, not after the run
    check_output_dir(args.out if args.out is not None else out)
    data = data_mod.load(dataset=proto.dataset, data_dir=args.data_dir,
                         validation_size=proto.validation_size, verify=not args.no_verify,
                         progress=not args.quiet)
    if spec.batch_size > data.train.num_examples:
        raise UserError(f"--batch-size {spec.batch_size} is larger than the train split "
                        f"({data.train.num_examples} examples)")
    spec = dataclasses.replace(
        spec, eval_train_examples=min(spec.eval_train_examples, data.train.num_examples),
        eval_test_examples=min(spec.eval_test_examples, data.test.num_examples))
    result = experiments.train_one(spec, data, out, dataset=proto.dataset, device=args.device,
                                   progress=progress(args), threads=n_threads,
                                   force=args.force)
    record, weights = run_paths(out, spec.run_id)
    print(f"{spec.run_id}: {describe_run(result)}")
    print(f"weights: {weights}")
    print(f"metrics: {metrics_path(record)}")
    return EXIT_FAILED if result.diverged else EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    check_folder_records(args.dir)  # each run record against the schema, before assembling
    doc = folder_results(args.dir)  # results.json, else the run records there
    for path in report.write_report(args.dir, doc).values():
        print(path)
    return EXIT_OK


def predict_command(args: argparse.Namespace) -> int:
    predictions = predict.predict_files(args.weights, args.images, method=args.method)
    for pred in predictions:
        if args.json:
            print(json.dumps(pred.to_dict(), allow_nan=False))  # finite: predict_files checks
            continue
        print(f"{pred.path}: {pred.label}  (probability {pred.confidence:.4f})")
        print("  " + "  ".join(f"{k}: {p:.4f}" for k, p in enumerate(pred.probabilities)))
    sys.stdout.flush()
    return EXIT_OK
