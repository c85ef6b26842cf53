"""``python -m numnet`` is the ``numnet`` command."""

import sys

from numnet.lab.cli import main

sys.exit(main())
