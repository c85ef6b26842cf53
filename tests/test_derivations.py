"""docs/derivations.md, checked: every boxed formula, transcribed as written, against numnet.

Each ``*_loops`` function below is a direct transcription of one equation of the doc: explicit
Python loops over the indices named there, scalar arithmetic, float64, no matrix products and no
numnet code. The tests compare them with numnet's fast layers (relative error < 1e-10). For the
convolution, the two "is itself a correlation" statements are evaluated separately through one
plain ``correlate_valid`` helper. The last group of tests parses the doc's code links and checks
that each cited file, function and line range still exists and still shows the quoted code.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest

from numnet.core import layers, losses, models

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivations.md"
TOL = 1e-10

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (shapes must agree exactly)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = max(np.abs(want).max(), 1e-300)
    return float(np.abs(got - want).max() / scale)


def one_hot_rows(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    y = np.zeros((n, c))
    y[np.arange(n), rng.integers(0, c, size=n)] = 1.0
    return y


# ---------------------------------------------------------------------------------------------
# §1 softmax + cross-entropy
# ---------------------------------------------------------------------------------------------


def softmax_ce_loops(z: np.ndarray, y: np.ndarray, reduction: str) -> tuple[float, np.ndarray]:
    """p_{n,c} = e^{z_{n,c}} / sum_c' e^{z_{n,c'}};  L_sum = -sum_{n,c} y log p;  dL/dz = p - y
    (both divided by N for the mean)."""
    n_rows, n_cls = z.shape
    p = np.zeros((n_rows, n_cls))
    for n in range(n_rows):
        total = 0.0
        for c in range(n_cls):
            total += math.exp(z[n, c])
        for c in range(n_cls):
            p[n, c] = math.exp(z[n, c]) / total
    loss = 0.0
    for n in range(n_rows):
        for c in range(n_cls):
            loss -= y[n, c] * math.log(p[n, c])
    dz = np.zeros_like(z)
    for n in range(n_rows):
        for k in range(n_cls):
            dz[n, k] = p[n, k] - y[n, k]
    if reduction == "mean":
        loss /= n_rows
        for n in range(n_rows):
            for k in range(n_cls):
                dz[n, k] /= n_rows
    return loss, dz


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_softmax_cross_entropy_gradient_is_p_minus_y(reduction: str) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(5, 10))
    y = one_hot_rows(rng, 5, 10)
    loss_doc, dz_doc = softmax_ce_loops(z, y, reduction)
    loss, dz = losses.softmax_cross_entropy(z, y, reduction=reduction)
    assert abs(loss - loss_doc) / abs(loss_doc) < TOL
    assert rel_err(dz, dz_doc) < TOL


def test_softmax_cross_entropy_derivation_step_matches_finite_differences() -> None:
    # The derivation's middle step, d log p_{n,c} / d z_{n,k} = [c = k] - p_{n,k}, checked on its
    # own (central differences on one row), so a wrong step cannot hide behind a right result.
    rng = np.random.default_rng(2)
    z = rng.normal(size=7)
    p = np.exp(z) / np.exp(z).sum()

    def log_p(row: np.ndarray, c: int) -> float:
        return math.log(math.exp(row[c]) / np.exp(row).sum())

    eps = 1e-6
    for c, k in itertools.product(range(7), repeat=2):
        zp, zm = z.copy(), z.copy()
        zp[k] += eps
        zm[k] -= eps
        numeric = (log_p(zp, c) - log_p(zm, c)) / (2 * eps)
        assert abs(numeric - ((c == k) - p[k])) < 1e-8


# ---------------------------------------------------------------------------------------------
# §2 linear layer and §3 model 1
# ---------------------------------------------------------------------------------------------


def linear_forward_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Y_{n,j} = b_j + sum_i X_{n,i} W_{i,j}."""
    n_rows, n_in = x.shape
    n_out = w.shape[1]
    y = np.zeros((n_rows, n_out))
    for n in range(n_rows):
        for j in range(n_out):
            acc = b[j]
            for i in range(n_in):
                acc += x[n, i] * w[i, j]
            y[n, j] = acc
    return y


