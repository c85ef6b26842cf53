"""Helpers for the hostile-input data tests: memory peaks, gzip bombs, one-line CLI errors,
a filled cache, a cache that refuses deletions, and a guard against hangs."""

from __future__ import annotations

import dataclasses
import signal
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_data_support import FakeMnist, copied

from numnet.lab.cli import main
from numnet.lab.data import registry

MiB = 1 << 20


def _permissions_enforced() -> bool:
    """Whether a chmod 000 file is unreadable here (not for root, who bypasses permissions)."""
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        return False


PERMISSIONS_IGNORED = not _permissions_enforced()


def registered_fake(
    fake_once: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeMnist:
    """A copy of the fake MNIST (no mirrors, no package) registered as "mnist"; the cache in
    ``tmp_path / "cache"`` through NUMNET_CACHE_DIR."""
    for name in ("NUMNET_DATA_DIR", "NUMNET_PIP_DOWNLOAD", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMNET_CACHE_DIR", str(tmp_path / "cache"))
    fake = copied(fake_once, tmp_path / "fake")
    fake = dataclasses.replace(fake, spec=dataclasses.replace(fake.spec, package=None))
    monkeypatch.setitem(registry.DATASETS, "mnist", fake.spec)
    return fake


def peak_bytes(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak traced allocation while ``call()`` runs, and what it raised."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    raised: BaseException | None = None
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - returned to the test to assert on
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def gzip_with_zeros(head: bytes, zeros: int) -> bytes:
    """``gzip(head + zeros * b"\\0")`` without building the zeros in memory."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [comp.compress(head)]
    block = bytes(MiB)
    for _ in range(zeros // MiB):
        parts.append(comp.compress(block))
    parts.append(comp.compress(bytes(zeros % MiB)))
    parts.append(comp.flush())
    return b"".join(parts)


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("numnet: error: ") and err.count("\n") == 1, err
    return err[len("numnet: error: ") : -1]


@contextmanager
def no_hang(seconds: float = 5.0) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM after ``seconds`` interrupts a blocked open()."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def fill_cache(fake: FakeMnist, cache: Path) -> Path:
    directory = cache / "mnist"
    directory.mkdir(parents=True)
    for f in fake.spec.files:
        (directory / f.name).write_bytes((fake.raw_dir / f.name).read_bytes())
    return directory


def read_only(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Make unlinking in ``directory`` fail as in a read-only cache (tests run as root)."""
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.parent == directory:
            raise PermissionError(13, "Permission denied", str(self))
        real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
