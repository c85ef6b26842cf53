"""``numnet.datasets`` is ``numnet.core.datasets`` (TensorFlow-style data sets) under a short name.

``import numnet.datasets`` gives the core's own objects: ``numnet.datasets.X is
numnet.core.datasets.X``. The library itself imports ``numnet.core.datasets``.
"""

from numnet.core.datasets import *  # noqa: F403  (its public names: its __all__ where it has one)
