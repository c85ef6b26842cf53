"""What recording the training internals costs: the same run with and without them, in one
process, alternating (with, without, with, ...) so that a change of machine load hits both.

Usage: ``python benchmarks/internals_cost.py [--models 2,4] [--epochs 1] [--repeats 3]
[--threads N] [--data-dir DIR]``.

Each model's protocol run (its first setting of the assignment protocol, at the protocol's
evaluation cadence and sizes: every 200 updates on 11,000 train and 10,000 test examples) is
cut to ``--epochs`` epochs and trained ``--repeats`` times each way; the figure is the median
over pairs of (time with internals / time without) - 1. With one epoch the fixed per-run cost
(the two start snapshots and the final model's confusion matrix: one more pass over the test
set) is spread over 551 updates instead of the protocol's 2,751 to 22,001, so the figure is an
upper bound of the protocol's overhead; ``--epochs 0`` keeps the protocol's epochs. The two
runs' curves are checked to be identical. Beside the A/B figure (noisy on a loaded machine) it
prints the time the recording itself took (``RunResult.internals_time``, timed inside the run)
over the run's time without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path

try:
    import numnet  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from numnet.core import runtime
from numnet.lab import data as data_mod
from numnet.lab import protocol as protocol_mod
from numnet.lab.experiments import parse_models, plan_runs
from numnet.lab.training import train_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="2,4", help="models by number (default 2,4)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="pairs (with, without) per model")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    proto = protocol_mod.load("assignment")
    data = data_mod.load(dataset=proto.dataset, data_dir=args.data_dir,
                         validation_size=proto.validation_size, progress=False)
    models = parse_models(args.models)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    worst = -math.inf
    with runtime.threads(args.threads):
        for model in models:
            spec = plan_runs(proto, [model])[0]
            if args.epochs:
                spec = dataclasses.replace(spec, epochs=args.epochs)
            off = dataclasses.replace(spec, internals=False)
            ratios, times, inside = [], {"with": [], "without": []}, []
            for _ in range(args.repeats):
                pair = {}
                for label, s in (("with", spec), ("without", off)):
                    t0 = time.perf_counter()
                    result = train_run(s, data)
                    pair[label] = (time.perf_counter() - t0, result)
                    times[label].append(pair[label][0])
                (t_with, r_with), (t_without, r_without) = pair["with"], pair["without"]
                if r_with.test_accuracy != r_without.test_accuracy:
                    print(f"{model}: curves differ with internals (a bug)", file=sys.stderr)
                    return 1
                ratios.append(t_with / t_without - 1)
                inside.append(r_with.internals_time / r_without.wall_time)
            cost = statistics.median(ratios)
            worst = max(worst, cost)
            print(f"{spec.run_id} ({spec.epochs} epoch(s), lr {spec.lr:g}, "
                  f"{r_with.updates} updates, {r_with.evaluations} evaluations): "
                  f"with internals {statistics.median(times['with']):.2f} s, without "
                  f"{statistics.median(times['without']):.2f} s (medians of {args.repeats}); "
                  f"cost {100 * cost:+.2f}% (per pair: "
                  + ", ".join(f"{100 * r:+.2f}%" for r in ratios) + "); time inside the "
                  f"recording / run without it: {100 * statistics.median(inside):.2f}%")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"largest cost: {100 * worst:+.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
