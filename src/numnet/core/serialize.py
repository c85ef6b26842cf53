"""Save and load model weights: one ``.npz`` file with an embedded JSON header.

File layout (a NumPy ``.npz`` zip, read with ``allow_pickle=False``):
- ``__numnet__``: the JSON header as a uint8 byte array::

      {"format": "numnet-weights", "version": 1,
       "config": {...model.config: name, seed, dtype, conv_activation, bias_init -- or for a
                  model built from a definition, name, layers, seed, dtype, bias_init...},
       "parameters": [{"name": "conv1.weight", "shape": [3, 3, 1, 8], "dtype": "float32",
                       "sha256": "..."}, ...],
       "metadata": {...anything JSON the caller adds...}}
- one array per parameter, under its dotted name, in the public layout (HWIO, (in, out)), and
  one per buffer (batch norm's ``bn.running_mean``, ``bn.running_var``): the model's
  ``named_state``, layer by layer. The header's ``parameters`` list names them all.

``load`` rebuilds any model from the header's config (``models.build(**config)``): a model
built from a definition carries its definition there.

Arrays are stored exactly (bit-exact round trip); the per-array SHA-256 in the header (on top of
the zip's CRC-32) catches corruption. Saving is atomic: a temporary file in the same directory,
fsync, then ``os.replace``. Every problem surfaces as ``WeightsFileError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from numnet.core import documents, models
from numnet.core.backend import array_module, to_numpy
from numnet.core.errors import WeightsFileError
from numnet.core.io import atomic_writer
from numnet.core.layers import check_kernels
from numnet.core.names import DEFAULT_KERNELS

__all__ = [
    "ARCHITECTURE_KEYS", "FORMAT", "HEADER_KEY", "VERSION", "load", "load_into", "read_header",
    "save", "verify",
]  # fmt: skip

FORMAT = "numnet-weights"
VERSION = 1
HEADER_KEY = "__numnet__"
#: config keys that define the architecture (the others -- seed, bias_init -- only the start)
ARCHITECTURE_KEYS = ("name", "conv_activation", "layers")


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def save(path: str | os.PathLike, model: Any, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s parameters and ``model.config`` to ``path`` atomically; return the path.

    metadata: optional JSON-serialisable dict stored in the header (e.g. epochs, lr, accuracy).
    """
    path = Path(path)
    arrays = {name: to_numpy(a) for name, a in _named_state(model)}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "config": getattr(model, "config", {}) or {},
        "parameters": [
            {"name": n, "shape": list(a.shape), "dtype": a.dtype.name, "sha256": _sha256(a)}
            for n, a in arrays.items()
        ],
        "metadata": metadata or {},
    }
    try:
        header_bytes = json.dumps(header, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # ValueError: a NaN or an infinity
        raise WeightsFileError(
            f"{path}: model config or metadata is not strict JSON ({exc}); "
            "pass plain finite numbers, strings, lists and dicts"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:  # temp file, fsync, os.replace; the usual file mode
        np.savez(f, **{HEADER_KEY: np.frombuffer(header_bytes, dtype=np.uint8)}, **arrays)
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a weights file (format, version, config, parameters, metadata)."""
    header, _ = _read(Path(path), with_arrays=False)
    return header


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Read every array of a weights file and check it against the header (names, shapes,
    dtypes, SHA-256); return the header. ``WeightsFileError`` naming the file when it is
    truncated or damaged -- what a resumed run checks before it trusts a saved file."""
    header, _ = _read(Path(path), with_arrays=True)
    return header


#: Bounds of a weights file, checked before anything is inflated: the file, its JSON header,
#: one array, all arrays together, the header's nesting and number of entries. numnet's
#: largest model (model 4) saves about 1.7 MB.
MAX_FILE_BYTES = 1 << 30
MAX_HEADER_BYTES = 4 << 20
MAX_HEADER_DEPTH = 64
MAX_ARRAY_BYTES = 1 << 30
MAX_TOTAL_BYTES = 1 << 30
MAX_PARAMETERS = 4096
MAX_DIMENSIONS = 8
#: The dtypes a parameter may have: NumPy's numbers (floats, integers, booleans) of at most 8
#: bytes, named as NumPy names them ("float32").
ARRAY_KINDS = "fiub"


def _array_dtype(name: str) -> np.dtype | None:
    """The NumPy dtype ``name`` if a parameter may have it, else None."""
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError, SyntaxError):
        return None
    ok = dtype.kind in ARRAY_KINDS and dtype.itemsize <= 8 and dtype.name == name
    return dtype if ok else None


def _listed_arrays(header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` of the arrays the (checked) header says the file holds."""
    return {e["name"]: e for e in header["parameters"]}


def _read(path: Path, with_arrays: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    what_to_do = "re-save it with numnet.core.serialize.save (or numnet run) and try again"
    arrays: dict[str, np.ndarray] = {}
    # open_npz: a regular file (a pipe is "not a regular file", never "not found"), at most
    # MAX_FILE_BYTES, its zip directory bounded; each member's size checked before inflating
    with documents.open_npz(path, "weights file", max_bytes=MAX_FILE_BYTES,
                            error=WeightsFileError) as npz:
        if HEADER_KEY not in npz.members:
            raise WeightsFileError(
                f"{path}: not a numnet weights file (no '{HEADER_KEY}' header); "
                "save weights with numnet.core.serialize.save"
            )
        raw = npz.read_array(HEADER_KEY, np.uint8, None, MAX_HEADER_BYTES)
        header = documents.loads_json(raw.tobytes(), documents.display(path),
                                      "weights file's header", max_depth=MAX_HEADER_DEPTH,
                                      error=WeightsFileError)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise WeightsFileError(f"{path}: header is not a '{FORMAT}' header; {what_to_do}")
        if header.get("version") != VERSION:
            raise WeightsFileError(
                f"{path}: weights format version {header.get('version')!r} is not supported "
                f"(this numnet reads version {VERSION}); re-save it with this numnet"
            )
        _check_header(path, header, what_to_do)
        if with_arrays:
            listed = _listed_arrays(header)
            stored = set(npz.members) - {HEADER_KEY}
            if set(listed) != stored:  # before any array is inflated
                raise WeightsFileError(
                    f"{path}: arrays {sorted(stored)[:8]} do not match the header's list "
                    f"{sorted(listed)[:8]}; the file is corrupted, {what_to_do}"
                )
            for name, entry in listed.items():
                arrays[name] = npz.read_array(name, entry["dtype"], tuple(entry["shape"]),
                                              MAX_ARRAY_BYTES)
    if with_arrays:
        for name, entry in _listed_arrays(header).items():
            if _sha256(arrays[name]) != entry["sha256"]:
                raise WeightsFileError(
                    f"{path}: array '{name}' fails its SHA-256 check; the file is corrupted, "
                    + what_to_do
                )
    return header, arrays


def _check_header(path: Path, header: dict[str, Any], what_to_do: str) -> None:
    """The header's shape (config and metadata objects; ``parameters`` a list of entries with
    a name, a shape of sizes, a dtype and a SHA-256), so that nothing after it meets a
    KeyError or a TypeError. A WeightsFileError naming the file and the entry otherwise."""
    def bad(where: str, what: str) -> WeightsFileError:
        return WeightsFileError(f"{path}: header {where} must be {what}; the file is "
                                f"corrupted, {what_to_do}")

    for key in ("config", "metadata"):
        if not isinstance(header.get(key, {}), dict):
            raise bad(key, "an object")
    entries = header.get("parameters")
    if not isinstance(entries, list):
        raise bad("parameters", "a list")
    if len(entries) > MAX_PARAMETERS:
        raise bad("parameters", f"a list of at most {MAX_PARAMETERS} entries")
    names = set()
    total = 0
    for k, e in enumerate(entries):
        where = f"parameters[{k}]"
        if not isinstance(e, dict):
            raise bad(where, "an object with name, shape, dtype and sha256")
        if not isinstance(e.get("name"), str) or e["name"] in names or e["name"] == HEADER_KEY:
            raise bad(f"{where}.name", "a string naming one array once")
        names.add(e["name"])
        if len(e["name"]) > 200 or not e["name"].isprintable() or e["name"].endswith(".npy"):
            raise bad(f"{where}.name", "a printable name of at most 200 characters")
        shape = e.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ARRAY_BYTES
                for n in shape):
            raise bad(f"{where}.shape", f"a list of at most {MAX_DIMENSIONS} sizes (integers "
                      ">= 0)")
        for key in ("dtype", "sha256"):
            if not isinstance(e.get(key), str):
                raise bad(f"{where}.{key}", "a string")
        dtype = _array_dtype(e["dtype"])
        if dtype is None:
            raise bad(f"{where}.dtype", "the NumPy name of a float, integer or boolean type")
        # the sizes the arrays will take, bounded before any of them is read
        nbytes = math.prod(shape) * dtype.itemsize
        total += nbytes
        if nbytes > MAX_ARRAY_BYTES or total > MAX_TOTAL_BYTES:
            raise bad(f"{where}.shape", f"the shape of an array numnet loads (at most "
                      f"{MAX_ARRAY_BYTES >> 20} MiB each, {MAX_TOTAL_BYTES >> 20} MiB in all)")


def load_into(path: str | os.PathLike, model: Any) -> dict[str, Any]:
    """Copy the weights of ``path`` into ``model`` (bit-exact); return the file's header.

    Raises ``WeightsFileError`` when the file is corrupted, or when its architecture (model name,
    conv activation, parameter names, shapes or dtypes) differs from ``model``'s. The model is
    only modified after every check has passed.
    """
    path = Path(path)
    header, arrays = _read(path, with_arrays=True)
    file_cfg = header.get("config", {})
    model_cfg = getattr(model, "config", {}) or {}
    for key in ARCHITECTURE_KEYS:
        if key in file_cfg and key in model_cfg and file_cfg[key] != model_cfg[key]:
            raise WeightsFileError(
                f"{path}: saved for {key}={file_cfg[key]!r} but the model has "
                f"{key}={model_cfg[key]!r}; build the model with the file's settings "
                "(numnet.core.serialize.load does that)"
            )
    params = dict(_named_state(model))
    if set(params) != set(arrays):
        missing, unexpected = sorted(set(params) - set(arrays)), sorted(set(arrays) - set(params))
        raise WeightsFileError(
            f"{path}: parameters do not match the model: missing {missing}, unexpected "
            f"{unexpected}; load it into the architecture it was saved from "
            "(numnet.core.serialize.load)"
        )
    for name, p in params.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(p.shape) or a.dtype != p.dtype:
            raise WeightsFileError(
                f"{path}: '{name}' is {a.dtype}{tuple(a.shape)} in the file but "
                f"{p.dtype}{tuple(p.shape)} in the model; build the model with the file's dtype "
                f"({file_cfg.get('dtype', a.dtype.name)}) and architecture"
            )
    for name, p in params.items():
        p[...] = array_module(p).asarray(arrays[name])
    return header


def _named_state(model: Any) -> list[tuple[str, Any]]:
    """``(name, array)`` of every stored array: ``model.named_state()`` (parameters and
    buffers), or the parameters' values of a model that has no buffers."""
    if hasattr(model, "named_state"):
        return list(model.named_state())
    return [(name, p.value) for name, p in model.named_parameters()]


def load(path: str | os.PathLike, device: str = "cpu", kernels: str = DEFAULT_KERNELS) -> Any:
    """Rebuild the model saved in ``path`` (``models.build(**config)``) with its weights, on
    ``device`` and running ``kernels`` ("fast" or "plain": how it computes, not stored)."""
    path = Path(path)
    header = read_header(path)
    config = header.get("config") or {}
    check_kernels(kernels)
    try:
        model = models.build(**config, kernels=kernels)
    except (TypeError, ValueError) as exc:
        raise WeightsFileError(
            f"{path}: its model config {config} cannot be built ({exc}); "
            "the file was written by another numnet or is corrupted"
        ) from None
    load_into(path, model)
    return model.to(device) if device != "cpu" else model
