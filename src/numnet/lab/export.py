"""Export a numnet model to ONNX, so that another runtime (onnxruntime, a browser, Netron) can
run or show it.

The graph is built by walking ``model.layers`` (a list of ``(name, layer)``) and converting each
layer by its class, so any layer list converts, not only models 1-4. The graph:

- input ``images``: float32 ``(N, 784)`` -- MNIST rows in [0, 1], what ``model.forward`` takes;
  ``N`` is dynamic;
- outputs ``logits`` ``(N, classes)`` (what ``model.forward(x, train=False)`` returns) and
  ``probabilities`` (their softmax over axis 1);
- float32 throughout: a float64 model's weights are cast to float32 (the metadata says so);
- opset :data:`OPSET`, IR version :data:`IR_VERSION` (pinned: what onnxruntime >= 1.14 loads).

Layouts. numnet computes images in NHWC with HWIO kernels (TensorFlow's layouts); ONNX's Conv
and pooling operators take NCHW with OIHW kernels. The graph keeps an image in NCHW from the
first convolution or pooling to the next layer that needs numnet's own order (``Flatten``,
``Reshape``), where it transposes back -- so ``Flatten`` flattens in numnet's (height, width,
channel) order and the Linear weights after it are used as they are. Kernels are transposed
HWIO -> OIHW here, in NumPy, at export time. SAME padding is TensorFlow's (the extra row or
column at the end), written as explicit ``pads`` computed by the same function numnet's kernels
use (``kernels.plain.geometry``), never ONNX's ``auto_pad``.

The ``onnx`` package is an optional dependency (``pip install "numnet[onnx]"``); the core
never imports it.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from numnet import __version__
from numnet.core import serialize
from numnet.core.backend import to_numpy
from numnet.core.errors import NumnetError
from numnet.core.io import check_output_dir, read_json, write_bytes
from numnet.core.kernels.plain import geometry, pair
from numnet.core.names import IMAGE_SHAPE
from numnet.lab import protocol

#: ONNX operator set the graph uses (BatchNormalization-15, Softmax-13 along one axis).
OPSET = 17
#: IR version written into the file: 8 goes with opset 17 (onnx 1.12); onnxruntime has loaded
#: it since 1.12, and later runtimes keep loading older IR versions.
IR_VERSION = 8
INPUT = "images"
LOGITS = "logits"
PROBABILITIES = "probabilities"
#: pixels of one input row (28 * 28): the graph's input is ``(N, 784)`` like model.forward's
INPUT_FEATURES = math.prod(IMAGE_SHAPE)
#: the export check: rows onnxruntime and numnet both run, and the largest logit difference
#: allowed (float32 sums in another order differ by ~1e-6 on these models)
CHECK_ROWS = 256
CHECK_TOLERANCE = 1e-4
#: the message when the onnx package is missing (the command line prints it, exit code 2)
NEEDS_ONNX = 'numnet export needs the onnx package: pip install "numnet[onnx]"'

class ExportError(NumnetError):
    """A model or a weights file cannot be exported (a layer without a converter, a missing
    onnx package, an output in the way); one line, exit code 2 on the command line."""


def _onnx() -> Any:
    """The onnx package, or an ExportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ExportError(NEEDS_ONNX) from None
    return onnx


# ----------------------------------------------------------------------------------------------
# The graph under construction
# ----------------------------------------------------------------------------------------------


