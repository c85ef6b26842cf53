"""``numnet.runtime`` is ``numnet.core.runtime`` (threads and BLAS limits) under a short name.

``import numnet.runtime`` gives the core's own objects: ``numnet.runtime.X is
numnet.core.runtime.X``. The library itself imports ``numnet.core.runtime``.
"""

from numnet.core.runtime import *  # noqa: F403  (its public names: its __all__ where it has one)
