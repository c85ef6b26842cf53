"""``numnet.optim`` is ``numnet.core.optim`` (the optimisers) under a short name.

``from numnet.optim import SGD`` gives the core's own objects: ``numnet.optim.X is
numnet.core.optim.X``. The library itself imports ``numnet.core.optim``.
"""

from numnet.core.optim import *  # noqa: F403  (its public names: its __all__ where it has one)
