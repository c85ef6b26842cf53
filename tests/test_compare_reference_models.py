"""The PyTorch twin that ``numnet compare`` trains (numnet.lab.reference_torch): the layout
conversions, and the same loss, gradients and SGD step as numnet for all four models from the
same weights (float64). numnet's own gradients against independently written torch functionals
are checked in test_gradients_vs_torch_autograd.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numnet.core import losses, models, optim  # noqa: E402
from numnet.lab import reference_torch as ref  # noqa: E402

MODELS = ("model1", "model2", "model3", "model4")


def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784))
    y = np.eye(10)[rng.integers(0, 10, n)]
    return x, y


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def test_layout_round_trip_and_flatten_order() -> None:
    rng = np.random.default_rng(0)
    hwio = rng.standard_normal((3, 3, 2, 5))
    oihw = ref.to_torch_layout(hwio, "conv_weight", None)
    assert oihw.shape == (5, 2, 3, 3)
    assert oihw[4, 1, 0, 2] == hwio[0, 2, 1, 4]
    np.testing.assert_array_equal(ref.to_numnet_layout(oihw, "conv_weight", None), hwio)

    # A (h, w, c)-flattened feature map times numnet's W equals PyTorch's (c, h, w) flatten
    # times the converted weight: this is what model 4's first Linear relies on.
    c, h, w, out = 3, 4, 5, 6
    fmap_nhwc = rng.standard_normal((2, h, w, c))
    weight = rng.standard_normal((h * w * c, out))
    numnet_y = fmap_nhwc.reshape(2, -1) @ weight
    torch_w = ref.to_torch_layout(weight, "linear_weight", (c, h, w))
    assert torch_w.shape == (out, c * h * w)
    torch_y = fmap_nhwc.transpose(0, 3, 1, 2).reshape(2, -1) @ torch_w.T
    np.testing.assert_allclose(torch_y, numnet_y, rtol=1e-13)
    np.testing.assert_array_equal(ref.to_numnet_layout(torch_w, "linear_weight", (c, h, w)), weight)
    # And a Linear fed by a plain vector is only transposed.
    np.testing.assert_array_equal(ref.to_torch_layout(weight, "linear_weight", None), weight.T)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name", MODELS)
def test_same_loss_and_gradients_as_numnet(name: str, reduction: str) -> None:
    conv_activation = "relu" if name == "model4" and reduction == "mean" else None
    model = models.build(
        name, seed=3, dtype="float64", conv_activation=conv_activation
    )
    twin = ref.build_twin(model)
    assert next(twin.parameters()).dtype == torch.float64
    # The copy itself is exact in both directions.
    pairs = zip(model.named_parameters(), ref.numnet_layout_arrays(twin), strict=True)
    for (pname, p), back in pairs:
        np.testing.assert_array_equal(back, p.value, err_msg=pname)

    x, y = _batch(16, seed=4)
    logits = model.forward(x)
    loss, dlogits = losses.softmax_cross_entropy(logits, y, reduction=reduction)
    model.backward(dlogits)

    trainer = ref.ReferenceTrainer(twin, lr=0.1, reduction=reduction)
    torch_loss = trainer.loss_and_grad(x, y)
    assert abs(float(loss) - torch_loss) <= 1e-12 * abs(torch_loss)
    with torch.no_grad():
        np.testing.assert_allclose(trainer.forward(x).numpy(), logits, rtol=1e-10, atol=1e-12)
    grads = ref.numnet_layout_arrays(twin, "grad")
    for (pname, p), g in zip(model.named_parameters(), grads, strict=True):
        assert g.shape == p.grad.shape, pname
        assert _rel(p.grad, g) < 1e-8, (pname, _rel(p.grad, g))


def test_channels_last_computes_the_same() -> None:
    model = models.build("model4", seed=1, dtype="float64")
    plain = ref.ReferenceTrainer(ref.build_twin(model), lr=0.01)
    nhwc = ref.ReferenceTrainer(ref.build_twin(model, channels_last=True), lr=0.01)
    conv = nhwc.model[1].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x, y = _batch(8, seed=2)
    for _ in range(3):
        a, b = plain.step(x, y), nhwc.step(x, y)
        assert abs(a - b) <= 1e-12 * abs(a)
    pairs = zip(ref.numnet_layout_arrays(plain.model), ref.numnet_layout_arrays(nhwc.model),
                strict=True)
    for p, q in pairs:
        np.testing.assert_allclose(q, p, rtol=1e-10, atol=1e-13)


def test_sgd_step_matches_numnet() -> None:
    model = models.build("model2", seed=5, dtype="float64")
    trainer = ref.ReferenceTrainer(ref.build_twin(model), lr=0.05)
    x, y = _batch(10, seed=6)
    logits = model.forward(x)
    _, dlogits = losses.softmax_cross_entropy(logits, y, reduction="sum")
    model.backward(dlogits)
    optim.SGD(model.parameters(), lr=0.05).step()
    trainer.step(x, y)
    after = ref.numnet_layout_arrays(trainer.model)
    for (pname, p), q in zip(model.named_parameters(), after, strict=True):
        np.testing.assert_allclose(q, p.value, rtol=1e-12, atol=1e-15, err_msg=pname)


def test_missing_torch_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_torch(name: str, *args: object, **kwargs: object) -> object:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ref.ReferenceUnavailableError, match=r"pip install \"numnet\[reference\]\""):
        ref.import_torch()
