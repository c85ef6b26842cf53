"""docs/derivations.md, checked: every boxed formula, transcribed as written, against numnet.

The transcriptions live in ``numnet.core.kernels.loops``: explicit Python loops over the
indices named in the doc, scalar arithmetic, float64, no matrix products and no other numnet
code. The tests compare them with the plain kernels the doc cites (relative error < 1e-10),
and model 1 and model 4 as a whole on both kernel paths. For the convolution, the two "is
itself a correlation" statements are evaluated separately through one plain
``correlate_valid``. The last group of tests reads the doc's code links -- by function name,
never by line number -- and checks that each named function exists and still holds the code
the doc quotes from it.
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

from numnet.core import models
from numnet.core.kernels import loops, plain
from numnet.core.names import KERNELS

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


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_softmax_cross_entropy_gradient_is_p_minus_y(reduction: str) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(5, 10))
    y = one_hot_rows(rng, 5, 10)
    loss_doc, dz_doc = loops.softmax_cross_entropy_loops(z, y, reduction)
    loss, dz = plain.softmax_cross_entropy(z, y, reduction=reduction)
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


def test_linear_layer_gradients() -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(4, 7)), rng.normal(size=(7, 5)), rng.normal(size=5)
    g = rng.normal(size=(4, 5))
    y, cache = plain.linear_forward(x, w, b)
    assert rel_err(y, loops.linear_forward_loops(x, w, b)) < TOL
    for got, want in zip(plain.linear_backward(g, cache), loops.linear_backward_loops(x, w, g),
                         strict=True):  # fmt: skip
        assert rel_err(got, want) < TOL


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_model1_gradients(reduction: str, kernels: str) -> None:
    """§3: dL/dW = x^T (p - y), dL/db = sum_n (p - y), dL/dx = (p - y) W^T (over N for mean)."""
    rng = np.random.default_rng(4)
    model = models.build("model1", seed=5, dtype="float64", kernels=kernels)
    fc = dict(model.named_parameters())
    w, b = fc["fc1.weight"].value.copy(), rng.normal(scale=0.1, size=10)
    fc["fc1.bias"].value[...] = b  # non-zero bias, so the formula's b is exercised
    x = rng.uniform(size=(3, 784))
    y = one_hot_rows(rng, 3, 10)

    # The doc's formulas, as written.
    z = loops.linear_forward_loops(x, w, b)
    _, p_minus_y = loops.softmax_cross_entropy_loops(z, y, "sum")  # p - y
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
    _, dlogits = plain.softmax_cross_entropy(logits, y, reduction=reduction)
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
    y, cache = plain.relu_forward(x)
    assert rel_err(y, loops.relu_forward_loops(x)) < TOL
    dx = plain.relu_backward(g, cache)
    assert rel_err(dx, loops.relu_backward_loops(x, g)) < TOL
    assert np.all(dx[0, :3] == 0)


# ---------------------------------------------------------------------------------------------
# §5 max-pooling
# ---------------------------------------------------------------------------------------------

POOL_CASES = [
    # (input shape, window, stride)
    ((2, 4, 6, 3), (2, 2), (2, 2)),  # 2x2/2, no padding
    ((2, 5, 7, 3), (2, 2), (2, 2)),  # odd sizes, -inf row/column at the end
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
    y, cache = plain.maxpool2d_forward(x, window, stride, padding="same")
    g = rng.normal(size=y.shape)
    y_doc, dx_doc = loops.maxpool2d_loops(x, window, stride, "same", g)
    assert rel_err(y, y_doc) < TOL
    dx = plain.maxpool2d_backward(g, cache)
    assert rel_err(dx, dx_doc) < TOL
    # Routing: the gradient's total is conserved, and with ties still only one input per
    # window receives it (non-overlapping windows: at most one non-zero per window).
    assert abs(dx.sum() - g.sum()) < 1e-12 * max(1.0, np.abs(g).sum())
    if window == stride and not ties:
        assert np.count_nonzero(dx) == g.size


# ---------------------------------------------------------------------------------------------
# §6 convolution, stride 1, SAME
# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=[(3, 3), (2, 3)], ids=["3x3", "2x3"])
def conv_case(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    """N = 2 images of 5 x 6 pixels, D = 3 channels, K = 4 filters, float64."""
    kh, kw = request.param
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 5, 6, 3))
    w = rng.normal(size=(kh, kw, 3, 4))
    b = rng.normal(size=4)
    g = rng.normal(size=(2, 5, 6, 4))
    y, cache = plain.conv2d_forward(x, w, b, stride=1, padding="same")
    dx, dw, db = plain.conv2d_backward(g, cache)
    return {"x": x, "w": w, "b": b, "g": g, "y": y, "dx": dx, "dw": dw, "db": db}


def test_conv_forward_is_the_doc_correlation(conv_case: dict[str, np.ndarray]) -> None:
    c = conv_case
    assert rel_err(c["y"], loops.conv2d_forward_loops(c["x"], c["w"], c["b"])) < TOL


def test_conv_bias_gradient(conv_case: dict[str, np.ndarray]) -> None:
    assert rel_err(conv_case["db"], loops.conv2d_bias_grad_loops(conv_case["g"])) < TOL


def test_conv_weight_gradient_index_formula(conv_case: dict[str, np.ndarray]) -> None:
    c = conv_case
    kh, kw = c["w"].shape[:2]
    assert rel_err(c["dw"], loops.conv2d_weight_grad_loops(c["x"], c["g"], kh, kw)) < TOL


def test_conv_weight_gradient_is_correlation_of_padded_input_with_g(
    conv_case: dict[str, np.ndarray],
) -> None:
    c = conv_case
    kh, kw = c["w"].shape[:2]
    assert rel_err(c["dw"], loops.conv2d_weight_grad_by_correlation(c["x"], c["g"], kh, kw)) < TOL


def test_conv_input_gradient_index_formula(conv_case: dict[str, np.ndarray]) -> None:
    c = conv_case
    assert rel_err(c["dx"], loops.conv2d_input_grad_loops(c["g"], c["w"])) < TOL


def test_conv_input_gradient_is_full_correlation_with_flipped_kernel(
    conv_case: dict[str, np.ndarray],
) -> None:
    c = conv_case
    flipped = loops.conv2d_input_grad_by_flipped_full_correlation(c["g"], c["w"])
    assert rel_err(c["dx"], flipped) < TOL


def test_conv_input_gradient_needs_the_flip() -> None:
    # The transcriptions can tell a flipped from an unflipped kernel (so the tests above would
    # catch a doc or code that forgot the flip): without the flip the answer is different.
    rng = np.random.default_rng(9)
    g, w = rng.normal(size=(1, 4, 4, 2)), rng.normal(size=(3, 3, 2, 2))
    right = loops.conv2d_input_grad_by_flipped_full_correlation(g, w)
    unflipped = loops.conv2d_input_grad_by_flipped_full_correlation(g, w[::-1, ::-1])
    assert rel_err(unflipped, right) > 1e-2


@pytest.mark.parametrize("stride", [(2, 2), (3, 2)])
def test_conv_input_gradient_for_a_stride_is_the_correlation_of_the_dilated_g(stride) -> None:
    """§6.4, other strides: dilating G by the stride turns the stride-1 formula into the right
    one -- checked against the stride-aware index loops."""
    rng = np.random.default_rng(10)
    x, w, b = rng.normal(size=(2, 7, 8, 2)), rng.normal(size=(3, 3, 2, 3)), rng.normal(size=3)
    y, cache = plain.conv2d_forward(x, w, b, stride=stride, padding="same")
    g = rng.normal(size=y.shape)
    dx, dw, _ = plain.conv2d_backward(g, cache)
    assert rel_err(y, loops.conv2d_forward_loops(x, w, b, stride)) < TOL
    assert rel_err(dx, loops.conv2d_input_grad_loops(g, w, (7, 8), stride)) < TOL
    assert rel_err(dw, loops.conv2d_weight_grad_loops(x, g, 3, 3, stride)) < TOL


# ---------------------------------------------------------------------------------------------
# §7 the whole chain: model 4 from the doc's formulas alone
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
def test_model4_gradients_are_the_chained_formulas(kernels: str) -> None:
    """§7: model 4's backward pass (plain kernels, or the fast fused ones) equals §1 -> §2 ->
    §4 -> §2 -> flatten -> §5 -> §6 -> §5 -> §6 evaluated with the loop transcriptions."""
    rng = np.random.default_rng(10)
    model = models.build("model4", seed=11, dtype="float64", kernels=kernels)
    params = {name: p.value.copy() for name, p in model.named_parameters()}
    for name in params:  # non-zero biases, so that every bias term of the formulas is exercised
        if name.endswith(".bias"):
            params[name] = rng.normal(scale=0.1, size=params[name].shape)
            dict(model.named_parameters())[name].value[...] = params[name]
    x = rng.uniform(size=(1, 784))
    y = one_hot_rows(rng, 1, 10)

    # Forward, layer by layer, as the doc defines each layer.
    a0 = x.reshape(1, 28, 28, 1)
    c1 = loops.conv2d_forward_loops(a0, params["conv1.weight"], params["conv1.bias"])
    p1, _ = loops.maxpool2d_loops(c1, (2, 2), (2, 2))
    c2 = loops.conv2d_forward_loops(p1, params["conv2.weight"], params["conv2.bias"])
    p2, _ = loops.maxpool2d_loops(c2, (2, 2), (2, 2))
    flat = p2.reshape(1, 7 * 7 * 8)  # (h, w, c) order
    h1 = loops.linear_forward_loops(flat, params["fc1.weight"], params["fc1.bias"])
    r1 = loops.relu_forward_loops(h1)
    z = loops.linear_forward_loops(r1, params["fc2.weight"], params["fc2.bias"])

    # Backward: each layer's boxed formulas, fed the gradient of the layer after it.
    _, dz = loops.softmax_cross_entropy_loops(z, y, "sum")
    dr1, dw_fc2, db_fc2 = loops.linear_backward_loops(r1, params["fc2.weight"], dz)
    dh1 = loops.relu_backward_loops(h1, dr1)
    dflat, dw_fc1, db_fc1 = loops.linear_backward_loops(flat, params["fc1.weight"], dh1)
    _, dc2 = loops.maxpool2d_loops(c2, (2, 2), (2, 2), "same", dflat.reshape(p2.shape))
    dw_conv2 = loops.conv2d_weight_grad_loops(p1, dc2, 3, 3)
    db_conv2 = loops.conv2d_bias_grad_loops(dc2)
    dp1 = loops.conv2d_input_grad_loops(dc2, params["conv2.weight"])
    _, dc1 = loops.maxpool2d_loops(c1, (2, 2), (2, 2), "same", dp1)
    dw_conv1 = loops.conv2d_weight_grad_loops(a0, dc1, 3, 3)
    db_conv1 = loops.conv2d_bias_grad_loops(dc1)
    expected = {
        "conv1.weight": dw_conv1, "conv1.bias": db_conv1,
        "conv2.weight": dw_conv2, "conv2.bias": db_conv2,
        "fc1.weight": dw_fc1, "fc1.bias": db_fc1,
        "fc2.weight": dw_fc2, "fc2.bias": db_fc2,
    }  # fmt: skip

    logits = model.forward(x)
    assert rel_err(logits, z) < TOL
    _, dlogits = plain.softmax_cross_entropy(logits, y, reduction="sum")
    model.backward(dlogits)
    for name, p in model.named_parameters():
        assert rel_err(p.grad, expected[name]) < TOL, name


# ---------------------------------------------------------------------------------------------
# §9 batch normalisation, §10 average pooling, §11 dropout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 2)])
def test_batchnorm_formulas(shape: tuple[int, ...]) -> None:
    """§9's boxes (over every axis but the last) against the plain kernels, and the running
    statistics' update with the unbiased variance."""
    rng = np.random.default_rng(12)
    x = rng.normal(2.0, 3.0, size=shape)
    f = shape[-1]
    gamma, beta, g = rng.normal(size=f), rng.normal(size=f), rng.normal(size=shape)
    running_mean, running_var = np.zeros(f), np.ones(f)
    y, cache = plain.batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum=0.25)
    y_doc, grads_doc, (mu, sigma2) = loops.batchnorm_loops(x, gamma, beta, g)
    assert rel_err(y, y_doc) < TOL
    for got, want in zip(plain.batchnorm_backward(g, cache), grads_doc, strict=True):
        assert rel_err(got, want) < TOL
    m = x.size // f
    assert rel_err(running_mean, 0.25 * mu) < TOL
    assert rel_err(running_var, 0.75 + 0.25 * sigma2 * m / (m - 1)) < TOL
    # the intuition: the input gradient of each feature sums to 0
    dx = grads_doc[0].reshape(-1, f)
    assert np.abs(dx.sum(axis=0)).max() < 1e-12 * np.abs(dx).max() * m


