"""``numnet.layers`` is ``numnet.core.layers`` (the layers) under a short name.

``from numnet.layers import Conv2D`` gives the core's own objects: ``numnet.layers.X is
numnet.core.layers.X``. The library itself imports ``numnet.core.layers``.
"""

from numnet.core.layers import *  # noqa: F403  (its public names: its __all__ where it has one)
