"""numnet: neural networks written from scratch on NumPy.

Two layers, visible in the tree:

- ``numnet.core``: the library -- kernels, layers, losses, initialisers, optimisers, models,
  gradient checks, the NumPy/CuPy backend, serialization, IDX files and TensorFlow-style
  datasets. It imports nothing but NumPy and the standard library, and never the application.
- ``numnet.lab``: the application on top -- protocol files, the training loop, ``reproduce``,
  reports and figures, ``compare``, ``sweep``, ``predict``, data acquisition and the CLI.

Every model is specified, differentiated and optimised by numnet's own NumPy code; PyTorch
appears only as an optional reference in the tests, benchmarks and ``numnet compare``.

Layouts used throughout (TensorFlow's): images NHWC, Linear weights (in, out) with
``y = x @ W + b``, Conv2D weights HWIO ``(kh, kw, c_in, c_out)``.

The short names ``numnet.models``, ``numnet.layers``, ``numnet.data``, ... are imported on first
use (``numnet.models.build(...)`` works after ``import numnet``), so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: short name -> the module it stands for
SUBMODULES = {
    "core": "numnet.core",
    "lab": "numnet.lab",
    **{
        name: f"numnet.core.{name}"
        for name in (
            "backend", "datasets", "errors", "gradcheck", "idx", "init", "io", "kernels",
            "layers", "losses", "models", "optim", "runtime", "serialize",
        )
    },
    **{
        name: f"numnet.lab.{name}"
        for name in ("data", "experiments", "plots", "protocol", "report", "sweep", "training")
    },
}

__all__ = ["__version__", *SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(SUBMODULES[name])
    raise AttributeError(f"module 'numnet' has no attribute {name!r}")
