"""Optimisers: hand-worked updates, plain-Python loop references of each rule, PyTorch step by
step on models 2 and 4, exact save and resume, the protocol's SGD bit for bit, bad arguments."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

from numnet.core import optim
from numnet.core.errors import NumnetError, OptimizerError
from numnet.core.layers import Parameter
from numnet.core.losses import softmax_cross_entropy
from numnet.core.models import build
from numnet.core.names import OPTIMIZERS
from numnet.core.optim import SGD, Adam, AdamW, RMSprop


def _param(value, grad) -> Parameter:
    p = Parameter(np.array(value, dtype=np.float64))
    p.grad[...] = grad
    return p


def _batch(rng: np.random.Generator, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((n, 784)), np.eye(10)[rng.integers(0, 10, n)]


def _backward(model, x, y) -> None:
    _, d = softmax_cross_entropy(model.forward(x), y)  # the protocol's summed loss
    model.backward(d)


# ------------------------------------------------------------------------- hand-worked (SGD)


def test_plain_sgd_hand_worked() -> None:
    p = _param([1.0, 2.0], [0.5, -1.0])
    opt = SGD([p], lr=0.1)
    opt.step()
    np.testing.assert_allclose(p.value, [0.95, 2.1], rtol=1e-15)
    opt.lr = 0.2  # schedules change lr between steps
    opt.step()
    np.testing.assert_allclose(p.value, [0.85, 2.3], rtol=1e-15)


def test_momentum_hand_worked() -> None:
    # v1 = g = 1; p = 1 - 0.1 * 1 = 0.9. v2 = 0.5 * 1 + 1 = 1.5; p = 0.9 - 0.15 = 0.75.
    p = _param([1.0], [1.0])
    opt = SGD([p], lr=0.1, momentum=0.5)
    opt.step()
    np.testing.assert_allclose(p.value, [0.9], rtol=1e-15)
    opt.step()
    np.testing.assert_allclose(p.value, [0.75], rtol=1e-15)


def test_step_is_in_place_and_zero_grad() -> None:
    p = _param([[1.0, 2.0]], [[1.0, 1.0]])
    value = p.value
    opt = SGD([p], lr=1.0)
    opt.step()
    assert p.value is value
    opt.zero_grad()
    assert not p.grad.any()


def test_one_step_on_a_model_equals_theta_minus_lr_grad() -> None:
    model = build("model2", seed=0, dtype="float64")
    _backward(model, *_batch(np.random.default_rng(0)))
    expected = [p.value - 0.05 * p.grad for p in model.parameters()]
    SGD(model.parameters(), lr=0.05).step()
    for e, p in zip(expected, model.parameters(), strict=True):
        np.testing.assert_allclose(p.value, e, rtol=1e-15, atol=1e-18)


# ------------------------------------------------------- the protocol's SGD, bit for bit


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plain_sgd_is_bit_identical_to_the_protocols_formula(dtype: str) -> None:
    """``xp.multiply(g, lr, out=tmp); p -= tmp`` with lr cast to the parameter's dtype, the
    arithmetic every protocol result was made with; lr a NumPy float64 and changed midway."""
    model, ref = build("model4", seed=1, dtype=dtype), build("model4", seed=1, dtype=dtype)
    opt = SGD(model.parameters(), lr=np.float64(0.0123))
    rng = np.random.default_rng(3)
    for i in range(4):
        x, y = _batch(rng, 4)
        _backward(model, x, y)
        _backward(ref, x, y)
        lr = opt.lr
        opt.step()
        for p in ref.parameters():
            tmp = np.empty_like(p.value)
            np.multiply(p.grad, p.value.dtype.type(lr), out=tmp)
            p.value -= tmp
        for a, b in zip(model.parameters(), ref.parameters(), strict=True):
            np.testing.assert_array_equal(a.value, b.value)
            assert a.value.dtype == np.dtype(dtype)
        opt.lr = 0.01 / (i + 1)


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_float32_parameters_stay_float32(kind: str) -> None:
    """A float64 lr (or hyper-parameter) never promotes a float32 model, and a float32 run
    follows the float64 one to float32 precision."""
    m32, m64 = build("model2", seed=0, dtype="float32"), build("model2", seed=0, dtype="float64")
    spec = {"type": kind, "weight_decay": 0.01} | ({"momentum": 0.9} if kind in ("sgd", "rmsprop")
                                                   else {})
    o32 = optim.build(m32.parameters(), spec, lr=np.float64(1e-3))
    o64 = optim.build(m64.parameters(), spec, lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = _batch(rng)
        _backward(m64, x, y)
        for a, b in zip(m32.parameters(), m64.parameters(), strict=True):
            a.grad[...] = b.grad  # the same gradients, rounded to float32
        o32.step()
        o64.step()
    for a, b in zip(m32.parameters(), m64.parameters(), strict=True):
        assert a.value.dtype == np.float32
        assert all(s.dtype == np.float32 for s in o32.state[0].values())
        np.testing.assert_allclose(a.value, b.value, rtol=2e-5, atol=1e-6)


# ------------------------------------------------------ each rule as plain Python loops


def _loop_sgd(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    p, buf = list(p), None
    for t, grad in enumerate(grads, start=1):
        g = [grad[i] + weight_decay * p[i] for i in range(len(p))]
        if momentum:
            if t == 1:
                buf = list(g)
            else:
                buf = [momentum * buf[i] + (1 - dampening) * g[i] for i in range(len(p))]
            g = [g[i] + momentum * buf[i] for i in range(len(p))] if nesterov else list(buf)
        p = [p[i] - lr * g[i] for i in range(len(p))]
    return p


def _loop_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               decoupled=False):
    (b1, b2), p = betas, list(p)
    m, v = [0.0] * len(p), [0.0] * len(p)
    for t, grad in enumerate(grads, start=1):
        for i in range(len(p)):
            g = grad[i]
            if decoupled:
                p[i] = p[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            p[i] = p[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


def _loop_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    p = list(p)
    s, b = [0.0] * len(p), [0.0] * len(p)
    for grad in grads:
        for i in range(len(p)):
            g = grad[i] + weight_decay * p[i]
            s[i] = alpha * s[i] + (1 - alpha) * g * g
            a = math.sqrt(s[i]) + eps
            if momentum:
                b[i] = momentum * b[i] + g / a
                p[i] = p[i] - lr * b[i]
            else:
                p[i] = p[i] - lr * g / a
    return p


LOOP_CASES = [
    (SGD, _loop_sgd, {"lr": 0.1}),
    (SGD, _loop_sgd, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
    (SGD, _loop_sgd, {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}),
    (SGD, _loop_sgd, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    (Adam, _loop_adam, {}),
    (Adam, _loop_adam, {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    (AdamW, lambda p, g, **kw: _loop_adam(p, g, decoupled=True, weight_decay=1e-2, **kw), {}),
    (AdamW, lambda p, g, **kw: _loop_adam(p, g, decoupled=True, **kw),
     {"lr": 0.05, "weight_decay": 0.3}),
    (RMSprop, _loop_rmsprop, {}),
    (RMSprop, _loop_rmsprop, {"lr": 0.05, "alpha": 0.9, "momentum": 0.7, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("cls", "loop", "kwargs"), LOOP_CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(LOOP_CASES)])
def test_each_rule_against_its_loop_reference(cls, loop, kwargs) -> None:
    rng = np.random.default_rng(7)
    start = rng.standard_normal(5)
    grads = [rng.standard_normal(5) * 10.0 ** rng.integers(-3, 2) for _ in range(5)]
    p = Parameter(start.copy())
    opt = cls([p], **kwargs)
    for g in grads:
        p.grad[...] = g
        opt.step()
    expected = loop(start.tolist(), [g.tolist() for g in grads], **kwargs)
    np.testing.assert_allclose(p.value, expected, rtol=1e-13, atol=1e-15)


def test_adams_step_does_not_scale_with_the_gradient() -> None:
    """docs/optimizers.md: m / sqrt(v) is unchanged when every gradient is multiplied by c, so
    a summed loss (c = batch size) moves Adam's weights as the mean loss does (up to eps)."""
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(6) for _ in range(5)]
    ends = []
    for c in (1.0, 64.0):
        p = Parameter(np.ones(6))
        opt = Adam([p], lr=0.01)
        for g in grads:
            p.grad[...] = c * g
            opt.step()
        ends.append(p.value.copy())
    np.testing.assert_allclose(ends[0], ends[1], rtol=1e-9)


