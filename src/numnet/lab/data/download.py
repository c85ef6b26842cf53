"""HTTP(S) mirrors: each missing file from the first mirror that serves it, with a timeout,
retries and a progress bar, verified before it is written into the cache.

Failures are sorted so that an offline machine gives up at once: a host that does not resolve
or refuses the connection is :class:`Unreachable` (no retry, and that mirror is skipped for the
other files too), a 4xx answer is :class:`DownloadError` without retry, and transient failures
(timeouts, resets, a connection dropped half-way, 5xx, 429) are retried with exponential
backoff. A file goes to a hidden ``.part`` file in the cache, capped at
``HttpPolicy.max_bytes``, and is read from there with its header checked against the pins
before anything is allocated: a wrong or hostile download costs its bytes on disk, never a
memory blow-up.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from numnet import __version__
from numnet.core.errors import DataError
from numnet.core.io import temporary_path
from numnet.lab.data.cache import store
from numnet.lab.data.checks import Found, note, read_checked
from numnet.lab.data.registry import DatasetSpec

_CHUNK = 1 << 16


@dataclass(frozen=True)
class HttpPolicy:
    """Timeout (seconds per socket operation), attempts per URL, first backoff (doubles), and
    the most bytes one file may have (a broken or hostile server cannot fill the disk)."""

    timeout: float = 30.0
    attempts: int = 3
    backoff: float = 1.0
    max_bytes: int = 1 << 27  # 128 MiB; MNIST's largest .gz is 9.9 MB, Fashion-MNIST's 26 MB


class DownloadError(Exception):
    """The URL did not give the file (after retries where retrying made sense)."""


class Unreachable(DownloadError):
    """The host cannot be reached at all (no DNS answer, connection refused)."""


def download(
    url: str,
    out: BinaryIO,
    *,
    policy: HttpPolicy = HttpPolicy(),
    progress: bool = True,
    desc: str | None = None,
) -> int:
    """Write the body of ``url`` to ``out`` (truncated first on every attempt); return its size.

    Raises :class:`Unreachable` or :class:`DownloadError` with a short reason.
    """
    last: DownloadError | None = None
    for attempt in range(max(1, policy.attempts)):
        if attempt:
            time.sleep(policy.backoff * 2 ** (attempt - 1))
        out.seek(0)
        out.truncate()
        try:
            return _download_once(url, out, policy.timeout, progress, desc, policy.max_bytes)
        except _Retryable as exc:
            tries = attempt + 1
            last = DownloadError(f"{exc} (after {tries} attempt{'s' if tries > 1 else ''})")
    assert last is not None
    raise last


class _Retryable(Exception):
    pass


def _download_once(
    url: str, out: BinaryIO, timeout: float, progress: bool, desc: str | None, max_bytes: int
) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": f"numnet/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.gaierror | ConnectionRefusedError):
            raise Unreachable(_reason_text(reason)) from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DownloadError(f"TLS certificate not accepted: {reason}") from None
        if isinstance(reason, TimeoutError | socket.timeout | ConnectionError | OSError):
            raise _Retryable(_reason_text(reason)) from None
        raise DownloadError(str(reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Retryable(_reason_text(exc)) from None

    with response:
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise DownloadError(f"the server announces {expected} bytes, more than {max_bytes}")
        from tqdm import tqdm  # imported here: only downloads need it

        bar = tqdm(
            total=expected,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            disable=not (progress and sys.stderr.isatty()),
            leave=False,
        )
        received = 0
        with bar:
            while True:
                try:
                    chunk = response.read1(_CHUNK)
                except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                    raise _Retryable(
                        f"connection lost after {received} bytes: {_reason_text(exc)}"
                    ) from None
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f"the server sent more than {max_bytes} bytes")
                out.write(chunk)  # an OSError here (disk full) is the caller's to report
                bar.update(len(chunk))
    # http.client does not raise when a Content-Length body ends early; check it here.
    if expected is not None and received != expected:
        raise _Retryable(f"connection dropped after {received} of {expected} bytes")
    out.flush()
    return received


def _reason_text(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


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
            found.add(f.name, array, sha, store(cache, f, array), f"mirror {base}")
            break
