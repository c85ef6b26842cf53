"""Models defined as lists of layer dicts: the built-in models 1-4 are definitions, shapes are
inferred, every definition that cannot work is refused with one ``DefinitionError`` before
anything is allocated (a property test: random definitions build and run, or are refused),
configs and weights files rebuild a custom model, and whole custom models -- a CNN with batch
norm and dropout, an MLP with dropout -- pass float64 finite-difference gradient checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numnet.core import gradcheck, serialize
from numnet.core.errors import DefinitionError
from numnet.core.layers import BatchNorm, Dropout
from numnet.core.losses import softmax_cross_entropy
from numnet.core.models import (
    BUILTIN_DEFINITIONS,
    MAX_LAYERS,
    build,
    builtin_definition,
    check_definition,
)
from numnet.core.names import MODEL_NAMES

CNN_BN = [
    {"type": "conv2d", "filters": 8, "kernel": 3, "stride": 1, "padding": "same"},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool2d", "size": 2, "stride": 2, "padding": "same"},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.25},
    {"type": "linear", "units": 32},
    {"type": "relu"},
    {"type": "linear", "units": 10},
]
MLP_DROPOUT = [
    {"type": "linear", "units": 16}, {"type": "tanh"}, {"type": "dropout", "rate": 0.5},
    {"type": "linear", "units": 12}, {"type": "batchnorm"}, {"type": "sigmoid"},
    {"type": "linear", "units": 10},
]  # fmt: skip
OUT = {"type": "linear", "units": 10}


def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)), np.eye(10)[rng.integers(0, 10, n)]


# -- built-in definitions ----------------------------------------------------------------------


def test_models_1_to_4_are_definitions() -> None:
    assert tuple(BUILTIN_DEFINITIONS) == MODEL_NAMES
    for name in MODEL_NAMES:
        for act in (None, "tanh") if name == "model4" else (None,):
            builtin = build(name, seed=3, conv_activation=act)
            custom = build(builtin_definition(name, act), seed=3, name=f"my-{name}")
            assert [n for n, _ in custom.layers] == [n for n, _ in builtin.layers]
            for (n, p), (m, q) in zip(builtin.named_parameters(), custom.named_parameters(),
                                      strict=True):  # fmt: skip
                assert n == m and p.value.tobytes() == q.value.tobytes()
            assert "layers" not in builtin.config


def test_cnn_bn_shapes_names_and_config() -> None:
    assert check_definition(CNN_BN, name="cnn-bn") == [
        (28, 28, 8), (28, 28, 8), (28, 28, 8), (14, 14, 8), (1568,), (1568,), (32,), (32,), (10,)]
    model = build(CNN_BN, name="cnn-bn", seed=0)
    assert [n for n, _ in model.layers] == [
        "reshape", "conv2d1", "batchnorm1", "relu1", "maxpool2d1", "flatten1", "dropout1",
        "linear1", "relu2", "linear2"]  # fmt: skip
    assert list(dict(model.named_buffers())) == ["batchnorm1.running_mean",
                                                 "batchnorm1.running_var"]  # fmt: skip
    assert model.config["layers"][0] == CNN_BN[0]
    assert model.config["layers"][1] == {"type": "batchnorm", "momentum": 0.1, "eps": 1e-5}
    assert model.config["name"] == "cnn-bn" and "conv_activation" not in model.config
    twin = build(**json.loads(json.dumps(model.config)))
    for (_, p), (_, q) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert p.value.tobytes() == q.value.tobytes()
    bn = dict(model.layers)["batchnorm1"]
    assert isinstance(bn, BatchNorm) and not bn.bias.value.any() and (bn.weight.value == 1).all()


def test_a_given_name_and_a_vector_first_layer() -> None:
    model = build([{"type": "batchnorm", "name": "norm"}, {**OUT, "name": "out"}])
    assert [n for n, _ in model.layers] == ["norm", "out"]
    assert model.forward(np.ones((3, 784))).shape == (3, 10)


def test_dropout_layers_do_not_change_the_weights_and_are_seeded() -> None:
    with_dropout = build(MLP_DROPOUT, seed=4)
    without = build([s for s in MLP_DROPOUT if s["type"] != "dropout"], seed=4)
    for p, q in zip(with_dropout.parameters(), without.parameters(), strict=True):
        assert p.value.tobytes() == q.value.tobytes()
    masks = []
    for seed in (4, 4, 5):
        model = build(MLP_DROPOUT, seed=seed)
        model.forward(np.ones((6, 784)))
        masks.append(dict(model.layers)["dropout1"].last_mask)
    assert np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], masks[2])


def test_evaluation_mode_is_dropout_off_and_running_statistics() -> None:
    model = build(CNN_BN, name="cnn-bn", seed=1, dtype="float64")
    x, _ = _batch(70, 2)
    model.forward(x)  # one training pass moves the running statistics
    bn = dict(model.layers)["batchnorm1"]
    assert bn.running_mean.any() and not np.allclose(bn.running_var, 1)
    before = model.state_dict()
    logits = model.forward(x, train=False)
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())
    np.testing.assert_array_equal(model.forward(x, train=False), logits)  # no mask drawn
    model.eval_chunk = 7  # per-row evaluation: chunks change nothing
    np.testing.assert_allclose(model.forward(x, train=False), logits, rtol=1e-13, atol=1e-13)


def test_custom_model_weights_file_round_trip(tmp_path) -> None:
    model = build(CNN_BN, name="cnn-bn", seed=2)
    x, _ = _batch(8, 3)
    model.forward(x)
    path = serialize.save(tmp_path / "cnn.npz", model)
    header = serialize.read_header(path)
    assert header["config"]["layers"] == model.config["layers"]
    assert "batchnorm1.running_var" in [e["name"] for e in header["parameters"]]
    loaded = serialize.load(path)
    for (n, a), (m, b) in zip(model.named_state(), loaded.named_state(), strict=True):
        assert n == m and a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    other = build(MLP_DROPOUT, name="cnn-bn")  # the same name, another definition
    with pytest.raises(serialize.WeightsFileError, match="saved for layers="):
        serialize.load_into(path, other)


# -- refusals -----------------------------------------------------------------------------------

BAD = [
    ([], "has no layers"),
    ("conv2d", "a definition is a list of layers"),
    ([5, OUT], r"layer 1: must be a table"),
    ([{"units": 3}, OUT], r"layer 1: 'type' must be a layer type"),
    ([{"type": "dense", "units": 3}, OUT], r"unknown layer type 'dense'"),
    ([{"type": "linear", "units": 3, "activation": "relu"}, OUT], r"unknown key 'activation'"),
    ([{"type": "conv2d", "filters": 3}, OUT], r"\(conv2d\): missing key 'kernel'"),
    ([{"type": "linear", "units": True}, OUT], r"'units' must be an integer >= 1, got True"),
    ([{"type": "linear", "units": 3.0}, OUT], r"'units' must be an integer >= 1, got 3.0"),
    ([{"type": "linear", "units": 0}, OUT], r"'units' must be an integer >= 1, got 0"),
    ([{"type": "conv2d", "filters": -1, "kernel": 3}], "'filters' must be"),
    ([{"type": "conv2d", "filters": 2, "kernel": [3, 0]}], "'kernel' must be"),
    ([{"type": "maxpool2d", "size": 2, "stride": 0}], "'stride' must be"),
    ([{"type": "avgpool2d", "size": "2"}], "'size' must be"),
    ([{"type": "conv2d", "filters": 2, "kernel": 3, "padding": "full"}], "'padding' must be"),
    ([{"type": "conv2d", "filters": 2, "kernel": 3}, OUT], "expects a vector, got an image"),
    ([{"type": "linear", "units": 4}, {"type": "maxpool2d", "size": 2}, OUT],
     r"layer 2 \(maxpool2d\): expects an image"),
    ([{"type": "conv2d", "filters": 2, "kernel": 3}, {"type": "flatten"},
      {"type": "conv2d", "filters": 2, "kernel": 3}, OUT], r"layer 3 \(conv2d\): expects an image"),
    ([{"type": "relu"}], r"the last layer must be .* got a relu"),
    ([{"type": "linear", "units": 12}], r"the last layer must be .* got units = 12"),
    ([{"type": "conv2d", "filters": 2, "kernel": 29, "padding": "valid"}, {"type": "flatten"},
      OUT], r"29x29 window does not fit its 28x28 input"),
    ([{"type": "maxpool2d", "size": 4, "padding": "valid"}, {"type": "maxpool2d", "size": 4},
      {"type": "maxpool2d", "size": 2, "padding": "valid"}, {"type": "flatten"}, OUT],
     r"layer 3 \(maxpool2d\): its 2x2 window does not fit its 1x1 input"),
    ([{"type": "dropout", "rate": 1.0}, OUT], r"'rate' must be a number in \[0, 1\)"),
    ([{"type": "dropout", "rate": -0.1}, OUT], r"'rate' must be"),
    ([{"type": "dropout", "rate": float("nan")}, OUT], r"'rate' must be .* got nan"),
    ([{"type": "dropout"}, OUT], r"missing key 'rate'"),
    ([{"type": "batchnorm", "momentum": 1.5}, OUT], r"'momentum' must be a number in \[0, 1\]"),
    ([{"type": "batchnorm", "momentum": float("nan")}, OUT], "'momentum' must be"),
    ([{"type": "batchnorm", "eps": 0}, OUT], r"'eps' must be a finite number > 0"),
    ([{"type": "batchnorm", "eps": float("inf")}, OUT], "'eps' must be"),
    ([{"type": "relu", "name": "Fc 1"}, OUT], "'name' must be a lower-case identifier"),
    ([{"type": "relu", "name": "a"}, {"type": "relu", "name": "a"}, OUT], "'a' is taken"),
    ([{"type": "relu", "name": "reshape"}, OUT], "'reshape' is taken"),
    ([{"type": "linear", "units": 100_000}, OUT],
     r"78,500,000 parameters up to here, more than the 50,000,000"),
    ([{"type": "conv2d", "filters": 20_000, "kernel": 1}, {"type": "flatten"}, OUT],
     r"15,680,000 values per example"),
    ([{"type": "relu"}] * (MAX_LAYERS + 1), r"4,097 layers, more than the 4,096"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "message"), BAD, ids=[m for _, m in BAD])
def test_definitions_that_cannot_work_are_refused(definition, message) -> None:
    with pytest.raises(DefinitionError, match=message):
        check_definition(definition, name="bad")
    if isinstance(definition, list):  # (a string is a built-in model's name to build)
        with pytest.raises(DefinitionError, match=message):
            build(definition, name="bad")
    with pytest.raises(ValueError):  # a DefinitionError is a ValueError too
        build(layers=definition, name="bad")


def test_exact_messages() -> None:
    no_flatten = [s for s in CNN_BN if s["type"] != "flatten"]
    cases = [
        (no_flatten, "model 'cnn-bn', layer 6 (linear): expects a vector, got an image "
                     '(14, 14, 8); add { type = "flatten" } before it'),
        ([{"type": "lineer", "units": 10}], "model 'cnn-bn', layer 1 (lineer): unknown layer "
         "type 'lineer'; did you mean 'linear'? known types: linear, conv2d, maxpool2d, "
         "avgpool2d, flatten, relu, sigmoid, tanh, dropout, batchnorm"),
        ([{"type": "conv2d", "filter": 8, "kernel": 3}], "model 'cnn-bn', layer 1 (conv2d): "
         "unknown key 'filter'; did you mean 'filters'? a conv2d takes filters, kernel, stride, "
         "padding (and a name)"),
        ([{"type": "relu"}], "model 'cnn-bn', layer 1 (relu): the last layer must be "
         '{ type = "linear", units = 10 } (the 10 class logits; the loss applies the softmax), '
         "got a relu"),
    ]  # fmt: skip
    for definition, message in cases:
        with pytest.raises(DefinitionError) as info:
            check_definition(definition, name="cnn-bn")
        assert str(info.value) == message


def test_build_arguments_for_definitions() -> None:
    with pytest.raises(DefinitionError, match="conv_activation applies to the built-in model 4"):
        build(CNN_BN, conv_activation="relu")
    with pytest.raises(DefinitionError, match="built-in model's name"):
        build(CNN_BN, name="Model 4")
    with pytest.raises(DefinitionError, match="not both"):
        build("model4", layers=CNN_BN)
    assert build(CNN_BN, conv_activation="none").config["name"] == "custom"
    with pytest.raises(ValueError, match="unknown model"):
        build("cnn-bn")


# -- the property: built and runnable, or refused ----------------------------------------------

_SIZES = st.one_of(st.integers(-1, 5), st.lists(st.integers(0, 4), min_size=2, max_size=2),
                   st.just(True), st.just(30), st.just(2.0))  # fmt: skip
_NUMBERS = st.one_of(st.floats(-0.5, 1.5), st.integers(-1, 2), st.just(True), st.just(float("nan")))
_LAYER = st.one_of(
    st.fixed_dictionaries({"type": st.just("linear"), "units": st.integers(-1, 12)}),
    st.fixed_dictionaries({"type": st.just("conv2d"), "filters": st.integers(0, 3),
                           "kernel": _SIZES},
                          optional={"stride": _SIZES, "padding": st.sampled_from(
                              ["same", "valid", "full"])}),
    *[st.fixed_dictionaries({"type": st.just(kind), "size": _SIZES},
                            optional={"stride": _SIZES, "padding": st.sampled_from(
                                ["same", "valid"])}) for kind in ("maxpool2d", "avgpool2d")],
    st.fixed_dictionaries({"type": st.sampled_from(["flatten", "relu", "sigmoid", "tanh"])}),
    st.fixed_dictionaries({"type": st.just("dropout"), "rate": _NUMBERS}),
    st.fixed_dictionaries({"type": st.just("batchnorm")},
                          optional={"momentum": _NUMBERS, "eps": _NUMBERS}),
    st.fixed_dictionaries({"type": st.sampled_from(["dense", "Linear", 3])},
                          optional={"units": st.integers(1, 3)}),
    st.dictionaries(st.sampled_from(["type", "units", "size", "kernel"]), st.integers(0, 3)),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=st.lists(_LAYER, max_size=6), end=st.booleans())
def test_random_definitions_are_built_or_refused(layers, end) -> None:
    definition = [*layers, OUT] if end else layers
    try:
        shapes = check_definition(definition)
    except DefinitionError:
        with pytest.raises(DefinitionError):
            build(definition, dtype="float64")
        return
    model = build(definition, dtype="float64", seed=1)
    x, y = _batch(3, 0)
    logits = model.forward(x)
    assert logits.shape == (3, 10) and shapes[-1] == (10,)
    _, d = softmax_cross_entropy(logits, y)
    assert model.backward(d, input_grad=True).shape == x.shape
    assert model.predict(x).shape == (3, 10)


# -- whole custom models against finite differences --------------------------------------------


def _training_gradcheck(model, x: np.ndarray, y: np.ndarray, coords: int = 25) -> dict:
    """Central differences of the *training* forward (batch statistics, a fixed dropout mask:
    each dropout Generator re-seeded before every pass), which ``gradcheck.check_model`` (an
    evaluation forward) cannot check."""
    dropouts = [layer for _, layer in model.layers if isinstance(layer, Dropout)]

    def run() -> np.ndarray:
        for k, layer in enumerate(dropouts):
            layer.rng = np.random.default_rng(100 + k)
        return model.forward(x, train=True)

    _, d = softmax_cross_entropy(run(), y)
    analytic = {"input": model.backward(d, input_grad=True).copy(),
                **{n: p.grad.copy() for n, p in model.named_parameters()}}  # fmt: skip
    arrays = {"input": x, **{n: p.value for n, p in model.named_parameters()}}

    def f() -> float:
        return softmax_cross_entropy(run(), y)[0]

    rng, errors = np.random.default_rng(0), {}
    for name, array in arrays.items():
        idx = np.sort(rng.choice(array.size, min(coords, array.size), replace=False))
        numeric = gradcheck.numerical_gradient(f, array, indices=idx)
        scale = float(np.abs(analytic[name]).max())
        errors[name] = gradcheck.max_relative_error(analytic[name].ravel()[idx], numeric, scale)
    return errors


@pytest.mark.parametrize("kernels", ["plain", "fast"])
@pytest.mark.parametrize("definition", [CNN_BN, MLP_DROPOUT], ids=["cnn-bn", "mlp-dropout"])
def test_custom_model_gradients(definition, kernels) -> None:
    model = build(definition, seed=5, dtype="float64", bias_init="uniform_sqrt3", kernels=kernels)
    for _, layer in model.layers:  # generic gamma and beta
        if isinstance(layer, BatchNorm):
            rng = np.random.default_rng(6)
            layer.weight.value[...] = rng.uniform(0.5, 1.5, layer.weight.shape)
            layer.bias.value[...] = rng.normal(0, 0.1, layer.bias.shape)
    x, y = _batch(4, 7)
    errors = _training_gradcheck(model, x, y)
    # Batch norm subtracts each feature's mean, so the bias of the layer just before it
    # cannot change the loss: its gradient is 0 (rounding noise), a relative error says nothing.
    for (name, layer), (_, after) in zip(model.layers, model.layers[1:], strict=False):
        if isinstance(after, BatchNorm) and "bias" in layer.param_names:
            assert np.abs(layer.bias.grad).max() < 1e-12
            del errors[f"{name}.bias"]
    assert max(errors.values()) < 1e-6, errors
