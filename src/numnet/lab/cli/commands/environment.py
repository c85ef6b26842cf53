"""The check every command makes before it runs: the environment variables numnet reads."""

from __future__ import annotations

import argparse
import os

from numnet.core import runtime
from numnet.lab.cli.common import UserError


def check(args: argparse.Namespace) -> int:
    """A UserError (one line, exit 2) when ``NUMNET_THREADS`` is set but not a positive
    integer: the core ignores it at import (an import never fails), a command refuses it."""
    if runtime.environment_problem() is not None:
        value = os.environ.get(runtime.ENV_VAR)
        raise UserError(f"{runtime.ENV_VAR} must be a positive integer, got {value!r}; unset it "
                        f"or set it to e.g. {runtime.ENV_VAR}=1")
    return 0
