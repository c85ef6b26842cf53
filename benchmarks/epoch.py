"""Time one training epoch and a 21,000-sample evaluation: numnet vs PyTorch eager, same process.

One epoch = 550 SGD steps of batch 100 (the protocol: 55,000 training images), float32, on
random MNIST-shaped data (pixels uniform in [0, 1), random labels), summed cross-entropy, plain
SGD. The epoch's batches are gathered (shuffled) before the clock starts, the same arrays for
every implementation: what is timed is the frameworks' work, not a row gather both would pay
alike. Evaluation = forward only over 21,000 samples (the protocol's 11,000 train + 10,000
test) in chunks of 1,000. PyTorch (when installed) runs the same models in its default NCHW
memory format and in channels_last. Implementations take turns within each repeat, so
background load hits them alike; each figure is the median over the repeats, and the ratios
are PyTorch time / numnet time
(above 1: numnet is faster).

    python benchmarks/epoch.py                     # all four models, 3 repeats
    python benchmarks/epoch.py --models 4 --repeats 5 --json runs/bench.json
    python benchmarks/epoch.py --threads 1         # one thread each (BLAS, numnet, PyTorch)
    python benchmarks/epoch.py --kernels plain     # numnet's readable kernels (no fusion)

``--threads N`` sets PyTorch's intra-op threads, numnet's and BLAS's (``numnet.core.runtime.
threads``: threadpoolctl, when installed); a loaded machine is fairer at 1 thread.
``--kernels`` chooses numnet's kernels (``models.build(..., kernels=...)``): "fast" (default)
or "plain".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import numnet
import numnet.core.models
import numnet.core.names
import numnet.core.runtime
from numnet.core.losses import softmax_cross_entropy
from numnet.core.optim import SGD

STEPS_PER_EPOCH = 550
BATCH = 100
EVAL_SAMPLES = 21_000
EVAL_CHUNK = 1_000
LR = 1e-4  # small enough that random labels never make the summed loss diverge


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    return x, labels


Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # images (100, 784), one-hot, class indices


def batches(x: np.ndarray, labels: np.ndarray, steps: int, seed: int) -> list[Batch]:
    """``steps`` batches, each a contiguous slice of a shuffled copy of the data (a fresh
    permutation per pass over it), as ``(images, one-hot labels, int64 labels)``."""
    rng = np.random.default_rng(seed)
    per_pass = len(x) // BATCH
    out: list[Batch] = []
    while len(out) < steps:
        order = rng.permutation(len(x))[: per_pass * BATCH]
        xs = x[order].reshape(per_pass, BATCH, -1)
        ys = labels[order].reshape(per_pass, BATCH).astype(np.int64)
        onehots = np.eye(10, dtype=np.float32)[ys]
        out += [(xs[k], onehots[k], ys[k]) for k in range(per_pass)]
    return out[:steps]


# -- numnet ------------------------------------------------------------------------------------


def numnet_runner(name: str, kernels: str = "fast") -> tuple[Callable, Callable]:
    model = numnet.core.models.build(name, seed=0, dtype="float32", kernels=kernels)
    opt = SGD(model.parameters(), lr=LR)

    def train(epoch: list[Batch]) -> float:
        loss = 0.0
        for xb, onehot, _ in epoch:
            loss, dlogits = softmax_cross_entropy(model.forward(xb), onehot, "sum")
            model.backward(dlogits)
            opt.step()
        return loss

    def evaluate(xe: np.ndarray) -> int:
        correct = 0
        for k in range(0, len(xe), EVAL_CHUNK):
            correct += int((model.predict(xe[k : k + EVAL_CHUNK]).argmax(1) == 0).sum())
        return correct

    return train, evaluate


# -- PyTorch -----------------------------------------------------------------------------------


def torch_runner(name: str, channels_last: bool) -> tuple[Callable, Callable]:
    import torch

    from numnet.lab.reference_torch import build_twin

    model = build_twin(numnet.core.models.build(name, seed=0), channels_last=channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

    def train(epoch: list[Batch]) -> float:
        loss = torch.zeros(())
        for xb, _, labels in epoch:
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(labels))
            loss.backward()
            opt.step()
        return float(loss.detach())

    def evaluate(xe: np.ndarray) -> int:
        correct = 0
        with torch.no_grad():
            for k in range(0, len(xe), EVAL_CHUNK):
                logits = model(torch.from_numpy(xe[k : k + EVAL_CHUNK]))
                correct += int((logits.argmax(1) == 0).sum())
        return correct

    return train, evaluate


# -- JAX ---------------------------------------------------------------------------------------


def jax_runner(name: str) -> tuple[Callable, Callable]:
    """JAX, compiled: one ``jax.jit`` of the whole epoch (``lax.scan`` over the SGD steps) and a
    jitted evaluation chunk; Glorot-uniform weights, zero biases, summed cross-entropy. The
    epoch's batches are stacked into device arrays before the clock starts (cached per epoch)."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax_twin import forward, init_params, loss_sum  # beside this script; needs jax

    params = init_params(name, jax.random.PRNGKey(0))

    @jax.jit
    def epoch_fn(params: list, xs: jax.Array, ys: jax.Array) -> tuple[list, jax.Array]:
        def step(p: list, batch: tuple) -> tuple[list, jax.Array]:
            loss, grads = jax.value_and_grad(loss_sum)(p, *batch)
            return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads), loss

        params, losses = lax.scan(step, params, (xs, ys))
        return params, losses[-1]

    predict = jax.jit(lambda p, x: jnp.argmax(forward(p, x), 1))
    state, stacked = [params], {}

    compiled: dict[tuple, Any] = {}  # per epoch length: a scan of another length recompiles

    def prepare(epoch: list[Batch]) -> None:
        if id(epoch) not in stacked:
            stacked.clear()  # one epoch at a time
            xs = jnp.asarray(np.stack([b[0] for b in epoch]))
            ys = jnp.asarray(np.stack([b[1] for b in epoch]))
            stacked[id(epoch)] = (xs, ys)
            if xs.shape not in compiled:
                compiled[xs.shape] = epoch_fn.lower(state[0], xs, ys).compile()

    def train(epoch: list[Batch]) -> float:
        xs, ys = stacked[id(epoch)]
        state[0], loss = compiled[xs.shape](state[0], xs, ys)
        return float(loss)

    def evaluate(xe: np.ndarray) -> int:
        correct = 0
        for k in range(0, len(xe), EVAL_CHUNK):
            correct += int((predict(state[0], xe[k : k + EVAL_CHUNK]) == 0).sum())
        return correct

    train.prepare = prepare  # type: ignore[attr-defined]
    return train, evaluate


