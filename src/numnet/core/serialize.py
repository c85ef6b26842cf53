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
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from numnet.core import models
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


def _read(path: Path, with_arrays: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    what_to_do = "re-save it with numnet.core.serialize.save (or numnet run) and try again"
    if not path.is_file():
        raise WeightsFileError(f"{path}: weights file not found; check the path")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if HEADER_KEY not in npz.files:
                raise WeightsFileError(
                    f"{path}: not a numnet weights file (no '{HEADER_KEY}' header); "
                    "save weights with numnet.core.serialize.save"
                )
            header = json.loads(npz[HEADER_KEY].tobytes().decode("utf-8"))
            arrays = {k: npz[k] for k in npz.files if k != HEADER_KEY} if with_arrays else {}
    except WeightsFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as exc:
        raise WeightsFileError(
            f"{path}: weights file is corrupted or truncated ({type(exc).__name__}: {exc}); "
            + what_to_do
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WeightsFileError(f"{path}: header is not a '{FORMAT}' header; {what_to_do}")
    if header.get("version") != VERSION:
        raise WeightsFileError(
            f"{path}: weights format version {header.get('version')!r} is not supported "
            f"(this numnet reads version {VERSION}); re-save it with this numnet"
        )
    _check_header(path, header, what_to_do)
    if with_arrays:
        listed = {e["name"]: e for e in header["parameters"]}
        if set(listed) != set(arrays):
            raise WeightsFileError(
                f"{path}: arrays {sorted(arrays)} do not match the header's list "
                f"{sorted(listed)}; the file is corrupted, {what_to_do}"
            )
        for name, entry in listed.items():
            a = arrays[name]
            if list(a.shape) != entry["shape"] or a.dtype.name != entry["dtype"]:
                raise WeightsFileError(
                    f"{path}: array '{name}' is {a.dtype}{a.shape}, header says "
                    f"{entry['dtype']}{tuple(entry['shape'])}; the file is corrupted, {what_to_do}"
                )
            if _sha256(a) != entry["sha256"]:
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
    names = set()
    for k, e in enumerate(entries):
        where = f"parameters[{k}]"
        if not isinstance(e, dict):
            raise bad(where, "an object with name, shape, dtype and sha256")
        if not isinstance(e.get("name"), str) or e["name"] in names or e["name"] == HEADER_KEY:
            raise bad(f"{where}.name", "a string naming one array once")
        names.add(e["name"])
        shape = e.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise bad(f"{where}.shape", "a list of sizes (integers >= 0)")
        for key in ("dtype", "sha256"):
            if not isinstance(e.get(key), str):
                raise bad(f"{where}.{key}", "a string")


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
