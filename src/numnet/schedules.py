"""``numnet.schedules`` is ``numnet.core.schedules`` (learning-rate schedules), short.

``from numnet.schedules import Cosine`` gives the core's own objects: ``numnet.schedules.X is
numnet.core.schedules.X``. The library itself imports ``numnet.core.schedules``.
"""

from numnet.core.schedules import *  # noqa: F403  (its public names: its __all__ where it has one)