class _Graph:
    """Nodes and initialisers being built, and where the running tensor stands.

    ``tensor`` is the name of the current value, ``shape`` its per-sample shape *in numnet's
    order* (``(784,)``, ``(28, 28, 1)`` as (h, w, c)), and ``nchw`` whether the tensor itself is
    held transposed to (c, h, w) for ONNX's image operators.
    """

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.tensor = INPUT
        self.shape: tuple[int, ...] = (INPUT_FEATURES,)
        self.nchw = False
        self._used: set[str] = {INPUT, LOGITS, PROBABILITIES}

    def fresh(self, name: str) -> str:
        """A tensor or node name not used yet, from ``name``."""
        candidate, k = name, 1
        while candidate in self._used:
            k += 1
            candidate = f"{name}_{k}"
        self._used.add(candidate)
        return candidate

    def constant(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as an initialiser (float arrays as float32); return its name."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        name = self.fresh(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array),
                                                                   name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        """Append one ``op`` node fed by ``inputs``; it becomes the current tensor."""
        output = self.fresh(name)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output,
                                                     **attributes))
        self.tensor = output
        return output

    def to_nchw(self, layer: str) -> None:
        """Hold the current (h, w, c) image as NCHW (a Transpose unless it already is)."""
        if len(self.shape) != 3:
            raise ExportError(f"layer {layer!r} needs (height, width, channels) images, but its "
                              f"input is {self.shape} per example; put a Reshape before it")
        if not self.nchw:
            self.node("Transpose", [self.tensor], f"{layer}.to_nchw", perm=[0, 3, 1, 2])
            self.nchw = True

    def to_numnet_order(self, layer: str) -> None:
        """Hold the current tensor in numnet's order (NHWC for images) again."""
        if self.nchw:
            self.node("Transpose", [self.tensor], f"{layer}.to_nhwc", perm=[0, 2, 3, 1])
            self.nchw = False


# ----------------------------------------------------------------------------------------------
# One converter per layer class
# ----------------------------------------------------------------------------------------------


def _window(g: _Graph, name: str, op: str, inputs: list[str], kernel: tuple[int, int],
            layer: Any, channels: int, **attributes: Any) -> None:
    """One ``op`` node sliding a ``kernel`` window over the current (NCHW) image with the
    layer's stride and padding: TensorFlow's SAME/VALID as numnet's kernels compute them,
    written as explicit ONNX ``pads`` ``[top, left, bottom, right]``."""
    stride = pair(layer.stride)
    (ho, top, bottom), (wo, left, right) = geometry(*g.shape[:2], kernel, stride, layer.padding)
    g.node(op, [g.tensor, *inputs], name, kernel_shape=list(kernel), strides=list(stride),
           pads=[top, left, bottom, right], **attributes)
    g.shape = (ho, wo, channels)


def _reshape(g: _Graph, name: str, layer: Any) -> None:
    target = tuple(int(s) for s in layer.shape)
    if math.prod(target) != math.prod(g.shape):
        raise ExportError(f"layer {name!r}: cannot reshape {g.shape} to {target} per example")
    g.to_numnet_order(name)
    shape = g.constant(f"{name}.shape", np.array([-1, *target], dtype=np.int64))
    g.node("Reshape", [g.tensor, shape], name)
    g.shape = target


def _flatten(g: _Graph, name: str, layer: Any) -> None:
    g.to_numnet_order(name)  # flatten in numnet's (h, w, c) order: the next Linear expects it
    g.node("Flatten", [g.tensor], name, axis=1)
    g.shape = (math.prod(g.shape),)


def _linear(g: _Graph, name: str, layer: Any) -> None:
    if len(g.shape) != 1:
        raise ExportError(f"layer {name!r} (Linear) needs (N, features) rows, but its input is "
                          f"{g.shape} per example; put a Flatten before it")
    weight = to_numpy(layer.weight.value)  # (in, out): y = x @ W + b is Gemm with transB=0
    bias = to_numpy(layer.bias.value)
    if weight.shape[0] != g.shape[0]:
        raise ExportError(f"layer {name!r} (Linear) takes {weight.shape[0]} features, but its "
                          f"input has {g.shape[0]}")
    w = g.constant(f"{name}.weight", weight)
    b = g.constant(f"{name}.bias", bias)
    g.node("Gemm", [g.tensor, w, b], name)
    g.shape = (weight.shape[1],)


