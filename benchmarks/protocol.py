"""The whole protocol, timed: numnet's CLI against the same 12 runs in PyTorch eager (and JAX).

Usage: ``python benchmarks/protocol.py [--quick] [--only numnet,torch,jax] [--models 1,4]
[--threads N] [--json PATH]``. ``--quick``: 1 epoch per setting, evaluation every 50 updates on
2,000 + 2,000 examples (the protocol's [quick] table), labelled QUICK; ``--threads N`` goes to
every side (default: each side's own default).

numnet runs as a user would run it, ``python -m numnet reproduce --protocol assignment --quiet``
in a subprocess, with its defaults: one worker process per core, and the protocol's shared
starts, under which a run that is a prefix of another (model 3 settings 1 and 2, model 4
settings 2 and 3) is taken from it rather than trained again (wall time of the whole command;
per-run times and final test accuracies from its results.json; a run taken from a longer one
counts 0 s in the sum of runs, its training being the longer run's). PyTorch and JAX run the
same 12 (model, epochs, lr) runs written plainly, one after the other:
the same split and evaluation sets, Xavier-uniform weights, zero biases, plain SGD on the
cross-entropy summed over batches of 100, 550*E + 1 updates with a fresh shuffle every epoch,
an evaluation (accuracy and loss on the first 11,000 train and the 10,000 test examples, in
chunks of 1,000) every 200 updates. Their batch orders and initial weights are their own, so
accuracies agree only to run-to-run noise. Ratios are that side's time / numnet's time (above 1:
numnet is faster). JAX is optional (``pip install jax jaxlib``); without it that side is skipped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS = {  # the protocol's (epochs, lr) per model
    "model1": [(5, 0.0001), (5, 0.005), (5, 0.1)],
    "model2": [(15, 0.0001), (15, 0.005), (15, 0.1)],
    "model3": [(5, 0.003), (40, 0.003), (40, 0.05)],
    "model4": [(5, 0.01), (10, 0.001), (20, 0.001)],
}
FULL = {"epochs": None, "eval_every": 200, "n_train": 11000, "n_test": 10000}
QUICK = {"epochs": 1, "eval_every": 50, "n_train": 2000, "n_test": 2000}  # its [quick] table
BATCH, CHUNK = 100, 1000
SIDES = ("numnet", "torch", "jax")
Run = dict[str, Any]  # run_id, model, epochs, lr


def plan(models: list[str], quick: bool) -> list[Run]:
    """The runs, in the protocol's order: ``[{run_id, model, epochs, lr}, ...]``."""
    return [{"run_id": f"{m}-setting{k}", "model": m, "lr": lr,
             "epochs": QUICK["epochs"] if quick else epochs}
            for m in models for k, (epochs, lr) in enumerate(SETTINGS[m], 1)]