# --------------------------------------------------------------- PyTorch, step by step

TORCH_CASES = [
    ("sgd", {"lr": 0.01}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "dampening": 0.2, "weight_decay": 1e-3}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("adam", {"lr": 1e-3}),
    ("adam", {"lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 1e-2}),
    ("adamw", {"lr": 1e-3}),
    ("adamw", {"lr": 1e-3, "eps": 1e-6, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 1e-3}),
    ("rmsprop", {"lr": 1e-3, "alpha": 0.9, "momentum": 0.9, "weight_decay": 1e-2}),
]
TORCH_CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}


def max_relative_difference(ours, theirs) -> float:
    """max over parameters of ``max|a - b| / max|b|`` (elementwise ratios would divide by the
    biases' near-zero entries)."""
    return max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, theirs,
                                                                            strict=True))


def run_against_torch(model_name: str, kind: str, kwargs: dict, steps: int = 32) -> float:
    """``steps`` updates of numnet's optimiser and torch's, fed the same gradients (numnet's
    forward and backward on numnet's weights, float64); the largest relative difference of the
    weights seen after any step."""
    torch = pytest.importorskip("torch")
    model = build(model_name, seed=0, dtype="float64")
    params = model.parameters()
    tparams = [torch.tensor(p.value.copy(), requires_grad=True) for p in params]
    ours = optim.build(params, {"type": kind, **kwargs})
    theirs = getattr(torch.optim, TORCH_CLASSES[kind])(tparams, foreach=False, **kwargs)
    rng, worst = np.random.default_rng(1), 0.0
    for _ in range(steps):
        _backward(model, *_batch(rng))
        for p, t in zip(params, tparams, strict=True):
            t.grad = torch.from_numpy(p.grad.copy())
        ours.step()
        theirs.step()
        worst = max(worst, max_relative_difference(
            [p.value for p in params], [t.detach().numpy() for t in tparams]))
    return worst


