"""What a run ran on: versions, BLAS, machine and thread counts, and the data it saw.

Recorded in results.json, compare.json and the sweep's summary.json, so that a reader can judge
speed and reproducibility, and so that resuming with other data retrains instead of reusing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from numnet import __version__
from numnet.core import runtime
from numnet.core.datasets import Datasets

#: threadpoolctl's fields kept for each BLAS pool
POOL_FIELDS = ("internal_api", "version", "num_threads", "threading_layer", "architecture")


def blas_pools() -> list[dict[str, Any]]:
    """NumPy's BLAS thread pools as threadpoolctl sees them now (empty without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: pool.get(k) for k in POOL_FIELDS}
            for pool in threadpool_info() if pool.get("user_api") == "blas"]


def blas_thread_counts() -> list[int]:
    """The thread count of each BLAS pool of this process, e.g. ``[1]``."""
    return [int(pool["num_threads"]) for pool in blas_pools()]


def environment_info(threads: int | None = None) -> dict[str, Any]:
    """Versions, BLAS, machine and threads: call it inside ``runtime.threads(threads)`` so that
    the counts recorded are those the runs use. ``threads`` is the ``--threads`` setting
    (None: left as the libraries set them)."""
    blas: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # NumPy builds differ in what they can report
        config = np.show_config(mode="dicts")
        deps = config.get("Build Dependencies", {})
        for key in ("blas", "lapack"):
            if key in deps:
                blas[key] = {k: deps[key].get(k) for k in ("name", "version",
                                                           "openblas configuration")
                             if deps[key].get(k) is not None}
        if "SIMD Extensions" in config:
            blas["simd"] = config["SIMD Extensions"]
    with contextlib.suppress(Exception):
        blas["threadpools"] = blas_pools()
    return {
        "numnet": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "blas": blas,
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or _cpu_model(),
            "cpu_count": os.cpu_count(),
        },
        "threads_setting": threads,
        "numnet_threads": runtime.get_threads(),  # numnet.core.runtime: its kernels' lanes
    }


def machine_text(machine: dict[str, Any]) -> str:
    """An environment's ``machine`` in one line: ``<processor> · <n> CPUs · <platform>``."""
    return (f"{machine.get('processor', '')} · {machine.get('cpu_count')} CPUs · "
            f"{machine.get('platform', '')}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def data_info(dataset: str, data: Datasets) -> dict[str, Any]:
    """The data a run saw: dataset name, split sizes and a content fingerprint (BLAKE2 of the
    train and test arrays, dtypes and shapes)."""
    digest = hashlib.blake2b(digest_size=16)
    for split in (data.train, data.test):
        for array in (split.images, split.labels):
            a = np.ascontiguousarray(array)
            digest.update(str((a.dtype.str, a.shape)).encode())
            digest.update(memoryview(a).cast("B"))
    return {
        "dataset": dataset,
        "train_examples": int(data.train.num_examples),
        "validation_examples": int(data.validation.num_examples),
        "test_examples": int(data.test.num_examples),
        "fingerprint": digest.hexdigest(),
    }
