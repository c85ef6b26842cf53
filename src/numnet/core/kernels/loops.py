"""Loop references: the formulas of ``docs/derivations.md`` transcribed index for index.

Each ``*_loops`` function is explicit Python loops over the indices named in the doc, scalar
arithmetic, float64 NumPy arrays only as storage -- no matrix products, no broadcasting tricks
and no other numnet code, so that it cannot share a mistake with the kernels it checks. They
are slow: use them on small arrays (the tests do). The ``*_reference`` functions below them are
the same maths vectorised over the batch and channels (a loop over output positions), fast
enough for model-sized feature maps.

Layouts as everywhere in numnet: NHWC images, HWIO kernels, (in, out) linear weights. Padding
as TensorFlow's: SAME adds ``t = max((P' - 1) s + k - P, 0)`` rows, ``floor(t / 2)`` before.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

# ---------------------------------------------------------------------------------------------
# softmax cross-entropy, linear layer, activations
# ---------------------------------------------------------------------------------------------


def softmax_cross_entropy_loops(
    z: np.ndarray, y: np.ndarray, reduction: str = "sum"
) -> tuple[float, np.ndarray]:
    """p_{n,c} = e^{z_{n,c}} / sum_c' e^{z_{n,c'}};  L_sum = -sum_{n,c} y log p;  dL/dz = p - y
    (both divided by N for the mean). z, y: ``(N, C)``, y one-hot rows."""
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
    dz = np.zeros_like(z, dtype=np.float64)
    for n in range(n_rows):
        for k in range(n_cls):
            dz[n, k] = p[n, k] - y[n, k]
    if reduction == "mean":
        loss /= n_rows
        for n in range(n_rows):
            for k in range(n_cls):
                dz[n, k] /= n_rows
    return loss, dz


def linear_forward_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Y_{n,j} = b_j + sum_i X_{n,i} W_{i,j}. x ``(N, in)``, w ``(in, out)``, b ``(out,)``."""
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
    """``(dx, dw, db)``: dL/dX_{n,i} = sum_j G_{n,j} W_{i,j};  dL/dW_{i,j} = sum_n X_{n,i} G_{n,j};
    dL/db_j = sum_n G_{n,j}."""
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


def _elementwise(x: np.ndarray, f) -> np.ndarray:
    out = np.zeros(x.shape)
    for a in np.ndindex(x.shape):
        out[a] = f(a)
    return out


def relu_forward_loops(x: np.ndarray) -> np.ndarray:
    """Y_a = max(X_a, 0)."""
    return _elementwise(x, lambda a: x[a] if x[a] > 0 else 0.0)


