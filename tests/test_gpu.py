"""The CUDA path on a real GPU: every layer, model, the training loop and a sweep on CuPy arrays
give NumPy's results (float32 within float32 tolerance, float64 tightly).

Skipped unless CuPy imports and sees a CUDA device (``pip install 'numnet[gpu]'`` on a machine
with an NVIDIA GPU). The same code paths are exercised without a GPU, bit-exactly, on a fake
CuPy by tests/test_backend.py. ``python benchmarks/gpu_protocol.py`` runs this file and times
the protocol on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_mnist import tiny_datasets

from numnet.core import backend, layers, losses, models, optim
from numnet.lab.training import RunSpec, train_run

try:
    import cupy
except Exception:  # ImportError, or CUDA libraries missing at import time
    cupy = None
if cupy is None or getattr(cupy, "is_fake", False) or not backend.cuda_available():
    pytest.skip("needs CuPy and a CUDA device", allow_module_level=True)

MODELS = ("model1", "model2", "model3", "model4")


def close(gpu, cpu, dtype):
    """GPU value ``gpu`` equals host ``cpu`` within the dtype's tolerance (relative to the
    array's scale: GEMM summation order differs between cuBLAS and OpenBLAS)."""
    got = backend.to_numpy(gpu)
    assert type(gpu).__module__.startswith("cupy") or np.isscalar(gpu) or got.ndim == 0
    assert got.dtype == np.asarray(cpu).dtype
    rtol = 2e-4 if np.dtype(dtype) == np.float32 else 1e-10
    scale = max(1.0, float(np.max(np.abs(cpu)))) if np.size(cpu) else 1.0
    np.testing.assert_allclose(got, cpu, rtol=rtol, atol=rtol * scale)


LAYERS = [
    lambda dt: layers.Linear(12, 5, dt),
    lambda dt: layers.Conv2D(3, 4, 3, stride=1, padding="same", dtype=dt),   # fast path
    lambda dt: layers.Conv2D(3, 4, 3, stride=2, padding="valid", dtype=dt),
    lambda dt: layers.Conv2D(3, 2, (5, 3), stride=(2, 1), padding="same", dtype=dt),
    lambda dt: layers.MaxPool2D(2, 2, padding="same"),                        # fast path
    lambda dt: layers.MaxPool2D(3, 2, padding="same"),
    lambda dt: layers.MaxPool2D(2, 1, padding="valid"),
    lambda dt: layers.ReLU(),
    lambda dt: layers.Sigmoid(),
    lambda dt: layers.Tanh(),
    lambda dt: layers.Flatten(),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", LAYERS, ids=lambda f: repr(f(np.float32)).split("(")[0]
                         + str(LAYERS.index(f)))
def test_layer_forward_backward_cupy_equals_numpy(make, dtype):
    rng = np.random.default_rng(LAYERS.index(make))
    layer = make(dtype)
    shape = (4, 12) if isinstance(layer, layers.Linear) else (3, 9, 7, 3)
    x = rng.standard_normal(shape).astype(dtype)
    for p in layer.parameters():
        p.value = rng.standard_normal(p.shape).astype(dtype)
        p.grad = np.zeros_like(p.value)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]

    layer.to("cuda")
    for _ in range(2):  # twice: buffers reused on the device
        yd = layer.forward(cupy.asarray(x))
        dxd = layer.backward(cupy.asarray(dy))
        close(yd, y, dtype)
        close(dxd, dx, dtype)
        for g, p in zip(grads, layer.parameters(), strict=True):
            close(p.grad, g, dtype)


def test_maxpool_ties_go_to_the_first_maximum_on_the_gpu():
    x = np.ones((1, 4, 4, 1), np.float32)
    pool = layers.MaxPool2D(2, 2, padding="same")
    pool.forward(x)
    dx = pool.backward(np.ones((1, 2, 2, 1), np.float32))
    pool.to("cuda")
    pool.forward(cupy.asarray(x))
    dxd = pool.backward(cupy.ones((1, 2, 2, 1), np.float32))
    assert np.array_equal(cupy.asnumpy(dxd), dx)


