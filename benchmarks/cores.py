"""How much work the machine's cores add: one workload alone against the same workload in k
processes at once.

    python benchmarks/cores.py                 # k = 1 and every core count up to the machine's
    python benchmarks/cores.py --seconds 3     # longer timing windows (steadier figures)
    python benchmarks/cores.py --workloads model4,gemm

Workloads, each single-threaded (BLAS held to one thread):
- ``model4``: numnet's model-4 training step (batch 100, summed cross-entropy, SGD);
- ``model3``: numnet's model-3 training step;
- ``gemm``: a 1024 x 1024 float32 matrix product (compute bound);
- ``copy``: copying a 64 MB float32 array (memory bound).

For k concurrent processes, "throughput" is the sum of their rates divided by one process's
rate alone, measured in the same invocation (k cores' worth of perfect scaling is k). The
protocol runs its independent runs on the cores at once, so its wall time is bounded below by
its total single-core work divided by this throughput.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

WORKLOADS = ("model4", "model3", "gemm", "copy")


def make_workload(name: str):
    """A zero-argument callable doing one unit of the named workload."""
    if name in ("model4", "model3"):
        from numnet.core import models
        from numnet.core.losses import softmax_cross_entropy
        from numnet.core.optim import SGD

        model = models.build(name, seed=0, dtype="float32")
        optimizer = SGD(model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        images = rng.random((100, 784), dtype=np.float32)
        one_hot = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]

        def step() -> None:
            _, grad = softmax_cross_entropy(model.forward(images), one_hot, "sum")
            model.backward(grad)
            optimizer.step()

        return step
    if name == "gemm":
        a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
        out = np.empty_like(a)
        return lambda: np.matmul(a, a, out=out)
    if name == "copy":
        src = np.ones(16 * 1024 * 1024, dtype=np.float32)
        dst = np.empty_like(src)
        return lambda: np.copyto(dst, src)
    raise SystemExit(f"cores.py: unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


def rate(name: str, seconds: float, barrier, results) -> None:
    """Units per second of ``name`` over ``seconds``, after warming up and meeting the others
    at ``barrier``; appended to ``results``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        unit = make_workload(name)
        for _ in range(5):
            unit()
        barrier.wait()
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            unit()
            done += 1
        results.append(done / elapsed)


def throughput(name: str, k: int, seconds: float) -> float:
    """Sum of the rates of k concurrent processes running ``name`` (units per second)."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier, results = manager.Barrier(k), manager.list()
        procs = [ctx.Process(target=rate, args=(name, seconds, barrier, results)) for _ in range(k)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return float(sum(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per process")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--max-procs", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    for name in names:
        if name not in WORKLOADS:
            raise SystemExit(f"cores.py: unknown workload {name!r}; choose {', '.join(WORKLOADS)}")
    counts = range(1, max(1, args.max_procs) + 1)
    load = os.getloadavg()[0]
    print(f"{len(os.sched_getaffinity(0))} usable CPUs, load average {load:.1f}; "
          f"{args.seconds:g} s per timing window")  # fmt: skip
    for name in names:
        alone = throughput(name, 1, args.seconds)
        cells = [f"1 proc {alone:9.1f}/s"]
        for k in counts[1:]:
            together = throughput(name, k, args.seconds)
            cells.append(f"{k} procs x{together / alone:.2f}")
        print(f"  {name:7s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
