"""``numnet.models`` is ``numnet.core.models`` (Sequential and build) under a short name.

``from numnet.models import build`` gives the core's own objects: ``numnet.models.X is
numnet.core.models.X``. The library itself imports ``numnet.core.models``.
"""

from numnet.core.models import *  # noqa: F403  (its public names: its __all__ where it has one)
