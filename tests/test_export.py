"""ONNX export (``numnet.lab.export``, ``numnet export``), checked by a second runtime.

Every model is run by numnet (``model.forward(x, train=False)``) and by onnxruntime on the same
1,000 rows: the logits may differ by at most 1e-4 (float32 sums in another order) and every
row's argmax must agree. The worst difference per model is printed (``pytest -s``) for the
record. The rows are the tiny synthetic digits (``tiny_mnist``: no MNIST needed); a slow
variant (``--run-slow``) uses the real MNIST test images from numnet's cache.

BatchNorm, Dropout and AvgPool2D are converted by class name: small stand-ins written here to
their interface test the converters today, and the model with every layer type uses numnet's
own classes as soon as ``numnet.core.layers`` has them (skipped until then).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_mnist import TINY_PROTOCOL, make_digits, tiny_datasets

from numnet.core import layers as core_layers
from numnet.core import models, serialize
from numnet.core.kernels.plain import geometry, pair
from numnet.core.layers import (
    Conv2D,
    Flatten,
    Layer,
    Linear,
    MaxPool2D,
    Parameter,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
)
from numnet.core.losses import softmax, softmax_cross_entropy
from numnet.core.optim import SGD
from numnet.lab import export, protocol
from numnet.lab.cli import main

onnx = pytest.importorskip("onnx")

TOLERANCE = 1e-4
ROWS = 1000


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """1,000 tiny synthetic digits as model inputs: ``(1000, 784)`` float32 in [0, 1]."""
    pixels, _ = make_digits(ROWS, seed=11)
    return (pixels.reshape(ROWS, 784) / np.float32(255)).astype(np.float32)


def runtime_outputs(onnx_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("onnxruntime")
    return export.onnxruntime_outputs(onnx_bytes, x)


def assert_same_logits(model, x: np.ndarray, what: str) -> float:
    """onnxruntime's logits of ``model``'s export equal numnet's within TOLERANCE, with the same
    argmax on every row; returns (and prints) the worst difference."""
    data = export.to_onnx_bytes(model)
    ours = np.asarray(model.forward(x, train=False), dtype=np.float64)
    theirs, probabilities = runtime_outputs(data, x)
    assert theirs.shape == ours.shape and theirs.dtype == np.float32
    worst = float(np.max(np.abs(ours - theirs)))
    print(f"\n{what}: worst |logit difference| numnet vs onnxruntime on {len(x)} rows: "
          f"{worst:.3g} (logits up to {np.max(np.abs(ours)):.3g})")
    assert worst <= TOLERANCE, what
    assert np.array_equal(ours.argmax(axis=1), theirs.argmax(axis=1)), what
    np.testing.assert_allclose(probabilities, softmax(theirs.astype(np.float64)), atol=1e-6)
    return worst


# ----------------------------------------------------------------------------- models 1-4


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_built_in_model_matches_onnxruntime(k, images) -> None:
    assert_same_logits(models.build(k, seed=0), images, f"model{k} (seed 0)")


@pytest.mark.parametrize("conv_activation", ["relu", "sigmoid", "tanh"])
def test_model4_with_a_conv_activation_and_biases(conv_activation, images) -> None:
    model = models.build(4, seed=3, conv_activation=conv_activation,
                         bias_init=("uniform", 0.2))
    assert_same_logits(model, images, f"model4 conv_activation={conv_activation}")


def test_float64_model_is_exported_in_float32_and_says_so(images) -> None:
    model = models.build(4, seed=0, dtype="float64")
    assert_same_logits(model, images, "model4 float64 (weights cast to float32)")
    proto = export.model_proto(model)
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer
               if t.data_type != onnx.TensorProto.INT64)
    assert "float64" in props(proto)["dtype_note"]


def test_trained_model4_matches_onnxruntime(images) -> None:
    """Model 4 after 300 SGD steps on the tiny digits (summed loss, as the protocol): larger
    logits than at initialisation, and the export still agrees."""
    data = tiny_datasets(seed=5)
    model = models.build(4, seed=1)
    sgd = SGD(model.parameters(), lr=0.003)
    for _ in range(300):
        x, y = data.train.next_batch(20)
        _, dlogits = softmax_cross_entropy(model.forward(x), y, reduction="sum")
        model.backward(dlogits)
        sgd.step()
    accuracy = np.mean(model.predict(data.test.images).argmax(1) == data.test.labels.argmax(1))
    assert accuracy > 0.9  # it learned: the logits are a trained model's
    assert_same_logits(model, images, f"model4 trained (tiny test accuracy {accuracy:.3f})")


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_built_in_model_on_real_mnist(k) -> None:
    from numnet.lab.data import load

    test = load("mnist").test
    assert_same_logits(models.build(k, seed=0), test.images[:ROWS],
                       f"model{k} (seed 0) on real MNIST")


# ----------------------------------------------------------------------------- the graph


def props(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def test_graph_interface_opset_ir_and_checker() -> None:
    proto = export.model_proto(models.build(4, seed=0))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == export.IR_VERSION == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", export.OPSET)]
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph

    def dims(value_info):
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in inferred.input] == [("images", ["N", 784])]
    assert [(o.name, dims(o)) for o in inferred.output] == [("logits", ["N", 10]),
                                                              ("probabilities", ["N", 10])]
    ops = [n.op_type for n in proto.graph.node]
    # NHWC -> NCHW once, back once before Flatten (no transpose between conv and pool)
    assert ops == ["Reshape", "Transpose", "Conv", "MaxPool", "Conv", "MaxPool", "Transpose",
                   "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]
    pads = [next(a.ints for a in n.attribute if a.name == "pads") for n in proto.graph.node
            if n.op_type in ("Conv", "MaxPool")]
    # 28 -> 14 -> 7: a 3x3 SAME conv pads one on each side, a 2x2/2 pool of an even size none
    # (odd sizes, where SAME's extra row goes at the end: test_window_geometry_on_odd_images)
    assert [list(p) for p in pads] == [[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert not any(a.name == "auto_pad" for n in proto.graph.node for a in n.attribute)


def test_batch_dimension_is_dynamic() -> None:
    model = models.build(2, seed=0)
    data = export.to_onnx_bytes(model)
    for n in (1, 7):
        x = np.random.default_rng(n).random((n, 784), dtype=np.float32)
        logits, _ = runtime_outputs(data, x)
        assert logits.shape == (n, 10)
        np.testing.assert_allclose(logits, model.predict(x), atol=TOLERANCE)


def test_metadata_has_the_version_and_the_config() -> None:
    model = models.build(3, seed=4)
    meta = props(export.model_proto(model, {"note": "hello", "numbers": [1, 2]}))
    assert meta["numnet_version"] == export.__version__
    assert json.loads(meta["model_config"])["name"] == "model3"
    assert (meta["note"], meta["numbers"]) == ("hello", "[1, 2]")
    assert "dtype_note" not in meta  # float32: nothing was cast


def test_unknown_layer_is_one_line_naming_it() -> None:
    class Mystery(Layer):
        def forward(self, x, train=True):
            return x

    model = models.Sequential([("fc", Linear(784, 10)), ("odd", Mystery())])
    with pytest.raises(export.ExportError, match=r"layer 'odd' \(Mystery\) has no ONNX conv"):
        export.model_proto(model)


def test_layers_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(export.ExportError, match=r"'fc' \(Linear\) takes 100 features, but its "
                                                 r"input has 784"):
        export.model_proto(models.Sequential([("fc", Linear(100, 10))]))
    with pytest.raises(export.ExportError, match=r"'conv' \(Conv2D\) takes 3 channels"):
        export.model_proto(models.Sequential([("reshape", Reshape((28, 28, 1))),
                                              ("conv", Conv2D(3, 2, 3))]))


def test_a_model_that_does_not_end_in_logits_is_refused() -> None:
    model = models.Sequential([("reshape", Reshape((28, 28, 1))),
                               ("conv", Conv2D(1, 2, 3))])
    with pytest.raises(export.ExportError, match=r"output is \(28, 28, 2\) per example"):
        export.model_proto(model)


# ----------------------------------------------------------------------------- every layer type


def _randomise(model, seed: int) -> None:
    """Random weights and biases, and random BatchNorm statistics (a trained look)."""
    rng = np.random.default_rng(seed)
    for _, layer in model.layers:
        if type(layer).__name__ == "BatchNorm":
            n = layer.weight.shape[0]
            layer.weight.value[...] = rng.uniform(0.5, 1.5, n)
            layer.bias.value[...] = rng.normal(0, 0.3, n)
            layer.running_mean[...] = rng.normal(0, 0.5, n)
            layer.running_var[...] = rng.uniform(0.3, 2.0, n)
        elif layer.param_names:
            models.init_parameters(layer, rng, ["uniform", 0.2])


def every_layer_model(batch_norm, dropout, avg_pool) -> models.Sequential:
    """Every layer class: convolutions with stride 2 and VALID/SAME padding whose SAME takes
    an extra row at the end, BatchNorm on an image and on rows, a SAME average pool that
    covers padding, each activation, Dropout."""
    return models.Sequential([
        ("reshape", Reshape((28, 28, 1))),
        ("conv1", Conv2D(1, 4, 3, stride=2, padding="same")),  # 28 -> 14, pad (0, 1)
        ("bn1", batch_norm(4, 0.9, 1e-3)),  # (num_features, momentum, eps)
        ("relu1", ReLU()),
        ("pool1", MaxPool2D(3, 2, padding="same")),  # 14 -> 7
        ("conv2", Conv2D(4, 6, (3, 2), stride=1, padding="valid")),  # 7x7 -> 5x6
        ("tanh", Tanh()),
        ("pool2", avg_pool(2, 2, "same")),  # 5x6 -> 3x3, a padded row at the bottom
        ("flatten", Flatten()),
        ("fc1", Linear(54, 16)),
        ("bn2", batch_norm(16, 0.9, 1e-5)),
        ("sigmoid", Sigmoid()),
        ("drop", dropout(0.5)),
        ("fc2", Linear(16, 10)),
    ])  # fmt: skip


class BatchNorm(Layer):
    """Stand-in to the interface of numnet's BatchNorm, evaluation only."""

    param_names = ("weight", "bias")

    def __init__(self, num_features: int, momentum: float = 0.9, eps: float = 1e-3) -> None:
        super().__init__()
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)
        self.eps = eps

    def forward(self, x, train=False):
        return ((x - self.running_mean) / np.sqrt(self.running_var + self.eps)
                * self.weight.value + self.bias.value)