def batch_indices(n: int, epochs: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of the 550*E + 1 batches of a run: a new permutation every epoch."""
    order = np.concatenate([rng.permutation(n) for _ in range(epochs + 1)])
    for i in range(n // BATCH * epochs + 1):
        yield order[i * BATCH:(i + 1) * BATCH]


def numnet_side(runs: list[Run], models: list[str], quick: bool, threads: int | None) -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="numnet-bench-") as tmp:
        cmd = [sys.executable, "-m", "numnet", "reproduce", "--protocol", "assignment",
               "--out", tmp, "--quiet", "--models", ",".join(models)] + ["--quick"] * quick
        if threads:  # numnet's own helper threads and BLAS
            cmd += ["--threads", str(threads)]
            env["NUMNET_THREADS"] = str(threads)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited {proc.returncode}: "
                               f"{((proc.stderr or proc.stdout).strip().splitlines() or [''])[-1]}")
        from numnet.core.io import read_json

        results = read_json(Path(tmp) / "results.json")
    out = {r["run_id"]: {"time": 0.0 if r.get("shared_with") else r["wall_time"],
                         "test_accuracy": r["final_test_accuracy"],
                         "updates": r["updates"], "evaluations": r["evaluations"],
                         "shared_with": r.get("shared_with")}
           for r in results["runs"]}
    timing = results["timing"]
    return {"wall": wall, "runs": {r["run_id"]: out[r["run_id"]] for r in runs},
            "jobs": timing.get("jobs"), "threads_per_run": timing.get("threads_per_run")}


def run_loop(runs: list[Run], data: Any, cfg: dict, new_run: Callable) -> dict:
    """The loop both twins share. ``new_run(run)`` builds a fresh model and returns
    ``step(idx)`` (one SGD update on those train rows) and ``chunk(x, y)`` (correct count and
    summed loss of images ``(n, 784)`` float32, one-hot labels ``(n, 10)``)."""
    rng = np.random.default_rng(0)
    sets = [(data.train.images[:cfg["n_train"]], data.train.labels[:cfg["n_train"]]),
            (data.test.images[:cfg["n_test"]], data.test.labels[:cfg["n_test"]])]
    out = {}
    for run in runs:
        start = time.perf_counter()
        step, chunk = new_run(run)
        updates, accs = 0, []
        for updates, idx in enumerate(batch_indices(len(data.train.images), run["epochs"], rng), 1):
            step(idx)
            if updates % cfg["eval_every"] == 0:  # accuracy and loss on both sets, like numnet
                for x, y in sets:
                    got = np.array([chunk(x[s:s + CHUNK], y[s:s + CHUNK])
                                    for s in range(0, len(x), CHUNK)], dtype=np.float64)
                    acc, _loss = got.sum(axis=0) / len(x)  # (correct, loss) per chunk
                accs.append(acc)  # the test set's
        out[run["run_id"]] = {"time": time.perf_counter() - start, "updates": updates,
                              "evaluations": len(accs), "test_accuracy": accs[-1]}
    return {"runs": out}


def torch_side(runs: list[Run], data: Any, cfg: dict, threads: int | None) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_train = torch.from_numpy(data.train.images)
    y_train = torch.from_numpy(data.train.labels.argmax(1))

    # torch.optim's first step imports torch._dynamo (about a second): paid here, in the
    # side's wall time, rather than in the first run's time
    w = nn.Parameter(torch.zeros(1))
    w.grad = torch.zeros(1)
    torch.optim.SGD([w], lr=0.0).step()
    build = {
        "model1": lambda: nn.Linear(784, 10),
        "model2": lambda: nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)),
        "model3": lambda: nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32),
                                        nn.ReLU(), nn.Linear(32, 10)),
        "model4": lambda: nn.Sequential(  # SAME 3x3 convs, no activation; 2x2/2 pools
            nn.Conv2d(1, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(392, 32), nn.ReLU(), nn.Linear(32, 10)),
    }

    def new_run(run: Run) -> tuple[Callable, Callable]:
        net = build[run["model"]]()
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        conv = run["model"] == "model4"
        if conv:
            net = net.to(memory_format=torch.channels_last)

        def prep(x: torch.Tensor) -> torch.Tensor:
            return x.view(-1, 1, 28, 28).contiguous(memory_format=torch.channels_last) \
                if conv else x

        opt = torch.optim.SGD(net.parameters(), lr=run["lr"])

        def step(idx: np.ndarray) -> None:
            i = torch.from_numpy(idx)
            loss = F.cross_entropy(net(prep(x_train[i])), y_train[i], reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()

        @torch.no_grad()
        def chunk(x: np.ndarray, y: np.ndarray) -> tuple[int, float]:
            logits, labels = net(prep(torch.from_numpy(x))), torch.from_numpy(y).argmax(1)
            return (int((logits.argmax(1) == labels).sum()),
                    F.cross_entropy(logits, labels, reduction="sum").item())

        return step, chunk

    return run_loop(runs, data, cfg, new_run)


def jax_side(runs: list[Run], data: Any, cfg: dict, threads: int | None) -> dict:
    if threads:  # XLA reads its flags once, at import
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + (" --xla_cpu_multi_thread_eigen=false" * (threads == 1))
                                   + f" intra_op_parallelism_threads={threads}")
    import jax
    import jax.numpy as jnp
    from jax_twin import forward, init_params, loss_sum  # beside this script; needs jax

    key = jax.random.PRNGKey(0)

    @jax.jit
    def train_step(params: list, x: jax.Array, y: jax.Array, lr: float) -> list:
        _, grads = jax.value_and_grad(loss_sum)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    @jax.jit
    def eval_chunk(params: list, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = forward(params, x)
        return jnp.sum(jnp.argmax(logits, 1) == jnp.argmax(y, 1)), loss_sum(params, x, y)

    train = data.train

    def new_run(run: Run) -> tuple[Callable, Callable]:
        nonlocal key
        key, run_key = jax.random.split(key)
        state = [init_params(run["model"], run_key)]

        def step(idx: np.ndarray) -> None:
            state[0] = train_step(state[0], train.images[idx], train.labels[idx], run["lr"])

        return step, lambda x, y: eval_chunk(state[0], x, y)

    return run_loop(runs, data, cfg, new_run)


def machine() -> dict[str, Any]:
    from numnet.core.runtime import available_cores

    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "cores_usable": available_cores(),
                            "load_average": [round(v, 2) for v in os.getloadavg()]}
    for dist in ("numnet", "numpy", "torch", "jax", "jaxlib"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    return info


def report(runs: list[Run], sides: dict[str, dict], quick: bool) -> dict[str, float]:
    names = [s for s in SIDES if "runs" in sides.get(s, {})]
    head = f"{'run':<17}" + "".join(f"{s + ' s':>10}" for s in names) \
        + "".join(f"{s + ' acc':>12}" for s in names)
    print(head + "\n" + "-" * len(head))
    for r in runs:
        got = [sides[s]["runs"][r["run_id"]] for s in names]
        print(f"{r['run_id']:<17}" + "".join(f"{g['time']:>10.2f}" for g in got)
              + "".join(f"{g['test_accuracy']:>12.4f}" for g in got))
    totals = {s: sum(v["time"] for v in sides[s]["runs"].values()) for s in names}
    print(f"{'sum of runs':<17}" + "".join(f"{totals[s]:>10.2f}" for s in names))
    print(f"{'side wall time':<17}" + "".join(f"{sides[s]['wall']:>10.2f}" for s in names))
    ratios = {}
    if "numnet" in names:
        for s in names[1:]:
            ratios[s] = totals[s] / totals["numnet"]
            ratios[s + "_wall"] = sides[s]["wall"] / sides["numnet"]["wall"]
            print(f"ratio {s} / numnet: {ratios[s]:.2f} (sum of runs), "
                  f"{ratios[s + '_wall']:.2f} (side wall time)")
            cadence = {k: [(v["updates"], v["evaluations"]) for v in sides[k]["runs"].values()]
                       for k in ("numnet", s)}
            if cadence["numnet"] != cadence[s]:  # the twins must do numnet's work, no less
                print(f"  WARNING (updates, evaluations) differ: numnet {cadence['numnet']}, "
                      f"{s} {cadence[s]}")
    for s in SIDES:
        if "skipped" in sides.get(s, {}):
            print(f"{s}: skipped ({sides[s]['skipped']})")
    if quick:
        print("QUICK figures: a smoke run, not the protocol's times.")
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="1 epoch per setting, evaluation every 50 updates on 2,000 + 2,000")
    p.add_argument("--only", default=",".join(SIDES), help="sides to run (default: all)")
    p.add_argument("--models", default="1,2,3,4", help="model numbers (default 1,2,3,4)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for every side (default: each side's own default)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="save the figures")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    models = [f"model{m.strip().removeprefix('model')}" for m in args.models.split(",")]
    if not only or set(only) - set(SIDES) or set(models) - set(SETTINGS):
        p.error(f"--only takes sides from {','.join(SIDES)} and --models numbers from 1-4, "
                f"got --only {args.only!r} --models {args.models!r}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")

    info = machine()
    cfg = QUICK if args.quick else FULL
    runs = plan(models, args.quick)
    print(f"{'QUICK: ' if args.quick else ''}{len(runs)} runs, evaluation every "
          f"{cfg['eval_every']} updates on {cfg['n_train']:,} train + {cfg['n_test']:,} test"
          f"{', 1 epoch per setting' if args.quick else ''}; threads: "
          f"{args.threads or 'each side default'}")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if v is not None))
    data = None
    if {"torch", "jax"} & set(only):  # numnet's loader: the protocol's split, shared by both
        import numnet

        start = time.perf_counter()
        data = numnet.data.load("mnist", progress=False)
        print(f"data loaded for torch/jax in {time.perf_counter() - start:.2f} s")
    sides: dict[str, dict] = {}
    failed: list[str] = []
    for side in [s for s in SIDES if s in only]:
        if side != "numnet" and info[side] is None:
            sides[side] = {"skipped": f"{side} is not installed"}
            continue
        print(f"running {side} ...", flush=True)
        start = time.perf_counter()
        try:
            if side == "numnet":
                sides[side] = numnet_side(runs, models, args.quick, args.threads)
                shared = sorted(k for k, v in sides[side]["runs"].items() if v["shared_with"])
                print(f"  numnet: {sides[side]['jobs']} worker process(es), threads per run "
                      f"{sides[side]['threads_per_run']}; taken from longer runs: "
                      f"{', '.join(shared) or 'none'}")
            else:
                fn = torch_side if side == "torch" else jax_side
                sides[side] = fn(runs, data, cfg, args.threads)
                sides[side]["wall"] = time.perf_counter() - start
        except Exception as exc:  # report the side, keep the others
            sides[side] = {"skipped": f"failed: {type(exc).__name__}: {exc}"}
            failed.append(side)
    ratios = report(runs, sides, args.quick)
    if args.json is not None:
        from numnet.core.io import write_json

        write_json(args.json, {"format": "numnet.bench.protocol/1", "quick": args.quick,
                               "threads": args.threads, "machine": info, "config": cfg,
                               "runs": runs, "sides": sides, "ratios": ratios})
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