@pytest.mark.parametrize("model_name", ["model2", "model4"])
@pytest.mark.parametrize(("kind", "kwargs"), TORCH_CASES,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(TORCH_CASES)])
def test_against_torch_step_by_step(model_name: str, kind: str, kwargs: dict) -> None:
    assert run_against_torch(model_name, kind, kwargs) < 1e-9


def test_defaults_are_torchs() -> None:
    torch = pytest.importorskip("torch")
    for kind, cls in optim.CLASSES.items():
        theirs = inspect.signature(getattr(torch.optim, TORCH_CLASSES[kind])).parameters
        for name, default in cls.defaults().items():
            if default is inspect.Parameter.empty:  # SGD's lr: required here, 1e-3 in torch
                continue
            assert theirs[name].default == default, (kind, name)


# ------------------------------------------------------------------- save and resume


@pytest.mark.parametrize(("kind", "kwargs"), [
    ("sgd", {"lr": 0.01}), ("sgd", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    ("adam", {"weight_decay": 1e-3}), ("adamw", {}), ("rmsprop", {"momentum": 0.5}),
])
def test_state_dict_round_trip_through_savez_is_exact(tmp_path, kind: str, kwargs: dict) -> None:
    model = build("model2", seed=0, dtype="float64")
    opt = optim.build(model.parameters(), {"type": kind, **kwargs})
    rng = np.random.default_rng(5)
    batches = [_batch(rng) for _ in range(20)]
    for x, y in batches[:10]:
        _backward(model, x, y)
        opt.step()
    np.savez(tmp_path / "opt.npz", **optim.state_to_arrays(opt.state_dict()))
    copy = build("model2", seed=0, dtype="float64")
    copy.load_state_dict(model.state_dict())
    with np.load(tmp_path / "opt.npz") as saved:
        state = optim.state_from_arrays(saved)
    other = optim.build(copy.parameters(), {"type": kind, "lr": 0.5})  # lr comes from the state
    other.load_state_dict(state)
    assert other.hyper() == opt.hyper() and other.step_count == 10
    for x, y in batches[10:]:
        for m, o in ((model, opt), (copy, other)):
            _backward(m, x, y)
            o.step()
    for a, b in zip(model.parameters(), copy.parameters(), strict=True):
        np.testing.assert_array_equal(a.value, b.value)


def test_state_dict_is_a_copy_and_empty_before_the_first_step() -> None:
    p = _param([1.0, 2.0], [1.0, 1.0])
    opt = Adam([p])
    assert opt.state_dict() == {"type": "adam", "step": 0, "state": [{}], "hyper": {
        "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}}
    opt.step()
    saved = opt.state_dict()
    opt.step()
    assert saved["step"] == 1 and not np.shares_memory(saved["state"][0]["exp_avg"],
                                                       opt.state[0]["exp_avg"])
    fresh = Adam([_param([1.0, 2.0], [1.0, 1.0])])
    fresh.load_state_dict(Adam([_param([0.0, 0.0], [0.0, 0.0])]).state_dict())  # step 0: {}
    assert fresh.state == [{}]


def _saved_adam() -> dict:
    opt = Adam([_param([1.0, 2.0], [1.0, 1.0]), _param([[3.0]], [[1.0]])])
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.update(type="sgd"), "of a 'sgd' optimiser, this one is 'adam'"),
    (lambda s: s.pop("hyper"), "expected a mapping with keys type, step, hyper, state"),
    (lambda s: s.update(step=-1), "step must be an integer >= 0, got -1"),
    (lambda s: s["hyper"].update(betas=[0.9, 1.5]), r"betas\[1\] must be a finite number in"),
    (lambda s: s["hyper"].pop("eps"), "missing eps"),
    (lambda s: s["state"].pop(), "state has 1 entries, the optimiser has 2 parameters"),
    (lambda s: s["state"][1].pop("exp_avg"), r"state\[1\] holds \['exp_avg_sq'\], expected"),
    (lambda s: s["state"][0].update(exp_avg=np.zeros(3)), r"exp_avg is float64\(3,\), the "
                                                          r"parameter is float64\(2,\)"),
    (lambda s: s["state"][0].update(exp_avg=np.zeros(2, np.float32)), "exp_avg is float32"),
])
def test_load_state_dict_refuses_a_mismatch(change, message) -> None:
    state = _saved_adam()
    change(state)
    opt = Adam([_param([5.0, 5.0], [1.0, 1.0]), _param([[5.0]], [[1.0]])])
    with pytest.raises(OptimizerError, match=message):
        opt.load_state_dict(state)
    assert opt.step_count == 0 and opt.state == [{}, {}]  # nothing changed


