"""numnet's layers and models against PyTorch autograd (an independent implementation), float64.

PyTorch appears here only as a reference. The torch side is written directly with
``torch.nn.functional`` from numnet's arrays -- HWIO kernels permuted to OIHW, NHWC images to
NCHW, TensorFlow's SAME padding as an explicit ``F.pad`` (zeros for convs, -inf for pools), the
flatten taken in (h, w, c) order -- so it shares no code with numnet's layers. (The PyTorch
twin that ``numnet compare`` trains is checked in test_compare_reference_models.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from numnet.core.layers import (  # noqa: E402
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    MaxPool2D,
    output_size,
)
from numnet.core.losses import softmax_cross_entropy  # noqa: E402
from numnet.core.models import build  # noqa: E402

REL = 1e-8


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _t(a: np.ndarray, grad: bool = False):
    return torch.tensor(np.array(a), dtype=torch.float64, requires_grad=grad)


def _tf_pad(x_nchw, kernel, stride, padding, value):
    (kh, kw), (sh, sw) = kernel, stride
    _, _, h, w = x_nchw.shape
    _, top, bottom = output_size(h, kh, sh, padding)
    _, left, right = output_size(w, kw, sw, padding)
    return F.pad(x_nchw, (left, right, top, bottom), value=value)


def torch_conv(x_nhwc, w_hwio, b, stride, padding):
    """NHWC in, NHWC out, TensorFlow SAME/VALID padding."""
    x = _tf_pad(x_nhwc.permute(0, 3, 1, 2), w_hwio.shape[:2], stride, padding, 0.0)
    y = F.conv2d(x, w_hwio.permute(3, 2, 0, 1), b, stride=stride)
    return y.permute(0, 2, 3, 1)


def torch_pool(x_nhwc, pool, stride, padding):
    x = _tf_pad(x_nhwc.permute(0, 3, 1, 2), pool, stride, padding, float("-inf"))
    return F.max_pool2d(x, pool, stride).permute(0, 2, 3, 1)


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, s, pad",
    [
        (2, 9, 7, 3, 4, (3, 3), (1, 1), "same"),
        (2, 8, 7, 2, 3, (3, 3), (2, 2), "same"),
        (1, 9, 8, 3, 2, (2, 4), (2, 1), "same"),  # even kernel: extra padding at the end
        (2, 9, 9, 2, 5, (3, 2), (2, 3), "valid"),
    ],
)
def test_conv_matches_torch(n, h, w, cin, cout, k, s, pad) -> None:
    rng = np.random.default_rng(0)
    layer = Conv2D(cin, cout, k, stride=s, padding=pad, dtype="float64")
    layer.weight.value = rng.standard_normal(layer.weight.shape)
    layer.bias.value = rng.standard_normal(cout)
    x = rng.standard_normal((n, h, w, cin))
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)

    tx, tw, tb = _t(x, True), _t(layer.weight.value, True), _t(layer.bias.value, True)
    ty = torch_conv(tx, tw, tb, s, pad)
    (ty * _t(dy)).sum().backward()
    assert _rel(y, ty.detach()) < REL
    assert _rel(dx, tx.grad) < REL
    assert _rel(layer.weight.grad, tw.grad) < REL
    assert _rel(layer.bias.grad, tb.grad) < REL


@pytest.mark.parametrize(
    "shape, pool, stride, pad, ties",
    [
        ((2, 8, 6, 3), (2, 2), (2, 2), "same", False),
        ((2, 7, 5, 3), (2, 2), (2, 2), "same", False),
        ((1, 7, 7, 2), (3, 3), (2, 2), "same", False),
        ((2, 6, 6, 2), (2, 2), (2, 2), "same", True),  # constant image: ties everywhere
        ((1, 7, 7, 2), (3, 3), (2, 2), "valid", True),
    ],
)
def test_maxpool_matches_torch(shape, pool, stride, pad, ties) -> None:
    rng = np.random.default_rng(1)
    x = np.full(shape, 0.5) if ties else rng.standard_normal(shape)
    layer = MaxPool2D(pool, stride, pad)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = _t(x, True)
    ty = torch_pool(tx, pool, stride, pad)
    (ty * _t(dy)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-15)


def torch_model(name: str, params: dict, x, conv_activation: str | None):
    """The protocol's models in torch functionals from numnet's (public-layout) weights."""
    if name == "model4":
        h = x.reshape(-1, 28, 28, 1)
        for k in (1, 2):
            h = torch_conv(h, params[f"conv{k}.weight"], params[f"conv{k}.bias"], (1, 1), "same")
            if conv_activation == "relu":
                h = torch.relu(h)
            h = torch_pool(h, (2, 2), (2, 2), "same")
        h = h.reshape(h.shape[0], -1)  # NHWC: (h, w, c) order, as numnet's Flatten
        h = torch.relu(h @ params["fc1.weight"] + params["fc1.bias"])
        return h @ params["fc2.weight"] + params["fc2.bias"]
    n_linear = int(name[-1])
    h = x
    for k in range(1, n_linear + 1):
        h = h @ params[f"fc{k}.weight"] + params[f"fc{k}.bias"]
        if k < n_linear:
            h = torch.relu(h)
    return h


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    "name, conv_activation",
    [("model1", None), ("model2", None), ("model3", None), ("model4", None), ("model4", "relu")],
)
def test_models_match_torch(name: str, conv_activation, reduction: str) -> None:
    model = build(
        name, seed=4, dtype="float64", conv_activation=conv_activation, bias_init="uniform_sqrt3"
    )
    rng = np.random.default_rng(5)
    x = rng.random((8, 784))
    labels = rng.integers(0, 10, 8)
    y = np.eye(10)[labels]

    loss, dlogits = softmax_cross_entropy(model.forward(x), y, reduction)
    dx = model.backward(dlogits, input_grad=True)

    tparams = {n: _t(p.value, True) for n, p in model.named_parameters()}
    tx = _t(x, True)
    tlogits = torch_model(name, tparams, tx, conv_activation)
    tloss = F.cross_entropy(tlogits, torch.tensor(labels), reduction=reduction)
    tloss.backward()

    assert abs(loss - tloss.item()) <= REL * abs(tloss.item())
    assert _rel(dx, tx.grad) < REL
    for pname, p in model.named_parameters():
        assert _rel(p.grad, tparams[pname].grad) < REL, pname


# -- batch norm, average pooling, dropout, and a custom model with all of them ------------------


def torch_batchnorm(x, gamma, beta, running_mean, running_var, momentum, eps):
    """Training-mode ``F.batch_norm`` over the last axis (NHWC permuted to NCHW); updates the
    running statistics in place, as numnet's."""
    if x.dim() == 4:
        y = F.batch_norm(x.permute(0, 3, 1, 2), running_mean, running_var, gamma, beta,
                         training=True, momentum=momentum, eps=eps)  # fmt: skip
        return y.permute(0, 2, 3, 1)
    return F.batch_norm(x, running_mean, running_var, gamma, beta, training=True,
                        momentum=momentum, eps=eps)  # fmt: skip


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5, 2)])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_matches_torch_in_training_and_its_running_statistics(shape, momentum) -> None:
    rng = np.random.default_rng(2)
    f = shape[-1]
    layer = BatchNorm(f, momentum=momentum, eps=1e-5, dtype="float64")
    layer.weight.value = rng.uniform(0.5, 1.5, f)
    layer.bias.value = rng.standard_normal(f)
    t_mean, t_var = torch.zeros(f, dtype=torch.float64), torch.ones(f, dtype=torch.float64)
    for step in range(3):  # the running statistics move over several batches
        x = rng.standard_normal(shape) * 3 + step
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        tx, tg, tb = _t(x, True), _t(layer.weight.value, True), _t(layer.bias.value, True)
        ty = torch_batchnorm(tx, tg, tb, t_mean, t_var, momentum, 1e-5)
        (ty * _t(dy)).sum().backward()
        assert _rel(y, ty.detach()) < REL
        assert _rel(dx, tx.grad) < REL
        assert _rel(layer.weight.grad, tg.grad) < REL
        assert _rel(layer.bias.grad, tb.grad) < REL
        assert _rel(layer.running_mean, t_mean) < 1e-12
        assert _rel(layer.running_var, t_var) < 1e-12
    x = rng.standard_normal(shape)  # evaluation: the running statistics
    ty = F.batch_norm(_t(x).reshape(-1, f), t_mean, t_var, _t(layer.weight.value),
                      _t(layer.bias.value), training=False, eps=1e-5)  # fmt: skip
    assert _rel(layer.forward(x, train=False), ty.reshape(shape)) < REL


