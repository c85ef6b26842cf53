"""Fast path: a stride-1 SAME convolution, an optional activation and 2x2/2 max-pooling as one
step -- the same maths as ``plain.conv2d_forward`` -> activation -> ``plain.maxpool2d_forward``
(the tests hold them equal), with the pooling made cheap.

The trick is the order of the im2col rows: quarter-major, ``(dy, dx, n, i, j)`` for the
conv output pixel ``(2i + dy, 2j + dx)``. The GEMM output ``(4, N*H/2*W/2, c_out)`` then
holds the four positions of every 2x2 window as four contiguous slabs, so the max-pool is
three elementwise ``maximum`` calls on contiguous arrays and its backward nine contiguous
elementwise passes -- no strided quarter views of a full-size feature map.

An evaluation forward (``train=False``: nothing kept for backward) takes one GEMM row per
pooling window instead (``_evaluation_part``): the window's (kh+1) x (kw+1) x c_in input patch
holds the receptive fields of its four conv outputs, and ``window_weight(w)`` -- w placed at
the four offsets of the window -- gives the four outputs at once, a GEMM 2.25 times smaller
in rows than im2col's for a 3x3 kernel. Every output is the same sum of the same products
(the extra terms are exact zeros), so it equals the training forward's up to the order in
which BLAS adds them: bit for bit for model 4's float32 shapes with OpenBLAS, a few ulps
apart for some others (the tests allow that).

Other details: the conv bias is added after pooling when there is no activation
(``max(y + b) = max(y) + b``, on a quarter of the values); ties go to the first maximum in
row-major window order, as ``plain.maxpool2d_forward``; dL/dX is the stride-1 correlation of
the un-pooled dy with the flipped kernel (``fast.conv2d_input_grad_stride1``). A big batch is
split into parts of images by its size alone (``runtime.split_parts``) and the parts run at
once on the runtime's threads (``runtime.run_parts``, BLAS held to one thread); only the
weight gradient needs a final sum, in part order. Height and width must be even.
"""

from __future__ import annotations

from typing import Any

from numnet.core.backend import array_module
from numnet.core.kernels.fast import (
    Workspace,
    column_sums,
    columns,
    conv2d_input_grad_stride1,
    padded_input,
)
from numnet.core.kernels.plain import ACTIVATIONS, geometry
from numnet.core.runtime import run_parts, single_threaded_blas, split_parts

Array = Any


