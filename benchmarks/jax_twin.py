"""The protocol's four models written in JAX, for the benchmarks' JAX side (``epoch.py --jax``,
``protocol.py``). Imported only when that side runs: JAX is optional (``pip install jax jaxlib``).

Parameters are a list of ``(weight, bias)`` pairs in numnet's layouts: dense ``(in, out)``,
conv HWIO; images NHWC. Glorot-uniform weights (HWIO fans include the 3x3 window), zero biases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

SHAPES = {
    "model1": [(784, 10)],
    "model2": [(784, 32), (32, 10)],
    "model3": [(784, 32), (32, 32), (32, 10)],
    "model4": [(3, 3, 1, 8), (3, 3, 8, 8), (392, 32), (32, 10)],
}


def init_params(name: str, key: jax.Array) -> list:
    """Glorot-uniform weights and zero biases of model ``name``, drawn from ``key``."""
    glorot = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(SHAPES[name]))
    return [(glorot(k, s, jnp.float32), jnp.zeros(s[-1], jnp.float32))
            for k, s in zip(keys, SHAPES[name], strict=True)]  # fmt: skip


def forward(params: list, x: jax.Array) -> jax.Array:
    """Logits ``(N, 10)`` of rows ``x`` ``(N, 784)``."""
    if len(params[0][0].shape) == 4:  # the CNN: NHWC images, HWIO kernels
        x = x.reshape(-1, 28, 28, 1)
        for w, b in params[:2]:
            x = lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")
        x, params = x.reshape(x.shape[0], -1), params[2:]
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    return x @ params[-1][0] + params[-1][1]


def loss_sum(params: list, x: jax.Array, y: jax.Array) -> jax.Array:
    """The protocol's loss: cross-entropy summed over the batch (``y`` one-hot)."""
    return -jnp.sum(jax.nn.log_softmax(forward(params, x)) * y)
