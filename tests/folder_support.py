"""A folder locked by another process, for the tests of the folder lock."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held_by_another_process(out: Path) -> Iterator[subprocess.Popen]:
    """``out`` locked (``core.io.folder_lock``) by a child process while the block runs; yields
    the child (its ``pid`` is the holder named in the error). The child is killed afterwards,
    so the kernel releases its lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from numnet.core.io import folder_lock\n"
         f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
