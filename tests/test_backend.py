"""numnet.core.backend, the array-module switch: NumPy results unchanged, and the "cuda" path
exercised end to end on a strict NumPy-backed fake CuPy (tests/fake_cupy.py).

With the fake, every layer, the loss, SGD and the training loop run their device code path;
since the arithmetic is NumPy's, results must be bit-identical to the CPU path, and every array
that should live on the device must be a device array. The real-GPU twin is tests/test_gpu.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fake_cupy import FakeDeviceArray, make_fake_cupy
from tiny_mnist import tiny_datasets

from numnet.core import backend, layers, losses, models, optim
from numnet.lab.training import RunSpec, train_run

MODELS = ("model1", "model2", "model3", "model4")


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install the fake as ``cupy`` for one test (a real CuPy, if any, is put back after)."""
    fake = make_fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def _batch(seed=0, n=8, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]
    return x, y


def _step(model, x, y, lr=0.05, reduction="sum"):
    """One SGD step; returns (logits, loss, dL/dx, grads) as host arrays."""
    logits = model.forward(x)
    loss, dlogits = losses.softmax_cross_entropy(logits, y, reduction=reduction)
    dx = model.backward(dlogits, input_grad=True)
    grads = {n: backend.to_numpy(p.grad).copy() for n, p in model.named_parameters()}
    optim.SGD(model.parameters(), lr).step()
    return backend.to_numpy(logits).copy(), float(loss), backend.to_numpy(dx).copy(), grads


# ------------------------------------------------------------------------------ NumPy side


def test_array_module_is_numpy_for_host_values():
    assert backend.array_module(np.zeros(3)) is np
    assert backend.array_module(np.float32(1), 2.0, [1, 2]) is np
    assert backend.array_module() is np
    assert backend.xp_for("cpu") is np


def test_to_device_cpu_is_the_identity_without_a_copy():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert backend.to_device(a, "cpu") is a
    assert backend.to_numpy(a) is a
    assert backend.to_numpy([1, 2]).tolist() == [1, 2]


def test_unknown_or_unavailable_device_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.xp_for("tpu")
    with pytest.raises(ValueError, match="unknown device"):
        models.build("model1").to("gpu")
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" fails: no CuPy
    assert not backend.cuda_available()
    with pytest.raises(RuntimeError, match=r"numnet\[gpu\]"):
        backend.xp_for("cuda")
    with pytest.raises(RuntimeError, match="not available"):
        train_run(RunSpec("model1", 1, 0.1, batch_size=50, eval_train_examples=100,
                          eval_test_examples=100), tiny_datasets(), device="cuda")


@pytest.mark.parametrize("name", MODELS)
def test_model_moved_to_cpu_gives_identical_results(name):
    x, y = _batch()
    a = models.build(name, seed=3)
    b = models.build(name, seed=3).to("cpu")
    assert b.device == "cpu"
    for _ in range(2):  # second step: after an update, with reused buffers
        la, lossa, dxa, ga = _step(a, x, y)
        lb, lossb, dxb, gb = _step(b, x, y)
        assert np.array_equal(la, lb) and lossa == lossb and np.array_equal(dxa, dxb)
        assert all(np.array_equal(ga[k], gb[k]) for k in ga)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert type(pb.value) is np.ndarray and np.array_equal(pa.value, pb.value)


# ------------------------------------------------------------------------------ the fake


def test_fake_is_strict_like_cupy(fake_cupy):
    d = fake_cupy.asarray(np.ones(3, np.float32))
    assert backend.array_module(d) is fake_cupy and backend.cuda_available()
    assert type(backend.to_device(np.ones(2), "cuda")) is FakeDeviceArray
    assert type(backend.to_numpy(d)) is np.ndarray
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        d + np.ones(3, np.float32)  # an implicit host-to-device transfer
    np.where(d > 0, d, 0)
    assert fake_cupy.host_calls and fake_cupy.host_calls[-1].startswith("np.where")