def convpool2x2_forward(
    x: Array,
    w: Array,
    b: Array,
    activation: str | None = None,
    *,
    workspace: Workspace,
    train: bool = True,
) -> tuple[Array, tuple]:
    """Conv (stride 1, SAME) + [activation] + 2x2/2 max-pool of x ``(N, H, W, c_in)`` (H, W
    even) with HWIO ``w`` ``(kh, kw, c_in, c_out)`` and ``b`` ``(c_out,)``; activation: None,
    "relu", "sigmoid" or "tanh". Returns ``(z, cache)``, z ``(N, H/2, W/2, c_out)`` fresh."""
    n, h, wd, c = x.shape
    if h % 2 or wd % 2:
        raise ValueError(f"the fused conv + 2x2 pool needs even sizes, got {h}x{wd}")
    xp = array_module(x)
    cout = w.shape[3]
    out = xp.empty((n, h // 2, wd // 2, cout), dtype=x.dtype)  # fresh output
    parts = split_parts(n, n * h * wd * cout)
    caches: list[tuple] = [()] * len(parts)
    mode = "train" if train else "eval"

    def run(k: int) -> None:
        lo, hi = parts[k]
        key = f"fused.{mode}.{k}"
        if train:
            caches[k] = _forward_part(x[lo:hi], out[lo:hi], w, b, activation, workspace, key)
        else:
            _evaluation_part(x[lo:hi], out[lo:hi], w, b, activation, workspace, key)

    with single_threaded_blas():
        run_parts(run, len(parts), xp)
    return out, (parts, caches, x.shape, w, activation)


def _forward_part(
    x: Array, out: Array, w: Array, b: Array, activation: str | None,
    workspace: Workspace, key: str,
) -> tuple:  # fmt: skip
    """Training forward: conv + [activation] + pool of the images ``x`` into ``out``; returns
    what backward needs. Touches only buffers named after ``key``, so two parts can run at
    once."""
    xp = array_module(x)
    n, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    hq, wq = h // 2, wd // 2
    quarter = n * hq * wq
    (_, top, bottom), (_, left, right) = geometry(h, wd, (kh, kw), (1, 1), "same")
    padded = padded_input(workspace, f"{key}.padded", x, (top, bottom, left, right))
    s_n, s_h, s_w, s_c = padded.strides
    # windows[dy, dx, n, i, j, ti, tj, c] = padded[n, 2i + dy + ti, 2j + dx + tj, c]
    windows = xp.lib.stride_tricks.as_strided(
        padded,
        shape=(2, 2, n, hq, wq, kh, kw, c),
        strides=(s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_h, s_w, s_c),
    )
    cols = columns(workspace, f"{key}.cols", windows)
    y = workspace.get(f"{key}.y", (4 * quarter, cout), x.dtype, xp)
    xp.matmul(cols, w.reshape(kh * kw * c, cout), out=y)
    if activation is not None:
        y += b
        y, _ = ACTIVATIONS[activation][0](y)
    # 2x2 max-pool over the four contiguous quarter planes, (0, 0), (0, 1), (1, 0), (1, 1);
    # pairs[dy] = quarters[dy, dx] for dx = 0, 1 is one call over two contiguous planes.
    quarters = y.reshape(2, 2, quarter, cout)
    pooled = out.reshape(quarter, cout)
    # Backward needs only which pixel won each window -- the first maximum in row-major
    # order: a pair's left pixel wins ties with its right one, the top pair wins ties
    # with the bottom pair -- kept as three masks, so y's memory is free for backward.
    left_wins = workspace.get(f"{key}.left_wins", (2, quarter, cout), bool, xp)
    top_wins = workspace.get(f"{key}.top_wins", (quarter, cout), bool, xp)
    xp.greater_equal(quarters[:, 0], quarters[:, 1], out=left_wins)
    if activation is None:  # the pair maxima overwrite the left pixels
        pairs = quarters[:, 0]
    else:  # backward needs the activation's output intact
        pairs = workspace.get(f"{key}.pairs", (2, quarter, cout), x.dtype, xp)
    xp.maximum(quarters[:, 0], quarters[:, 1], out=pairs)
    xp.greater_equal(pairs[0], pairs[1], out=top_wins)
    xp.maximum(pairs[0], pairs[1], out=pooled)
    cache = (cols, left_wins, top_wins, y.reshape(4, quarter, cout) if activation else None)
    if activation is None:  # the bias, tiled over an image's pixels: long inner loops
        image_rows = out.reshape(n, hq * wq * cout)
        image_rows += xp.tile(b, hq * wq)
    return cache


def window_weight(w: Array, workspace: Workspace, key: str) -> Array:
    """The kernel w ``(kh, kw, c_in, c_out)`` of a 2x2 pooling window, ``(4 * c_out,
    (kh+1) * (kw+1) * c_in)``: row ``(dy, dx, o)`` holds ``w[..., o]`` placed at offset
    ``(dy, dx)`` of the window's input patch, zeros elsewhere -- the patch (rows in
    (row, column, channel) order) times its transpose gives the conv outputs of the window's
    four pixels ``(2i + dy, 2j + dx)``."""
    xp = array_module(w)
    kh, kw, c, cout = w.shape
    big = workspace.get(key, (2, 2, cout, kh + 1, kw + 1, c), w.dtype, xp, fill=0)
    for dy in (0, 1):
        for dx in (0, 1):
            big[dy, dx, :, dy : dy + kh, dx : dx + kw, :] = w.transpose(3, 0, 1, 2)
    return big.reshape(4 * cout, (kh + 1) * (kw + 1) * c)


def _evaluation_part(
    x: Array, out: Array, w: Array, b: Array, activation: str | None,
    workspace: Workspace, key: str,
) -> None:  # fmt: skip
    """Evaluation forward of the images ``x`` into ``out``, one GEMM row per pooling window.

    The product is laid out pixel-major, ``(dy, dx, c_out, window)``, so the pooling maxima
    and the bias run over long contiguous rows; one transposed copy gives NHWC at the end."""
    xp = array_module(x)
    n, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    hq, wq = h // 2, wd // 2
    windows = n * hq * wq
    (_, top, bottom), (_, left, right) = geometry(h, wd, (kh, kw), (1, 1), "same")
    padded = padded_input(workspace, f"{key}.padded", x, (top, bottom, left, right))
    s_n, s_h, s_w, s_c = padded.strides
    # patches[n, i, j, r, q, c] = padded[n, 2i + r, 2j + q, c], r <= kh, q <= kw
    patches = xp.lib.stride_tricks.as_strided(
        padded,
        shape=(n, hq, wq, kh + 1, kw + 1, c),
        strides=(s_n, 2 * s_h, 2 * s_w, s_h, s_w, s_c),
    )
    cols = columns(workspace, f"{key}.patches", patches)
    pixels = workspace.get(f"{key}.pixels", (4 * cout, windows), x.dtype, xp)
    xp.matmul(window_weight(w, workspace, f"{key}.window_weight"), cols.T, out=pixels)
    by_pixel = pixels.reshape(2, 2, cout, windows)
    if activation is not None:
        by_pixel += b[:, None]
        pixels, _ = ACTIVATIONS[activation][0](pixels)
        by_pixel = pixels.reshape(2, 2, cout, windows)
    pairs = by_pixel[:, 0]  # the maxima of the left and right pixels overwrite the left ones
    xp.maximum(by_pixel[:, 0], by_pixel[:, 1], out=pairs)
    pooled = workspace.get(f"{key}.pooled", (cout, windows), x.dtype, xp)
    xp.maximum(pairs[0], pairs[1], out=pooled)
    if activation is None:  # max(y + b) = max(y) + b
        pooled += b[:, None]
    out.reshape(windows, cout)[...] = pooled.T


def convpool2x2_backward(
    dz: Array,
    cache: tuple,
    *,
    workspace: Workspace,
    dw: Array,
    db: Array,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array]:
    """Gradients of ``convpool2x2_forward`` from dz ``(N, H/2, W/2, c_out)``: ``(dx, dw, db)``,
    the weight and bias gradients written into ``dw`` and ``db``; dx ``(N, H, W, c_in)`` is
    None unless ``input_grad``."""
    xp = array_module(dz)
    parts, caches, (n, h, wd, c), w, activation = cache
    kh, kw, _, cout = w.shape
    k_rows = kh * kw * c
    dx = xp.empty((n, h, wd, c), dtype=dz.dtype) if input_grad else None
    if len(parts) == 1:
        grads = [(dw.reshape(k_rows, cout), db)]
    else:  # per-part sums, added at the end
        grads = [
            (
                workspace.get(f"fused.dw.{k}", (k_rows, cout), dz.dtype, xp),
                workspace.get(f"fused.db.{k}", (cout,), dz.dtype, xp),
            )
            for k in range(len(parts))
        ]

    def run(k: int) -> None:
        lo, hi = parts[k]
        part_dx = dx[lo:hi] if dx is not None else None
        _backward_part(
            dz[lo:hi], caches[k], grads[k], part_dx, w, activation, workspace, f"fused.train.{k}"
        )

    with single_threaded_blas():
        run_parts(run, len(parts), xp)
    if len(parts) > 1:  # in part order, whatever ran them
        xp.add(grads[0][0], grads[1][0], out=dw.reshape(k_rows, cout))
        xp.add(grads[0][1], grads[1][1], out=db)
        for part_dw, part_db in grads[2:]:
            dw.reshape(k_rows, cout)[...] += part_dw
            db += part_db
    return dx, dw, db


def _backward_part(
    dz: Array, cache: tuple, grads: tuple[Array, Array], dx: Array | None, w: Array,
    activation: str | None, workspace: Workspace, key: str,
) -> None:  # fmt: skip
    """Backward of one part: its weight and bias gradients into ``grads``, its input
    gradient into ``dx`` (skipped when None)."""
    xp = array_module(dz)
    cols, left_wins, top_wins, activated = cache
    n, hq, wq, cout = dz.shape
    h, wd = 2 * hq, 2 * wq
    kh, kw = w.shape[:2]
    quarter = n * hq * wq
    dz2 = dz.reshape(quarter, cout)
    # Max-pool backward: each window's dz to the pixel that won it (masks from forward).
    # Subtracting the part taken leaves exact zeros and exact values. Without an
    # activation, dy takes the place of the forward's y (no longer needed).
    name = "y" if activation is None else "dy"
    dy = workspace.get(f"{key}.{name}", (4 * quarter, cout), dz.dtype, xp).reshape(4, quarter, cout)
    xp.multiply(dz2, top_wins, out=dy[1])  # dz of the windows the top pair wins
    xp.subtract(dz2, dy[1], out=dy[3])  # ... and of those the bottom pair wins
    xp.multiply(dy[1], left_wins[0], out=dy[0])
    xp.subtract(dy[1], dy[0], out=dy[1])
    xp.multiply(dy[3], left_wins[1], out=dy[2])
    xp.subtract(dy[3], dy[2], out=dy[3])
    dy = dy.reshape(4 * quarter, cout)
    dweight, dbias = grads
    if activation is not None:
        dy = ACTIVATIONS[activation][1](dy, activated.reshape(4 * quarter, cout))
        column_sums(dy, workspace.ones(len(dy), dz.dtype, xp), out=dbias)
    else:  # every dz lands on exactly one pixel
        column_sums(dz2, workspace.ones(quarter, dz.dtype, xp), out=dbias)
    xp.matmul(cols.T, dy, out=dweight)
    if dx is None:
        return
    # Un-pool dy into the zero-bordered buffer that the flipped-kernel correlation reads.
    (_, top, _), (_, left, _) = geometry(h, wd, (kh, kw), (1, 1), "same")
    before_h, before_w = kh - 1 - top, kw - 1 - left
    shape = (n, h + kh - 1, wd + kw - 1, cout)
    dy_padded = workspace.get(f"{key}.dy_padded", shape, dz.dtype, xp, fill=0)
    by_quarter = dy.reshape(2, 2, n, hq, wq, cout)
    for i in (0, 1):
        for j in (0, 1):
            rows = slice(before_h + i, before_h + h, 2)
            cols_ = slice(before_w + j, before_w + wd, 2)
            dy_padded[:, rows, cols_, :] = by_quarter[i, j]
    conv2d_input_grad_stride1(workspace, f"{key}.dx", dy_padded, w, out=dx)