def relu_backward_loops(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dX_a = G_a [X_a > 0] (0 at the kink X_a = 0)."""
    return _elementwise(x, lambda a: g[a] * (1.0 if x[a] > 0 else 0.0))


def sigmoid_forward_loops(x: np.ndarray) -> np.ndarray:
    """Y_a = 1 / (1 + e^{-X_a})."""
    return _elementwise(x, lambda a: 1.0 / (1.0 + math.exp(-x[a])))


def sigmoid_backward_loops(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dX_a = G_a Y_a (1 - Y_a)."""
    y = sigmoid_forward_loops(x)
    return _elementwise(x, lambda a: g[a] * y[a] * (1.0 - y[a]))


def tanh_forward_loops(x: np.ndarray) -> np.ndarray:
    """Y_a = tanh X_a."""
    return _elementwise(x, lambda a: math.tanh(x[a]))


def tanh_backward_loops(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dX_a = G_a (1 - Y_a^2)."""
    return _elementwise(x, lambda a: g[a] * (1.0 - math.tanh(x[a]) ** 2))


# ---------------------------------------------------------------------------------------------
# windows: max-pooling and convolution
# ---------------------------------------------------------------------------------------------


def window_geometry(size: int, window: int, stride: int, padding: str) -> tuple[int, int]:
    """(output size P', padding before p_t), as §5 states: SAME: P' = ceil(P / s),
    t = max((P' - 1) s + k - P, 0), p_t = floor(t / 2); VALID: P' = floor((P - k) / s) + 1, 0."""
    if padding == "valid":
        return (size - window) // stride + 1, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _geometry(
    p_rows: int, q_cols: int, kh: int, kw: int, stride: int | tuple[int, int], padding: str
) -> tuple[int, int, int, int, int, int]:
    """(s_h, s_w, P', p_t, Q', p_l) of a k_h x k_w window sliding over a P x Q image."""
    sh, sw = _pair(stride)
    p_out, p_t = window_geometry(p_rows, kh, sh, padding)
    q_out, p_l = window_geometry(q_cols, kw, sw, padding)
    return sh, sw, p_out, p_t, q_out, p_l


def maxpool2d_loops(
    x: np.ndarray,
    window: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: str = "same",
    g: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Y_{n,i,j,c} = max_{u,v} Xpad_{n, s_h i + u, s_w j + v, c} (first maximum in row-major
    window order wins ties; padding is -inf), and with ``g`` = G also
    dL/dX_{n,a,b,c} = sum_{i,j} G_{n,i,j,c} [a + p_t = s_h i + u* and b + p_l = s_w j + v*]."""
    n_img, p_rows, q_cols, n_ch = x.shape
    kh, kw = _pair(window)
    sh, sw, p_out, p_t, q_out, p_l = _geometry(p_rows, q_cols, kh, kw, stride or (kh, kw), padding)

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
    dx = np.zeros(x.shape)
    for n, a, b, c in np.ndindex(x.shape):
        # The sum over all (i, j), skipping windows that cannot contain row a + p_t or column
        # b + p_l (their indicator is 0): s_h i <= a + p_t < s_h i + k_h, and alike for j.
        for i in range(max(0, -(-(a + p_t - kh + 1) // sh)), min(p_out, (a + p_t) // sh + 1)):
            for j in range(max(0, -(-(b + p_l - kw + 1) // sw)), min(q_out, (b + p_l) // sw + 1)):
                u_star, v_star = winner[n, i, j, c]
                if a + p_t == sh * i + u_star and b + p_l == sw * j + v_star:
                    dx[n, a, b, c] += g[n, i, j, c]
    return y, dx


def conv2d_forward_loops(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: str = "same",
) -> np.ndarray:
    """Y_{n,i,j,k} = b_k + sum_{u,v,d} Xpad_{n, s_h i + u, s_w j + v, d} W_{u,v,d,k}, with
    Xpad_{n,r,s,d} = X_{n, r - p_t, s - p_l, d} and 0 outside X."""
    n_img, p_rows, q_cols, depth = x.shape
    kh, kw, _, n_filters = w.shape
    sh, sw, p_out, p_t, q_out, p_l = _geometry(p_rows, q_cols, kh, kw, stride, padding)
    y = np.zeros((n_img, p_out, q_out, n_filters))
    for n, i, j, k in np.ndindex(y.shape):
        acc = b[k]
        for u, v, d in itertools.product(range(kh), range(kw), range(depth)):
            a, c = sh * i + u - p_t, sw * j + v - p_l
            if 0 <= a < p_rows and 0 <= c < q_cols:
                acc += x[n, a, c, d] * w[u, v, d, k]
        y[n, i, j, k] = acc
    return y


def conv2d_bias_grad_loops(g: np.ndarray) -> np.ndarray:
    """dL/db_k = sum_{n,i,j} G_{n,i,j,k} (§6.2)."""
    db = np.zeros(g.shape[3])
    for n, i, j, k in np.ndindex(g.shape):
        db[k] += g[n, i, j, k]
    return db


def conv2d_weight_grad_loops(
    x: np.ndarray,
    g: np.ndarray,
    kh: int,
    kw: int,
    stride: int | tuple[int, int] = 1,
    padding: str = "same",
) -> np.ndarray:
    """dL/dW_{u,v,d,k} = sum_{n,i,j} Xpad_{n, s_h i + u, s_w j + v, d} G_{n,i,j,k} (§6.3)."""
    n_img, p_rows, q_cols, depth = x.shape
    _, p_out, q_out, n_filters = g.shape
    sh, sw, _, p_t, _, p_l = _geometry(p_rows, q_cols, kh, kw, stride, padding)
    dw = np.zeros((kh, kw, depth, n_filters))
    for u, v, d, k in np.ndindex(dw.shape):
        for n, i, j in itertools.product(range(n_img), range(p_out), range(q_out)):
            a, c = sh * i + u - p_t, sw * j + v - p_l
            if 0 <= a < p_rows and 0 <= c < q_cols:
                dw[u, v, d, k] += x[n, a, c, d] * g[n, i, j, k]
    return dw


def conv2d_input_grad_loops(
    g: np.ndarray,
    w: np.ndarray,
    input_hw: tuple[int, int] | None = None,
    stride: int | tuple[int, int] = 1,
    padding: str = "same",
) -> np.ndarray:
    """dL/dX_{n,a,c,d} = sum_{u,v,k} G_{n,i,j,k} W_{u,v,d,k} over the output positions with
    s_h i + u = a + p_t and s_w j + v = c + p_l -- for stride 1, i = a + p_t - u and
    j = c + p_l - v (§6.4, first boxed formula); G = 0 outside the output.
    input_hw: (P, Q) of the input (default: G's, right for stride 1 SAME)."""
    n_img, p_out, q_out, n_filters = g.shape
    kh, kw, depth, _ = w.shape
    p_rows, q_cols = input_hw if input_hw is not None else (p_out, q_out)
    sh, sw, _, p_t, _, p_l = _geometry(p_rows, q_cols, kh, kw, stride, padding)
    dx = np.zeros((n_img, p_rows, q_cols, depth))
    for n, a, c, d in np.ndindex(dx.shape):
        for u, v, k in itertools.product(range(kh), range(kw), range(n_filters)):
            ti, tj = a + p_t - u, c + p_l - v  # = s_h i, s_w j
            if ti % sh or tj % sw:
                continue
            i, j = ti // sh, tj // sw
            if 0 <= i < p_out and 0 <= j < q_out:
                dx[n, a, c, d] += g[n, i, j, k] * w[u, v, d, k]
    return dx


# ---------------------------------------------------------------------------------------------
# §6.3 and §6.4 read as correlations (stride 1, SAME)
# ---------------------------------------------------------------------------------------------


def pad_input_loops(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Xpad_{n,r,s,d} = X_{n, r - p_t, s - p_l, d}, 0 outside; (P + k_h - 1) x (Q + k_w - 1),
    p_t = floor((k_h - 1) / 2), p_l = floor((k_w - 1) / 2) (§6.1)."""
    n_img, p_rows, q_cols, depth = x.shape
    p_t, p_l = (kh - 1) // 2, (kw - 1) // 2
    xpad = np.zeros((n_img, p_rows + kh - 1, q_cols + kw - 1, depth))
    for n, r, s, d in np.ndindex(xpad.shape):
        a, b = r - p_t, s - p_l
        if 0 <= a < p_rows and 0 <= b < q_cols:
            xpad[n, r, s, d] = x[n, a, b, d]
    return xpad


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


def conv2d_input_grad_by_flipped_full_correlation(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """§6.4, second boxed formula: dL/dX = F cropped at (p_t, p_l), F = full correlation of G
    with What_{u,v,k,d} = W_{k_h-1-u, k_w-1-v, d, k}."""
    n_img, p_rows, q_cols, n_filters = g.shape
    kh, kw, depth, _ = w.shape
    p_t, p_l = (kh - 1) // 2, (kw - 1) // 2
    w_hat = np.zeros((kh, kw, n_filters, depth))
    for u, v, k, d in np.ndindex(w_hat.shape):
        w_hat[u, v, k, d] = w[kh - 1 - u, kw - 1 - v, d, k]
    g_hat = np.zeros((n_img, p_rows + 2 * (kh - 1), q_cols + 2 * (kw - 1), n_filters))
    for n, r, s, k in np.ndindex(g_hat.shape):
        i, j = r - kh + 1, s - kw + 1
        if 0 <= i < p_rows and 0 <= j < q_cols:
            g_hat[n, r, s, k] = g[n, i, j, k]
    full = correlate_valid(g_hat, w_hat)  # "valid" over the padded G = full correlation
    return full[:, p_t : p_t + p_rows, p_l : p_l + q_cols, :]


def conv2d_weight_grad_by_correlation(x: np.ndarray, g: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """§6.3 read as a correlation: slide G over the padded input, the batch axis playing the
    role of the channel that is summed over."""
    xpad = pad_input_loops(x, kh, kw)
    image = xpad.transpose(3, 1, 2, 0)  # (D, P+kh-1, Q+kw-1, N): "batch" d, channels n
    kernel = g.transpose(1, 2, 0, 3)  # (P, Q, N, K)
    out = correlate_valid(image, kernel)  # (D, kh, kw, K)
    return out.transpose(1, 2, 0, 3)


# ---------------------------------------------------------------------------------------------
# Vectorised references: a loop over output positions, batch and channels at once
# ---------------------------------------------------------------------------------------------


def _padded(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: str,
            fill: float) -> tuple[np.ndarray, int, int, int, int]:  # fmt: skip
    """(xpad, Ho, Wo, top, left): x padded so that every window of every output fits."""
    n, h, w, c = x.shape
    ho, top = window_geometry(h, kernel[0], stride[0], padding)
    wo, left = window_geometry(w, kernel[1], stride[1], padding)
    rows = max((ho - 1) * stride[0] + kernel[0], h + top)
    cols = max((wo - 1) * stride[1] + kernel[1], w + left)
    xpad = np.full((n, rows, cols, c), fill, dtype=x.dtype)
    xpad[:, top : top + h, left : left + w, :] = x
    return xpad, ho, wo, top, left


def conv2d_reference(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int | tuple = 1,
    padding: str = "same",
) -> np.ndarray:  # fmt: skip
    """Convolution as a loop over output positions, one einsum each: x NHWC, weight HWIO,
    returns ``(N, Ho, Wo, c_out)``."""
    kh, kw, _, cout = weight.shape
    sh, sw = _pair(stride)
    xpad, ho, wo, _, _ = _padded(x, (kh, kw), (sh, sw), padding, 0.0)
    y = np.empty((x.shape[0], ho, wo, cout), dtype=np.result_type(x, weight))
    for r in range(ho):
        for s in range(wo):
            patch = xpad[:, r * sh : r * sh + kh, s * sw : s * sw + kw, :]
            y[:, r, s, :] = np.einsum("nijc,ijco->no", patch, weight) + bias
    return y


def conv2d_reference_backward(
    x: np.ndarray, weight: np.ndarray, dy: np.ndarray, stride: int | tuple = 1,
    padding: str = "same",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``(dx, dweight, dbias)`` of ``conv2d_reference`` by the chain rule, position by position."""
    kh, kw, _, _ = weight.shape
    sh, sw = _pair(stride)
    n, h, w, c = x.shape
    xpad, ho, wo, top, left = _padded(x, (kh, kw), (sh, sw), padding, 0.0)
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(weight)
    for r in range(ho):
        for s in range(wo):
            rows, cols = slice(r * sh, r * sh + kh), slice(s * sw, s * sw + kw)
            g = dy[:, r, s, :]  # (N, c_out)
            dw += np.einsum("nijc,no->ijco", xpad[:, rows, cols, :], g)
            dxpad[:, rows, cols, :] += np.einsum("ijco,no->nijc", weight, g)
    return dxpad[:, top : top + h, left : left + w, :], dw, dy.sum(axis=(0, 1, 2))


def maxpool2d_reference(
    x: np.ndarray, pool_size: int | tuple = 2, stride: int | tuple | None = None,
    padding: str = "valid",
) -> np.ndarray:  # fmt: skip
    """Max-pooling: loops over output positions and window elements. x ``(N, H, W, C)``."""
    return _maxpool_reference(x, None, pool_size, stride, padding)


def maxpool2d_reference_backward(
    x: np.ndarray, dy: np.ndarray, pool_size: int | tuple = 2, stride: int | tuple | None = None,
    padding: str = "valid",
) -> np.ndarray:  # fmt: skip
    """dL/dx of ``maxpool2d_reference``: each dy goes to its window's first maximum."""
    return _maxpool_reference(x, dy, pool_size, stride, padding)


def _maxpool_reference(x, dy, pool_size, stride, padding) -> np.ndarray:  # noqa: ANN001
    kernel = _pair(pool_size)
    step = _pair(stride) if stride is not None else kernel
    n, h, w, c = x.shape
    xpad, ho, wo, top, left = _padded(x, kernel, step, padding, -np.inf)
    y = np.full((n, ho, wo, c), -np.inf, dtype=x.dtype)
    where = np.zeros((n, ho, wo, c, 2), dtype=np.int64)  # (row, col) in xpad of the winner
    for r, s in itertools.product(range(ho), range(wo)):
        for i, j in itertools.product(range(kernel[0]), range(kernel[1])):  # row-major order
            v = xpad[:, r * step[0] + i, s * step[1] + j, :]
            better = v > y[:, r, s, :]  # strict ">": the first maximum stays
            y[:, r, s, :] = np.where(better, v, y[:, r, s, :])
            where[:, r, s, :, 0] = np.where(better, r * step[0] + i, where[:, r, s, :, 0])
            where[:, r, s, :, 1] = np.where(better, s * step[1] + j, where[:, r, s, :, 1])
    if dy is None:
        return y
    dxpad = np.zeros(xpad.shape, dtype=dy.dtype)
    for b, r, s, k in np.ndindex(dy.shape):
        dxpad[b, where[b, r, s, k, 0], where[b, r, s, k, 1], k] += dy[b, r, s, k]
    return dxpad[:, top : top + h, left : left + w, :]


# ---------------------------------------------------------------------------------------------
# average pooling, batch normalisation, dropout
# ---------------------------------------------------------------------------------------------


def avgpool2d_loops(
    x: np.ndarray,
    window: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: str = "valid",
    g: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Y_{n,i,j,c} = (1 / K_{i,j}) sum_{(u,v) inside} X_{n, s_h i + u - p_t, s_w j + v - p_l, c},
    K_{i,j} = the number of window elements inside the image (TF's SAME: padding not counted);
    with ``g`` = G also dL/dX_{n,a,b,c} = sum_{i,j} G_{n,i,j,c} / K_{i,j} [(a, b) in window
    (i, j)]."""
    n_img, p_rows, q_cols, n_ch = x.shape
    kh, kw = _pair(window)
    sh, sw, p_out, p_t, q_out, p_l = _geometry(p_rows, q_cols, kh, kw, stride or (kh, kw), padding)

    def inside(i: int, j: int) -> list[tuple[int, int]]:
        cells = [(sh * i + u - p_t, sw * j + v - p_l) for u in range(kh) for v in range(kw)]
        return [(a, b) for a, b in cells if 0 <= a < p_rows and 0 <= b < q_cols]

    y = np.zeros((n_img, p_out, q_out, n_ch))
    for n, i, j, c in np.ndindex(y.shape):
        cells = inside(i, j)
        total = 0.0
        for a, b in cells:
            total += x[n, a, b, c]
        y[n, i, j, c] = total / len(cells)
    if g is None:
        return y, None
    dx = np.zeros(x.shape)
    for n, i, j, c in np.ndindex(g.shape):
        cells = inside(i, j)
        for a, b in cells:
            dx[n, a, b, c] += g[n, i, j, c] / len(cells)
    return y, dx


def batchnorm_loops(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, g: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Training batch norm over every axis but the last, the rows m = 0..M-1 of
    ``x.reshape(M, F)``: mu_f = (1/M) sum_m X_{m,f}; sigma2_f = (1/M) sum_m (X_{m,f} - mu_f)^2;
    Xhat = (X - mu) / sqrt(sigma2 + eps); Y = gamma Xhat + beta. Returns
    ``(y, (dx, dgamma, dbeta), (mu, sigma2))`` with, for G = ``g``,
    dL/dbeta_f = sum_m G_{m,f};  dL/dgamma_f = sum_m G_{m,f} Xhat_{m,f};
    dL/dX_{m,f} = gamma_f / (M sqrt(sigma2_f + eps)) (M G_{m,f} - sum_m' G_{m',f}
    - Xhat_{m,f} sum_m' G_{m',f} Xhat_{m',f})."""
    n_feat = x.shape[-1]
    xs, gs = x.reshape(-1, n_feat), g.reshape(-1, n_feat)
    m_rows = len(xs)
    mu, sigma2 = np.zeros(n_feat), np.zeros(n_feat)
    for f in range(n_feat):
        for m in range(m_rows):
            mu[f] += xs[m, f] / m_rows
        for m in range(m_rows):
            sigma2[f] += (xs[m, f] - mu[f]) ** 2 / m_rows
    xhat, y = np.zeros(xs.shape), np.zeros(xs.shape)
    for m, f in np.ndindex(xs.shape):
        xhat[m, f] = (xs[m, f] - mu[f]) / math.sqrt(sigma2[f] + eps)
        y[m, f] = gamma[f] * xhat[m, f] + beta[f]
    dbeta, dgamma, dx = np.zeros(n_feat), np.zeros(n_feat), np.zeros(xs.shape)
    for f in range(n_feat):
        sum_g, sum_g_xhat = 0.0, 0.0
        for m in range(m_rows):
            sum_g += gs[m, f]
            sum_g_xhat += gs[m, f] * xhat[m, f]
        dbeta[f], dgamma[f] = sum_g, sum_g_xhat
        for m in range(m_rows):
            dx[m, f] = (gamma[f] / (m_rows * math.sqrt(sigma2[f] + eps))
                        * (m_rows * gs[m, f] - sum_g - xhat[m, f] * sum_g_xhat))  # fmt: skip
    return y.reshape(x.shape), (dx.reshape(x.shape), dgamma, dbeta), (mu, sigma2)


def dropout_loops(
    x: np.ndarray, mask: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Y_a = X_a D_a and dL/dX_a = G_a D_a, with the mask D_a in {0, 1 / (1 - rate)}."""
    return (_elementwise(x, lambda a: x[a] * mask[a]),
            _elementwise(x, lambda a: g[a] * mask[a]))  # fmt: skip