def _conv2d(g: _Graph, name: str, layer: Any) -> None:
    g.to_nchw(name)
    weight = to_numpy(layer.weight.value)  # HWIO (kh, kw, c_in, c_out)
    if weight.shape[2] != g.shape[2]:
        raise ExportError(f"layer {name!r} (Conv2D) takes {weight.shape[2]} channels, but its "
                          f"input has {g.shape[2]}")
    inputs = [g.constant(f"{name}.weight", weight.transpose(3, 2, 0, 1)),  # -> OIHW
              g.constant(f"{name}.bias", to_numpy(layer.bias.value))]
    _window(g, name, "Conv", inputs, weight.shape[:2], layer, weight.shape[3],
            dilations=[1, 1], group=1)


def _pool2d(g: _Graph, name: str, layer: Any, op: str, **attributes: Any) -> None:
    g.to_nchw(name)
    _window(g, name, op, [], pair(layer.pool_size), layer, g.shape[2], **attributes)


def _batch_norm(g: _Graph, name: str, layer: Any) -> None:
    """Evaluation mode: ``(x - running_mean) / sqrt(running_var + eps) * gamma + beta`` over the
    last axis -- features of ``(N, F)`` rows, channels of an image (axis 1 once NCHW).

    One ONNX BatchNormalization node, not Mul/Add constants folded here in float64: runtimes
    fold the node themselves in float32 (onnxruntime into ``x * s + t`` or the Conv before it),
    so pre-folding would not bring their result closer to numnet's (both lose ~1 float32 ulp,
    measured 3e-7 on tests/test_export.py's every-layer model, far below the 1e-4 allowed),
    and the standard operator keeps the layer and its trained statistics visible (Netron).
    """
    if len(g.shape) == 3:
        g.to_nchw(name)
    elif len(g.shape) != 1:
        raise ExportError(f"layer {name!r} (BatchNorm): input {g.shape} per example is neither "
                          "(features,) nor (height, width, channels)")
    inputs = [g.tensor] + [
        g.constant(f"{name}.{part}", to_numpy(value)) for part, value in (
            ("weight", layer.weight.value), ("bias", layer.bias.value),
            ("running_mean", _array(layer.running_mean)),
            ("running_var", _array(layer.running_var)))]
    g.node("BatchNormalization", inputs, name, epsilon=float(layer.eps), training_mode=0)


def _array(value: Any) -> Any:
    """An array held as it is or in a Parameter (``.value``)."""
    return getattr(value, "value", value)


def _elementwise(g: _Graph, name: str, layer: Any, op: str) -> None:
    g.node(op, [g.tensor], name)  # any layout


def _identity_in_evaluation(g: _Graph, name: str, layer: Any) -> None:
    """Dropout evaluates as the identity: no node at all (an ONNX Dropout would be one more
    operator for runtimes to remove)."""


#: Converters by layer class name. A layer converts by the first class of its MRO found here,
#: so a subclass converts like its base; matching by name lets the converters exist before and
#: after the classes do (BatchNorm, Dropout and AvgPool2D came after this module).
CONVERTERS: dict[str, Callable[[_Graph, str, Any], None]] = {
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Linear": _linear,
    "Conv2D": _conv2d,
    # numnet pads SAME with -inf; ONNX's MaxPool never lets its pads win a max: the same.
    "MaxPool2D": partial(_pool2d, op="MaxPool"),
    # TensorFlow's SAME average divides by the count of real (not padded) elements:
    # count_include_pad=0 with explicit pads.
    "AvgPool2D": partial(_pool2d, op="AveragePool", count_include_pad=0),
    "BatchNorm": _batch_norm,
    "Dropout": _identity_in_evaluation,
    "ReLU": partial(_elementwise, op="Relu"),
    "Sigmoid": partial(_elementwise, op="Sigmoid"),
    "Tanh": partial(_elementwise, op="Tanh"),
}


