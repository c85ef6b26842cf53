"""Fast path: a stride-1 SAME convolution, an optional activation and 2x2/2 max-pooling as one
step -- the same maths as ``plain.conv2d_forward`` -> activation -> ``plain.maxpool2d_forward``
(the tests hold them equal), with one GEMM column per pooling window.

The trick: the four conv outputs of pooling window ``(i, j)`` -- pixels ``(2i + dy, 2j + dx)``,
``dy, dx`` in {0, 1} -- read one ``(kh+1) x (kw+1) x c_in`` patch of the padded input, at rows
``2i ..`` and columns ``2j ..``. ``window_weight(w)`` places the kernel at the four offsets
``(dy, dx)`` of that patch (zeros elsewhere), so one GEMM of it by the patches (one column per
window) gives the four outputs of every window at once: for a 3x3 kernel a patch has 16 values
against im2col's 4 x 9, so the copied matrix is 2.25 times smaller. The product is laid out
pixel-major, ``(dy, dx, c_out, window)``, so the pooling's comparisons and maxima run over four
long contiguous planes, and so do the un-pooling passes of the backward.

Layout: the kernels work on *batch-last* arrays, ``(C, H, W, N)``: every copy (the padded
input, the patches, the un-pooling, dL/dX) then moves runs of N contiguous values, the
product's columns ``(i, j, n)`` are already the pooled output's layout, and the output of one
fused step is the next one's input with no layout change (``plan.make_plan`` chains them:
model 4's two steps change layout once on the way in and once on the way out).
``convpool2x2_forward`` / ``_backward`` take and give NHWC, around the batch-last kernels.

Backward: the un-pooled gradient, pixel-major like the product, times the patches gives the
gradient of ``window_weight(w)``, whose four offsets add up to dL/dw (``fold_window_weight``).
dL/dX is the stride-1 correlation of the un-pooled dy (zero-padded) with the flipped kernel,
computed the same way: one GEMM column per 2x2 block of input pixels (``window_correlation``).

Other details: the conv bias is added after pooling when there is no activation
(``max(y + b) = max(y) + b``, on a quarter of the values); ties go to the first maximum in
row-major window order, as ``plain.maxpool2d_forward``; the extra terms of a window's sums are
exact zeros, so each output is the sum of the same products as im2col's (BLAS may add them in
another order). A batch runs whole on the calling thread with BLAS held to one thread:
measured on 2 cores, splitting a step of 100 images over two threads gained nothing (the step
is bound by memory traffic), while evaluation spreads its chunks over the runtime's lanes
(``models.Sequential.forward``). Height and width must be even.
"""

from __future__ import annotations

from typing import Any

from numnet.core.backend import array_module
from numnet.core.kernels.fast import Workspace, padded_input
from numnet.core.kernels.plain import ACTIVATIONS, geometry
from numnet.core.runtime import single_threaded_blas

Array = Any


def window_weight(w: Array, workspace: Workspace, key: str) -> Array:
    """The kernel w ``(kh, kw, c_in, c_out)`` of a 2x2 window, ``(4 * c_out, (kh+1) * (kw+1) *
    c_in)``: row ``(dy, dx, o)`` holds ``w[..., o]`` placed at offset ``(dy, dx)`` of the
    window's input patch (columns in (row, column, channel) order), zeros elsewhere."""
    xp = array_module(w)
    kh, kw, c, cout = w.shape
    big = workspace.get(key, (2, 2, cout, kh + 1, kw + 1, c), w.dtype, xp, fill=0)
    for dy in (0, 1):
        for dx in (0, 1):
            big[dy, dx, :, dy : dy + kh, dx : dx + kw, :] = w.transpose(3, 0, 1, 2)
    return big.reshape(4 * cout, (kh + 1) * (kw + 1) * c)


