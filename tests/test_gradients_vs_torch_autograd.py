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

from numnet.core.layers import Conv2D, MaxPool2D, output_size  # noqa: E402
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
