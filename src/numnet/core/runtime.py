"""numnet's thread runtime: the one place that owns helper threads and BLAS thread limits.

``threads(n)`` is what every command's ``--threads N`` means: numnet's own helper threads,
the BLAS pools (through threadpoolctl, when installed) and, when PyTorch is already imported
(the optional reference), its intra-op threads -- all set to ``n`` inside the block and
restored after. Results never depend on ``n``: work is split by sizes only.

How numnet uses the cores: a training step runs whole on the calling thread, BLAS held to one
thread (``single_threaded_blas``): the layers' GEMMs are small, BLAS's own threads would
oversubscribe the cores, and on a busy machine a multithreaded BLAS call can wait a whole
scheduler time slice for its second thread -- a 50 us GEMM then takes milliseconds. (Measured on
2 cores: splitting a step of 100 images over two threads gained nothing; the step is bound by
memory traffic. More cores go to independent runs: ``reproduce`` and ``sweep`` run on worker
processes.)

Evaluation spreads over the cores (``run_lanes``): a forward-only pass is cut into chunks of
rows by size alone (``split_rows``), and up to ``threads`` lanes -- the caller and helpers --
take the chunks in turn from a shared counter, each chunk run whole through the model on its
lane. A chunk's numbers do not depend on which lane ran it (BLAS is still held to one thread),
so results are identical for any thread count; a helper that the machine never schedules just
leaves its chunks to the caller. Kept buffers are per lane (``current_lane`` names them), and
the helpers run under the caller's floating-point error settings.

The state lives in one ``Runtime`` object, ``RUNTIME``; the module functions act on it.
``NUMNET_THREADS`` sets the starting thread count (default: ``available_cores()``); a bad
value never fails an import -- it is ignored, ``environment_problem()`` says why, and
``environment_threads()`` raises ``ThreadsError`` for a caller that wants the error.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from numnet.core.errors import ThreadsError

ENV_VAR = "NUMNET_THREADS"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(n: Any, source: str = "threads") -> int:
    """``n`` as a thread count (a positive integer), else ``ThreadsError`` naming ``source``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ThreadsError(f"{source} must be a positive integer, got {n!r}")
    return int(n)


def environment_threads() -> int | None:
    """The thread count ``NUMNET_THREADS`` asks for (None when unset); ``ThreadsError`` when
    it is set to anything but a positive integer (``"abc"``, ``""``, ``"0"``)."""
    text = os.environ.get(ENV_VAR)
    if text is None:
        return None
    try:
        return check_threads(int(text.strip()), ENV_VAR)
    except ValueError:  # int() failed, or ThreadsError (a ValueError too)
        raise ThreadsError(
            f"{ENV_VAR} must be a positive integer, got {text!r}; unset it or use e.g. "
            f"{ENV_VAR}=1 (ignored: numnet uses {available_cores()} threads)"
        ) from None


def environment_problem() -> str | None:
    """Why ``NUMNET_THREADS`` is ignored (a one-line message), or None when it is fine."""
    try:
        environment_threads()
    except ThreadsError as exc:
        return str(exc)
    return None


def default_threads() -> int:
    """``NUMNET_THREADS`` when it is valid, else ``available_cores()``."""
    try:
        n = environment_threads()
    except ThreadsError:
        n = None
    return n if n is not None else available_cores()


