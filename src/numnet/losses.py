"""``numnet.losses`` is ``numnet.core.losses`` (the losses) under a short name.

``import numnet.losses`` gives the core's own objects: ``numnet.losses.X is
numnet.core.losses.X``. The library itself imports ``numnet.core.losses``.
"""

from numnet.core.losses import *  # noqa: F403  (its public names: its __all__ where it has one)
