"""numnet's one way to read a file a user can hand it: bounded, regular files only, one line
when anything is wrong. Standard library and NumPy only.

Every document numnet reads back -- results.json, run and sweep-task records, folder identity
files, protocol TOML, the JSON header and the arrays of a weights ``.npz``, images -- goes
through this module, which checks, in this order and before anything is parsed or allocated:

1. the path is a **regular file** (:func:`open_regular`: ``O_NONBLOCK`` so that a FIFO cannot
   block the open, then ``fstat`` + ``S_ISREG``; a pipe, a device, a socket or a directory is
   refused by name, never reported as "not found");
2. its **size** (``fstat`` first, then at most ``max_bytes + 1`` bytes are read, so a file that
   grows while read is caught too);
3. its **nesting depth** (:func:`nesting_depth`: the brackets outside strings are counted with
   NumPy before the parser, which recurses, sees the text; TOML comments and strings are
   skipped the same way; the parsed value's depth is checked again without recursion);
4. its **values**: JSON holds only finite numbers (``NaN``, ``Infinity``, ``1e999`` are refused
   naming their key path) and strings that are valid Unicode (a lone surrogate ``\\ud800`` would
   fail later, when the report is written as UTF-8).

Every failure is raised as the caller's :class:`~numnet.core.errors.NumnetError` subclass
(``error=ResultsError``, ``ProtocolError``, ``WeightsFileError``, ``DataError``), with one line
naming the file (and the key) and saying what to do; the command line exits 2.

A weights ``.npz`` (:func:`open_npz`) is read member by member from its zip directory: the
number of members and the directory's size are checked from the end record, each member's
declared uncompressed size against the shape and dtype its ``.npy`` header (and the caller)
declare, before a byte of data is inflated; the array is then read into one allocation of
exactly that size.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import stat
import struct
import tomllib
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from numnet.core.errors import NumnetError

KiB, MiB = 1 << 10, 1 << 20

#: Bounds of the documents numnet reads (the callers may pass their own).
MAX_JSON_BYTES = 64 * MiB  # a 12-run results.json with internals is about 0.5 MB
MAX_JSON_DEPTH = 32  # numnet's own JSON documents nest 8 deep
MAX_TOML_BYTES = 1 * MiB  # a protocol file is a few KB
MAX_TOML_DEPTH = 16
#: A zip directory larger than this, or with more members, is not a weights file.
MAX_NPZ_MEMBERS = 4096
MAX_NPZ_DIRECTORY_BYTES = 4 * MiB
#: The .npy header of one member (NumPy's own default limit is 10,000 bytes).
MAX_NPY_HEADER_BYTES = 10_000

ErrorType = type[NumnetError]


def display(path: str | os.PathLike[str]) -> str:
    """``path`` as one printable line whatever bytes it holds: bytes that are not UTF-8 show
    as U+FFFD, control characters (a newline in a file name) as escapes."""
    text = os.fsencode(path).decode("utf-8", "replace")
    return printable(text)


def printable(text: str) -> str:
    """``text`` with its control characters escaped, so that a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# ------------------------------------------------------------------------------ regular files