# -- driver ------------------------------------------------------------------------------------


def timed(fn: Callable, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="1,2,3,4", help="comma-separated, e.g. 4 or 1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=STEPS_PER_EPOCH, help="steps per 'epoch'")
    parser.add_argument("--no-torch", action="store_true", help="time numnet only")
    parser.add_argument("--jax", action="store_true", help="also time JAX (compiled epoch)")
    parser.add_argument("--threads", type=int, help="threads for everyone (a positive count)")
    parser.add_argument(
        "--kernels", choices=numnet.core.names.KERNELS, default=numnet.core.names.DEFAULT_KERNELS,
        help="numnet's kernels: fast (default) or plain",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")
    problem = numnet.core.runtime.environment_problem()
    if problem:
        print(f"warning: {problem}")

    try:
        if args.no_torch:
            raise ImportError
        import torch

        torch_version = torch.__version__
        torch_threads = torch.get_num_threads()
    except ImportError:
        torch = None
        torch_version, torch_threads = None, None

    jax_version = None
    if args.jax:
        if args.threads:  # XLA reads its flags once, at import
            os.environ["XLA_FLAGS"] = (
                os.environ.get("XLA_FLAGS", "")
                + " --xla_cpu_multi_thread_eigen=false" * (args.threads == 1)
                + f" intra_op_parallelism_threads={args.threads}"
            )
        try:
            import jax

            jax_version = jax.__version__
        except ImportError:
            print("warning: --jax: jax is not installed; that side is skipped")
    limits = numnet.core.runtime.threads(args.threads)  # numnet, BLAS and PyTorch; None: as is
    limits.__enter__()
    if args.threads and torch:
        torch_threads = args.threads

    n_data = STEPS_PER_EPOCH * BATCH
    x, labels = make_data(n_data)
    x_eval = x[:EVAL_SAMPLES]
    print(
        f"numnet {numnet.__version__}, numpy {np.__version__}, torch {torch_version} "
        f"({torch_threads} threads), python {platform.python_version()}, "
        f"jax {jax_version}, {os.cpu_count()} CPUs, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}, "
        f"numnet threads {numnet.core.runtime.get_threads()}, kernels {args.kernels}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"train: {args.steps} steps x batch {BATCH}, float32, summed CE, SGD; eval: "
        f"{EVAL_SAMPLES} samples in chunks of {EVAL_CHUNK}; median of {args.repeats} repeats\n"
    )

    impls = ["numnet"] + (["torch NCHW", "torch channels_last"] if torch else [])
    impls += ["jax (jit scan)"] if jax_version else []
    results: dict[str, dict[str, dict[str, float]]] = {}
    for m in args.models.split(","):
        name = numnet.core.models.normalize_name(m.strip())
        runners = {"numnet": numnet_runner(name, args.kernels)}
        if torch:
            runners["torch NCHW"] = torch_runner(name, channels_last=False)
            runners["torch channels_last"] = torch_runner(name, channels_last=True)
        if jax_version:
            runners["jax (jit scan)"] = jax_runner(name)
        if name != "model4":  # the memory format only matters for convolutions
            runners.pop("torch channels_last", None)
        warm = batches(x[:2000], labels[:2000], 20, seed=99)
        for train, evaluate in runners.values():  # warm-up: allocations, thread pools, compiles
            getattr(train, "prepare", lambda e: None)(warm)
            train(warm)
            evaluate(x_eval[:2000])
        times: dict[str, dict[str, list[float]]] = {k: {"train": [], "eval": []} for k in runners}
        for r in range(args.repeats):
            epoch = batches(x, labels, args.steps, seed=r)
            for impl, (train, evaluate) in runners.items():
                getattr(train, "prepare", lambda e: None)(epoch)  # JAX: stack the batches
                times[impl]["train"].append(timed(train, epoch))
                times[impl]["eval"].append(timed(evaluate, x_eval))
        results[name] = {
            impl: {kind: statistics.median(v) for kind, v in t.items()} for impl, t in times.items()
        }
        print_model(name, results[name], impls, args.steps)
        sys.stdout.flush()
    limits.__exit__(None, None, None)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"steps": args.steps, "results": results}, indent=2))
    return 0


def print_model(name: str, res: dict, impls: list[str], steps: int) -> None:
    base = res["numnet"]
    label = "epoch" if steps == STEPS_PER_EPOCH else f"{steps} steps"
    print(
        f"{name}: train s/{label}, eval s/{EVAL_SAMPLES} samples (ratio = time / numnet's), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for impl in impls:
        if impl not in res:
            continue
        t, e = res[impl]["train"], res[impl]["eval"]
        ratio = (
            ""
            if impl == "numnet"
            else f"   train x{t / base['train']:.2f}  eval x{e / base['eval']:.2f}"
        )
        print(f"  {impl:<20} train {t:7.3f}   eval {e:7.3f}{ratio}")
    print()


if __name__ == "__main__":
    sys.exit(main())
