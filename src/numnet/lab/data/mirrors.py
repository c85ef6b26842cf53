"""HTTP(S) mirrors: each missing file from the first mirror that serves it, verified before it
is written into the cache.

A file goes to a hidden ``.part`` file in the cache first and is read from there with the
header checked against the pins before anything is allocated, so a wrong or hostile download
costs its bytes on disk (capped by ``HttpPolicy.max_bytes``), never a memory blow-up. An
unreachable host is skipped at once and for the remaining files.
"""

from __future__ import annotations

from pathlib import Path

from numnet.core.errors import DataError
from numnet.core.io import temporary_path
from numnet.lab.data.cache import store
from numnet.lab.data.checks import Found, note, read_checked
from numnet.lab.data.download import DownloadError, HttpPolicy, Unreachable, download
from numnet.lab.data.registry import DatasetSpec


def from_mirrors(
    spec: DatasetSpec, cache: Path, found: Found, policy: HttpPolicy, progress: bool
) -> None:
    """Fetch ``found.missing(spec)`` from ``spec.mirrors`` (``base + name + ".gz"``)."""
    unreachable: set[str] = set()
    for f in found.missing(spec):
        for base in spec.mirrors:
            if base in unreachable:
                continue
            url = base + f.name + ".gz"
            with temporary_path(cache, f.name + ".gz") as tmp:
                try:
                    with open(tmp, "wb") as out:
                        download(url, out, policy=policy, progress=progress, desc=f.name + ".gz")
                except Unreachable as exc:
                    unreachable.add(base)
                    note(found, progress, f"mirror {base}: unreachable, {exc}; skipped")
                    continue
                except DownloadError as exc:
                    note(found, progress, f"{url}: {exc}")
                    continue
                try:
                    array, sha = read_checked(spec, f, tmp, url, pinned=True, found=found)
                except DataError as exc:
                    note(found, progress, f"{exc}; trying the next source")
                    continue
            found.add(f.name, array, sha, store(spec, cache, f, array), f"mirror {base}")
            break
