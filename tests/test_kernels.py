"""Every kernel implementation -- plain, fast, the fused conv + pool on one and on two threads --
against the index-for-index loop references of ``numnet.core.kernels.loops`` and against
central finite differences, in float64, over several shapes (odd sizes, stride 2, SAME and
VALID, one and several channels, square and oblong windows).

One parametrised test holds them all: each case names an operation and an implementation, and
says how to run its forward and backward and its loop reference. For each case the forward
output and every gradient (input and parameters) must equal the loops (relative error below
1e-10) and the finite differences of ``sum(forward(...) * dy)`` (below 1e-6).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from numnet.core import gradcheck, runtime
from numnet.core.kernels import fast, fused, loops, plain

LOOPS_TOL = 1e-10
FD_TOL = 1e-6

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    """One operation and one implementation of it, on one shape."""

    name: str
    make: Callable[[np.random.Generator], Arrays]  # the inputs: "x" and any parameters
    forward: Callable[[Arrays, bool], np.ndarray]  # (arrays, train) -> output
    backward: Callable[[Arrays, np.ndarray], Arrays]  # (arrays, dy) -> gradient per input
    loops: Callable[[Arrays, np.ndarray], tuple[np.ndarray, Arrays]]  # reference (y, grads)
    threads: int | None = None  # run with this many threads, the batch split forced


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with no near-ties (a shuffled grid, gaps 1000x the finite-difference step)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)


class _Stateful:
    """Runs a forward/backward pair that keeps a cache between the two (and, on the fast
    path, Workspaces across calls, one for training passes and one for evaluations, as a
    layer does)."""

    def __init__(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd, self.cache = fwd, bwd, None
        self.workspace = fast.Workspace()
        self.eval_workspace = fast.Workspace()

    def buffers(self, train: bool) -> fast.Workspace:
        return self.workspace if train else self.eval_workspace

    def forward(self, a: Arrays, train: bool) -> np.ndarray:
        y, cache = self.fwd(self, a, train)
        if train:
            self.cache = cache
        return y

    def backward(self, a: Arrays, dy: np.ndarray) -> Arrays:
        return self.bwd(self, a, dy)


# -- linear -------------------------------------------------------------------------------------


def _linear_cases() -> list[Case]:
    cases = []
    for n, din, dout in ((4, 7, 5), (1, 3, 1)):

        def make(rng, n=n, din=din, dout=dout):
            return {"x": rng.standard_normal((n, din)), "w": rng.standard_normal((din, dout)),
                    "b": rng.standard_normal(dout)}  # fmt: skip

        def ref(a, dy):
            dx, dw, db = loops.linear_backward_loops(a["x"], a["w"], dy)
            return loops.linear_forward_loops(a["x"], a["w"], a["b"]), {"x": dx, "w": dw, "b": db}

        def bwd(s, a, dy):
            dx, dw, db = plain.linear_backward(dy, s.cache)
            return {"x": dx, "w": dw, "b": db}

        # fast.linear_* are the plain functions (test_fast_has_plains_interface), run once
        for impl, fwd in (("plain", plain.linear_forward),):
            run = _Stateful(lambda s, a, train, fwd=fwd: fwd(a["x"], a["w"], a["b"]), bwd)
            cases.append(Case(f"linear-{impl}-{n}x{din}x{dout}", make, run.forward, run.backward,
                              ref))  # fmt: skip
    return cases


# -- activations --------------------------------------------------------------------------------


def _activation_cases() -> list[Case]:
    cases = []
    for act in ("relu", "sigmoid", "tanh"):
        fwd_kernel, bwd_kernel = plain.ACTIVATIONS[act]
        fwd_loops = getattr(loops, f"{act}_forward_loops")
        bwd_loops = getattr(loops, f"{act}_backward_loops")

        def make(rng):
            x = rng.standard_normal((3, 11)) * 3
            x[np.abs(x) < 0.05] = 0.5  # keep ReLU's kink out of the finite-difference step
            return {"x": x}

        run = _Stateful(lambda s, a, train, f=fwd_kernel: f(a["x"]),
                        lambda s, a, dy, b=bwd_kernel: {"x": b(dy, s.cache)})  # fmt: skip
        cases.append(Case(
            f"{act}-plain", make, run.forward, run.backward,
            lambda a, dy, f=fwd_loops, b=bwd_loops: (f(a["x"]), {"x": b(a["x"], dy)}),
        ))  # fmt: skip
    return cases


# -- convolution --------------------------------------------------------------------------------

CONV_SHAPES = [
    # (N, H, W, c_in, c_out, kernel, stride, padding)
    (2, 5, 7, 3, 4, 3, 1, "same"),  # odd sizes
    (2, 7, 6, 2, 3, 3, 2, "same"),  # stride 2
    (1, 8, 9, 3, 2, (3, 2), 2, "valid"),  # oblong kernel, VALID, a row no window reaches
    (2, 6, 6, 1, 8, 3, 1, "same"),  # one input channel: the taps-major im2col
    (1, 9, 7, 2, 2, 5, 3, "same"),
    (2, 7, 5, 2, 3, 4, 1, "same"),  # even kernel: the odd padding row at the end
    (1, 9, 9, 2, 2, 3, (2, 1), "valid"),
    (2, 6, 5, 2, 3, 2, 1, "valid"),
]


def _conv_cases() -> list[Case]:
    cases = []
    for n, h, w, cin, cout, k, stride, padding in CONV_SHAPES:
        kh, kw = plain.pair(k)

        def make(rng, n=n, h=h, w=w, cin=cin, cout=cout, kh=kh, kw=kw):
            x, wt = rng.standard_normal((n, h, w, cin)), rng.standard_normal((kh, kw, cin, cout))
            return {"x": x, "w": wt, "b": rng.standard_normal(cout)}

        def ref(a, dy, stride=stride, padding=padding, kh=kh, kw=kw):
            x, wt = a["x"], a["w"]
            y = loops.conv2d_forward_loops(x, wt, a["b"], stride, padding)
            return y, {
                "x": loops.conv2d_input_grad_loops(dy, wt, x.shape[1:3], stride, padding),
                "w": loops.conv2d_weight_grad_loops(x, dy, kh, kw, stride, padding),
                "b": loops.conv2d_bias_grad_loops(dy),
            }

        def fwd(s, a, train, stride=stride, padding=padding):
            return s.ops.conv2d_forward(a["x"], a["w"], a["b"], stride, padding,
                                        workspace=s.buffers(train))  # fmt: skip

        def bwd(s, a, dy):
            dx, dw, db = s.ops.conv2d_backward(dy, s.cache, workspace=s.buffers(True))
            return {"x": dx, "w": dw, "b": db}

        tag = f"{n}x{h}x{w}x{cin}-{cout}-k{kh}x{kw}-s{stride}-{padding}"
        for impl, ops in (("plain", plain), ("fast", fast)):  # one call, either module
            run = _Stateful(fwd, bwd)
            run.ops = ops
            cases.append(Case(f"conv2d-{impl}-{tag}", make, run.forward, run.backward, ref))
    return cases


# -- max-pooling --------------------------------------------------------------------------------

POOL_SHAPES = [
    # (N, H, W, C, pool, stride, padding)
    (2, 6, 4, 3, 2, 2, "same"),  # 2x2/2, even sizes: the fast quarter-plane path
    (2, 7, 5, 3, 2, 2, "same"),  # odd sizes: a -inf row and column at the end
    (2, 7, 5, 3, 2, 2, "valid"),  # odd sizes: the last row and column dropped
    (1, 5, 5, 2, 3, 1, "same"),  # overlapping windows: an input may win several
    (2, 6, 7, 1, (2, 3), (1, 2), "valid"),
    (1, 7, 6, 2, 3, 2, "same"),
]


def _pool_cases() -> list[Case]:
    cases = []
    for n, h, w, c, pool, stride, padding in POOL_SHAPES:

        def make(rng, shape=(n, h, w, c)):
            return {"x": _distinct(rng, shape)}

        def ref(a, dy, pool=pool, stride=stride, padding=padding):
            y, dx = loops.maxpool2d_loops(a["x"], pool, stride, padding, dy)
            return y, {"x": dx}

        tag = f"{n}x{h}x{w}x{c}-p{pool}-s{stride}-{padding}"
        for impl, kernels in (("plain", plain), ("fast", fast)):
            run = _Stateful(
                lambda s, a, train, k=kernels, p=pool, st=stride, pad=padding:
                    k.maxpool2d_forward(a["x"], p, st, pad),
                lambda s, a, dy, k=kernels: {"x": k.maxpool2d_backward(dy, s.cache)},
            )  # fmt: skip
            cases.append(Case(f"maxpool2d-{impl}-{tag}", make, run.forward, run.backward, ref))
    return cases


# -- the fused conv + [activation] + 2x2 max-pool -----------------------------------------------

FUSED_SHAPES = [
    # (N, H, W, c_in, c_out, kernel, activation)
    (3, 8, 6, 3, 4, 3, None),
    (2, 4, 4, 1, 8, 3, None),  # one input channel, as model 4's first block
    (2, 4, 8, 1, 3, 3, "relu"),  # one channel, two width blocks of 4 pixels, an activation
    (2, 4, 6, 1, 2, 3, None),  # one channel, a width not divisible by 4: blocks of 2
    (2, 6, 8, 2, 3, 3, "relu"),
    (2, 8, 6, 2, 3, 5, "tanh"),
    (2, 6, 6, 2, 2, 2, "sigmoid"),  # even kernel: asymmetric SAME padding
]


def _fused_cases() -> list[Case]:
    cases = []
    for n, h, w, cin, cout, k, act in FUSED_SHAPES:

        def make(rng, n=n, h=h, w=w, cin=cin, cout=cout, k=k):
            x, wt = rng.standard_normal((n, h, w, cin)), rng.standard_normal((k, k, cin, cout))
            return {"x": x, "w": wt, "b": rng.standard_normal(cout)}

        def ref(a, dy, act=act, k=k):
            x, wt = a["x"], a["w"]
            conv = loops.conv2d_forward_loops(x, wt, a["b"])
            act_fwd = getattr(loops, f"{act}_forward_loops", None) if act else None
            pre = act_fwd(conv) if act_fwd else conv
            y, dpre = loops.maxpool2d_loops(pre, 2, 2, "same", dy)
            dconv = getattr(loops, f"{act}_backward_loops")(conv, dpre) if act else dpre
            return y, {
                "x": loops.conv2d_input_grad_loops(dconv, wt),
                "w": loops.conv2d_weight_grad_loops(x, dconv, k, k),
                "b": loops.conv2d_bias_grad_loops(dconv),
            }

        def fwd(s, a, train, act=act):
            return fused.convpool2x2_forward(a["x"], a["w"], a["b"], act, workspace=s.workspace,
                                             train=train)  # fmt: skip

        def bwd(s, a, dy):
            dw, db = np.empty_like(a["w"]), np.empty_like(a["b"])
            dx, _, _ = fused.convpool2x2_backward(dy, s.cache, workspace=s.workspace, dw=dw,
                                                  db=db)  # fmt: skip
            return {"x": dx, "w": dw, "b": db}

        for threads in (1, 2):
            run = _Stateful(fwd, bwd)
            name = f"convpool2x2-fused-{threads}threads-{n}x{h}x{w}x{cin}-{cout}-k{k}-{act}"
            cases.append(Case(name, make, run.forward, run.backward, ref, threads=threads))
    return cases


# -- average pooling, batch norm, dropout -------------------------------------------------------

AVGPOOL_SHAPES = [
    # (N, H, W, C, pool, stride, padding)
    (2, 6, 4, 3, 2, 2, "same"),
    (2, 7, 5, 3, 2, 2, "same"),  # odd sizes: the last window holds fewer elements
    (2, 7, 5, 2, 2, 2, "valid"),
    (1, 5, 5, 2, 3, 1, "same"),  # overlapping windows, padding on both sides
    (2, 6, 7, 1, (2, 3), (1, 2), "valid"),
    (1, 7, 6, 2, 3, 2, "same"),
]


def _avgpool_cases() -> list[Case]:
    cases = []
    for n, h, w, c, pool, stride, padding in AVGPOOL_SHAPES:

        def make(rng, shape=(n, h, w, c)):
            return {"x": rng.standard_normal(shape)}

        def ref(a, dy, pool=pool, stride=stride, padding=padding):
            y, dx = loops.avgpool2d_loops(a["x"], pool, stride, padding, dy)
            return y, {"x": dx}

        run = _Stateful(
            lambda s, a, train, p=pool, st=stride, pad=padding:
                plain.avgpool2d_forward(a["x"], p, st, pad),
            lambda s, a, dy: {"x": plain.avgpool2d_backward(dy, s.cache)},
        )  # fmt: skip
        tag = f"{n}x{h}x{w}x{c}-p{pool}-s{stride}-{padding}"
        cases.append(Case(f"avgpool2d-plain-{tag}", make, run.forward, run.backward, ref))
    return cases


def _batchnorm_cases() -> list[Case]:
    """Training mode on every call (fresh running statistics each time, which the training
    output does not depend on), so the finite differences see the function backward derives."""
    cases = []
    for shape in ((6, 4), (3, 4, 5, 2), (2, 1)):

        def make(rng, shape=shape):
            f = shape[-1]
            return {"x": rng.standard_normal(shape) * 2 + 1, "gamma": rng.standard_normal(f),
                    "beta": rng.standard_normal(f)}  # fmt: skip

        def fwd(s, a, train):
            f = a["x"].shape[-1]
            return s.ops.batchnorm_forward(a["x"], a["gamma"], a["beta"], np.zeros(f), np.ones(f))

        def bwd(s, a, dy):
            dx, dgamma, dbeta = s.ops.batchnorm_backward(dy, s.cache)
            return {"x": dx, "gamma": dgamma, "beta": dbeta}

        def ref(a, dy):
            y, (dx, dgamma, dbeta), _ = loops.batchnorm_loops(a["x"], a["gamma"], a["beta"], dy)
            return y, {"x": dx, "gamma": dgamma, "beta": dbeta}

        for impl, ops in (("plain", plain), ("fast", fast)):
            run = _Stateful(fwd, bwd)
            run.ops = ops
            name = f"batchnorm-{impl}-{'x'.join(map(str, shape))}"
            cases.append(Case(name, make, run.forward, run.backward, ref))
    return cases


def _dropout_cases() -> list[Case]:
    """A fixed mask: the Generator is re-seeded on every call."""
    cases = []
    for shape, rate in (((4, 9), 0.25), ((2, 3, 3, 2), 0.5), ((3, 5), 0.0)):

        def make(rng, shape=shape):
            return {"x": rng.standard_normal(shape)}

        def fwd(s, a, train, rate=rate):
            return plain.dropout_forward(a["x"], rate, np.random.default_rng(7))

        def ref(a, dy, rate=rate):
            _, mask = plain.dropout_forward(a["x"], rate, np.random.default_rng(7))
            assert set(np.unique(mask)) <= {0.0, 1 / (1 - rate)}
            y, dx = loops.dropout_loops(a["x"], mask, dy)
            return y, {"x": dx}

        run = _Stateful(fwd, lambda s, a, dy: {"x": plain.dropout_backward(dy, s.cache)})
        name = f"dropout-plain-{'x'.join(map(str, shape))}-r{rate}"
        cases.append(Case(name, make, run.forward, run.backward, ref))
    return cases


# -- softmax cross-entropy ----------------------------------------------------------------------


def _loss_cases() -> list[Case]:
    cases = []
    labels = np.eye(10)[np.random.default_rng(99).integers(0, 10, 5)]  # one-hot rows
    for reduction in ("sum", "mean"):

        def make(rng):
            return {"x": rng.normal(scale=3.0, size=(5, 10))}

        def fwd(a, train, reduction=reduction):
            return np.array(plain.softmax_cross_entropy(a["x"], labels, reduction)[0])

        def bwd(a, dy, reduction=reduction):
            return {"x": plain.softmax_cross_entropy(a["x"], labels, reduction)[1] * dy}

        def ref(a, dy, reduction=reduction):
            loss, dz = loops.softmax_cross_entropy_loops(a["x"], labels, reduction)
            return np.array(loss), {"x": dz * dy}

        cases.append(Case(f"softmax_cross_entropy-plain-{reduction}", make, fwd, bwd, ref))
    return cases


CASES = [*_linear_cases(), *_activation_cases(), *_conv_cases(), *_pool_cases(),
         *_fused_cases(), *_avgpool_cases(), *_batchnorm_cases(), *_dropout_cases(),
         *_loss_cases()]  # fmt: skip


@pytest.fixture
def thread_count(request, monkeypatch):
    """Run the case with ``case.threads`` threads."""
    case = request.getfixturevalue("case")
    before = runtime.get_threads()
    if case.threads is not None:
        runtime.set_threads(case.threads)
    yield
    runtime.set_threads(before)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kernel_equals_loops_and_finite_differences(case: Case, thread_count: None) -> None:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))  # stable across runs
    arrays = case.make(rng)
    y = case.forward(arrays, True)
    assert y.dtype == np.float64
    dy = rng.standard_normal(y.shape)
    grads = case.backward(arrays, dy.copy())
    assert set(grads) == set(arrays)
    grads = {k: np.array(v) for k, v in grads.items()}  # own copies: buffers may be reused

    y_ref, grads_ref = case.loops(arrays, dy)
    assert y.shape == y_ref.shape
    assert gradcheck.max_relative_error(y, y_ref) < LOOPS_TOL
    for name, grad in grads.items():
        assert grad.shape == arrays[name].shape, name
        assert gradcheck.max_relative_error(grad, grads_ref[name]) < LOOPS_TOL, name

    def f() -> float:
        return float(np.sum(case.forward(arrays, False) * dy))

    for name, array in arrays.items():
        numeric = gradcheck.numerical_gradient(f, array)
        assert gradcheck.max_relative_error(grads[name], numeric) < FD_TOL, name
    # The kernels kept nothing from the evaluations that would change a second training pass.
    np.testing.assert_array_equal(case.forward(arrays, True), y)
    for name, grad in case.backward(arrays, dy.copy()).items():
        np.testing.assert_array_equal(grad, grads[name])


def test_every_implementation_is_covered() -> None:
    kinds = {tuple(c.name.split("-")[:2]) for c in CASES}
    assert kinds >= {
        ("linear", "plain"), ("relu", "plain"), ("sigmoid", "plain"),
        ("tanh", "plain"), ("conv2d", "plain"), ("conv2d", "fast"), ("maxpool2d", "plain"),
        ("maxpool2d", "fast"), ("convpool2x2", "fused"), ("softmax_cross_entropy", "plain"),
        ("avgpool2d", "plain"), ("batchnorm", "plain"), ("batchnorm", "fast"),
        ("dropout", "plain"),
    }  # fmt: skip
    assert {c.threads for c in CASES if c.threads} == {1, 2}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["plain", "fast", "fused", "fused-relu"])
def test_ties_go_to_the_first_maximum_in_row_major_order(impl, threads, monkeypatch) -> None:
    """Values from {1, 2, 3}: most 2x2 windows hold several equal maxima; the whole gradient
    goes to the first in row-major window order (the loops' rule), on every path. The fused
    path is checked through a 1x1 identity kernel, so its conv output is the input (positive:
    the ReLU passes it and its gradient unchanged)."""
    before = runtime.get_threads()
    runtime.set_threads(threads)
    try:
        rng = np.random.default_rng(5)
        x = rng.integers(1, 4, size=(4, 6, 8, 1)).astype(np.float64)
        dy = rng.standard_normal((4, 3, 4, 1))
        y_ref, dx_ref = loops.maxpool2d_loops(x, 2, 2, "same", dy)
        if impl in ("plain", "fast"):
            kernels = plain if impl == "plain" else fast
            y, cache = kernels.maxpool2d_forward(x, 2, 2, "same")
            dx = kernels.maxpool2d_backward(dy, cache)
        else:
            act = "relu" if impl == "fused-relu" else None
            ws, w, b = fast.Workspace(), np.ones((1, 1, 1, 1)), np.zeros(1)
            y, cache = fused.convpool2x2_forward(x, w, b, act, workspace=ws)
            dx, _, _ = fused.convpool2x2_backward(dy, cache, workspace=ws, dw=w.copy(),
                                                  db=b.copy())  # fmt: skip
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(dx, dx_ref)
        assert np.count_nonzero(dx) == np.count_nonzero(dy)  # one winner per window
    finally:
        runtime.set_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_evaluation_forward_equals_the_loops_and_the_training_forward(
    shape, threads, monkeypatch
) -> None:
    """train=False takes the pooling-window GEMM (``fused._evaluation_part``), not the
    training forward's im2col: the same values, to float64 rounding, on every path."""
    n, h, w, cin, cout, k, act = shape
    before = runtime.get_threads()
    runtime.set_threads(threads)
    try:
        rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
        x, wt = rng.standard_normal((n, h, w, cin)), rng.standard_normal((k, k, cin, cout))
        b = rng.standard_normal(cout)
        conv = loops.conv2d_forward_loops(x, wt, b)
        pre = getattr(loops, f"{act}_forward_loops")(conv) if act else conv
        expected, _ = loops.maxpool2d_loops(pre, 2, 2, "same", np.zeros((n, h // 2, w // 2, cout)))
        ws = fast.Workspace()
        trained, _ = fused.convpool2x2_forward(x, wt, b, act, workspace=ws, train=True)
        evaluated, _ = fused.convpool2x2_forward(x, wt, b, act, workspace=ws, train=False)
        assert gradcheck.max_relative_error(evaluated, expected) < LOOPS_TOL
        np.testing.assert_allclose(evaluated, trained, rtol=1e-13, atol=1e-13)
    finally:
        runtime.set_threads(before)


def test_fast_has_plains_interface() -> None:
    """One interface: every public function of ``plain`` exists in ``fast`` under the same
    name with the same parameters (a layer calls ``layer.ops.<name>(...)`` whichever module
    ``ops`` is); where fast has no faster version it is the plain function itself."""
    import inspect

    own = {"conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
           "batchnorm_forward", "batchnorm_backward"}  # fmt: skip
    for name, f in vars(plain).items():
        if name.startswith("_") or not inspect.isfunction(f) or f.__module__ != plain.__name__:
            continue
        g = getattr(fast, name, None)
        assert g is not None, f"fast has no {name}"
        if name in own:
            assert g is not f, name
            params = [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
            fast_params = [(p.name, p.kind, p.default)
                           for p in inspect.signature(g).parameters.values()]  # fmt: skip
            assert params == fast_params, name
        else:
            assert g is f, f"fast.{name} should be the plain function (no measured gain)"
    assert fast.ACTIVATIONS is plain.ACTIVATIONS