def fold_window_weight(grad: Array, out: Array) -> Array:
    """The gradient of ``window_weight(w)`` ``(4 * c_out, K)`` folded back onto w: the sum of
    its four offsets, written into ``out`` ``(kh, kw, c_in, c_out)``."""
    kh, kw, c, cout = out.shape
    g = grad.reshape(2, 2, cout, kh + 1, kw + 1, c)
    out[...] = g[0, 0, :, :kh, :kw].transpose(1, 2, 3, 0)
    out += g[0, 1, :, :kh, 1:].transpose(1, 2, 3, 0)
    out += g[1, 0, :, 1:, :kw].transpose(1, 2, 3, 0)
    out += g[1, 1, :, 1:, 1:].transpose(1, 2, 3, 0)
    return out


def batch_last(x: Array) -> Array:
    """A view ``(C, H, W, N)`` of an NHWC array ``(N, H, W, C)`` (no copy)."""
    return x.transpose(3, 1, 2, 0)


def batch_first(x: Array) -> Array:
    """An NHWC copy ``(N, H, W, C)`` of a batch-last array ``(C, H, W, N)``."""
    return array_module(x).ascontiguousarray(x.transpose(3, 1, 2, 0))


def window_patches(workspace: Workspace, key: str, padded: Array, kernel: tuple[int, int]) -> Array:
    """The patches ``((kh+1)*(kw+1)*C, Hq*Wq*N)`` of a padded batch-last array ``(C, 2Hq + kh -
    1, 2Wq + kw - 1, N)``, one column per window: row ``(r, c, ch)`` of column ``(i, j, n)`` is
    ``padded[ch, 2i + r, 2j + c, n]``, copied into the kept buffer ``key`` (every copied run is
    the batch: N contiguous values)."""
    xp = array_module(padded)
    kh, kw = kernel
    c, hp, wp, n = padded.shape
    hq, wq = (hp - kh + 1) // 2, (wp - kw + 1) // 2
    s_c, s_h, s_w, s_n = padded.strides
    view = xp.lib.stride_tricks.as_strided(
        padded, shape=(kh + 1, kw + 1, c, hq, wq, n), strides=(s_h, s_w, s_c, 2 * s_h, 2 * s_w, s_n)
    )
    patches = workspace.get(key, view.shape, padded.dtype, xp)
    patches[...] = view
    return patches.reshape((kh + 1) * (kw + 1) * c, hq * wq * n)


