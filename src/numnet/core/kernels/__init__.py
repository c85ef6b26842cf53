"""numnet's kernels: the arithmetic of every operation, as functions on arrays.

- ``plain``: the readable main implementation -- one short pure function per forward and
  backward pass (``linear_forward``/``linear_backward``, ``relu_*``, ``sigmoid_*``, ``tanh_*``,
  ``conv2d_forward``/``conv2d_backward``, ``maxpool2d_forward``/``maxpool2d_backward``,
  ``softmax_cross_entropy``). ``docs/derivations.md`` derives and cites these.
- ``fast``: the same operations behind the same interface, with kept buffers (a
  ``Workspace``), taps-major im2col, tiled bias adds and GEMV column sums.
- ``fused``: convolution + [activation] + 2x2 max-pooling in one step, one GEMM row per
  pooling window.
- ``loops``: references that follow the derivations index for index (explicit Python loops,
  scalar arithmetic), for the tests.

A layer (``numnet.core.layers``) holds the parameters and calls one of them; a model chooses
with ``models.build(..., kernels="plain" | "fast")`` (``numnet.core.names.KERNELS``).
"""

from numnet.core.kernels import fast, fused, loops, plain

__all__ = ["fast", "fused", "loops", "plain"]
