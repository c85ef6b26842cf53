"""``numnet.idx`` is ``numnet.core.idx`` (IDX files) under a short name.

``import numnet.idx`` gives the core's own objects: ``numnet.idx.X is
numnet.core.idx.X``. The library itself imports ``numnet.core.idx``.
"""

from numnet.core.idx import *  # noqa: F403  (its public names: its __all__ where it has one)
