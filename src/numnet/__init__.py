"""numnet: neural networks written from scratch on NumPy.

Every model is specified, differentiated and optimised by numnet's own NumPy code; PyTorch
appears only as an optional reference in the tests, benchmarks and ``numnet compare``.

Layouts used throughout (TensorFlow's): images NHWC, Linear weights (in, out) with
``y = x @ W + b``, Conv2D weights HWIO ``(kh, kw, c_in, c_out)``.

Submodules are imported on first use (``numnet.models.build(...)`` works after ``import numnet``),
so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

SUBMODULES = (
    "backend",
    "data",
    "errors",
    "experiments",
    "gradcheck",
    "init",
    "layers",
    "losses",
    "models",
    "optim",
    "plots",
    "protocol",
    "report",
    "serialize",
    "sweep",
    "training",
)

__all__ = ["__version__", *SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f"numnet.{name}")
    raise AttributeError(f"module 'numnet' has no attribute {name!r}")