def open_regular(path: str | os.PathLike[str], what: str,
                 error: ErrorType = NumnetError) -> BinaryIO:
    """Open ``path`` for reading as a binary file, refusing anything but a regular file before
    any read could block or allocate: a missing file, a broken link, a directory, a FIFO, a
    device or a socket is ``error`` with one line naming the path and ``what`` it should be.

    O_NONBLOCK makes opening a FIFO return at once (a plain open waits for a writer forever);
    the descriptor is made blocking again once it is known to be a regular file."""
    shown = display(path)
    a_what = ("an " if what[:1] in "aeiou" else "a ") + what
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise error(f"{shown}: broken symbolic link (it points to "
                        f"{display(os.readlink(path))}, which does not exist); give the path "
                        f"of the {what} itself") from None
        raise error(f"{shown}: no such {what} (file not found); check the path") from None
    except IsADirectoryError:
        raise error(f"{shown}: is a directory, not {a_what}; give the path of a file") from None
    except OSError as exc:
        raise error(_open_problem(shown, what, exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{shown}: is a directory, not {a_what}; give the path of a file")
        if not stat.S_ISREG(mode):
            raise error(f"{shown}: is not a regular file (a pipe, a device or a socket), where "
                        f"{a_what} was expected; save it to a file and give that file's path")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_problem(shown: str, what: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{shown}: symbolic link loop; replace the link with the {what}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{shown}: cannot read the {what}: permission denied; make it readable"
    if exc.errno == errno.ENOTDIR:
        return f"{shown}: no such {what} (a part of the path is a file); check the path"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{shown[:200]}...: the path is too long; check it"
    return f"{shown}: cannot open the {what} ({exc.strerror or exc}); check the path"


def file_size(f: BinaryIO) -> int:
    """The size in bytes of the open regular file ``f``."""
    return os.fstat(f.fileno()).st_size


def check_size(size: int, shown: str, what: str, max_bytes: int, error: ErrorType) -> None:
    """Refuse a ``what`` of ``size`` bytes beyond ``max_bytes``, naming both."""
    if size > max_bytes:
        raise error(f"{shown}: the {what} is {_bytes(size)}, more than the {_bytes(max_bytes)} "
                    f"numnet reads; check that it is the right file")


def _bytes(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def read_bytes(path: str | os.PathLike[str], what: str, *, max_bytes: int,
               error: ErrorType = NumnetError) -> bytes:
    """The content of the regular file ``path``, at most ``max_bytes`` (checked from its size
    before reading, and while reading: a file that grows is refused too)."""
    shown = display(path)
    with open_regular(path, what, error) as f:
        check_size(file_size(f), shown, what, max_bytes, error)
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{shown}: cannot read the {what} ({exc.strerror or exc})") from None
    check_size(len(data), shown, what, max_bytes, error)
    return data


def read_text(path: str | os.PathLike[str], what: str, *, max_bytes: int,
              error: ErrorType = NumnetError) -> str:
    """The UTF-8 text of the regular file ``path`` (bounded as :func:`read_bytes`); a leading
    byte-order mark is dropped (editors on Windows write one)."""
    data = read_bytes(path, what, max_bytes=max_bytes, error=error)
    return decode_utf8(data, display(path), what, error)


def decode_utf8(data: bytes, shown: str, what: str, error: ErrorType) -> str:
    """``data`` as UTF-8 text without a byte-order mark; ``error`` naming the first bad byte."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise error(f"{shown}: the {what} is not UTF-8 text ({exc.reason} at byte "
                    f"{exc.start}); save it as UTF-8") from None


# ------------------------------------------------------------------------------ nesting

_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1
_CHUNK = 1 * MiB


def _bracket_depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in ``data`` (strings already removed), counted in
    chunks with NumPy: a 64 MiB file costs tens of milliseconds and 10 MB of memory."""
    depth = peak = 0
    for start in range(0, len(data), _CHUNK):
        steps = _DEPTH_STEP[np.frombuffer(data, np.uint8, min(_CHUNK, len(data) - start), start)]
        running = np.cumsum(steps, dtype=np.int64)
        peak = max(peak, depth + int(running.max()))
        depth += int(running[-1])
    return peak


def _without_json_strings(text: str) -> bytes:
    """``text`` as bytes with the contents of its JSON strings blanked out (a bracket inside a
    string does not nest). A string that never ends blanks nothing: the parser refuses it."""
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    inside = False
    start = 0
    k = data.find(b'"')
    while k != -1:
        if inside:
            backslashes = 0
            j = k - 1
            while j >= start and data[j] == 0x5C:  # an escaped quote does not close the string
                backslashes += 1
                j -= 1
            if backslashes % 2 == 0:
                data[start:k] = bytes(k - start)
                inside = False
        else:
            inside, start = True, k + 1
        k = data.find(b'"', k + 1)
    return bytes(data)


def nesting_depth(text: str, language: str = "json") -> int:
    """How deeply the arrays and objects (JSON) or arrays and inline tables (TOML) of ``text``
    nest, counted before parsing (the parsers recurse once per level). Brackets inside strings
    and, for TOML, comments do not count."""
    if language == "json":
        return _bracket_depth(_without_json_strings(text))
    return _bracket_depth(_without_toml_strings(text))


_TOML_SPECIAL = re.compile(rb"[#\"']")


def _without_toml_strings(text: str) -> bytes:
    """``text`` as bytes with TOML strings (basic, literal, multi-line) and comments blanked."""
    out = bytearray(text.encode("utf-8", "surrogatepass"))
    n = len(out)
    found = _TOML_SPECIAL.search(out)
    while found is not None:
        k = found.start()
        c = out[k]
        if c == 0x23:  # '#': a comment, to the end of the line
            end = out.find(b"\n", k)
            end = n if end == -1 else end
        elif out[k:k + 3] == bytes([c]) * 3:  # a multi-line string
            j = k + 3
            while True:
                j = out.find(bytes([c]) * 3, j)
                if j == -1 or c == 0x27 or not _escaped(out, j, k + 3):
                    break
                j += 1
            end = n if j == -1 else j + 3
        else:  # a one-line string: to its closing quote or the end of the line
            j = k + 1
            while j < n and out[j] != c and out[j] != 0x0A:
                j += 2 if c == 0x22 and out[j] == 0x5C else 1
            end = min(j + 1, n)
        out[k:end] = bytes(end - k)
        found = _TOML_SPECIAL.search(out, end)
    return bytes(out)


def _escaped(data: bytearray, j: int, start: int) -> bool:
    """Whether the character at ``j`` follows an odd number of backslashes (from ``start``)."""
    backslashes = 0
    while j - 1 - backslashes >= start and data[j - 1 - backslashes] == 0x5C:
        backslashes += 1
    return backslashes % 2 == 1


def value_depth(value: Any) -> int:
    """The nesting depth of a parsed value (lists and dicts), computed without recursion (a
    TOML dotted key ``a.b.c...`` nests without a single bracket)."""
    peak = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            peak = max(peak, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            peak = max(peak, d)
            stack.extend((x, d + 1) for x in v)
    return peak


def check_depth(text: str, shown: str, what: str, max_depth: int, error: ErrorType,
                language: str = "json") -> None:
    """Refuse ``text`` nested deeper than ``max_depth`` before any parser sees it."""
    depth = nesting_depth(text, language)
    if depth > max_depth:
        raise error(f"{shown}: the {what} nests {depth} levels deep, more than the {max_depth} "
                    "numnet reads; it was not written by numnet (restore the original)")


# ------------------------------------------------------------------------------ JSON


def first_bad_value(value: Any) -> tuple[str, str] | None:
    """``(key path, what is wrong)`` of the first value numnet's JSON may not hold -- a NaN or
    an infinity, a string or key with a lone surrogate -- or None. Walks without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return path or "the value", f"is {v!r}, not a finite number"
        elif isinstance(v, str):
            if not _valid_unicode(v):
                return path or "the value", "holds a lone surrogate (not valid Unicode)"
        elif isinstance(v, dict):
            items = list(v.items())
            for k, _ in items:
                if not _valid_unicode(k):
                    return f"{path}.{printable(repr(k))}", "is a key that is not valid Unicode"
            stack.extend((f"{path}.{printable(k)}" if path else printable(k), x)
                         for k, x in reversed(items))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def _valid_unicode(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads_json(text: str | bytes, shown: str, what: str, *, max_depth: int = MAX_JSON_DEPTH,
               error: ErrorType = NumnetError) -> Any:
    """Parse JSON ``text`` (already bounded in size) as numnet reads every JSON document:
    depth checked before parsing, then only finite numbers and valid Unicode strings."""
    if isinstance(text, bytes):
        text = decode_utf8(text, shown, what, error)
    check_depth(text, shown, what, max_depth, error)
    try:
        value = json.loads(text)
    except RecursionError:  # belt and braces: the scan above already bounds the depth
        raise error(f"{shown}: the {what} nests too deeply; restore the original") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4300 digits
        raise error(f"{shown}: the {what} is not valid JSON ({printable(str(exc))}); restore "
                    "the original or make it again with numnet") from None
    bad = first_bad_value(value)
    if bad is not None:
        where, problem = bad
        raise error(f"{shown}: {where} {problem}; numnet's JSON holds none, so the {what} was "
                    "edited or damaged (restore the original or make it again with numnet)")
    return value


def read_json(path: str | os.PathLike[str], what: str = "JSON file", *,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH,
              error: ErrorType = NumnetError) -> Any:
    """The JSON document in the regular file ``path``, bounded in size (``max_bytes``) and
    depth (``max_depth``), holding only finite numbers and valid strings; ``error`` (one line
    naming the file, and the key when a value is at fault) otherwise."""
    data = read_bytes(path, what, max_bytes=max_bytes, error=error)
    return loads_json(data, display(path), what, max_depth=max_depth, error=error)


# ------------------------------------------------------------------------------ TOML


def loads_toml(text: str, shown: str, what: str, *, max_depth: int = MAX_TOML_DEPTH,
               error: ErrorType = NumnetError) -> dict[str, Any]:
    """Parse TOML ``text`` with its nesting bounded: brackets counted before parsing, the
    parsed tables' depth (dotted keys nest without brackets) after."""
    check_depth(text, shown, what, max_depth, error, language="toml")
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise error(f"{shown}: the {what} nests too deeply; simplify it") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{shown}: not valid TOML: {printable(str(exc))}") from None
    depth = value_depth(value)
    if depth > max_depth:
        raise error(f"{shown}: the {what} nests {depth} tables deep, more than the {max_depth} "
                    "numnet reads; simplify it")
    return value


def read_toml(path: str | os.PathLike[str], what: str = "TOML file", *,
              max_bytes: int = MAX_TOML_BYTES, max_depth: int = MAX_TOML_DEPTH,
              error: ErrorType = NumnetError) -> tuple[str, dict[str, Any]]:
    """``(text, document)`` of the TOML file ``path``, bounded as :func:`read_json`."""
    text = read_text(path, what, max_bytes=max_bytes, error=error)
    return text, loads_toml(text, display(path), what, max_depth=max_depth, error=error)


# ------------------------------------------------------------------------------ NPZ


class NpzDocument:
    """An open ``.npz`` (a zip of ``.npy`` members) read with every size checked before it is
    allocated: see :func:`open_npz`."""

    def __init__(self, zf: zipfile.ZipFile, shown: str, what: str, error: ErrorType) -> None:
        self._zf = zf
        self.shown, self.what, self.error = shown, what, error
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise error(f"{shown}: member {printable(name)!r} is not an array (.npy); the "
                            f"{what} is corrupted or was not written by numnet")
            key = name.removesuffix(".npy")
            if key in self.members:
                raise error(f"{shown}: member {printable(name)!r} appears twice; the {what} is "
                            "corrupted or was not written by numnet")
            self.members[key] = info

    @property
    def names(self) -> list[str]:
        """The arrays' names (members without ``.npy``), in the zip's order."""
        return list(self.members)

    def declared_size(self, name: str) -> int:
        """The uncompressed size the zip directory declares for array ``name``."""
        return self.members[name].file_size

    def read_array(self, name: str, dtype: str | np.dtype, shape: tuple[int, ...] | None,
                   max_bytes: int) -> np.ndarray:
        """Array ``name``, which must be of ``dtype`` and ``shape`` (None: one-dimensional,
        any length) and at most ``max_bytes``: its ``.npy`` header and the zip's declared size
        are checked against them before the data are inflated, into one array of that size."""
        shown, error = self.shown, self.error
        where = f"{shown}: array {printable(name)!r}"
        info = self.members[name]
        want = np.dtype(dtype)
        if info.file_size > max_bytes + MAX_NPY_HEADER_BYTES:
            raise error(f"{where} declares {_bytes(info.file_size)}, more than the "
                        f"{_bytes(max_bytes)} it may hold; the {self.what} is corrupted or "
                        "forged")
        with self._zf.open(info) as fp:
            try:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    found_shape, fortran, found = np.lib.format.read_array_header_1_0(
                        fp, max_header_size=MAX_NPY_HEADER_BYTES)
                elif version == (2, 0):
                    found_shape, fortran, found = np.lib.format.read_array_header_2_0(
                        fp, max_header_size=MAX_NPY_HEADER_BYTES)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except (ValueError, SyntaxError, TypeError) as exc:
                raise error(f"{where} has no readable .npy header ({printable(str(exc))}); the "
                            f"{self.what} is corrupted") from None
            header_bytes = fp.tell()
            if found != want or found.hasobject:
                raise error(f"{where} is {found}, the header says {want}; the {self.what} is "
                            "corrupted")
            if shape is None:
                if len(found_shape) != 1:
                    raise error(f"{where} has shape {found_shape}, one dimension expected; the "
                                f"{self.what} is corrupted")
            elif tuple(found_shape) != tuple(shape):
                raise error(f"{where} has shape {tuple(found_shape)}, the header says "
                            f"{tuple(shape)}; the {self.what} is corrupted")
            count = math.prod(found_shape)
            nbytes = count * want.itemsize
            if nbytes > max_bytes:
                raise error(f"{where} holds {_bytes(nbytes)}, more than the {_bytes(max_bytes)} "
                            f"it may hold; the {self.what} is corrupted or forged")
            if info.file_size != header_bytes + nbytes:
                raise error(f"{where} declares {info.file_size} bytes where its shape and dtype "
                            f"make {header_bytes + nbytes}; the {self.what} is corrupted")
            array = np.empty(count, dtype=want)
            view = memoryview(array).cast("B")
            filled = 0
            while filled < nbytes:  # ZipExtFile stops at the declared size, CRC checked
                got = fp.readinto(view[filled:])
                if not got:
                    raise error(f"{where} is truncated ({filled} of {nbytes} bytes); the "
                                f"{self.what} is corrupted")
                filled += got
        return array.reshape(found_shape, order="F" if fortran else "C")


def _check_zip_directory(f: BinaryIO, shown: str, what: str, error: ErrorType) -> None:
    """Refuse a zip whose end record announces more members or a larger directory than a
    weights file has, before ``zipfile`` builds an object per member."""
    size = file_size(f)
    tail_len = min(size, 22 + 65535)  # the end record and the longest comment
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    k = tail.rfind(b"PK\x05\x06")
    if k == -1 or len(tail) - k < 22:
        return  # not a zip: zipfile says so in its own words
    entries, directory = struct.unpack("<HI", tail[k + 10:k + 16])
    if entries == 0xFFFF or directory == 0xFFFFFFFF:
        return  # zip64: its sizes are in another record; the file's size still bounds them
    if entries > MAX_NPZ_MEMBERS or directory > MAX_NPZ_DIRECTORY_BYTES:
        raise error(f"{shown}: the {what} announces {entries} members in a {_bytes(directory)} "
                    f"directory, more than numnet reads ({MAX_NPZ_MEMBERS} members, "
                    f"{_bytes(MAX_NPZ_DIRECTORY_BYTES)}); it was not written by numnet")


@contextlib.contextmanager
def open_npz(path: str | os.PathLike[str], what: str, *, max_bytes: int,
             error: ErrorType = NumnetError) -> Iterator[NpzDocument]:
    """Open the ``.npz`` file ``path`` (a regular file of at most ``max_bytes``) and its zip
    directory; the members are read with :meth:`NpzDocument.read_array`. A damaged zip is
    ``error`` saying the file is corrupted or truncated."""
    shown = display(path)
    with open_regular(path, what, error) as f:
        check_size(file_size(f), shown, what, max_bytes, error)
        try:
            _check_zip_directory(f, shown, what, error)
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                yield NpzDocument(zf, shown, what, error)
        except NumnetError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
                KeyError, NotImplementedError, RuntimeError) as exc:
            # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
            raise error(f"{shown}: the {what} is corrupted or truncated ({type(exc).__name__}: "
                        f"{printable(str(exc))[:200]})") from None


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (following links), without opening it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_TOML_BYTES", "MAX_TOML_DEPTH",
           "NpzDocument", "check_depth", "check_size", "display", "first_bad_value",
           "loads_json", "loads_toml", "nesting_depth", "open_npz", "open_regular",
           "printable", "read_bytes", "read_json", "read_text", "read_toml", "value_depth"]
