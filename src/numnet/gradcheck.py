"""``numnet.gradcheck`` is ``numnet.core.gradcheck`` (finite differences) under a short name.

``from numnet.gradcheck import check_model`` gives the core's own objects: ``numnet.gradcheck.X is
numnet.core.gradcheck.X``. The library itself imports ``numnet.core.gradcheck``.
"""

from numnet.core.gradcheck import *  # noqa: F403  (its public names: its __all__ where it has one)