@pytest.mark.parametrize("kernels", ["fast", "plain"])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_step_cupy_equals_numpy(name, reduction, dtype, kernels):
    rng = np.random.default_rng(0)
    x = rng.random((16, 784)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 16)]
    host = models.build(name, seed=2, dtype=dtype, kernels=kernels)
    dev = models.build(name, seed=2, dtype=dtype, kernels=kernels).to("cuda")
    results = []
    for model, xs, ys in ((host, x, y), (dev, cupy.asarray(x), cupy.asarray(y))):
        logits = model.forward(xs)
        loss, dlogits = losses.softmax_cross_entropy(logits, ys, reduction=reduction)
        dx = model.backward(dlogits, input_grad=True)
        grads = [p.grad.copy() for p in model.parameters()]
        optim.SGD(model.parameters(), 0.01).step()
        results.append((logits, float(loss), dx, grads))
    (lh, lossh, dxh, gh), (ld, lossd, dxd, gd) = results
    close(ld, lh, dtype)
    assert lossd == pytest.approx(lossh, rel=2e-4 if dtype == "float32" else 1e-10)
    close(dxd, dxh, dtype)
    for a, b in zip(gd, gh, strict=True):
        close(a, b, dtype)
    for (_, p), (_, q) in zip(dev.named_parameters(), host.named_parameters(), strict=True):
        assert type(p.value).__module__.startswith("cupy")
        close(p.value, q.value, dtype)


@pytest.mark.parametrize("name", ["model2", "model4"])
def test_training_run_on_gpu_matches_cpu(name):
    data = tiny_datasets()
    kw = dict(batch_size=50, eval_every=4, eval_train_examples=200, eval_test_examples=200,
              eval_batch_size=100, seed=5)
    # float64: the same trajectory (accuracies equal, losses to 1e-8)
    spec = RunSpec(name, 1, 0.05, "mean", dtype="float64", **kw)
    cpu, gpu = train_run(spec, data), train_run(spec, data, device="cuda")
    assert gpu.status == cpu.status == "ok" and gpu.updates == cpu.updates
    assert gpu.train_accuracy == cpu.train_accuracy and gpu.test_accuracy == cpu.test_accuracy
    np.testing.assert_allclose(gpu.test_loss, cpu.test_loss, rtol=1e-8)
    # float32: close (summation orders differ; the trajectories drift apart slowly)
    spec = RunSpec(name, 2, 0.05, "mean", **kw)
    cpu, gpu = train_run(spec, data), train_run(spec, data, device="cuda")
    assert gpu.evaluations == cpu.evaluations
    np.testing.assert_allclose(gpu.test_loss[0], cpu.test_loss[0], rtol=1e-3)
    assert abs(gpu.final_test_accuracy - cpu.final_test_accuracy) <= 0.05


def test_sweep_runs_on_gpu(tmp_path):
    from tiny_mnist import make_digits

    from numnet.lab import sweep
    from numnet.lab.data import write_idx

    for name, (n, seed) in {"train": (600, 0), "t10k": (200, 1)}.items():
        images, labels = make_digits(n, seed)
        write_idx(tmp_path / f"{name}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{name}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    ref = sweep.DataRef("mnist", str(tmp_path), validation_size=50, verify=False)
    spec = RunSpec("model1", 1, 0.1, "mean", batch_size=50, eval_every=4,
                   eval_train_examples=200, eval_test_examples=200, eval_batch_size=100)
    runs = [RunSpec(**{**spec.to_dict(), "seed": k, "setting": 1, "replicate": k})
            for k in range(2)]
    for jobs in (1, 2):  # in this process, then on worker processes (models back on the CPU)
        outcome = sweep.run_sweep(runs, tmp_path / f"out{jobs}", ref, jobs=jobs, device="cuda",
                                  log=lambda s: None)
        assert not outcome.failures and sorted(outcome.records) == [
            "model1-setting1-seed0", "model1-setting1-seed1"]
        assert all(r["result"]["status"] == "ok" for r in outcome.records.values())
        assert all((tmp_path / f"out{jobs}" / r["weights"]).is_file()
                   for r in outcome.records.values())
