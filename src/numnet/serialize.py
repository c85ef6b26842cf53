"""``numnet.serialize`` is ``numnet.core.serialize`` (weights files) under a short name.

``from numnet.serialize import save`` gives the core's own objects: ``numnet.serialize.X is
numnet.core.serialize.X``. The library itself imports ``numnet.core.serialize``.
"""

from numnet.core.serialize import *  # noqa: F403  (its public names: its __all__ where it has one)