def _converter(name: str, layer: Any) -> Callable[[_Graph, str, Any], None]:
    for cls in type(layer).__mro__:
        if cls.__name__ in CONVERTERS:
            return CONVERTERS[cls.__name__]
    raise ExportError(
        f"layer {name!r} ({type(layer).__name__}) has no ONNX converter; numnet export converts "
        f"{', '.join(CONVERTERS)} (add one to numnet.lab.export.CONVERTERS)")


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


def model_proto(model: Any, metadata: dict[str, Any] | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (a ``numnet.core.models.Sequential`` or anything
    with ``layers`` = ``[(name, layer), ...]`` taking ``(N, 784)`` rows).

    Input ``images`` float32 ``(N, 784)``; outputs ``logits`` ``(N, classes)`` and
    ``probabilities`` (softmax over axis 1). ``metadata``: extra ``metadata_props`` (values
    that are not strings are written as JSON); numnet's version, the model's config and, for a
    float64 model, a note on the cast to float32 are always there. Checked with
    ``onnx.checker.check_model(full_check=True)`` (shape inference included).
    """
    onnx = _onnx()
    helper, tensor_proto = onnx.helper, onnx.TensorProto
    config = getattr(model, "config", None)
    g = _Graph(onnx)
    for name, layer in model.layers:
        _converter(name, layer)(g, name, layer)
    if len(g.shape) != 1:
        raise ExportError(f"the model's output is {g.shape} per example; numnet export needs "
                          "(N, classes) logits (end the model with a Linear layer)")
    classes = g.shape[0]
    if g.nodes and g.nodes[-1].output[0] == g.tensor:  # name the last node's output "logits"
        g.nodes[-1].output[0] = LOGITS
    else:  # a model with no node at all (identity layers only)
        g.nodes.append(helper.make_node("Identity", [g.tensor], [LOGITS], name=LOGITS))
    g.nodes.append(helper.make_node("Softmax", [LOGITS], [PROBABILITIES], name=PROBABILITIES,
                                    axis=1))
    graph = helper.make_graph(
        g.nodes, str((config or {}).get("name") or "numnet"),
        inputs=[helper.make_tensor_value_info(INPUT, tensor_proto.FLOAT, ["N", INPUT_FEATURES])],
        outputs=[helper.make_tensor_value_info(out, tensor_proto.FLOAT, ["N", classes])
                 for out in (LOGITS, PROBABILITIES)],
        initializer=g.initializers,
    )
    proto = helper.make_model(graph, producer_name="numnet", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              doc_string="numnet model: images (N, 784) float32 in [0, 1] -> "
                                         "logits and probabilities (N, classes)")
    proto.ir_version = IR_VERSION
    props = {"numnet_version": __version__, "input": "images: (N, 784) float32 MNIST rows, "
             "pixel / 255, row-major 28x28"}
    if config:
        props["model_config"] = config
    if np.dtype(getattr(model, "dtype", np.float32)) != np.float32:
        props["dtype_note"] = (f"the numnet model computes in {np.dtype(model.dtype).name}; "
                               "its weights were cast to float32 for this float32 graph")
    props.update(metadata or {})
    helper.set_model_props(proto, {str(key): value if isinstance(value, str)
                                   else json.dumps(value, sort_keys=True)
                                   for key, value in props.items()})
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the ONNX graph of this model fails onnx's checker ({exc}); this is "
                          "a bug of numnet export: please report it with the model") from None
    return proto


def to_onnx_bytes(model: Any, metadata: dict[str, Any] | None = None) -> bytes:
    """The serialised ONNX file of ``model`` (see :func:`model_proto`)."""
    return model_proto(model, metadata).SerializeToString()


def to_onnx(model: Any, path: str | os.PathLike[str],
            metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as an ONNX file at ``path`` atomically (``numnet.core.io``: the whole
    file or nothing); return the path. See :func:`model_proto` for the graph and metadata."""
    return write_bytes(path, to_onnx_bytes(model, metadata))


# ----------------------------------------------------------------------------------------------
# Weights files and the second runtime
# ----------------------------------------------------------------------------------------------


def weights_metadata(weights: str | os.PathLike[str], header: dict[str, Any]) -> dict[str, Any]:
    """What a weights file says about its run, for ``metadata_props``.

    From its header (``numnet reproduce``/``train`` write them): ``run_id``, ``status``,
    ``test_accuracy`` (of the final weights, the figure of the summary table),
    ``final_test_accuracy``/``final_train_accuracy`` (the last curve point), ``final_weights``,
    ``epochs``, ``lr``, ``reduction``, ``batch_size`` and ``seed`` (the run's seed; the
    model's initial-weights seed is in ``model_config``). When the weights sit in a run folder
    (``<folder>/weights/<run>.npz``): ``protocol_hash`` from the run record
    ``<folder>/runs/<run>.json`` and ``protocol_name`` from the folder's ``protocol.toml`` when
    its hash is the record's (``numnet train`` records no protocol: ad hoc runs). Facts the
    files do not hold are left out.
    """
    path = Path(weights)
    meta = header.get("metadata") or {}
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    config = header.get("config") or {}
    final = meta.get("final_weights") if isinstance(meta.get("final_weights"), dict) else {}
    facts = {"source_weights": path.name, "run_id": meta.get("run_id"),
             "status": meta.get("status"), "test_accuracy": final.get("test_accuracy"),
             **{key: meta.get(key) for key in ("final_test_accuracy", "final_train_accuracy",
                                               "final_weights")},
             **{key: spec.get(key) for key in ("epochs", "lr", "reduction", "batch_size")},
             "seed": spec.get("seed", config.get("seed")),
             **_protocol_facts(path.parent.parent, path.stem)}
    return {key: value for key, value in facts.items() if value is not None}


def _protocol_facts(folder: Path, run_id: str) -> dict[str, Any]:
    """``protocol_hash`` (and ``protocol_name``, ``quick``) of run ``run_id`` in a run folder;
    ``{}`` outside one, or when its files are missing or unreadable (they add facts, they are
    not needed for the export)."""
    try:
        record = read_json(folder / "runs" / f"{run_id}.json")
    except NumnetError:
        return {}
    protocol_hash = record.get("protocol_hash") if isinstance(record, dict) else None
    if not isinstance(protocol_hash, str) or not protocol_hash:
        return {}
    facts: dict[str, Any] = {"protocol_hash": protocol_hash}
    if not (folder / "protocol.toml").is_file():
        return facts
    try:
        proto = protocol.load(folder / "protocol.toml")
    except (NumnetError, OSError):
        return facts
    for candidate in (proto, proto.quick_variant()):
        if candidate.hash == protocol_hash:
            facts["protocol_name"] = candidate.name
            facts["quick"] = candidate.quick
    return facts


@dataclass(frozen=True)
class Exported:
    """What :func:`export_weights` did: the ONNX file written, the numnet model it came from,
    and onnxruntime's check (its version and the largest logit difference; None when
    onnxruntime is not installed or the check was not asked for)."""

    path: Path
    model: Any
    runtime: str | None
    difference: float | None


class ExportCheckError(NumnetError):
    """onnxruntime's logits differ from numnet's by more than :data:`CHECK_TOLERANCE`; the
    command line exits with code 1 (a check failed) and writes nothing."""


def _onnxruntime() -> Any:
    """The onnxruntime package, or None when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def check_images(rows: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """``(rows, 784)`` float32 pixels in [0, 1) for the export check: random, not digits --
    every weight of every layer takes part, whatever the data set (no data needed)."""
    return np.random.default_rng(seed).random((rows, INPUT_FEATURES), dtype=np.float32)


def export_weights(weights: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                   force: bool = False, check: bool = True) -> Exported:
    """Export the weights file ``weights`` (``numnet.core.serialize``) to ``out`` (default:
    beside it, same stem, ``.onnx``), atomically.

    With ``check`` and onnxruntime installed, onnxruntime first runs the graph on
    :func:`check_images` and its logits must be within :data:`CHECK_TOLERANCE` of numnet's,
    else ExportCheckError and nothing is written. Refused with an ExportError (nothing
    written) when ``weights`` is a folder or not an .npz archive, or when the output exists
    and ``force`` is False; a missing or damaged weights file is a WeightsFileError naming it;
    an output folder that cannot take the file (a file in the way, read-only, no permission)
    is an OutputError naming it, found before the work. ``out`` may be a folder: the file goes
    into it, named after the weights.
    """
    weights = Path(weights)
    target = Path(out) if out is not None else weights.with_suffix(".onnx")
    if weights.is_dir():
        raise ExportError(f"{weights} is a folder, not a weights file; give a .npz file saved "
                          "by numnet (e.g. runs/<folder>/weights/model4-setting2.npz)")
    if weights.is_file() and not zipfile.is_zipfile(weights):  # an .onnx, a text, an image...
        raise ExportError(f"{weights} is not a numnet weights file (not an .npz archive); give "
                          "a file saved by numnet train/reproduce (weights/<run>.npz)")
    if target.is_dir():  # as cp does: the file goes into the folder, under the weights' stem
        target = target / weights.with_suffix(".onnx").name
    if target.exists() and not force:
        raise ExportError(f"{target} already exists; pass --force to replace it, or choose "
                          "another name with -o")
    _onnx()  # before the weights are read: a missing package is said first
    model = serialize.load(weights)  # every array checked against the header's SHA-256
    header = serialize.read_header(weights)
    with np.errstate(all="ignore"):  # a diverged run's weights overflow: said below
        finite = bool(np.isfinite(to_numpy(model.forward(check_images(), train=False))).all())
    if not finite:
        status = (header.get("metadata") or {}).get("status", "unknown")
        raise ExportError(f"{weights}: the model's logits are not finite (its run's status: "
                          f"{status}); export the weights of a run that did not diverge")
    # A folder that cannot take the file is refused before the work: an OutputError naming
    # it (exit 1, as every command's unwritable output), nothing written.
    check_output_dir(target.parent)
    data = to_onnx_bytes(model, weights_metadata(weights, header))
    runtime = _onnxruntime() if check else None
    difference = None
    if runtime is not None:
        difference = max_logit_difference(model, data, check_images())
        if not difference <= CHECK_TOLERANCE:  # NaN fails too
            raise ExportCheckError(
                f"{weights}: onnxruntime {runtime.__version__}'s logits differ from numnet's by "
                f"up to {difference:.3g} (more than {CHECK_TOLERANCE:g}); {target} was not "
                "written. Please report it with the weights file")
    return Exported(write_bytes(target, data), model,
                    None if runtime is None else runtime.__version__, difference)


def onnxruntime_outputs(onnx_bytes: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, probabilities)`` of an exported model run by onnxruntime on ``images``
    ``(N, 784)`` (cast to float32) on the CPU. ExportError when onnxruntime is absent."""
    runtime = _onnxruntime()
    if runtime is None:
        raise ExportError('running an exported model needs onnxruntime: pip install '
                          '"numnet[onnx]"')
    session = runtime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    logits, probabilities = session.run([LOGITS, PROBABILITIES],
                                        {INPUT: np.asarray(images, dtype=np.float32)})
    return logits, probabilities


def max_logit_difference(model: Any, onnx_bytes: bytes, images: np.ndarray) -> float:
    """The largest ``|logit|`` difference between numnet (``model.forward(x, train=False)``)
    and onnxruntime running ``onnx_bytes`` on the same ``images`` ``(N, 784)``."""
    ours = np.asarray(to_numpy(model.forward(images, train=False)), dtype=np.float64)
    theirs, _ = onnxruntime_outputs(onnx_bytes, images)
    return float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
