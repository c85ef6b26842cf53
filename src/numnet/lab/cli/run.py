"""``numnet train``, ``numnet reproduce``, ``numnet report``, ``numnet predict``.

Exit codes (as for every numnet command): 0 success; 1 ``train``'s run diverged; 2 bad usage
or bad input (unknown protocol key, missing data, corrupt weights file, unreadable image...),
printed as one line; 130 interrupted (Ctrl-C) -- ``reproduce`` keeps every finished run, and
the same command resumes. A diverged run inside ``reproduce`` is a result (SPEC's settings
include unstable ones), not a failure: exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEVICE_HELP = 'compute device: "cpu" (default) or "cuda" (needs the numnet[gpu] extra)'


def register(subparsers: Any) -> None:
    """Add the ``train``, ``reproduce``, ``report`` and ``predict`` subcommands."""
    from numnet.lab.protocol import BUILTIN_PROTOCOLS

    builtins = ", ".join(BUILTIN_PROTOCOLS)

    p = subparsers.add_parser(
        "reproduce",
        help="run the whole course protocol: 12 runs, figures, table, HTML report",
        description=(
            "Run every (model, setting) of a protocol as SPEC's loop does, then write "
            "results.json/.csv, learning_curves.png, summary_table.png, report.html and "
            "report.md into --out. Finished runs are saved as they complete; rerunning the same "
            "command with the same --out skips them (same protocol hash) and does the rest. "
            f"Built-in protocols: {builtins}."
        ),
    )
    p.add_argument("--protocol", default="assignment", metavar="NAME|PATH",
                   help=f"built-in protocol ({builtins}) or a TOML file (default: assignment)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: runs/<protocol>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--seed", type=int, default=None, help="override the protocol seed")
    p.add_argument("--models", default=None, metavar="1,4",
                   help="only these models, by number or name (default: all of the protocol)")
    p.add_argument("--quick", action="store_true",
                   help="the protocol's [quick] smoke variant (1 epoch per setting, smaller "
                        "evaluations; labelled QUICK in every output)")
    p.add_argument("--force", action="store_true", help="retrain runs already finished in --out")
    _common(p)
    p.set_defaults(func=_reproduce)

    t = subparsers.add_parser(
        "train",
        help="train one model (one run of SPEC's loop) and save its weights",
        description="One run: SPEC's loop, evaluations, divergence check; saves "
                    "weights/<run>.npz and runs/<run>.json in --out.",
    )
    t.add_argument("--model", required=True, help="model1..model4 (or 1..4)")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--lr", type=float, required=True, help="learning rate")
    t.add_argument("--reduction", choices=("sum", "mean"), default="sum",
                   help="loss over the batch: sum (SPEC, default) or mean")
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--eval-every", type=int, default=200, metavar="N",
                   help="evaluate every N updates (default 200)")
    t.add_argument("--eval-train-examples", type=int, default=11000, metavar="N")
    t.add_argument("--eval-test-examples", type=int, default=10000, metavar="N")
    t.add_argument("--seed", type=int, default=0,
                   help="run seed (model init and batch order derive from it; default 0)")
    t.add_argument("--bias-init", choices=("zeros", "uniform_sqrt3"), default="zeros")
    t.add_argument("--conv-activation", choices=("none", "relu", "sigmoid", "tanh"),
                   default="none", help="activation after each convolution of model 4")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: runs/train-<model>-<YYYYmmdd-HHMMSS>)")
    _common(t)
    t.set_defaults(func=_train)

    r = subparsers.add_parser(
        "report",
        help="rebuild the figures and the report of a reproduce output directory",
        description="Redraw learning_curves.png and summary_table.png and rewrite "
                    "report.html and report.md from DIR/results.json.",
    )
    r.add_argument("dir", metavar="DIR", help="a `numnet reproduce` output directory")
    r.set_defaults(func=_report)

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
    q.set_defaults(func=_predict)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help=DEVICE_HELP)
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the four MNIST IDX files (default: numnet's data cache, "
                        "fetched on first use)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars: log lines only")
    p.add_argument("--blas-threads", type=int, default=1, metavar="N",
                   help="BLAS threads while training (default 1: SPEC's matrices are small, and "
                        "threaded BLAS slows down many times when other processes share the "
                        "cores; 0 leaves BLAS's own setting)")


def _check_device(device: str) -> None:
    from numnet.core import backend
    from numnet.lab.cli import UserError

    try:
        backend.xp_for(device)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None


def _blas(args: argparse.Namespace) -> int | None:
    from numnet.lab.cli import UserError

    if args.blas_threads < 0:
        raise UserError(f"--blas-threads must be >= 0, got {args.blas_threads}")
    return args.blas_threads or None


def _progress(args: argparse.Namespace) -> str:
    return "log" if args.quiet else "auto"


def _reproduce(args: argparse.Namespace) -> int:
    from numnet.core.errors import NumnetError
    from numnet.lab import experiments, protocol, report
    from numnet.lab.cli import EXIT_OK, UserError

    _check_device(args.device)
    proto = protocol.load(args.protocol)
    try:
        models = experiments.parse_models(args.models)
    except NumnetError as exc:
        raise UserError(str(exc)) from None
    outcome = experiments.reproduce(
        proto,
        out_dir=args.out,
        models=models,
        seed=args.seed,
        quick=args.quick,
        force=args.force,
        device=args.device,
        data_dir=args.data_dir,
        progress=_progress(args),
        blas_threads=_blas(args),
    )
    doc = outcome.results_json
    label = " (QUICK)" if doc.get("label") else ""
    print(f"Final test accuracy{label}, protocol {doc['protocol']['name']}:")
    print(report.format_summary(doc))
    print(f"Wall time {outcome.wall_time:.1f} s; outputs in {outcome.out_dir}/ "
          "(report.html, results.json, learning_curves.png, summary_table.png)")
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    import datetime as dt

    from numnet.core import models
    from numnet.lab import data as data_mod
    from numnet.lab import experiments
    from numnet.lab.cli import EXIT_FAILED, EXIT_OK, UserError
    from numnet.lab.training import RunSpec

    _check_device(args.device)
    try:
        model = models.normalize_name(args.model)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for name in ("epochs", "batch_size", "eval_every", "eval_train_examples",
                 "eval_test_examples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if not args.lr > 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    spec = RunSpec(
        model=model, epochs=args.epochs, lr=args.lr, reduction=args.reduction,
        batch_size=args.batch_size, eval_every=args.eval_every,
        eval_train_examples=args.eval_train_examples,
        eval_test_examples=args.eval_test_examples, seed=args.seed, dtype=args.dtype,
        bias_init=args.bias_init, conv_activation=args.conv_activation,
    )
    data = data_mod.load("mnist", args.data_dir, progress=not args.quiet)
    if spec.batch_size > data.train.num_examples:
        raise UserError(f"--batch-size {spec.batch_size} is larger than the train split "
                        f"({data.train.num_examples} examples)")
    spec = RunSpec(**{**spec.to_dict(),
                      "eval_train_examples": min(spec.eval_train_examples,
                                                 data.train.num_examples),
                      "eval_test_examples": min(spec.eval_test_examples,
                                                data.test.num_examples)})
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / f"train-{model}-{stamp}"
    result = experiments.train_one(spec, data, out, device=args.device,
                                   progress=_progress(args), blas_threads=_blas(args))
    _, weights = experiments.run_paths(out, spec.run_id)
    print(f"{spec.run_id}: {experiments.describe(result)}")
    print(f"weights: {weights}")
    return EXIT_FAILED if result.diverged else EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from numnet.lab import report
    from numnet.lab.cli import EXIT_OK, UserError

    if not Path(args.dir).is_dir():
        raise UserError(f"{args.dir} is not a directory; give a `numnet reproduce` --out DIR")
    paths = report.rebuild(args.dir)
    for path in paths.values():
        print(path)
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from numnet.lab import predict
    from numnet.lab.cli import EXIT_OK

    predictions = predict.predict_files(args.weights, args.images, method=args.method)
    for pred in predictions:
        if args.json:
            print(json.dumps(pred.to_dict()))
            continue
        print(f"{pred.path}: {pred.label}  (probability {pred.confidence:.4f})")
        print("  " + "  ".join(f"{k}: {p:.4f}" for k, p in enumerate(pred.probabilities)))
    sys.stdout.flush()
    return EXIT_OK
