"""``numnet.io`` is ``numnet.core.io`` (atomic file writes) under a short name.

``import numnet.io`` gives the core's own objects: ``numnet.io.X is
numnet.core.io.X``. The library itself imports ``numnet.core.io``.
"""

from numnet.core.io import *  # noqa: F403  (its public names: its __all__ where it has one)
