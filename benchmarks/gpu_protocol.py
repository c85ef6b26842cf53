"""The GPU check, ready to run on a machine with an NVIDIA GPU and CuPy (issue 6).

It runs, in order, and writes everything to ``OUT/gpu_protocol.json`` (plus the logs):

1. the GPU tests (``tests/test_gpu.py``: every layer, model, the training loop and a sweep task
   on CuPy equal NumPy within float32 tolerance) and ``tests/test_backend.py``;
2. per-epoch training time (550 steps of batch 100, float32, summed CE, SGD, batches gathered on
   the host and copied over as ``train_run`` does) for models 1-4: numnet on CuPy, PyTorch eager
   on the same GPU (when torch sees CUDA), and numnet on this machine's CPU (``--cpu-epochs``);
3. the whole protocol, ``numnet reproduce --protocol assignment --device cuda``, timed, with
   its summary table (final test accuracies).

Anchors (issue 6, an H200): PyTorch eager at batch 100 takes 0.43/0.60/0.63/0.90 s per epoch
for models 1-4 and about 119 s for the whole protocol; a NumPy-style CuPy MLP step took 0.75 ms.
The CPU protocol on the project's 2-core machine: see the README / the reproduce closing note.

The GPU machine has no network: prepare the MNIST files here and carry them along::

    python benchmarks/gpu_protocol.py --prepare-data runs/mnist-gz          # here (11 MB)
    # device machine (carry runs/mnist-gz; numnet is imported from src/ if not installed):
    python benchmarks/gpu_protocol.py --data-dir runs/mnist-gz --out "$OUT"

Options: ``--skip-tests``, ``--skip-epochs``, ``--skip-protocol``, ``--protocol NAME``,
``--protocol-timeout S`` (default 420), ``--cpu-epochs`` (also time numnet on the CPU there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import numnet
except ImportError:  # not installed on the device machine: use the working tree
    sys.path.insert(0, str(ROOT / "src"))
    import numnet

# after the fallback above, which may have put the working tree's src/ on the path
from numnet.core import backend, losses, models, optim  # noqa: E402
from numnet.core.io import write_json, write_text  # noqa: E402
from numnet.lab.data import fetch, read_idx, write_idx  # noqa: E402

STEPS, BATCH, LR = 550, 100, 1e-4
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def prepare_data(directory: Path) -> None:
    """Write the four MNIST IDX files, gzipped, from numnet's cache (fetching if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    result = fetch("mnist")
    for name, path in result.paths.items():
        write_idx(directory / f"{name}.gz", read_idx(path))
    print(f"wrote {sorted(p.name for p in directory.iterdir())} to {directory}")


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__,
                            "numnet": numnet.__version__, "cpus": os.cpu_count()}
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["cupy"] = cupy.__version__
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    except Exception as exc:  # report, do not crash: the tests will say more
        info["cupy_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        info["torch"] = None
    for mod in ("matplotlib", "tqdm", "pytest"):
        try:
            __import__(mod)
        except ImportError:
            info.setdefault("missing", []).append(mod)
    return info


def run_tests(out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           "tests/test_gpu.py", "tests/test_backend.py"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    write_text(out / "tests.log", proc.stdout + proc.stderr)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    print("\n".join(tail))
    return {"rc": proc.returncode, "seconds": time.perf_counter() - start, "tail": tail}


def epoch_numnet(name: str, x: np.ndarray, onehot: np.ndarray, device: str,
                 idx: list[np.ndarray]) -> float:
    model = models.build(name, seed=0).to(device)
    opt = optim.SGD(model.parameters(), LR)
    xp = backend.xp_for(device)

    def steps(index_list: list[np.ndarray]) -> None:
        for i in index_list:
            xb, yb = backend.to_device(x[i], device), backend.to_device(onehot[i], device)
            _, dlogits = losses.softmax_cross_entropy(model.forward(xb), yb, reduction="sum")
            model.backward(dlogits)
            opt.step()
        if xp is not np:
            xp.cuda.Device().synchronize()

    steps(idx[:20])  # warm-up: kernels compiled, buffers allocated
    start = time.perf_counter()
    steps(idx)
    return time.perf_counter() - start


def epoch_torch(name: str, x: np.ndarray, labels: np.ndarray, idx: list[np.ndarray],
                channels_last: bool = False) -> float:
    import torch

    from numnet.lab.reference_torch import build_twin  # imports torch: only with torch

    dev = torch.device("cuda")
    model = build_twin(models.build(name, seed=0), channels_last=channels_last).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    tl = torch.from_numpy(labels.astype(np.int64))

    def steps(index_list: list[np.ndarray]) -> None:
        for i in index_list:
            xb = torch.from_numpy(x[i]).to(dev, non_blocking=True)
            yb = tl[torch.from_numpy(i)].to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=False)
            loss_fn(model(xb), yb).backward()
            opt.step()
        torch.cuda.synchronize()

    steps(idx[:20])
    start = time.perf_counter()
    steps(idx)
    return time.perf_counter() - start


def time_epochs(info: dict[str, Any], cpu: bool, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = STEPS * BATCH
    x = rng.random((n, 784), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    onehot = np.eye(10, dtype=np.float32)[labels]
    order = rng.permutation(n)
    idx = [order[k:k + BATCH] for k in range(0, n, BATCH)]
    results: dict[str, Any] = {}
    for k in range(1, 5):
        name = f"model{k}"
        row: dict[str, list[float]] = {"numnet cuda": []}
        if info.get("torch_cuda"):
            row["torch eager cuda"] = []
        if cpu:
            row["numnet cpu"] = []
        for _ in range(repeats):  # implementations take turns
            row["numnet cuda"].append(epoch_numnet(name, x, onehot, "cuda", idx))
            if "torch eager cuda" in row:
                row["torch eager cuda"].append(epoch_torch(name, x, labels, idx))
            if "numnet cpu" in row:
                row["numnet cpu"].append(epoch_numnet(name, x, onehot, "cpu", idx))
        med = {impl: statistics.median(v) for impl, v in row.items()}
        results[name] = med
        base = med["numnet cuda"]
        print(f"{name}: " + ", ".join(f"{impl} {t:.3f} s/epoch ({t / base:.2f}x numnet cuda)"
                                      for impl, t in med.items()), flush=True)
    return results


def run_protocol(out: Path, protocol: str, data_dir: str | None, timeout: int) -> dict[str, Any]:
    target = out / f"{protocol}-cuda"
    cmd = [sys.executable, "-m", "numnet", "reproduce", "--protocol", protocol, "--device",
           "cuda", "--out", str(target), "--quiet"]
    if data_dir:
        cmd += ["--data-dir", str(Path(data_dir).resolve())]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True,
                              timeout=timeout)
        rc, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, log = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
        log = log.decode() if isinstance(log, bytes) else log
    wall = time.perf_counter() - start
    write_text(out / "protocol.log", log)
    result: dict[str, Any] = {"rc": rc, "wall_seconds": wall, "command": " ".join(cmd)}
    results_json = target / "results.json"
    if results_json.is_file():
        doc = json.loads(results_json.read_text())
        result["training_seconds"] = doc["timing"].get("training_time")
        result["final_test_accuracy"] = {r["run_id"]: r["final_test_accuracy"]
                                         for r in doc["runs"]}
        result["run_seconds"] = {r["run_id"]: r["wall_time"] for r in doc["runs"]}
    print(f"protocol {protocol} on cuda: rc {rc}, wall {wall:.1f} s")
    for run_id, acc in result.get("final_test_accuracy", {}).items():
        print(f"  {run_id}: final test accuracy {acc}, {result['run_seconds'][run_id]:.1f} s")
    print("\n".join(log.strip().splitlines()[-8:]))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare-data", type=Path, metavar="DIR",
                        help="only write the MNIST .gz IDX files into DIR (run it here)")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder on this machine")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu")))
    parser.add_argument("--protocol", default="assignment")
    parser.add_argument("--protocol-timeout", type=int, default=420)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cpu-epochs", action="store_true")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-epochs", action="store_true")
    parser.add_argument("--skip-protocol", action="store_true")
    args = parser.parse_args(argv)
    if args.prepare_data:
        prepare_data(args.prepare_data)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"environment": environment()}
    print(json.dumps(report["environment"]), flush=True)
    def save() -> None:
        write_json(args.out / "gpu_protocol.json", report)

    if not args.skip_tests:
        report["tests"] = run_tests(args.out)
        save()
    if not args.skip_epochs:
        report["epochs"] = time_epochs(report["environment"], args.cpu_epochs, args.repeats)
        save()
    if not args.skip_protocol:
        report["protocol"] = run_protocol(args.out, args.protocol, args.data_dir,
                                          args.protocol_timeout)
        save()
    return 0 if report.get("tests", {}).get("rc", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