class Dropout(Layer):
    """Stand-in to the interface of numnet's Dropout, evaluation only (the identity)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x, train=False):
        return x


class AvgPool2D(Layer):
    """Stand-in to the interface of numnet's AvgPool2D, evaluation only: TensorFlow's average,
    whose SAME windows divide by their count of real (not padded) elements."""

    def __init__(self, pool_size=2, stride=None, padding="valid") -> None:
        super().__init__()
        self.pool_size = pair(pool_size)
        self.stride = pair(stride) if stride is not None else self.pool_size
        self.padding = padding

    def forward(self, x, train=False):
        n, h, w, c = x.shape
        (kh, kw), (sh, sw) = self.pool_size, self.stride
        (ho, top, _), (wo, left, _) = geometry(h, w, self.pool_size, self.stride, self.padding)
        y = np.empty((n, ho, wo, c), x.dtype)
        for i in range(ho):
            for j in range(wo):
                r0, c0 = i * sh - top, j * sw - left
                window = x[:, max(r0, 0):r0 + kh, max(c0, 0):c0 + kw, :]
                y[:, i, j, :] = window.mean(axis=(1, 2))
        return y


def test_every_layer_type_with_stand_ins(images) -> None:
    """The BatchNorm, Dropout and AvgPool2D converters against small stand-ins written to the
    interface those layers have in numnet.core.layers."""
    model = every_layer_model(BatchNorm, Dropout, AvgPool2D)
    _randomise(model, 0)
    assert_same_logits(model, images, "every layer type (stand-ins)")
    ops = [n.op_type for n in export.model_proto(model).graph.node]
    assert ops.count("BatchNormalization") == 2 and "AveragePool" in ops
    assert "Dropout" not in ops  # the identity in evaluation: no node


def test_every_layer_type_with_numnet_layers(images) -> None:
    missing = [n for n in ("BatchNorm", "Dropout", "AvgPool2D") if not hasattr(core_layers, n)]
    if missing:
        pytest.skip(f"numnet.core.layers has no {', '.join(missing)} yet")
    model = every_layer_model(core_layers.BatchNorm, core_layers.Dropout,
                              core_layers.AvgPool2D)
    _randomise(model, 0)
    assert_same_logits(model, images, "every layer type (numnet.core.layers)")


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize(("kernel", "stride"), [(2, 1), (3, 2), ((3, 2), 3), (5, 2)])
@pytest.mark.parametrize("kind", ["conv", "max", "avg"])
def test_window_geometry_on_odd_images(padding, kernel, stride, kind, images) -> None:
    """A Conv2D, MaxPool2D or AvgPool2D on 7x7 images of 16 channels: each (kernel, stride,
    padding) gives numnet's output size and values (SAME's extra row and column at the end)."""
    window = {"conv": lambda: Conv2D(16, 3, kernel, stride=stride, padding=padding),
              "max": lambda: MaxPool2D(kernel, stride, padding),
              "avg": lambda: AvgPool2D(kernel, stride, padding)}[kind]()
    (h, _, _), (w, _, _) = geometry(7, 7, pair(kernel), pair(stride), padding)
    channels = 3 if kind == "conv" else 16
    model = models.Sequential([
        ("reshape", Reshape((7, 7, 16))),
        ("window", window),
        ("flatten", Flatten()),
        ("fc", Linear(h * w * channels, 10)),
    ])  # fmt: skip
    _randomise(model, 1)
    assert_same_logits(model, images[:50], f"{kind} {kernel}/{stride} {padding}")


# ----------------------------------------------------------------------------- the command line


@pytest.fixture
def weights(tmp_path):
    """A run folder as numnet reproduce leaves it: protocol.toml, the weights (with the header
    metadata reproduce writes), the run record."""
    folder = tmp_path / "run"
    (folder / "runs").mkdir(parents=True)
    (folder / "protocol.toml").write_text(TINY_PROTOCOL)
    protocol_hash = protocol.load(folder / "protocol.toml").hash
    path = serialize.save(folder / "weights" / "model4-setting2.npz", models.build(4, seed=2),
                          metadata={"run_id": "model4-setting2", "status": "ok",
                                    "final_test_accuracy": 0.9811,
                                    "final_weights": {"test_accuracy": 0.9827, "update": 2751},
                                    "spec": {"seed": 17, "epochs": 5, "lr": 0.001}})
    (folder / "runs" / "model4-setting2.json").write_text(
        json.dumps({"protocol_hash": protocol_hash}))
    return path


def test_cli_writes_the_onnx_file_beside_the_weights(weights, capsys) -> None:
    assert main(["export", str(weights)]) == 0
    out = weights.with_suffix(".onnx")
    assert f"wrote {out}" in capsys.readouterr().out
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    meta = props(proto)
    assert meta["run_id"] == "model4-setting2"
    assert meta["protocol_name"] == "tiny" and meta["quick"] == "false"
    assert meta["protocol_hash"] == protocol.load(weights.parents[1] / "protocol.toml").hash
    assert (meta["seed"], meta["lr"]) == ("17", "0.001")
    assert (meta["test_accuracy"], meta["final_test_accuracy"]) == ("0.9827", "0.9811")
    assert meta["numnet_version"] == export.__version__
    model = serialize.load(weights)
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    logits, _ = runtime_outputs(out.read_bytes(), x)
    np.testing.assert_allclose(logits, model.predict(x), atol=TOLERANCE)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model4-setting2.npz",
                                                            "model4-setting2.onnx"]


def test_metadata_outside_a_run_folder_is_the_header_alone(tmp_path) -> None:
    path = serialize.save(tmp_path / "w.npz", models.build(1, seed=5))
    meta = export.weights_metadata(path, serialize.read_header(path))
    assert meta == {"source_weights": "w.npz", "seed": 5}


def test_cli_says_what_onnxruntime_found(weights, capsys) -> None:
    pytest.importorskip("onnxruntime")
    assert main(["export", str(weights), "-o", str(weights.parent / "m.onnx")]) == 0
    assert "checked by onnxruntime" in capsys.readouterr().out


def test_cli_refuses_an_existing_output_without_force(weights, capsys) -> None:
    out = weights.with_suffix(".onnx")
    out.write_bytes(b"keep me")
    assert main(["export", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} already exists; pass --force" in err
    assert out.read_bytes() == b"keep me"
    assert main(["export", str(weights), "--force"]) == 0
    assert onnx.load(str(out)).graph.input[0].name == "images"


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.npz", "no such weights file (file not found); check the path"),
    (lambda d: d, "is a folder, not a weights file"),
    (lambda d: _write(d / "notes.npz", b"not a zip"), "is not a numnet weights file"),
    (lambda d: _savez(d / "plain.npz"), "not a numnet weights file (no '__numnet__' header)"),
])
def test_cli_refuses_what_is_not_a_weights_file(make, message, tmp_path, capsys) -> None:
    path = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert main(["export", str(path), "-o", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no partial file


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _savez(path):
    np.savez(path, a=np.zeros(3))
    return path


def test_cli_refuses_a_damaged_weights_file(weights, capsys) -> None:
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["export", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(weights) in err
    assert not weights.with_suffix(".onnx").exists()


@pytest.mark.parametrize("under", ["a file", "/proc"])
def test_cli_refuses_an_output_it_cannot_write(under, weights, tmp_path, capsys) -> None:
    """Found before the work, one line naming the folder and what to do, exit 1 as for every
    command's unwritable output (docs/reliability.md), nothing written."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = (blocker if under == "a file" else "/proc") / Path("m.onnx")
    assert main(["export", str(weights), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {out.parent}" in err
    assert ("a file is in the way" in err) if under == "a file" else (
        "check the path" in err)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob(".*.part"))


def test_cli_output_folder_takes_the_file_under_the_weights_name(weights, tmp_path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    assert main(["export", str(weights), "-o", str(folder), "--no-check"]) == 0
    assert [p.name for p in folder.iterdir()] == ["model4-setting2.onnx"]


def test_a_failed_write_leaves_no_partial_file(weights, monkeypatch) -> None:
    """The file appears whole or not at all (numnet.core.io.atomic_writer)."""
    out = weights.with_suffix(".onnx")

    def failing(*args, **kwargs):
        raise RuntimeError("serialisation failed half way")

    monkeypatch.setattr(export, "to_onnx_bytes", failing)
    with pytest.raises(RuntimeError):
        export.export_weights(weights, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model4-setting2.npz"]


def test_cli_check_failure_writes_nothing_and_exits_1(weights, monkeypatch, capsys) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(export, "max_logit_difference", lambda *a: 0.5)
    assert main(["export", str(weights)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differ from numnet's by up to 0.5" in err
    assert not weights.with_suffix(".onnx").exists()


def test_missing_onnx_is_one_line(weights, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    assert main(["export", str(weights)]) == 2
    assert capsys.readouterr().err == ('numnet: error: numnet export needs the onnx package: '
                                       'pip install "numnet[onnx]"\n')
    assert not weights.with_suffix(".onnx").exists()


def test_to_onnx_writes_a_loadable_file(tmp_path) -> None:
    path = export.to_onnx(models.build(1, seed=0), tmp_path / "sub" / "m1.onnx",
                          metadata={"run_id": "mine"})
    proto = onnx.load(str(path))
    assert props(proto)["run_id"] == "mine"
    assert math.prod(proto.graph.initializer[0].dims) == 784 * 10


def test_cli_refuses_the_weights_of_a_diverged_run(tmp_path, capsys) -> None:
    """Finite weights so large that the logits overflow (a run that diverged): one line
    saying so, exit 2, no warning and no file -- not a 'please report it' check failure."""
    model = models.build(1, seed=0)
    model.parameters()[0].value[...] = 3e38
    path = serialize.save(tmp_path / "diverged.npz", model, metadata={"status": "diverged"})
    assert main(["export", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "logits are not finite" in err and "diverged" in err
    assert not (tmp_path / "diverged.onnx").exists()