def torch_avgpool(x_nhwc, pool, stride, padding):
    """TF's average pooling: pad with zeros, sum each window, divide by the count of its
    in-image elements (a window sum of a padded ones image)."""
    x = x_nhwc.permute(0, 3, 1, 2)
    sums = F.avg_pool2d(_tf_pad(x, pool, stride, padding, 0.0), pool, stride, divisor_override=1)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    count = F.avg_pool2d(_tf_pad(ones, pool, stride, padding, 0.0), pool, stride,
                         divisor_override=1)  # fmt: skip
    return (sums / count).permute(0, 2, 3, 1)


@pytest.mark.parametrize(
    "shape, pool, stride, pad",
    [
        ((2, 8, 6, 3), (2, 2), (2, 2), "same"),
        ((2, 7, 5, 3), (2, 2), (2, 2), "same"),  # the last row and column: windows of 2 and 1
        ((1, 7, 7, 2), (3, 3), (2, 2), "same"),
        ((1, 7, 7, 2), (3, 2), (2, 1), "valid"),
    ],
)
def test_avgpool_matches_torch_with_tf_same_padding(shape, pool, stride, pad) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    layer = AvgPool2D(pool, stride, pad)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = _t(x, True)
    ty = torch_avgpool(tx, pool, stride, pad)
    (ty * _t(dy)).sum().backward()
    assert _rel(y, ty.detach()) < REL
    assert _rel(dx, tx.grad) < REL


