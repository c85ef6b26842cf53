"""``numnet.backend`` is ``numnet.core.backend`` (the NumPy/CuPy backend) under a short name.

``import numnet.backend`` gives the core's own objects: ``numnet.backend.X is
numnet.core.backend.X``. The library itself imports ``numnet.core.backend``.
"""

from numnet.core.backend import *  # noqa: F403  (its public names: its __all__ where it has one)
