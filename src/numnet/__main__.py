"""``python -m numnet`` is the ``numnet`` command."""

import sys

from numnet.cli import main

sys.exit(main())
