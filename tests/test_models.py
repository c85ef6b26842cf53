"""Models 1-4: architecture and names, seeded Glorot initialisation in its documented order,
whole-model gradient checks with the summed and the mean loss on both kernel paths, the
train/eval contract, and the plain path against the fast one."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import numnet
from numnet.core import gradcheck, runtime
from numnet.core.errors import KernelsError
from numnet.core.losses import softmax_cross_entropy
from numnet.core.models import build
from numnet.core.names import KERNELS, MODEL_NAMES

MODELS = MODEL_NAMES
SHAPES = {
    "model1": {"fc1.weight": (784, 10), "fc1.bias": (10,)},
    "model2": {
        "fc1.weight": (784, 32),
        "fc1.bias": (32,),
        "fc2.weight": (32, 10),
        "fc2.bias": (10,),
    },
    "model3": {
        "fc1.weight": (784, 32),
        "fc1.bias": (32,),
        "fc2.weight": (32, 32),
        "fc2.bias": (32,),
        "fc3.weight": (32, 10),
        "fc3.bias": (10,),
    },
    "model4": {
        "conv1.weight": (3, 3, 1, 8),
        "conv1.bias": (8,),
        "conv2.weight": (3, 3, 8, 8),
        "conv2.bias": (8,),
        "fc1.weight": (392, 32),
        "fc1.bias": (32,),
        "fc2.weight": (32, 10),
        "fc2.bias": (10,),
    },
}


def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)), np.eye(10)[rng.integers(0, 10, n)]


@pytest.mark.parametrize("name", MODELS)
def test_parameter_names_shapes_and_logits(name: str) -> None:
    model = build(name)
    assert {n: p.shape for n, p in model.named_parameters()} == SHAPES[name]
    assert list(dict(model.named_parameters())) == list(SHAPES[name])  # stable order
    assert model.dtype == np.float32 and model.device == "cpu"
    x, _ = _batch(5, 0)
    assert model.forward(x).shape == (5, 10)
    assert model.parameters()[0] is next(iter(model.named_parameters()))[1]


@pytest.mark.parametrize("alias", [4, "4", "model4", "Model 4"])
def test_name_aliases(alias) -> None:
    assert build(alias).config["name"] == "model4"


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build("model5")
    with pytest.raises(ValueError, match="dtype"):
        build("model1", dtype="float16")
    with pytest.raises(ValueError, match="conv_activation"):
        build("model4", conv_activation="gelu")
    with pytest.raises(ValueError, match="bias_init"):
        build("model1", bias_init="ones")
    with pytest.raises(ValueError, match="bias_init"):
        build("model1", bias_init=("uniform", -1.0))
    with pytest.raises(ValueError, match="seed"):
        build("model1", seed=1.5)
    with pytest.raises(KernelsError, match="kernels must be one of"):
        build("model1", kernels="gpu")


@pytest.mark.parametrize("name", MODELS)
def test_glorot_uniform_and_zero_biases(name: str) -> None:
    model = build(name, seed=1)
    for pname, p in model.named_parameters():
        if pname.endswith("bias"):
            assert not p.value.any()
            continue
        shape = p.shape
        rf = shape[0] * shape[1] if len(shape) == 4 else 1
        fan_in, fan_out = (rf * shape[-2], rf * shape[-1])
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(p.value).max() <= limit
        # A uniform sample of this size reaches close to its limit and has variance limit^2/3.
        assert np.abs(p.value).max() > 0.8 * limit
        assert np.var(p.value) == pytest.approx(limit**2 / 3, rel=0.5)


def test_initialisation_order_is_the_documented_one() -> None:
    """One Generator; parametrised layers in forward order; weight (float64 uniform, cast),
    then the bias when it is not zero."""
    model = build("model4", seed=7, dtype="float64", bias_init="uniform_sqrt3")
    rng = np.random.default_rng(7)
    for pname, p in model.named_parameters():
        if pname.endswith("weight"):
            limit = numnet.core.init.glorot_limit(p.shape)
        else:
            limit = math.sqrt(3 / p.shape[0])
        np.testing.assert_array_equal(p.value, rng.uniform(-limit, limit, size=p.shape))


def test_fixed_uniform_bias_limit() -> None:
    model = build("model3", seed=0, bias_init=("uniform", 0.25))
    biases = [p.value for n, p in model.named_parameters() if n.endswith("bias")]
    assert all(np.abs(b).max() <= 0.25 and b.any() for b in biases)
    assert model.config["bias_init"] == ["uniform", 0.25]


def test_seeds_and_dtypes() -> None:
    a, b, c = build("model4", seed=3), build("model4", seed=3), build("model4", seed=4)
    d = build("model4", seed=3, dtype="float64")
    for (_, pa), (_, pb), (_, pc), (_, pd) in zip(
        a.named_parameters(),
        b.named_parameters(),
        c.named_parameters(),
        d.named_parameters(),
        strict=True,
    ):
        np.testing.assert_array_equal(pa.value, pb.value)
        if pa.value.any():
            assert not np.array_equal(pa.value, pc.value)
        assert pd.dtype == np.float64
        np.testing.assert_array_equal(pa.value, pd.value.astype(np.float32))


@pytest.mark.parametrize("name", MODELS)
def test_config_is_json_and_rebuilds_the_same_model(name: str) -> None:
    model = build(name, seed=5, conv_activation="relu", bias_init="uniform_sqrt3", kernels="plain")
    assert model.kernels == "plain"
    assert set(model.config) == {"name", "seed", "dtype", "conv_activation", "bias_init"}
    config = json.loads(json.dumps(model.config))
    twin = build(**config)
    assert twin.kernels == "fast"
    for (_, p), (_, q) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.value, q.value)


def test_conv_activation_adds_layers_only_to_model4() -> None:
    names = [n for n, _ in build("model4", conv_activation="relu").layers]
    assert names == [
        "reshape", "conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten", "fc1", "relu1",
        "fc2",
    ]  # fmt: skip
    assert [n for n, _ in build("model4").layers if n.startswith("act")] == []
    assert build("model4", conv_activation="none").config["conv_activation"] is None


# -- whole-model gradient checks ---------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name", MODELS)
def test_model_gradients(name: str, reduction: str, kernels: str) -> None:
    # Non-zero biases, so that their gradients' flow is exercised from a generic point.
    model = build(name, seed=11, dtype="float64", bias_init="uniform_sqrt3", kernels=kernels)
    x, y = _batch(3, 12)
    errors = gradcheck.check_model(model, x, y, reduction, coords=30, seed=13)
    assert set(errors) == {"input", *SHAPES[name]}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_model4_gradients_with_conv_activation(act: str, kernels: str) -> None:
    model = build("model4", seed=2, dtype="float64", conv_activation=act, kernels=kernels)
    x, y = _batch(2, 3)
    errors = gradcheck.check_model(model, x, y, "sum", coords=20, seed=4)
    assert max(errors.values()) < 1e-6, errors


# -- forward / backward contract ---------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("name", MODELS)
def test_eval_forward_equals_train_forward_and_keeps_nothing(name: str, kernels: str) -> None:
    model = build(name, seed=1, dtype="float64", bias_init="uniform_sqrt3", kernels=kernels)
    xa, ya = _batch(4, 1)
    xb, _ = _batch(6, 2)
    logits = model.forward(xa)
    _, d = softmax_cross_entropy(logits, ya)
    model.backward(d)
    expected = {n: p.grad.copy() for n, p in model.named_parameters()}

    logits_again = model.forward(xa, train=True)
    # the CNN's evaluation takes the pooling-window GEMM: the same sums, in BLAS's order
    np.testing.assert_allclose(model.predict(xa), logits_again, rtol=1e-12, atol=1e-13)
    model.predict(xb)  # an evaluation in between must not disturb backward
    model.forward(xb, train=False)
    model.backward(d)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, expected[n])


@pytest.mark.parametrize("name", MODELS)
def test_backward_without_input_gradient(name: str) -> None:
    model = build(name, seed=3, dtype="float64")
    x, y = _batch(4, 5)
    _, d = softmax_cross_entropy(model.forward(x), y)
    dx = model.backward(d, input_grad=True)
    assert dx.shape == x.shape
    with_dx = {n: p.grad.copy() for n, p in model.named_parameters()}
    assert model.backward(d) is None
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, with_dx[n])


def test_backward_overwrites_gradients() -> None:
    model = build("model2", seed=0, dtype="float64")
    x, y = _batch(4, 6)
    _, d = softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    once = [p.grad.copy() for p in model.parameters()]
    model.backward(d)
    for g, p in zip(once, model.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, g)
    model.zero_grad()
    assert not any(p.grad.any() for p in model.parameters())


def test_model4_is_reshape_conv_pool_conv_pool_dense() -> None:
    """Model 4 by hand from the reference conv and pool, on the (N, 28, 28, 1) reshape."""
    from numnet.core.kernels.loops import conv2d_reference, maxpool2d_reference

    model = build("model4", seed=9, dtype="float64", bias_init="uniform_sqrt3")
    p = {n: q.value for n, q in model.named_parameters()}
    x, _ = _batch(2, 7)
    h = x.reshape(2, 28, 28, 1)
    h = maxpool2d_reference(conv2d_reference(h, p["conv1.weight"], p["conv1.bias"]), 2, 2, "same")
    h = maxpool2d_reference(conv2d_reference(h, p["conv2.weight"], p["conv2.bias"]), 2, 2, "same")
    h = np.maximum(h.reshape(2, 392) @ p["fc1.weight"] + p["fc1.bias"], 0)
    expected = h @ p["fc2.weight"] + p["fc2.bias"]
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_and_checks() -> None:
    a, b = build("model3", seed=1), build("model3", seed=2)
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.value, q.value)
    with pytest.raises(ValueError, match="names differ"):
        b.load_state_dict(build("model2").state_dict())


def test_to_cpu_keeps_values_and_unknown_device_raises() -> None:
    model = build("model1", seed=0)
    before = [p.value.copy() for p in model.parameters()]
    assert model.to("cpu") is model
    for b, p in zip(before, model.parameters(), strict=True):
        np.testing.assert_array_equal(b, p.value)
    with pytest.raises(ValueError, match="unknown device"):
        model.to("tpu")


@pytest.mark.parametrize("conv_activation", [None, "relu"])
def test_model4_fast_path_equals_the_general_layers(conv_activation) -> None:
    from numnet.core.plan import ConvPool2x2

    fast = build("model4", seed=8, dtype="float64", conv_activation=conv_activation)
    general = build("model4", seed=8, dtype="float64", conv_activation=conv_activation)
    general.fuse = False
    assert sum(isinstance(step, ConvPool2x2) for step, _ in fast._plan) == 2
    assert not any(isinstance(step, ConvPool2x2) for step, _ in general._plan)
    x, y = _batch(5, 9)
    results = []
    for model in (fast, general):
        logits = model.forward(x)
        _, d = softmax_cross_entropy(logits, y)
        dx = model.backward(d, input_grad=True)
        results.append((logits, dx, [p.grad.copy() for p in model.parameters()]))
    (l1, dx1, g1), (l2, dx2, g2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-10, atol=1e-13)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def assert_same_passes(first: tuple, second: tuple) -> None:
    """Two models' ``(logits, dx, parameter gradients, evaluation logits)`` of the same batch
    agree within float64 rounding."""
    (l1, dx1, g1, e1), (l2, dx2, g2, e2) = first, second
    np.testing.assert_allclose(l1, l2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e1, e2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e1, l1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-10, atol=1e-13)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", [False, True])
def test_a_chain_of_fused_steps_stays_batch_last_and_equals_the_layers(activation) -> None:
    """Four conv + pool pairs on 28x28: 28 -> 14 -> 7 -> 3 -> 1. Between fused steps the array
    (and its gradient) stays batch-last; the third and fourth pairs see odd inputs and run
    their layers one by one inside the chain (batch-last in, batch-last out for the third).
    Fused and unfused agree, forward, backward and in evaluation."""
    from numnet.core.layers import Conv2D, Flatten, Linear, MaxPool2D, Reshape, Tanh
    from numnet.core.models import Sequential

    rng = np.random.default_rng(4)

    def layers() -> list:
        out: list = [Reshape((28, 28, 1))]
        for c_in, c_out in ((1, 3), (3, 4), (4, 2), (2, 2)):
            conv = Conv2D(c_in, c_out, 3, dtype="float64")
            conv.weight.value[...] = rng.standard_normal(conv.weight.shape)
            conv.bias.value[...] = rng.standard_normal(conv.bias.shape)
            out += [conv, Tanh(), MaxPool2D(2)] if activation else [conv, MaxPool2D(2)]
        return [*out, Flatten(), Linear(2, 5, dtype="float64")]

    fused_layers = layers()
    fused = Sequential(fused_layers, dtype="float64")
    general = Sequential(copy.deepcopy(fused_layers), dtype="float64")
    general.fuse = False
    steps = [step for step, _ in fused._plan if hasattr(step, "gives_batch_last")]
    assert [(s.takes_batch_last, s.gives_batch_last) for s in steps] == [
        (False, True), (True, True), (True, True), (True, False)]
    x = rng.random((3, 784))
    dout = rng.standard_normal((3, 5))
    outputs = []
    for model in (fused, general):
        logits = model.forward(x)
        dx = model.backward(dout, input_grad=True)
        outputs.append((logits, dx, [p.grad.copy() for p in model.parameters()], model.predict(x)))
    assert_same_passes(*outputs)


def test_evaluation_in_chunks_equals_one_pass() -> None:
    model = build("model4", seed=1, dtype="float64")
    dense = build("model2", seed=1, dtype="float64")
    assert model.eval_chunk and dense.eval_chunk
    for m in (model, dense):
        x, _ = _batch(m.eval_chunk * 2 + 5, 3)
        np.testing.assert_allclose(m.predict(x), m.forward(x), rtol=1e-13, atol=1e-13)
        m.eval_chunk = 7
        np.testing.assert_allclose(m.predict(x), m.forward(x), rtol=1e-13, atol=1e-13)


def test_a_rows_float32_logits_do_not_depend_on_the_evaluation_chunk() -> None:
    """Bit for bit, with BLAS on one thread as in a run: a curve point evaluated beside the
    training (1,000-row chunks) is the one evaluated in line (the model's own chunks), and the
    default chunk may change without changing a result. (A dense GEMM of a few rows, e.g. 7,
    may take another BLAS kernel and round differently; the chunks here are the ones used.)"""
    x = np.random.default_rng(3).random((300, 784), dtype=np.float32)
    for name, chunks in (("model4", (7, 64, 256, 1000)), ("model2", (64, 256, 500, 1000))):
        m = build(name, seed=1)
        first = m.eval_chunk
        every = []
        with runtime.single_threaded_blas():
            for chunk in (first, *chunks):
                m.eval_chunk = chunk
                every.append(m.forward(x, train=False))
        assert all(np.array_equal(every[0], logits) for logits in every[1:]), name


def test_sequential_plans_any_layer_list() -> None:
    """Custom stacks: a conv that cannot be fused, a conv at the end, a pool with padding."""
    from numnet.core.layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Reshape
    from numnet.core.models import Sequential
    from numnet.core.plan import ConvPool2x2

    rng = np.random.default_rng(0)
    stacks = [
        [Reshape((28, 28, 1)), Conv2D(1, 2, 3, stride=2, dtype="float64"), MaxPool2D(2)],
        [Reshape((28, 28, 1)), Conv2D(1, 2, 3, dtype="float64")],
        [Reshape((28, 28, 1)), Conv2D(1, 2, 3, dtype="float64"), ReLU(), MaxPool2D(2)],
        [Reshape((28, 28, 1)), Conv2D(1, 2, 3, dtype="float64"), ReLU(), Flatten()],
        [Linear(784, 3, dtype="float64")],
    ]
    fused_counts = [0, 0, 1, 0, 0]
    for layers, fused in zip(stacks, fused_counts, strict=True):
        model = Sequential(layers, dtype="float64")
        assert sum(isinstance(step, ConvPool2x2) for step, _ in model._plan) == fused
        out = model.forward(rng.random((2, 784)))
        dx = model.backward(np.ones_like(out), input_grad=True)
        assert dx.shape == (2, 784)
        assert [n for n, _ in model.named_parameters()] == [
            f"{k}.{p}" for k, layer in enumerate(layers) for p in layer.param_names
        ]


@pytest.mark.parametrize("conv_activation", [None, "relu", "sigmoid"])
@pytest.mark.parametrize("name", MODELS)
def test_plain_kernels_equal_the_fast_ones(name: str, conv_activation: str | None) -> None:
    """The same model on both paths: equal within float64 rounding, and the plain model runs
    its layers one by one (no fused step)."""
    from numnet.core.plan import ConvPool2x2

    x, y = _batch(4, 21)
    results = []
    for kernels in KERNELS:
        model = build(name, seed=8, dtype="float64", conv_activation=conv_activation,
                      bias_init="uniform_sqrt3", kernels=kernels)  # fmt: skip
        fused = sum(isinstance(step, ConvPool2x2) for step, _ in model._plan)
        assert fused == (2 if name == "model4" and kernels == "fast" else 0)
        logits = model.forward(x)
        _, d = softmax_cross_entropy(logits, y)
        dx = model.backward(d, input_grad=True)
        results.append((logits, dx, [p.grad.copy() for p in model.parameters()], model.predict(x)))
    assert_same_passes(*results)


def test_kernels_can_be_switched_on_a_built_model() -> None:
    x, y = _batch(3, 22)
    model = build("model4", seed=3, dtype="float64")
    fast_logits = model.forward(x)
    model.kernels = "plain"
    assert all(layer.kernels == "plain" for _, layer in model.layers)
    np.testing.assert_allclose(model.forward(x), fast_logits, rtol=1e-12, atol=1e-12)
    _, d = softmax_cross_entropy(model.forward(x), y)
    assert model.backward(d, input_grad=True).shape == x.shape
    with pytest.raises(KernelsError):
        model.kernels = "cuda"
