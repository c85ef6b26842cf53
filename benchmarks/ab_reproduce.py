"""A/B of ``numnet reproduce`` between two checkouts, alternated in one invocation.

    python benchmarks/ab_reproduce.py OLD_SRC NEW_SRC [--rounds 2] [-- REPRODUCE ARGS...]

OLD_SRC and NEW_SRC are the ``src`` folders of two checkouts (e.g. a ``git worktree`` of an
older commit and this one). Each round runs the old side, then the new, each into a fresh
folder with the same arguments (default: ``--quiet``, the full protocol on the real MNIST),
and prints both wall times and their ratio; then it checks that the two sides wrote the same
numbers: ``results.csv`` byte for byte and every member of every ``weights/*.npz`` byte for
byte. Exit 1 when any pair differs. The machine is noisy: alternate, and compare within one
invocation only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def run_side(src: Path, out: Path, args: list[str]) -> float:
    """Wall seconds of ``numnet reproduce --out OUT ARGS`` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "numnet", "reproduce", "--out", str(out),
                           *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{src}: numnet reproduce failed (exit {done.returncode}):\n"
                 + done.stderr[-2000:])
    return time.perf_counter() - start


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two reproduce folders: results.csv, weights files and members."""
    found = [] if (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes() \
        else ["results.csv"]
    names_a = sorted(p.name for p in (a / "weights").glob("*.npz"))
    names_b = sorted(p.name for p in (b / "weights").glob("*.npz"))
    if names_a != names_b:
        found.append(f"weights files: {names_a} vs {names_b}")
    for name in set(names_a) & set(names_b):
        with zipfile.ZipFile(a / "weights" / name) as za, \
                zipfile.ZipFile(b / "weights" / name) as zb:
            members = set(za.namelist()) | set(zb.namelist())
            found += [f"{name}:{m}" for m in sorted(members)
                      if m not in za.namelist() or m not in zb.namelist()
                      or za.read(m) != zb.read(m)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_src", type=Path)
    parser.add_argument("new_src", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    opts = parser.parse_args(argv[:cut])
    opts.reproduce_args = argv[cut + 1:] or ["--quiet"]
    same = True
    with tempfile.TemporaryDirectory(prefix="numnet-ab-") as tmp:
        for r in range(1, opts.rounds + 1):
            outs = {side: Path(tmp) / f"{side}-{r}" for side in ("old", "new")}
            old = run_side(opts.old_src.resolve(), outs["old"], opts.reproduce_args)
            new = run_side(opts.new_src.resolve(), outs["new"], opts.reproduce_args)
            diff = differences(outs["old"], outs["new"])
            same &= not diff
            print(f"round {r}: old {old:.1f} s, new {new:.1f} s, new/old {new / old:.2f}; "
                  + ("same results.csv and weights" if not diff
                     else "DIFFERENT: " + ", ".join(diff[:5])), flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