def test_dropout_with_numnets_mask_matches_torch() -> None:
    rng = np.random.default_rng(4)
    layer = Dropout(0.3, seed=9)
    x = rng.standard_normal((5, 7))
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    mask = layer.last_mask
    assert set(np.unique(mask)) <= {0.0, 1 / 0.7}
    tx = _t(x, True)
    ty = tx * _t(mask)  # inverted dropout with numnet's mask
    (ty * _t(dy)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())
    np.testing.assert_array_equal(layer.forward(x, train=False), x)


CNN_BN = [
    {"type": "conv2d", "filters": 8, "kernel": 3, "stride": 1, "padding": "same"},
    {"type": "batchnorm"}, {"type": "relu"},
    {"type": "maxpool2d", "size": 2, "stride": 2, "padding": "same"}, {"type": "flatten"},
    {"type": "dropout", "rate": 0.25}, {"type": "linear", "units": 32}, {"type": "relu"},
    {"type": "linear", "units": 10},
]  # fmt: skip


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cnn_bn_model_matches_torch(reduction: str) -> None:
    """The cnn-bn definition, torch functionals from numnet's weights and dropout mask:
    loss, every gradient and the running statistics after the step."""
    model = build(CNN_BN, name="cnn-bn", seed=4, dtype="float64", bias_init="uniform_sqrt3")
    rng = np.random.default_rng(5)
    x = rng.random((6, 784))
    labels = rng.integers(0, 10, 6)
    loss, dlogits = softmax_cross_entropy(model.forward(x), np.eye(10)[labels], reduction)
    dx = model.backward(dlogits, input_grad=True)
    layers = dict(model.layers)

    p = {n: _t(q.value, True) for n, q in model.named_parameters()}
    mean, var = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    tx = _t(x, True)
    h = torch_conv(tx.reshape(-1, 28, 28, 1), p["conv2d1.weight"], p["conv2d1.bias"], (1, 1),
                   "same")  # fmt: skip
    h = torch.relu(torch_batchnorm(h, p["batchnorm1.weight"], p["batchnorm1.bias"], mean, var,
                                   0.1, 1e-5))  # fmt: skip
    h = torch_pool(h, (2, 2), (2, 2), "same").reshape(6, -1) * _t(layers["dropout1"].last_mask)
    h = torch.relu(h @ p["linear1.weight"] + p["linear1.bias"])
    tlogits = h @ p["linear2.weight"] + p["linear2.bias"]
    tloss = F.cross_entropy(tlogits, torch.tensor(labels), reduction=reduction)
    tloss.backward()

    assert abs(loss - tloss.item()) <= REL * abs(tloss.item())
    assert _rel(dx, tx.grad) < REL
    for name, q in model.named_parameters():
        if name == "conv2d1.bias":  # 0 up to rounding on both sides: batch norm follows
            assert np.abs(q.grad).max() < 1e-12 and p[name].grad.abs().max() < 1e-12
            continue
        assert _rel(q.grad, p[name].grad) < REL, name
    assert _rel(layers["batchnorm1"].running_mean, mean) < 1e-12
    assert _rel(layers["batchnorm1"].running_var, var) < 1e-12
