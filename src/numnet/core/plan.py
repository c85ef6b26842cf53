"""A model's execution plan: which layers run one by one and which run as one fused step.

On the fast path, every run Conv2D(stride 1, SAME) [+ activation] + MaxPool2D(2x2, stride 2)
of a layer list becomes one ``ConvPool2x2`` step, which calls the fused kernel
(``kernels.fused``); every other layer is a step of its own. The plain path runs each layer as
a step. A step has ``forward(x, train)``, ``backward(dy, input_grad)`` and ``parameters()``,
like a layer; the parameters stay the layers' own either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from numnet.core.kernels import fast, fused
from numnet.core.layers import Activation, Conv2D, Layer, MaxPool2D, Parameter

Array = Any


class ConvPool2x2:
    """A plan step: ``Conv2D`` (stride 1, SAME) -> optional activation -> ``MaxPool2D`` (2x2,
    stride 2) run as one fused kernel (``kernels.fused.convpool2x2_forward``) -- the same maths
    as the layers one after the other, faster. An input of odd height or width falls back to
    the three layers. It holds no parameters (they stay the ``Conv2D``'s), only its buffers.
    Two such steps in a row pass their array batch-last (``takes_batch_last`` /
    ``gives_batch_last``, set by :func:`make_plan`): inside a chain nothing changes layout.
    """

    def __init__(self, conv: Conv2D, act: Layer | None, pool: MaxPool2D) -> None:
        if not self.fusable(conv, act, pool):
            raise ValueError(f"cannot fuse {conv!r}, {act!r}, {pool!r}")
        self.conv, self.act, self.pool = conv, act, pool
        self.workspace = fast.Workspace()
        self._cache: tuple | None = None
        #: set by ``make_plan`` between two fused steps: the array handed from one to the next
        #: (and its gradient back) stays batch-last ``(C, H, W, N)``, no layout change between
        self.takes_batch_last = False
        self.gives_batch_last = False

    @staticmethod
    def fusable(conv: Layer, act: Layer | None, pool: Layer) -> bool:
        """True for Conv2D(stride 1, SAME), then None or an elementwise activation, then a
        2x2 stride-2 MaxPool2D."""
        return (
            isinstance(conv, Conv2D)
            and conv.stride == (1, 1)
            and conv.padding == "same"
            and (act is None or isinstance(act, Activation))
            and isinstance(pool, MaxPool2D)
            and pool.pool_size == (2, 2)
            and pool.stride == (2, 2)
        )

    @property
    def layers(self) -> list[Layer]:
        return [layer for layer in (self.conv, self.act, self.pool) if layer is not None]

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        return self.conv.named_parameters()

    def parameters(self) -> list[Parameter]:
        return self.conv.parameters()

    def forward(self, x: Array, train: bool = True) -> Array:
        """z ``(N, H/2, W/2, c_out)`` of x ``(N, H, W, c_in)`` -- batch-last ``(C, H, W, N)``
        instead where the step ``takes_batch_last`` / ``gives_batch_last``."""
        xb = x if self.takes_batch_last else fused.batch_last(x)
        _, h, w, _ = xb.shape
        if h % 2 or w % 2:  # the pool would pad: run the layers one by one
            z = fused.batch_first(xb) if self.takes_batch_last else x
            for layer in self.layers:
                z = layer.forward(z, train=train)
            if train:
                self._cache = None
            return fused.batch_last(z).copy() if self.gives_batch_last else z
        conv, act = self.conv, self.act.name if self.act is not None else None
        z, cache = fused.convpool2x2_forward_batch_last(
            xb, conv.weight.value, conv.bias.value, act, workspace=self.workspace, train=train
        )
        if train:
            self._cache = cache
        return z if self.gives_batch_last else fused.batch_first(z)

    def backward(self, dz: Array, input_grad: bool = True) -> Array | None:
        """dL/dx from dL/dz, in the layouts of :meth:`forward`."""
        dzb = dz if self.gives_batch_last else fused.batch_last(dz)
        if self._cache is None:  # the layers ran one by one
            grad = fused.batch_first(dzb) if self.gives_batch_last else dz
            for k, layer in reversed(list(enumerate(self.layers))):
                grad = layer.backward(grad, input_grad=input_grad or k > 0)
            if grad is None or not self.takes_batch_last:
                return grad
            return fused.batch_last(grad).copy()
        w, b = self.conv.weight, self.conv.bias
        dx, _, _ = fused.convpool2x2_backward_batch_last(
            dzb, self._cache, workspace=self.workspace, dw=w.grad, db=b.grad,
            input_grad=input_grad,
        )
        if dx is None or self.takes_batch_last:
            return dx
        return fused.batch_first(dx)

    def __repr__(self) -> str:
        return f"ConvPool2x2({', '.join(repr(layer) for layer in self.layers)})"


def make_plan(layers: list[Layer], fuse: bool) -> list[tuple[Any, bool]]:
    """Steps to run in order: ``(layer or ConvPool2x2, has_parameters)``.

    With ``fuse``, every Conv2D(stride 1, SAME) [+ activation] + MaxPool2D(2x2/2) run becomes
    one ``ConvPool2x2`` step; otherwise each layer is a step.
    """
    plan: list[tuple[Any, bool]] = []
    k = 0
    while k < len(layers):
        step, span = layers[k], 1
        if fuse and isinstance(step, Conv2D):
            for size in (2, 3):  # conv, pool  |  conv, activation, pool
                group = layers[k : k + size]
                if len(group) < size:
                    break
                act = group[1] if size == 3 else None
                if ConvPool2x2.fusable(group[0], act, group[-1]):
                    step, span = ConvPool2x2(group[0], act, group[-1]), size
                    break
        if isinstance(step, ConvPool2x2) and plan and isinstance(plan[-1][0], ConvPool2x2):
            plan[-1][0].gives_batch_last = step.takes_batch_last = True
        plan.append((step, bool(step.parameters())))
        k += span
    return plan