def test_batchnorm_derivation_step_matches_finite_differences() -> None:
    """§9's middle step, d Xhat_{m,f} / d X_{k,f} = s_f ([m = k] - 1/M - Xhat_m Xhat_k / M),
    on one column, against central differences."""
    rng = np.random.default_rng(13)
    col, eps_bn = rng.normal(size=5), 1e-5

    def xhat(c: np.ndarray) -> np.ndarray:
        return (c - c.mean()) / math.sqrt(c.var() + eps_bn)

    s, xh, n = 1 / math.sqrt(col.var() + eps_bn), xhat(col), len(col)
    h = 1e-6
    for m, k in itertools.product(range(n), repeat=2):
        cp, cm = col.copy(), col.copy()
        cp[k] += h
        cm[k] -= h
        numeric = (xhat(cp)[m] - xhat(cm)[m]) / (2 * h)
        assert abs(numeric - s * ((m == k) - 1 / n - xh[m] * xh[k] / n)) < 1e-7


@pytest.mark.parametrize(("shape", "window", "stride", "padding"), [
    ((2, 5, 7, 3), (2, 2), (2, 2), "same"),  # windows of 4, 2 and 1 inside the image
    ((1, 5, 6, 2), (3, 3), (1, 1), "same"),  # overlapping, padding on every side
    ((2, 6, 5, 2), (3, 2), (2, 2), "valid"),
])  # fmt: skip
def test_avgpool_formulas(shape, window, stride, padding) -> None:
    rng = np.random.default_rng(14)
    x = rng.normal(size=shape)
    y, cache = plain.avgpool2d_forward(x, window, stride, padding)
    g = rng.normal(size=y.shape)
    y_doc, dx_doc = loops.avgpool2d_loops(x, window, stride, padding, g)
    assert rel_err(y, y_doc) < TOL
    assert rel_err(plain.avgpool2d_backward(g, cache), dx_doc) < TOL