# ------------------------------------------------------------------------ bad arguments

BAD_ARGUMENTS = [
    (SGD, {"lr": -0.1}, "SGD: lr must be a finite number >= 0, got -0.1"),
    (SGD, {"lr": math.nan}, "SGD: lr must be a finite number >= 0, got nan"),
    (SGD, {"lr": True}, "SGD: lr must be a finite number >= 0, got True"),
    (SGD, {"lr": "0.1"}, "SGD: lr must be a finite number >= 0, got '0.1'"),
    (SGD, {"lr": 0.1, "momentum": -0.5}, "SGD: momentum must be a finite number >= 0, got -0.5"),
    (SGD, {"lr": 0.1, "dampening": 2}, r"SGD: dampening must be a finite number in \[0, 1\]"),
    (SGD, {"lr": 0.1, "nesterov": True}, "SGD: nesterov needs momentum > 0 and dampening 0"),
    (SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
     "nesterov needs momentum > 0 and dampening 0, got momentum=0.9, dampening=0.1"),
    (SGD, {"lr": 0.1, "nesterov": 1}, "SGD: nesterov must be true or false, got 1"),
    (SGD, {"lr": 0.1, "weight_decay": -1e-4}, "SGD: weight_decay must be a finite number >= 0"),
    (SGD, {"lr": 0.1, "weight_decay": math.inf}, "weight_decay must be a finite number >= 0, "
                                                 "got inf"),
    (Adam, {"betas": (1.0, 0.999)}, r"Adam: betas\[0\] must be a finite number in \[0, 1\), "
                                    r"got 1.0"),
    (Adam, {"betas": (0.9, -0.1)}, r"Adam: betas\[1\] must be a finite number in \[0, 1\)"),
    (Adam, {"betas": 0.9}, "Adam: betas must be two numbers in"),
    (Adam, {"betas": (0.9, 0.99, 0.999)}, "Adam: betas must be two numbers in"),
    (Adam, {"eps": 0.0}, "Adam: eps must be a finite number > 0, got 0.0"),
    (AdamW, {"weight_decay": -0.01}, "AdamW: weight_decay must be a finite number >= 0"),
    (AdamW, {"lr": np.float64(-1)}, "AdamW: lr must be a finite number >= 0, got -1.0"),
    (RMSprop, {"alpha": 1.0}, r"RMSprop: alpha must be a finite number in \[0, 1\), got 1.0"),
    (RMSprop, {"alpha": -0.1}, r"RMSprop: alpha must be a finite number in \[0, 1\)"),
    (RMSprop, {"eps": -1e-8}, "RMSprop: eps must be a finite number > 0"),
    (RMSprop, {"momentum": -0.9}, "RMSprop: momentum must be a finite number >= 0"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_in_one_line(cls, kwargs, message) -> None:
    with pytest.raises(OptimizerError, match=message) as caught:
        cls([_param([1.0], [1.0])], **kwargs)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, NumnetError)
    assert "\n" not in str(caught.value)


def test_empty_parameters_and_a_bad_lr_set_later() -> None:
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    opt = Adam([_param([1.0], [1.0])])
    with pytest.raises(OptimizerError, match="Adam: lr must be a finite number >= 0, got -1"):
        opt.lr = -1
    assert opt.lr == 1e-3


# ------------------------------------------------------------------ specs for the application


def test_classes_are_the_names_in_core_names() -> None:
    assert tuple(optim.CLASSES) == OPTIMIZERS


def test_check_spec_fills_the_defaults_and_leaves_lr_to_the_caller() -> None:
    assert optim.check_spec({"type": "adam", "betas": (0.8, 0.9)}) == {
        "type": "adam", "betas": [0.8, 0.9], "eps": 1e-8, "weight_decay": 0.0}
    assert optim.check_spec({"type": "sgd"}) == {
        "type": "sgd", "momentum": 0.0, "dampening": 0.0, "nesterov": False,
        "weight_decay": 0.0}
    assert optim.check_spec({"type": "rmsprop", "lr": 0.1})["lr"] == 0.1


def test_build_from_a_spec() -> None:
    p = _param([1.0], [1.0])
    opt = optim.build([p], {"type": "adamw", "betas": [0.9, 0.99], "weight_decay": 1e-4}, lr=0.01)
    assert isinstance(opt, AdamW) and opt.betas == (0.9, 0.99) and opt.lr == 0.01
    assert repr(opt) == "AdamW(lr=0.01, betas=[0.9, 0.99], eps=1e-08, weight_decay=0.0001)"
    assert optim.build([p], {"type": "adam"}).lr == 1e-3  # torch's default
    assert optim.build([p], {"type": "sgd", "lr": 0.1}, lr=0.1).lr == 0.1  # the same twice


@pytest.mark.parametrize(("spec", "lr", "message"), [
    ({"type": "adma"}, None, "protocol.optimizer: unknown type 'adma' (did you mean 'adam'?); "
                             "expected one of sgd, adam, adamw, rmsprop"),
    ({"type": "momentum"}, None, "protocol.optimizer: unknown type 'momentum'; expected one of"),
    ({"lr": 0.1}, None, "protocol.optimizer: missing key 'type' (one of sgd, adam, adamw"),
    ("adam", None, "protocol.optimizer: must be a mapping with a 'type'"),
    ({"type": "adam", "beta": [0.9, 0.99]}, None,
     "protocol.optimizer: unknown key 'beta' for type 'adam' (did you mean 'betas'?); "
     "allowed: lr, betas, eps, weight_decay"),
    ({"type": "sgd", "momentum": 0.9, "nesterov": "yes"}, None,
     "protocol.optimizer: nesterov must be true or false, got 'yes'"),
    ({"type": "sgd", "lr": 0.1}, 0.2,
     "protocol.optimizer: lr is given twice, 0.1 in the spec and 0.2 by the caller"),
    ({"type": "sgd"}, None, "protocol.optimizer: 'sgd' needs lr (in the spec or from the caller)"),
    ({"type": "adam"}, -1.0, "protocol.optimizer: lr must be a finite number >= 0, got -1.0"),
])
def test_bad_specs_are_refused_in_one_line(spec, lr, message) -> None:
    with pytest.raises(OptimizerError) as caught:
        optim.build([_param([1.0], [1.0])], spec, lr=lr, where="protocol.optimizer")
    assert str(caught.value).startswith(message)
    if lr is None and "needs lr" not in message:  # the check alone, without any parameters
        with pytest.raises(OptimizerError) as alone:
            optim.check_spec(spec, where="protocol.optimizer")
        assert str(alone.value) == str(caught.value)


def test_state_from_arrays_refuses_strange_keys() -> None:
    arrays = optim.state_to_arrays(_saved_adam())
    with pytest.raises(OptimizerError, match="unknown key 'extra'"):
        optim.state_from_arrays({**arrays, "extra": np.zeros(1)})
    with pytest.raises(OptimizerError, match="'state.5.exp_avg' names no parameter"):
        optim.state_from_arrays({**arrays, "state.5.exp_avg": np.zeros(1)})
    with pytest.raises(OptimizerError, match="missing num_params"):
        optim.state_from_arrays({k: v for k, v in arrays.items() if k != "num_params"})


# ------------------------------------------------------------------ docs/optimizers.md

DOC = Path(__file__).resolve().parents[1] / "docs" / "optimizers.md"
# [`module.Qual.name`](../src/numnet/core/module.py): `quoted code` (as docs/derivations.md)
CODE_LINK = re.compile(
    r"\[`(?P<name>[A-Za-z_][\w.]*)`\]\((?P<path>[^)#\s]+\.py)\)(?::\s+`(?P<code>[^`]+)`)?")


def _doc_code_links() -> list[re.Match[str]]:
    return list(CODE_LINK.finditer(DOC.read_text(encoding="utf-8")))


@pytest.mark.parametrize("link", _doc_code_links(), ids=lambda m: f"{m['name']}: {m['code']}")
def test_doc_code_links_quote_the_named_function(link: re.Match[str]) -> None:
    """Each link names a function (module, then qualified name) and quotes code it holds."""
    stem, *qualname = link["name"].split(".")
    path = (DOC.parent / link["path"]).resolve()
    assert path.stem == stem and qualname and link["code"], link[0]
    obj = importlib.import_module(f"numnet.core.{stem}")
    for part in qualname:
        obj = getattr(obj, part)
    squash = " ".join
    assert squash(link["code"].split()) in squash(inspect.getsource(obj).split()), link[0]


def test_doc_cites_every_rule_and_its_links_and_math_hold() -> None:
    text = DOC.read_text(encoding="utf-8")
    cited = {m["name"] for m in _doc_code_links()}
    assert {"optim.SGD.step", "optim.Adam.step", "optim.RMSprop.step",
            "schedules.Schedule.lr_at", "schedules.Step._after_warmup",
            "schedules.Cosine._after_warmup"} <= cited
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+\s+(.*)$", text, flags=re.MULTILINE)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert (DOC.parent / target.split("#")[0]).exists(), target
    prose = re.sub(r"```.*?```", "", re.sub(r"`[^`\n]*`", "", text), flags=re.DOTALL)
    blocks = prose.split("$$")
    assert len(blocks) % 2 == 1, "odd number of $$"
    for paragraph in "\n\n".join(blocks[0::2]).split("\n\n"):
        assert paragraph.count("$") % 2 == 0, paragraph[:80]
    for formula in blocks[1::2]:
        assert formula.count("{") - formula.count("\\{") == formula.count("}") - formula.count(
            "\\}"), formula