@pytest.mark.parametrize("kernels", ["fast", "plain"])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_models_on_fake_device_equal_numpy_bitwise(fake_cupy, name, reduction, kernels):
    x, y = _batch(seed=1)
    act = "relu" if name == "model4" else None
    host = models.build(name, seed=5, conv_activation=act, kernels=kernels)
    dev = models.build(name, seed=5, conv_activation=act, kernels=kernels)
    dev.to("cuda")
    assert dev.device == "cuda"
    xd, yd = backend.to_device(x, "cuda"), backend.to_device(y, "cuda")
    for _ in range(2):
        lh, lossh, dxh, gh = _step(host, x, y, reduction=reduction)
        ld, lossd, dxd, gd = _step(dev, xd, yd, reduction=reduction)
        assert np.array_equal(lh, ld) and lossh == lossd and np.array_equal(dxh, dxd)
        assert all(np.array_equal(gh[k], gd[k]) for k in gh)
    for _, p in dev.named_parameters():  # parameters and gradients stayed on the device
        assert type(p.value) is FakeDeviceArray and type(p.grad) is FakeDeviceArray
    state = dev.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    assert all(np.array_equal(state[k], v) for k, v in host.state_dict().items())


@pytest.mark.parametrize("layer", [
    layers.Conv2D(3, 4, 3, stride=2, padding="valid"),
    layers.Conv2D(2, 3, (3, 5), stride=1, padding="same"),
    layers.MaxPool2D(3, 2, padding="same"),
    layers.MaxPool2D(2, 2, padding="same"),
    layers.Sigmoid(), layers.Tanh(), layers.ReLU(), layers.Flatten(),
], ids=lambda layer: repr(layer).split("(")[0])
@pytest.mark.parametrize("kernels", ["fast", "plain"])
def test_general_layers_on_fake_device_equal_numpy(fake_cupy, layer, kernels):
    layer.to("cpu")
    layer.kernels = kernels
    rng = np.random.default_rng(2)
    cin = getattr(layer, "in_channels", 3)
    x = rng.standard_normal((2, 7, 9, cin)).astype(np.float32)
    for p in layer.parameters():
        p.value = rng.standard_normal(p.shape).astype(np.float32)
        p.grad = np.zeros_like(p.value)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]
    layer.to("cuda")
    yd = layer.forward(backend.to_device(x, "cuda"))
    dxd = layer.backward(backend.to_device(dy, "cuda"))
    assert type(yd) is FakeDeviceArray and type(dxd) is FakeDeviceArray
    assert np.array_equal(y, yd.get()) and np.array_equal(dx, dxd.get())
    for g, p in zip(grads, layer.parameters(), strict=True):
        assert type(p.grad) is FakeDeviceArray and np.array_equal(g, p.grad.get())


def test_training_loop_on_fake_device_equals_cpu(fake_cupy):
    data = tiny_datasets()
    for name in ("model1", "model2"):  # model 4's device path: the tests above
        spec = RunSpec(name, 1, 0.05, "mean", batch_size=50, eval_every=4,
                       eval_train_examples=200, eval_test_examples=200, eval_batch_size=100,
                       seed=11)
        cpu = train_run(spec, data, device="cpu")
        dev = train_run(spec, data, device="cuda")
        assert dev.evaluations == cpu.evaluations > 0
        a, b = cpu.to_dict(), dev.to_dict()
        for key in ("wall_time", "updates_per_second"):
            a.pop(key), b.pop(key)
        assert a == b  # accuracy and loss lists bit-identical
        assert all(type(p.value) is FakeDeviceArray for p in dev.model.parameters())


@pytest.mark.parametrize("kernels", ["fast", "plain"])
def test_no_numpy_function_applied_to_device_arrays(fake_cupy, kernels):
    """Kernels, layers, loss, SGD and evaluation use ``array_module`` for every array function,
    so nothing relies on NumPy's dispatch (or creates host arrays) on the device path."""
    x, y = _batch(seed=4)
    for name in MODELS:
        model = models.build(name, seed=1, kernels=kernels).to("cuda")
        _step(model, backend.to_device(x, "cuda"), backend.to_device(y, "cuda"))
        model.forward(backend.to_device(x, "cuda"), train=False)
    assert fake_cupy.host_calls == []