def test_dropout_formulas() -> None:
    rng = np.random.default_rng(15)
    x, g = rng.normal(size=(4, 9)), rng.normal(size=(4, 9))
    y, mask = plain.dropout_forward(x, 0.4, np.random.default_rng(3))
    y_doc, dx_doc = loops.dropout_loops(x, mask, g)
    assert rel_err(y, y_doc) < TOL
    assert rel_err(plain.dropout_backward(g, mask), dx_doc) < TOL
    assert set(np.unique(mask)) == {0.0, 1 / 0.6}


# ---------------------------------------------------------------------------------------------
# The doc itself: code links by name, anchors, math delimiters
# ---------------------------------------------------------------------------------------------

# [`module.Qual.name`](../src/numnet/core/module.py): `quoted code`
# The link text names the function (the file's module, then its qualified name inside it); the
# quoted code must occur in that function's source. No line numbers: a refactor that keeps a
# function and its code keeps the doc right, one that changes them fails here.
CODE_LINK = re.compile(
    r"\[`(?P<name>[A-Za-z_][\w.]*)`\]\((?P<path>[^)#\s]+\.py)\)(?::\s+`(?P<code>[^`]+)`)?"
)
ANY_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")

# Every backward pass the doc derives must be tied to its plain kernel.
REQUIRED_CITATIONS = {
    "plain.softmax_cross_entropy",
    "plain.linear_backward",
    "plain.relu_backward",
    "plain.maxpool2d_forward",
    "plain.maxpool2d_backward",
    "plain.conv2d_forward",
    "plain.conv2d_backward",
    "models.Sequential.backward",
    "plain.batchnorm_forward",
    "plain.batchnorm_backward",
    "plain.avgpool2d_forward",
    "plain.avgpool2d_backward",
    "plain.dropout_forward",
    "plain.dropout_backward",
}


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def squash(text: str) -> str:
    return " ".join(text.split())


