"""numnet's kernels: the arithmetic of every operation, as functions on arrays.

- ``plain``: the readable main implementation -- one short pure function per forward and
  backward pass (``linear_forward``/``linear_backward``, ``relu_*``, ``sigmoid_*``, ``tanh_*``,
  ``conv2d_*``, ``maxpool2d_*``, ``avgpool2d_*``, ``batchnorm_*``, ``dropout_*``,
  ``softmax_cross_entropy``). ``docs/derivations.md`` derives and cites these.
- ``fast``: the same names with the same signatures; a buffered version where a measurement
  showed one pays (the convolution, 2x2 max-pooling), the plain function itself elsewhere.
- ``fused``: convolution + [activation] + 2x2 max-pooling in one step, one GEMM row per
  pooling window (run by ``plan.ConvPool2x2``, not by a layer).
- ``loops``: references that follow the derivations index for index (explicit Python loops,
  scalar arithmetic), for the tests.

A layer (``numnet.core.layers``) holds the parameters and one kernel module, ``layer.ops``
(:func:`kernel_set`); a model chooses with ``models.build(..., kernels="plain" | "fast")``
(``numnet.core.names.KERNELS``).
"""

from types import ModuleType

from numnet.core.kernels import fast, fused, loops, plain

__all__ = ["fast", "fused", "kernel_set", "loops", "plain"]


def kernel_set(name: str) -> ModuleType:
    """The kernel module called ``name`` ("plain" or "fast"): both have the same functions."""
    return {"plain": plain, "fast": fast}[name]
