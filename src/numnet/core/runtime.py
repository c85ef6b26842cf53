"""numnet's thread runtime: the one place that owns helper threads and BLAS thread limits.

``threads(n)`` is what every command's ``--threads N`` means: numnet's own helper threads,
the BLAS pools (through threadpoolctl, when installed) and, when PyTorch is already imported
(the optional reference), its intra-op threads -- all set to ``n`` inside the block and
restored after. Results never depend on ``n``: work is split by sizes only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------------------------
# Two cores: the batch split in two, BLAS single-threaded
# ----------------------------------------------------------------------------------------------
# The conv fast path (ConvPool2x2) splits a big batch into two halves of images and runs one
# half on a helper thread while the calling thread runs the other: im2col copies, GEMMs and
# pooling passes all release the GIL, so both cores work on everything (only the weight
# gradient needs a final sum). BLAS is kept single-threaded meanwhile (through threadpoolctl):
# its own threads would oversubscribe the cores, and on a busy machine a multithreaded BLAS
# call can wait a whole scheduler time slice for its second thread -- a 50 us GEMM then takes
# milliseconds. If the helper thread has not started its half by the time the caller is done
# with the other, the caller takes it back, so a busy machine costs no such wait here either.
# ``set_threads(1)`` (or the environment variable NUMNET_THREADS=1) keeps all the work on the
# calling thread, e.g. when several processes share the cores.

SPLIT_MIN_ELEMENTS = 100_000  # a split pays off above about this many conv outputs
_threads = max(1, min(2, int(os.environ.get("NUMNET_THREADS", os.cpu_count() or 1))))
_helper: ThreadPoolExecutor | None = None
_helper_pid = -1
_blas: list[Any] | None = None  # threadpoolctl controllers of NumPy's BLAS, found on first use
_blas_lock = threading.Lock()
_blas_depth = 0
_blas_saved: list[int] = []


def set_threads(threads: int) -> None:
    """Use 1 or 2 threads for the conv fast path (results are identical)."""
    global _threads
    if threads not in (1, 2):
        raise ValueError(f"threads must be 1 or 2, got {threads}")
    _threads = threads


def get_threads() -> int:
    return _threads


def _blas_controllers() -> list[Any]:
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # threadpoolctl missing or unable to inspect: leave BLAS alone
            _blas = []
    return _blas


class _SingleThreadedBlas:
    """Context: BLAS on one thread inside (re-entrant, thread-safe; restores the count)."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _blas_depth, _blas_saved
        libs = _blas if _blas is not None else _blas_controllers()
        with _blas_lock:
            if _blas_depth == 0 and libs:
                _blas_saved = [lib.num_threads for lib in libs]
                for lib in libs:
                    lib.set_num_threads(1)
            _blas_depth += 1

    def __exit__(self, *exc: object) -> None:
        global _blas_depth
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas:
                for lib, count in zip(_blas, _blas_saved, strict=True):
                    lib.set_num_threads(count)


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """``with single_threaded_blas(): ...`` runs the block with BLAS on one thread."""
    return _SINGLE_THREADED_BLAS


def split_parts(n: int, elements: int) -> list[tuple[int, int]]:
    """Image ranges to process: two halves for a big batch, else one. The split depends on the
    sizes only -- not on threads or device -- so results are identical whatever runs them."""
    if n < 2 or elements < SPLIT_MIN_ELEMENTS:
        return [(0, n)]
    return [(0, n // 2), (n // 2, n)]


def run_parts(fn: Callable[[int], None], count: int, xp: Any = np) -> None:
    """``fn(0)``, ..., ``fn(count - 1)``. Two parts run at once when two threads are allowed
    (NumPy, BLAS held to one thread): ``fn(0)`` on the helper thread, ``fn(1)`` here; if the
    helper has not started by the time ``fn(1)`` is done, ``fn(0)`` runs here too. ``fn`` must
    write disjoint outputs for each part."""
    global _helper, _helper_pid
    if count == 1 or _threads < 2 or xp is not np or not _blas_controllers():
        for k in range(count):
            fn(k)
        return
    if _helper is None or _helper_pid != os.getpid():  # none yet, or inherited by a fork
        _helper, _helper_pid = ThreadPoolExecutor(1, thread_name_prefix="numnet"), os.getpid()
    future = _helper.submit(fn, 0)
    try:
        fn(1)
    finally:
        if future.cancel():  # the helper never got a core: do its part here
            fn(0)
        else:
            future.result()




def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class threads:  # noqa: N801 -- used as a context manager, like threadpoolctl's
    """``with threads(n): ...`` runs the block with ``n`` threads for numnet, BLAS and PyTorch.

    ``n=None`` leaves everything as it is. Re-entrant; restores the previous counts on exit.
    """

    def __init__(self, n: int | None) -> None:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"threads must be a positive integer, got {n!r}")
        self.n = n
        self._saved: tuple[Any, ...] | None = None

    def __enter__(self) -> threads:
        if self.n is None:
            return self
        import sys

        torch = sys.modules.get("torch")
        blas = None
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it BLAS keeps its own count
            threadpool_limits = None
        if threadpool_limits is not None:
            blas = threadpool_limits(self.n, user_api="blas")
        torch_before = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(self.n)
        self._saved = (get_threads(), blas, torch, torch_before)
        set_threads(min(self.n, 2))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        numnet_before, blas, torch, torch_before = self._saved
        set_threads(numnet_before)
        if blas is not None:
            blas.restore_original_limits()
        if torch is not None:
            torch.set_num_threads(torch_before)
        self._saved = None