def code_links() -> list[re.Match[str]]:
    return list(CODE_LINK.finditer(doc_text()))


def cited_source(link: re.Match[str]) -> str:
    """The source of the function a link names (asserting that the file and name exist)."""
    target = (DOC.parent / link["path"]).resolve()
    assert target.is_file(), f"{link['path']}: no such file"
    module_name = ".".join(target.relative_to(ROOT / "src").with_suffix("").parts)
    stem, *qualname = link["name"].split(".")
    assert stem == target.stem and qualname, (
        f"link text `{link['name']}` must be `{target.stem}.<name>` for {link['path']}"
    )
    obj = importlib.import_module(module_name)
    for part in qualname:
        assert hasattr(obj, part), f"{module_name} has no {'.'.join(qualname)!r}"
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def test_doc_cites_every_backward_pass_by_name() -> None:
    cited = {m["name"] for m in code_links()}
    assert REQUIRED_CITATIONS <= cited, f"not cited: {sorted(REQUIRED_CITATIONS - cited)}"
    text = doc_text()
    assert not re.search(r"\.py#L\d", text), "code links name functions, not line numbers"
    for m in re.finditer(r"\[(?P<text>[^\]]+)\]\((?P<target>\.\./src/[^)\s]+)\)", text):
        if m["text"].strip("`") == m["target"].removeprefix("../"):
            continue  # a link to a whole file, named by its path
        assert CODE_LINK.match(text, m.start()), f"{m[0]}: a link into src/ names a function"


@pytest.mark.parametrize("link", code_links(), ids=lambda m: f"{m['name']}: {m['code']}")
def test_doc_code_link_quotes_the_named_function(link: re.Match[str]) -> None:
    source = cited_source(link)
    assert link["code"], f"{link['name']}: quote the cited code after the link"
    assert squash(link["code"]) in squash(source), (
        f"{link['name']} no longer contains `{link['code']}`: the code changed, so the "
        "derivation next to the link needs a look (update the quote once it is right)"
    )


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
