"""``numnet.errors`` is ``numnet.core.errors`` (the user-facing errors) under a short name.

``from numnet.errors import DefinitionError`` gives the core's own objects: ``numnet.errors.X is
numnet.core.errors.X``. The library itself imports ``numnet.core.errors``.
"""

from numnet.core.errors import *  # noqa: F403  (its public names: its __all__ where it has one)
