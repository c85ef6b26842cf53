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

Short names: each module of the core has one directly under ``numnet`` -- a two-line module
``src/numnet/models.py`` that re-exports ``numnet.core.models`` -- so that every import form
works as a Python user expects: ``from numnet.models import build``, ``import numnet.losses``,
``from numnet.layers import Conv2D``, ``from numnet.optim import SGD``. After a bare
``import numnet`` they (and ``numnet.data``, ``numnet.protocol``, ... of the application) are
imported on first use (``numnet.models.build(...)``): ``import numnet`` itself loads nothing,
so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: the core's short-name modules, ``src/numnet/<name>.py`` (each re-exports numnet.core.<name>)
CORE_SHORT_NAMES = (
    "backend", "datasets", "errors", "gradcheck", "idx", "init", "io", "layers", "losses",
    "models", "optim", "runtime", "schedules", "serialize",
)  # fmt: skip
#: attribute of ``numnet`` -> the module it stands for, imported on first use
SUBMODULES = {
    "core": "numnet.core",
    "lab": "numnet.lab",
    "kernels": "numnet.core.kernels",  # a package: numnet.core.kernels.plain, ...
    **{name: f"numnet.{name}" for name in CORE_SHORT_NAMES},
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