def window_correlation(workspace: Workspace, key: str, dy_padded: Array, w: Array,
                       out: Array) -> Array:  # fmt: skip
    """dL/dX ``(c_in, H, W, N)`` (H, W even) of a stride-1 convolution with HWIO ``w``, from
    the zero-padded batch-last dy ``(c_out, H + kh - 1, W + kw - 1, N)`` (as
    ``fast.conv2d_input_grad_stride1``): the correlation with the flipped kernel, one GEMM column
    per 2x2 block of input pixels, into ``out``."""
    xp = array_module(dy_padded)
    kh, kw, cin, _ = w.shape
    _, h, wd, n = out.shape
    patches = window_patches(workspace, f"{key}.patches", dy_padded, (kh, kw))
    flipped = xp.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
    big = window_weight(flipped, workspace, f"{key}.weight")
    blocks = workspace.get(f"{key}.blocks", (4 * cin, patches.shape[1]), out.dtype, xp)
    xp.matmul(big, patches, out=blocks)
    # blocks[(dy, dx, c), (i, j, n)] is the gradient of pixel (2i + dy, 2j + dx)
    by_block = blocks.reshape(2, 2, cin, h // 2, wd // 2, n).transpose(2, 3, 0, 4, 1, 5)
    out.reshape(cin, h // 2, 2, wd // 2, 2, n)[...] = by_block
    return out


def convpool2x2_forward(
    x: Array,
    w: Array,
    b: Array,
    activation: str | None = None,
    *,
    workspace: Workspace,
    train: bool = True,
) -> tuple[Array, tuple]:
    """Conv (stride 1, SAME) + [activation] + 2x2/2 max-pool of NHWC x ``(N, H, W, c_in)``
    (H, W even) with HWIO ``w`` ``(kh, kw, c_in, c_out)`` and ``b`` ``(c_out,)``; activation:
    None, "relu", "sigmoid" or "tanh". Returns ``(z, cache)``, z ``(N, H/2, W/2, c_out)``
    fresh: :func:`convpool2x2_forward_batch_last` between two layout changes."""
    z, cache = convpool2x2_forward_batch_last(batch_last(x), w, b, activation,
                                              workspace=workspace, train=train)
    return batch_first(z), cache


def convpool2x2_backward(
    dz: Array,
    cache: tuple,
    *,
    workspace: Workspace,
    dw: Array,
    db: Array,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array]:
    """Gradients of :func:`convpool2x2_forward` from NHWC dz ``(N, H/2, W/2, c_out)``: ``(dx,
    dw, db)`` as :func:`convpool2x2_backward_batch_last`, dx NHWC ``(N, H, W, c_in)``."""
    dx, dw, db = convpool2x2_backward_batch_last(batch_last(dz), cache, workspace=workspace,
                                                 dw=dw, db=db, input_grad=input_grad)
    return (None if dx is None else batch_first(dx)), dw, db


def convpool2x2_forward_batch_last(
    x: Array,
    w: Array,
    b: Array,
    activation: str | None = None,
    *,
    workspace: Workspace,
    train: bool = True,
) -> tuple[Array, tuple]:
    """:func:`convpool2x2_forward` on batch-last arrays: x ``(c_in, H, W, N)`` (any strides)
    -> ``(z, cache)``, z ``(c_out, H/2, W/2, N)`` a kept buffer of ``workspace`` (the next
    forward of the same kind overwrites it: its consumer reads it first); a training forward
    keeps its buffers apart from an evaluation's (``train=False``)."""
    c, h, wd, n = x.shape
    if h % 2 or wd % 2:
        raise ValueError(f"the fused conv + 2x2 pool needs even sizes, got {h}x{wd}")
    xp = array_module(x)
    kh, kw, _, cout = w.shape
    windows = n * (h // 2) * (wd // 2)
    key = "fused.train" if train else "fused.eval"
    with single_threaded_blas():
        (_, top, bottom), (_, left, right) = geometry(h, wd, (kh, kw), (1, 1), "same")
        padded = padded_input(workspace, f"{key}.padded", x, (top, bottom, left, right))
        patches = window_patches(workspace, f"{key}.patches", padded, (kh, kw))
        big = window_weight(w, workspace, f"{key}.weight")
        pixels = workspace.get(f"{key}.pixels", (4 * cout, windows), x.dtype, xp)
        xp.matmul(big, patches, out=pixels)  # pixel-major: (dy, dx, c_out), then (i, j, n)
        if activation is not None:
            pixels.reshape(4, cout, windows)[...] += b[:, None]
            pixels, _ = ACTIVATIONS[activation][0](pixels)
        by_pixel = pixels.reshape(2, 2, cout * windows)  # [dy, dx]
        pooled = workspace.get(f"{key}.out", (cout, h // 2, wd // 2, n), x.dtype, xp)
        # Backward needs only which pixel won each window -- the first maximum in row-major
        # order: a pair's left pixel wins ties with its right one, the top pair wins ties with
        # the bottom pair -- kept as two masks.
        cache: tuple = ()
        if train:
            left_wins = workspace.get(f"{key}.left_wins", (2, cout * windows), bool, xp)
            xp.greater_equal(by_pixel[:, 0], by_pixel[:, 1], out=left_wins)
        if activation is None:  # the pair maxima overwrite the left pixels
            pairs = by_pixel[:, 0]
        else:  # backward needs the activation's output intact
            pairs = workspace.get(f"{key}.pairs", (2, cout * windows), x.dtype, xp)
        xp.maximum(by_pixel[:, 0], by_pixel[:, 1], out=pairs)
        if train:
            top_wins = workspace.get(f"{key}.top_wins", (cout * windows,), bool, xp)
            xp.greater_equal(pairs[0], pairs[1], out=top_wins)
            cache = (patches, left_wins, top_wins, pixels if activation else None, x.shape, w,
                     activation)  # fmt: skip
        xp.maximum(pairs[0], pairs[1], out=pooled.reshape(cout * windows))
        if activation is None:  # max(y + b) = max(y) + b
            pooled.reshape(cout, windows)[...] += b[:, None]
    return pooled, cache


def convpool2x2_backward_batch_last(
    dz: Array,
    cache: tuple,
    *,
    workspace: Workspace,
    dw: Array,
    db: Array,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array]:
    """Gradients of :func:`convpool2x2_forward_batch_last` from dz ``(c_out, H/2, W/2, N)``
    (any strides): ``(dx, dw, db)``, the weight and bias gradients written into ``dw`` and
    ``db``; dx ``(c_in, H, W, N)`` a kept buffer (as the forward's z), or None unless
    ``input_grad``."""
    xp = array_module(dz)
    patches, left_wins, top_wins, activated, (c, h, wd, n), w, activation = cache
    kh, kw, _, cout = w.shape
    windows = n * (h // 2) * (wd // 2)
    key = "fused.train"
    with single_threaded_blas():
        if dz.flags.c_contiguous:
            dz_by_channel = dz.reshape(cout, windows)
        else:
            dz_by_channel = workspace.get(f"{key}.dz", (cout, windows), dz.dtype, xp)
            dz_by_channel.reshape(dz.shape)[...] = dz
        d = dz_by_channel.reshape(cout * windows)
        # Max-pool backward: each window's dz to the pixel that won it. Subtracting the part
        # taken leaves exact zeros and exact values.
        dy = workspace.get(f"{key}.dy", (2, 2, cout * windows), dz.dtype, xp)  # [dy, dx]
        xp.multiply(d, top_wins, out=dy[0, 1])  # dz of the windows the top pair wins
        xp.subtract(d, dy[0, 1], out=dy[1, 1])  # ... and of those the bottom pair wins
        xp.multiply(dy[0, 1], left_wins[0], out=dy[0, 0])
        xp.subtract(dy[0, 1], dy[0, 0], out=dy[0, 1])
        xp.multiply(dy[1, 1], left_wins[1], out=dy[1, 0])
        xp.subtract(dy[1, 1], dy[1, 0], out=dy[1, 1])
        dy_pixels = dy.reshape(4 * cout, windows)
        ones = workspace.ones(windows, dz.dtype, xp)
        if activation is not None:
            dy_pixels = ACTIVATIONS[activation][1](dy_pixels, activated)
            per_pixel = workspace.get(f"{key}.db", (4, cout), dz.dtype, xp)
            xp.matmul(dy_pixels, ones, out=per_pixel.reshape(4 * cout))
            xp.add(per_pixel[0], per_pixel[1], out=db)
            db += per_pixel[2]
            db += per_pixel[3]
        else:  # every dz lands on exactly one pixel
            xp.matmul(dz_by_channel, ones, out=db)
        # the operand with more rows goes first: the faster of the two orientations here
        if len(patches) > len(dy_pixels):
            big_grad = workspace.get(f"{key}.weight_grad", (len(patches), 4 * cout), dz.dtype, xp)
            xp.matmul(patches, dy_pixels.T, out=big_grad)
            big_grad = big_grad.T
        else:
            big_grad = workspace.get(f"{key}.weight_grad", (4 * cout, len(patches)), dz.dtype, xp)
            xp.matmul(dy_pixels, patches.T, out=big_grad)
        fold_window_weight(big_grad, dw)
        if not input_grad:
            return None, dw, db
        # Un-pool dy into the zero-bordered buffer that the flipped-kernel correlation reads.
        (_, top, _), (_, left, _) = geometry(h, wd, (kh, kw), (1, 1), "same")
        before_h, before_w = kh - 1 - top, kw - 1 - left
        shape = (cout, h + kh - 1, wd + kw - 1, n)
        dy_padded = workspace.get(f"{key}.dy_padded", shape, dz.dtype, xp, fill=0)
        by_pixel = dy_pixels.reshape(2, 2, cout, h // 2, wd // 2, n)
        for i in (0, 1):
            for j in (0, 1):
                rows = slice(before_h + i, before_h + h, 2)
                cols = slice(before_w + j, before_w + wd, 2)
                dy_padded[:, rows, cols, :] = by_pixel[i, j]
        dx = workspace.get(f"{key}.input_grad", (c, h, wd, n), dz.dtype, xp)
        window_correlation(workspace, f"{key}.dx", dy_padded, w, out=dx)
    return dx, dw, db