def linear_backward_loops(
    x: np.ndarray, w: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dL/dW_{i,j} = sum_n X_{n,i} G_{n,j};  dL/db_j = sum_n G_{n,j};
    dL/dX_{n,i} = sum_j G_{n,j} W_{i,j}."""
    n_rows, n_in = x.shape
    n_out = w.shape[1]
    dw = np.zeros((n_in, n_out))
    for i in range(n_in):
        for j in range(n_out):
            for n in range(n_rows):
                dw[i, j] += x[n, i] * g[n, j]
    db = np.zeros(n_out)
    for j in range(n_out):
        for n in range(n_rows):
            db[j] += g[n, j]
    dx = np.zeros((n_rows, n_in))
    for n in range(n_rows):
        for i in range(n_in):
            for j in range(n_out):
                dx[n, i] += g[n, j] * w[i, j]
    return dx, dw, db


def test_linear_layer_gradients() -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(4, 7)), rng.normal(size=(7, 5)), rng.normal(size=5)
    g = rng.normal(size=(4, 5))
    layer = layers.Linear(7, 5, dtype="float64")
    layer.weight.value[...] = w
    layer.bias.value[...] = b
    assert rel_err(layer.forward(x), linear_forward_loops(x, w, b)) < TOL
    dx = layer.backward(g)
    dx_doc, dw_doc, db_doc = linear_backward_loops(x, w, g)
    assert rel_err(dx, dx_doc) < TOL
    assert rel_err(layer.weight.grad, dw_doc) < TOL
    assert rel_err(layer.bias.grad, db_doc) < TOL


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_model1_gradients(reduction: str) -> None:
    """§3: dL/dW = x^T (p - y), dL/db = sum_n (p - y), dL/dx = (p - y) W^T (over N for mean)."""
    rng = np.random.default_rng(4)
    model = models.build("model1", seed=5, dtype="float64")
    fc = dict(model.named_parameters())
    w, b = fc["fc1.weight"].value.copy(), rng.normal(scale=0.1, size=10)
    fc["fc1.bias"].value[...] = b  # non-zero bias, so the formula's b is exercised
    x = rng.uniform(size=(3, 784))
    y = one_hot_rows(rng, 3, 10)

    # The doc's formulas, as written.
    z = linear_forward_loops(x, w, b)
    _, p_minus_y = softmax_ce_loops(z, y, "sum")  # p - y
    scale = 1.0 / 3 if reduction == "mean" else 1.0
    dw_doc = np.zeros((784, 10))
    db_doc = np.zeros(10)
    dx_doc = np.zeros((3, 784))
    for i in range(784):
        for j in range(10):
            for n in range(3):
                dw_doc[i, j] += scale * x[n, i] * p_minus_y[n, j]
    for j in range(10):
        for n in range(3):
            db_doc[j] += scale * p_minus_y[n, j]
    for n in range(3):
        for i in range(784):
            for j in range(10):
                dx_doc[n, i] += scale * p_minus_y[n, j] * w[i, j]

    logits = model.forward(x)
    assert rel_err(logits, z) < TOL
    _, dlogits = losses.softmax_cross_entropy(logits, y, reduction=reduction)
    dx = model.backward(dlogits, input_grad=True)
    assert rel_err(fc["fc1.weight"].grad, dw_doc) < TOL
    assert rel_err(fc["fc1.bias"].grad, db_doc) < TOL
    assert rel_err(dx, dx_doc) < TOL


# ---------------------------------------------------------------------------------------------
# §4 ReLU
# ---------------------------------------------------------------------------------------------


def test_relu_gradient_gates_on_positive_inputs() -> None:
    """dL/dX_a = G_a [X_a > 0], with 0 at the kink X_a = 0."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 8))
    x[0, :3] = 0.0  # exact zeros: the doc says the gradient there is 0
    g = rng.normal(size=x.shape)
    dx_doc = np.zeros_like(x)
    for a in np.ndindex(x.shape):
        dx_doc[a] = g[a] * (1.0 if x[a] > 0 else 0.0)
    relu = layers.ReLU()
    relu.forward(x)
    dx = relu.backward(g)
    assert rel_err(dx, dx_doc) < TOL
    assert np.all(dx[0, :3] == 0)


# ---------------------------------------------------------------------------------------------
# §5 max-pooling
# ---------------------------------------------------------------------------------------------


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """(output size, padding before) as §5 states: P' = ceil(P / s),
    t = max((P' - 1) s + k - P, 0), p_t = floor(t / 2)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2


def maxpool_loops(
    x: np.ndarray, window: tuple[int, int], stride: tuple[int, int], g: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Y_{n,i,j,c} = max_{u,v} Xpad_{n, s_h i + u, s_w j + v, c} (first maximum in row-major
    window order wins ties), and dL/dX_{n,a,b,c} = sum_{i,j} G_{n,i,j,c}
    [a + p_t = s_h i + u* and b + p_l = s_w j + v*]."""
    n_img, p_rows, q_cols, n_ch = x.shape
    (kh, kw), (sh, sw) = window, stride
    p_out, p_t = same_padding(p_rows, kh, sh)
    q_out, p_l = same_padding(q_cols, kw, sw)

    def xpad(n: int, r: int, s: int, c: int) -> float:
        a, b = r - p_t, s - p_l
        return x[n, a, b, c] if 0 <= a < p_rows and 0 <= b < q_cols else -math.inf

    y = np.zeros((n_img, p_out, q_out, n_ch))
    winner = {}  # (n, i, j, c) -> (u*, v*)
    for n, i, j, c in np.ndindex(y.shape):
        best, best_uv = -math.inf, None
        for u in range(kh):  # row-major: u outer, v inner; strict ">" keeps the first maximum
            for v in range(kw):
                value = xpad(n, sh * i + u, sw * j + v, c)
                if best_uv is None or value > best:
                    best, best_uv = value, (u, v)
        y[n, i, j, c] = best
        winner[n, i, j, c] = best_uv
    if g is None:
        return y, None
    dx = np.zeros_like(x)
    for n, a, b, c in np.ndindex(x.shape):
        # The sum over all (i, j), skipping windows that cannot contain row a + p_t or column
        # b + p_l (their indicator is 0): s_h i <= a + p_t < s_h i + k_h, and alike for j.
        for i in range(max(0, -(-(a + p_t - kh + 1) // sh)), min(p_out, (a + p_t) // sh + 1)):
            for j in range(max(0, -(-(b + p_l - kw + 1) // sw)), min(q_out, (b + p_l) // sw + 1)):
                u_star, v_star = winner[n, i, j, c]
                if a + p_t == sh * i + u_star and b + p_l == sw * j + v_star:
                    dx[n, a, b, c] += g[n, i, j, c]
    return y, dx


POOL_CASES = [
    # (input shape, window, stride): which path of numnet each exercises
    ((2, 4, 6, 3), (2, 2), (2, 2)),  # fast 2x2/2 path, no padding
    ((2, 5, 7, 3), (2, 2), (2, 2)),  # general path: odd sizes, -inf row/column at the end
    ((2, 5, 6, 2), (3, 3), (2, 2)),  # overlapping windows: an input may win two windows
    ((1, 5, 6, 2), (3, 2), (1, 1)),  # stride 1, non-square window, padding on both sides
]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize(("shape", "window", "stride"), POOL_CASES)
def test_maxpool_routes_gradient_to_first_argmax(
    shape: tuple[int, ...], window: tuple[int, int], stride: tuple[int, int], ties: bool
) -> None:
    rng = np.random.default_rng(7)
    # With ties, values from {0, 1, 2}: most windows hold several equal maxima.
    x = rng.integers(0, 3, size=shape).astype(np.float64) if ties else rng.normal(size=shape)
    pool = layers.MaxPool2D(window, stride, padding="same")
    y = pool.forward(x)
    g = rng.normal(size=y.shape)
    y_doc, dx_doc = maxpool_loops(x, window, stride, g)
    assert rel_err(y, y_doc) < TOL
    dx = pool.backward(g)
    assert rel_err(dx, dx_doc) < TOL
    # Routing: the gradient's total is conserved, and with ties still only one input per
    # window receives it (non-overlapping windows: at most one non-zero per window).
    assert abs(dx.sum() - g.sum()) < 1e-12 * max(1.0, np.abs(g).sum())
    if window == stride and not ties:
        assert np.count_nonzero(dx) == g.size


# ---------------------------------------------------------------------------------------------
# §6 convolution, stride 1, SAME
# ---------------------------------------------------------------------------------------------


def conv_padding(kh: int, kw: int) -> tuple[int, int]:
    """p_t = floor((k_h - 1) / 2), p_l = floor((k_w - 1) / 2) (§6.1)."""
    return (kh - 1) // 2, (kw - 1) // 2


def pad_input_loops(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Xpad_{n,r,s,d} = X_{n, r - p_t, s - p_l, d}, 0 outside; (P + k_h - 1) x (Q + k_w - 1)."""
    n_img, p_rows, q_cols, depth = x.shape
    p_t, p_l = conv_padding(kh, kw)
    xpad = np.zeros((n_img, p_rows + kh - 1, q_cols + kw - 1, depth))
    for n, r, s, d in np.ndindex(xpad.shape):
        a, b = r - p_t, s - p_l
        if 0 <= a < p_rows and 0 <= b < q_cols:
            xpad[n, r, s, d] = x[n, a, b, d]
    return xpad


def conv_forward_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Y_{n,i,j,k} = b_k + sum_{u,v,d} Xpad_{n, i+u, j+v, d} W_{u,v,d,k}."""
    n_img, p_rows, q_cols, depth = x.shape
    kh, kw, _, n_filters = w.shape
    xpad = pad_input_loops(x, kh, kw)
    y = np.zeros((n_img, p_rows, q_cols, n_filters))
    for n, i, j, k in np.ndindex(y.shape):
        acc = b[k]
        for u, v, d in itertools.product(range(kh), range(kw), range(depth)):
            acc += xpad[n, i + u, j + v, d] * w[u, v, d, k]
        y[n, i, j, k] = acc
    return y


def conv_bias_grad_loops(g: np.ndarray) -> np.ndarray:
    """dL/db_k = sum_{n,i,j} G_{n,i,j,k} (§6.2)."""
    db = np.zeros(g.shape[3])
    for n, i, j, k in np.ndindex(g.shape):
        db[k] += g[n, i, j, k]
    return db


def conv_weight_grad_loops(x: np.ndarray, g: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """dL/dW_{u,v,d,k} = sum_{n,i,j} Xpad_{n, i+u, j+v, d} G_{n,i,j,k} (§6.3, boxed)."""
    n_img, p_rows, q_cols, depth = x.shape
    n_filters = g.shape[3]
    xpad = pad_input_loops(x, kh, kw)
    dw = np.zeros((kh, kw, depth, n_filters))
    for u, v, d, k in np.ndindex(dw.shape):
        for n, i, j in itertools.product(range(n_img), range(p_rows), range(q_cols)):
            dw[u, v, d, k] += xpad[n, i + u, j + v, d] * g[n, i, j, k]
    return dw


def conv_input_grad_loops(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """dL/dX_{n,a,c,d} = sum_{u,v,k} G_{n, a+p_t-u, c+p_l-v, k} W_{u,v,d,k},
    G = 0 outside 0 <= i < P, 0 <= j < Q (§6.4, first boxed formula)."""
    n_img, p_rows, q_cols, n_filters = g.shape
    kh, kw, depth, _ = w.shape
    p_t, p_l = conv_padding(kh, kw)
    dx = np.zeros((n_img, p_rows, q_cols, depth))
    for n, a, c, d in np.ndindex(dx.shape):
        for u, v, k in itertools.product(range(kh), range(kw), range(n_filters)):
            i, j = a + p_t - u, c + p_l - v
            if 0 <= i < p_rows and 0 <= j < q_cols:
                dx[n, a, c, d] += g[n, i, j, k] * w[u, v, d, k]
    return dx


def correlate_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Multi-channel correlation, every position where the kernel fits:
    out_{n,r,s,o} = sum_{u,v,c} image_{n, r+u, s+v, c} kernel_{u,v,c,o}."""
    n_img, rows, cols, n_in = image.shape
    kh, kw, _, n_out = kernel.shape
    out = np.zeros((n_img, rows - kh + 1, cols - kw + 1, n_out))
    for n, r, s, o in np.ndindex(out.shape):
        for u, v, c in itertools.product(range(kh), range(kw), range(n_in)):
            out[n, r, s, o] += image[n, r + u, s + v, c] * kernel[u, v, c, o]
    return out


def conv_input_grad_by_flipped_full_correlation(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """§6.4, second boxed formula: dL/dX = F cropped at (p_t, p_l), F = full correlation of G
    with What_{u,v,k,d} = W_{k_h-1-u, k_w-1-v, d, k}."""
    n_img, p_rows, q_cols, n_filters = g.shape
    kh, kw, depth, _ = w.shape
    p_t, p_l = conv_padding(kh, kw)
    w_hat = np.zeros((kh, kw, n_filters, depth))
    for u, v, k, d in np.ndindex(w_hat.shape):
        w_hat[u, v, k, d] = w[kh - 1 - u, kw - 1 - v, d, k]
    g_hat = np.zeros((n_img, p_rows + 2 * (kh - 1), q_cols + 2 * (kw - 1), n_filters))
    for n, r, s, k in np.ndindex(g_hat.shape):
        i, j = r - kh + 1, s - kw + 1
        if 0 <= i < p_rows and 0 <= j < q_cols:
            g_hat[n, r, s, k] = g[n, i, j, k]
    full = correlate_valid(g_hat, w_hat)  # "valid" over the padded G = full correlation
    assert full.shape == (n_img, p_rows + kh - 1, q_cols + kw - 1, depth)
    return full[:, p_t : p_t + p_rows, p_l : p_l + q_cols, :]


def conv_weight_grad_by_correlation(x: np.ndarray, g: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """§6.3 read as a correlation: slide G over the padded input, the batch axis playing the
    role of the channel that is summed over."""
    xpad = pad_input_loops(x, kh, kw)
    image = xpad.transpose(3, 1, 2, 0)  # (D, P+kh-1, Q+kw-1, N): "batch" d, channels n
    kernel = g.transpose(1, 2, 0, 3)  # (P, Q, N, K)
    out = correlate_valid(image, kernel)  # (D, kh, kw, K)
    return out.transpose(1, 2, 0, 3)


@pytest.fixture(params=[(3, 3), (2, 3)], ids=["3x3", "2x3"])
def conv_case(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    """N = 2 images of 5 x 6 pixels, D = 3 channels, K = 4 filters, float64."""
    kh, kw = request.param
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 5, 6, 3))
    w = rng.normal(size=(kh, kw, 3, 4))
    b = rng.normal(size=4)
    g = rng.normal(size=(2, 5, 6, 4))
    conv = layers.Conv2D(3, 4, (kh, kw), stride=1, padding="same", dtype="float64")
    conv.weight.value[...] = w
    conv.bias.value[...] = b
    y = conv.forward(x)
    dx = conv.backward(g)
    return {
        "x": x,
        "w": w,
        "b": b,
        "g": g,
        "y": y,
        "dx": dx,
        "dw": conv.weight.grad.copy(),
        "db": conv.bias.grad.copy(),
    }


def test_conv_forward_is_the_doc_correlation(conv_case: dict[str, np.ndarray]) -> None:
    c = conv_case
    assert rel_err(c["y"], conv_forward_loops(c["x"], c["w"], c["b"])) < TOL


def test_conv_bias_gradient(conv_case: dict[str, np.ndarray]) -> None:
    assert rel_err(conv_case["db"], conv_bias_grad_loops(conv_case["g"])) < TOL


def test_conv_weight_gradient_index_formula(conv_case: dict[str, np.ndarray]) -> None:
    c = conv_case
    kh, kw = c["w"].shape[:2]
    assert rel_err(c["dw"], conv_weight_grad_loops(c["x"], c["g"], kh, kw)) < TOL


def test_conv_weight_gradient_is_correlation_of_padded_input_with_g(
    conv_case: dict[str, np.ndarray],
) -> None:
    c = conv_case
    kh, kw = c["w"].shape[:2]
    assert rel_err(c["dw"], conv_weight_grad_by_correlation(c["x"], c["g"], kh, kw)) < TOL


def test_conv_input_gradient_index_formula(conv_case: dict[str, np.ndarray]) -> None:
    assert rel_err(conv_case["dx"], conv_input_grad_loops(conv_case["g"], conv_case["w"])) < TOL


def test_conv_input_gradient_is_full_correlation_with_flipped_kernel(
    conv_case: dict[str, np.ndarray],
) -> None:
    c = conv_case
    assert rel_err(c["dx"], conv_input_grad_by_flipped_full_correlation(c["g"], c["w"])) < TOL


def test_conv_input_gradient_needs_the_flip() -> None:
    # The transcriptions can tell a flipped from an unflipped kernel (so the tests above would
    # catch a doc or code that forgot the flip): without the flip the answer is different.
    rng = np.random.default_rng(9)
    g, w = rng.normal(size=(1, 4, 4, 2)), rng.normal(size=(3, 3, 2, 2))
    right = conv_input_grad_by_flipped_full_correlation(g, w)
    unflipped = conv_input_grad_by_flipped_full_correlation(g, w[::-1, ::-1])
    assert rel_err(unflipped, right) > 1e-2


# ---------------------------------------------------------------------------------------------
# §7 the whole chain: model 4 from the doc's formulas alone
# ---------------------------------------------------------------------------------------------


def relu_loops(x: np.ndarray) -> np.ndarray:
    y = np.zeros_like(x)
    for a in np.ndindex(x.shape):
        y[a] = x[a] if x[a] > 0 else 0.0
    return y


def relu_backward_loops(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    dx = np.zeros_like(x)
    for a in np.ndindex(x.shape):
        dx[a] = g[a] * (1.0 if x[a] > 0 else 0.0)
    return dx


def test_model4_gradients_are_the_chained_formulas() -> None:
    """§7: model 4's backward pass (numnet's fast, fused code) equals §1 -> §2 -> §4 -> §2 ->
    flatten -> §5 -> §6 -> §5 -> §6 evaluated with the loop transcriptions above."""
    rng = np.random.default_rng(10)
    model = models.build("model4", seed=11, dtype="float64")
    params = {name: p.value.copy() for name, p in model.named_parameters()}
    for name in params:  # non-zero biases, so that every bias term of the formulas is exercised
        if name.endswith(".bias"):
            params[name] = rng.normal(scale=0.1, size=params[name].shape)
            dict(model.named_parameters())[name].value[...] = params[name]
    x = rng.uniform(size=(1, 784))
    y = one_hot_rows(rng, 1, 10)

    # Forward, layer by layer, as the doc defines each layer.
    a0 = x.reshape(1, 28, 28, 1)
    c1 = conv_forward_loops(a0, params["conv1.weight"], params["conv1.bias"])
    p1, _ = maxpool_loops(c1, (2, 2), (2, 2))
    c2 = conv_forward_loops(p1, params["conv2.weight"], params["conv2.bias"])
    p2, _ = maxpool_loops(c2, (2, 2), (2, 2))
    flat = p2.reshape(1, 7 * 7 * 8)  # (h, w, c) order
    h1 = linear_forward_loops(flat, params["fc1.weight"], params["fc1.bias"])
    r1 = relu_loops(h1)
    z = linear_forward_loops(r1, params["fc2.weight"], params["fc2.bias"])

    # Backward: each layer's boxed formulas, fed the gradient of the layer after it.
    _, dz = softmax_ce_loops(z, y, "sum")
    dr1, dw_fc2, db_fc2 = linear_backward_loops(r1, params["fc2.weight"], dz)
    dh1 = relu_backward_loops(h1, dr1)
    dflat, dw_fc1, db_fc1 = linear_backward_loops(flat, params["fc1.weight"], dh1)
    _, dc2 = maxpool_loops(c2, (2, 2), (2, 2), dflat.reshape(p2.shape))
    dw_conv2 = conv_weight_grad_loops(p1, dc2, 3, 3)
    db_conv2 = conv_bias_grad_loops(dc2)
    dp1 = conv_input_grad_loops(dc2, params["conv2.weight"])
    _, dc1 = maxpool_loops(c1, (2, 2), (2, 2), dp1)
    dw_conv1 = conv_weight_grad_loops(a0, dc1, 3, 3)
    db_conv1 = conv_bias_grad_loops(dc1)
    expected = {
        "conv1.weight": dw_conv1, "conv1.bias": db_conv1,
        "conv2.weight": dw_conv2, "conv2.bias": db_conv2,
        "fc1.weight": dw_fc1, "fc1.bias": db_fc1,
        "fc2.weight": dw_fc2, "fc2.bias": db_fc2,
    }  # fmt: skip

    logits = model.forward(x)
    assert rel_err(logits, z) < TOL
    _, dlogits = losses.softmax_cross_entropy(logits, y, reduction="sum")
    model.backward(dlogits)
    for name, p in model.named_parameters():
        assert rel_err(p.grad, expected[name]) < TOL, name


# ---------------------------------------------------------------------------------------------
# The doc itself: code links, anchors, math delimiters
# ---------------------------------------------------------------------------------------------

# [`Qual.name` (optional label)](../src/numnet/file.py#L10-L12): `quoted code`
# The quoted code must appear on the first cited line; the range is measured from there. When
# the code moves, `python tests/test_derivations.py --fix` re-anchors every link on its quote.
CODE_LINK = re.compile(
    r"\[`(?P<qualname>[A-Za-z_][\w.]*)`(?P<label>[^\]]*)\]"
    r"\((?P<path>[^)#\s]+\.py)#L(?P<start>\d+)(?:-L(?P<end>\d+))?\)"
    r"(?::\s+`(?P<code>[^`]+)`)?"
)
ANY_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")

# Every backward pass the doc derives must be tied to its code.
REQUIRED_CITATIONS = {
    "losses.softmax_cross_entropy",
    "layers.Linear.backward",
    "layers.ReLU.backward_from_output",
    "layers.MaxPool2D._backward_2x2",
    "layers.MaxPool2D._backward_general",
    "layers.Conv2D.backward",
    "layers.Conv2D._input_grad_stride1",
    "layers.ConvPool2x2._backward_part",
    "models.Sequential.backward",
}


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def squash(text: str) -> str:
    return " ".join(text.split())


def code_links() -> list[re.Match[str]]:
    return list(CODE_LINK.finditer(doc_text()))


def cited_function(link: re.Match[str]) -> tuple[list[str], int]:
    """Source lines and first line number of the function a link names (asserting it exists)."""
    target = (DOC.parent / link["path"]).resolve()
    assert target.is_file(), f"{link['path']}: no such file"
    rel = target.relative_to(ROOT / "src")
    obj = importlib.import_module(".".join(rel.with_suffix("").parts))
    for part in link["qualname"].split("."):
        assert hasattr(obj, part), f"{link['path']}: no {link['qualname']!r}"
        obj = getattr(obj, part)
    return inspect.getsourcelines(obj)


def test_doc_cites_every_backward_pass() -> None:
    cited = {f"{Path(m['path']).stem}.{m['qualname']}" for m in code_links()}
    assert REQUIRED_CITATIONS <= cited, f"not cited: {sorted(REQUIRED_CITATIONS - cited)}"


@pytest.mark.parametrize("link", code_links(), ids=lambda m: f"{m['qualname']}#L{m['start']}")
def test_doc_code_link_points_inside_the_named_function(link: re.Match[str]) -> None:
    source, first = cited_function(link)
    last = first + len(source) - 1
    start = int(link["start"])
    end = int(link["end"] or start)
    fix = "run `python tests/test_derivations.py --fix` and review the diff"
    assert first <= start <= end <= last, (
        f"{link['qualname']} now spans lines {first}-{last} of {link['path']}, "
        f"the doc cites L{start}-L{end}: {fix}"
    )
    # Line numbers repeated in the link's label must agree with the anchor.
    label_numbers = [int(v) for v in re.findall(r"L(\d+)", link["label"])]
    assert label_numbers in ([], [start], [start, end]), (
        f"label {link['label']!r} disagrees with #L{start}-L{end}"
    )
    assert link["code"], f"{link['qualname']} L{start}: quote the cited code after the link"
    assert squash(link["code"]) in squash(source[start - first]), (
        f"{link['qualname']} line {start} no longer contains `{link['code']}`: {fix}"
    )


def fix_code_links() -> int:
    """Re-anchor each code link on the first line of its function that holds its quoted code,
    keeping the cited range's length. Returns the number of links that could not be placed."""
    text, failures = doc_text(), 0

    def replace(link: re.Match[str]) -> str:
        nonlocal failures
        source, first = cited_function(link)
        lines = [k for k, line in enumerate(source) if squash(link["code"] or "\0") in squash(line)]
        if not lines:
            failures += 1
            print(f"cannot place {link['qualname']}: `{link['code']}` not found; edit by hand")
            return link[0]
        old_start = int(link["start"])
        span = int(link["end"] or old_start) - old_start
        start = first + lines[0]
        end = min(start + span, first + len(source) - 1)
        anchor = f"#L{start}" if end == start else f"#L{start}-L{end}"
        label = re.sub(r"L\d+(-L\d+)?", anchor[1:], link["label"])
        old = link[0]
        new = old.replace(link["label"] + "](", label + "](", 1)
        new = re.sub(r"#L\d+(-L\d+)?\)", anchor + ")", new, count=1)
        if new != old:
            print(f"{link['qualname']}: L{old_start}.. -> {anchor[1:]}")
        return new

    DOC.write_text(CODE_LINK.sub(replace, text), encoding="utf-8")
    return failures


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_doc_relative_links_and_anchors_resolve() -> None:
    text = doc_text()
    anchors = {
        github_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.MULTILINE)
    }
    for m in ANY_LINK.finditer(text):
        target = m["target"]
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, f"no heading for anchor {target}"
            continue
        path = (DOC.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"link to missing file {target}"


def test_doc_math_delimiters_and_braces_balance() -> None:
    # A lone "$" or an unbalanced brace makes GitHub render raw TeX for the rest of a paragraph.
    text = re.sub(r"`[^`\n]*`", "", doc_text())  # inline code is not math
    blocks = text.split("$$")
    assert len(blocks) % 2 == 1, "odd number of $$ delimiters"
    pieces = list(blocks[1::2])
    for prose in blocks[0::2]:
        for paragraph in prose.split("\n\n"):
            spans = paragraph.split("$")
            assert len(spans) % 2 == 1, f"unbalanced $ in: {paragraph[:80]!r}"
            pieces += spans[1::2]
    for math_text in pieces:
        depth = 0
        for ch in re.sub(r"\\[{}]", "", math_text):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0, f"unbalanced braces in ${math_text}$"
        assert depth == 0, f"unbalanced braces in ${math_text}$"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--fix"]:
        sys.exit("usage: python tests/test_derivations.py --fix  (re-anchor docs/derivations.md)")
    sys.exit(1 if fix_code_links() else 0)
