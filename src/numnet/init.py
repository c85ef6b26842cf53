"""``numnet.init`` is ``numnet.core.init`` (parameter initialisers) under a short name.

``from numnet.init import glorot_uniform`` gives the core's own objects: ``numnet.init.X is
numnet.core.init.X``. The library itself imports ``numnet.core.init``.
"""

from numnet.core.init import *  # noqa: F403  (its public names: its __all__ where it has one)