def split_rows(n: int, chunk: int) -> list[tuple[int, int]]:
    """``n`` rows cut into ``ceil(n / chunk)`` ranges of near-equal sizes (the first ones one
    row longer), by the sizes alone: ``split_rows(1000, 256)`` gives four ranges of 250."""
    count = max(1, -(-n // chunk))
    size, extra = divmod(n, count)
    bounds = [0]
    for k in range(count):
        bounds.append(bounds[-1] + size + (k < extra))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


_LOCAL = threading.local()  # .lane: the lane the calling thread runs inside run_lanes


def current_lane() -> int:
    """The lane (0, 1, ...) the calling thread runs inside ``run_lanes``; 0 outside one."""
    return getattr(_LOCAL, "lane", None) or 0


class single_lane:  # noqa: N801 -- used as a context manager
    """``with single_lane(): ...``: every ``run_lanes`` of this thread inside the block runs its
    chunks here, one after the other (for work beside work that has the other cores)."""

    def __enter__(self) -> single_lane:
        self._before = getattr(_LOCAL, "lane", None)
        _LOCAL.lane = 0
        return self

    def __exit__(self, *exc: object) -> None:
        _LOCAL.lane = self._before


class _SingleThreadedBlas:
    """Context: BLAS on one thread inside (re-entrant, thread-safe; restores the count)."""

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __enter__(self) -> None:
        self._runtime._enter_single_blas()

    def __exit__(self, *exc: object) -> None:
        self._runtime._exit_single_blas()


class Runtime:
    """Helper threads and BLAS limits of one process. Use the module's ``RUNTIME``."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = check_threads(threads) if threads is not None else default_threads()
        self._lock = threading.Lock()  # guards the pool and the BLAS depth
        self._pool: ThreadPoolExecutor | None = None
        self._pool_workers = 0
        self._pool_pid = -1
        self._blas: list[Any] | None = None  # threadpoolctl controllers, found on first use
        self._blas_depth = 0
        self._blas_saved: list[int] = []
        self.single_threaded_blas = _SingleThreadedBlas(self)

    # -- thread count ----------------------------------------------------------------------------
    @property
    def threads(self) -> int:
        """Lanes an evaluation may use (the caller plus ``threads - 1`` helpers)."""
        return self._threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._threads = check_threads(n)

    # -- BLAS --------------------------------------------------------------------------------------
    def blas_controllers(self) -> list[Any]:
        """threadpoolctl's controllers of the loaded BLAS libraries ([] without threadpoolctl)."""
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController

                self._blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
            except Exception:  # threadpoolctl missing or unable to inspect: leave BLAS alone
                self._blas = []
        return self._blas

    def _enter_single_blas(self) -> None:
        libs = self._blas if self._blas is not None else self.blas_controllers()
        with self._lock:
            if self._blas_depth == 0 and libs:
                self._blas_saved = [lib.num_threads for lib in libs]
                for lib, count in zip(libs, self._blas_saved, strict=True):
                    if count != 1:  # a set costs microseconds: a dense model's step is ~100 us
                        lib.set_num_threads(1)
            self._blas_depth += 1

    def _exit_single_blas(self) -> None:
        with self._lock:
            self._blas_depth -= 1
            if self._blas_depth == 0 and self._blas:
                for lib, count in zip(self._blas, self._blas_saved, strict=True):
                    if count != 1:
                        lib.set_num_threads(count)

    # -- parts on threads --------------------------------------------------------------------------
    def _helpers(self, workers: int) -> ThreadPoolExecutor:
        """The helper pool with ``workers`` threads (rebuilt when the count changes or after a
        fork, whose child inherits no threads)."""
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid() or self._pool_workers != workers:
                if self._pool is not None and self._pool_pid == os.getpid():
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="numnet")
                self._pool_workers, self._pool_pid = workers, os.getpid()
            return self._pool

    def run_lanes(self, fn: Callable[[int], None], count: int, xp: Any = np) -> None:
        """``fn(0)``, ..., ``fn(count - 1)`` on up to ``threads`` lanes: lane 0 is the caller,
        the others helper threads; each lane takes the next index from a shared counter until
        none is left, so the caller does every chunk that no helper got to. Inside ``fn``,
        ``current_lane()`` names the lane (for per-lane buffers). NumPy only, and only when
        BLAS can be held to one thread; ``fn`` must write disjoint outputs for each index."""
        lanes = min(self._threads, count)
        nested = getattr(_LOCAL, "lane", None) is not None
        if lanes < 2 or nested or xp is not np or not self.blas_controllers():
            for k in range(count):
                fn(k)
            return
        lock, taken = threading.Lock(), [0]

        def lane(index: int) -> None:
            _LOCAL.lane = index
            try:
                while True:
                    with lock:
                        k, taken[0] = taken[0], taken[0] + 1
                    if k >= count:
                        return
                    try:
                        fn(k)
                    except BaseException:
                        with lock:  # stop every lane: the error is raised after they finish
                            taken[0] = count
                        raise
            finally:
                _LOCAL.lane = None

        pool = self._helpers(self._threads - 1)
        helper_lane = with_callers_errstate(lane)
        futures = [pool.submit(helper_lane, i) for i in range(1, lanes)]
        error: BaseException | None = None
        try:
            lane(0)
        except BaseException as exc:
            error = exc
        for future in futures:
            if future.cancel():  # never started: lane 0 took its chunks
                continue
            try:
                future.result()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


RUNTIME = Runtime()


def set_threads(n: int) -> None:
    """Let evaluations use ``n`` threads (any positive count; results are identical)."""
    RUNTIME.threads = n


def get_threads() -> int:
    """numnet's thread count (the lanes of an evaluation)."""
    return RUNTIME.threads


def single_threaded_blas() -> _SingleThreadedBlas:
    """``with single_threaded_blas(): ...`` runs the block with BLAS on one thread.

    Enter it on the thread that drives the work, around all of it: with OpenBLAS 0.3.31 a
    thread-count change made from a helper thread did not take effect (measured), so the
    count a helper's GEMMs run with is the one its driver set."""
    return RUNTIME.single_threaded_blas


def with_callers_errstate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` made to run under the floating-point error settings of the thread calling this
    now (they are per thread in NumPy): for work handed to another thread."""
    errstate = np.geterr()

    def run(*args: Any) -> Any:
        with np.errstate(**errstate):
            return fn(*args)

    return run


def run_lanes(fn: Callable[[int], None], count: int, xp: Any = np) -> None:
    """``RUNTIME.run_lanes``: chunks of an evaluation, on up to ``get_threads()`` lanes."""
    RUNTIME.run_lanes(fn, count, xp)


class threads:  # noqa: N801 -- used as a context manager, like threadpoolctl's
    """``with threads(n): ...`` runs the block with ``n`` threads for numnet, BLAS and PyTorch.

    ``n=None`` leaves everything as it is. Re-entrant; restores the previous counts on exit.
    """

    def __init__(self, n: int | None) -> None:
        self.n = None if n is None else check_threads(n)
        self._saved: tuple[Any, ...] | None = None

    def __enter__(self) -> threads:
        if self.n is None:
            return self
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
        set_threads(self.n)
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
