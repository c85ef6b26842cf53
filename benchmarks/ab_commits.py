"""Is a change slower? numnet's ``benchmarks/epoch.py`` at two commits, alternated in one run.

Each commit is exported (``git archive``) into a temporary folder and its own ``epoch.py`` runs
there, numnet side only, with ``PYTHONPATH`` pointing at that tree. The two trees take turns
(base, head, base, head, ...) so that a machine whose load drifts slows both alike; each figure is
the median over the rounds, and the ratio is head time / base time (below 1: head is faster).

    python benchmarks/ab_commits.py --base 6bdecdb --head HEAD
    python benchmarks/ab_commits.py --base main~3 --rounds 5 --models 4 --threads 1

Both commits' ``epoch.py`` must accept ``--no-torch --repeats --models --json`` (every commit
since the first release does). ``--threads`` is passed on as is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` unpacked under ``dest`` (returns its root)."""
    dest.mkdir(parents=True)
    archive = dest / "tree.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", rev], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def run_epoch(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    """One ``epoch.py`` run of ``tree``: ``{model: {"train": s, "eval": s}}`` for numnet."""
    cmd = [sys.executable, str(tree / "benchmarks" / "epoch.py"), "--no-torch",
           "--repeats", str(args.repeats), "--models", args.models, "--json", str(out)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return {model: res["numnet"] for model, res in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", default="HEAD", help="the commit under test (default HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="epoch.py repeats per round")
    parser.add_argument("--models", default="1,2,3,4", help="comma-separated, e.g. 4 or 1,2")
    parser.add_argument("--threads", type=int, help="passed on to epoch.py")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="numnet-ab-") as tmp:
        trees = {name: export(rev, Path(tmp) / name)
                 for name, rev in (("base", args.base), ("head", args.head))}
        samples: dict[str, dict[str, dict[str, list[float]]]] = {"base": {}, "head": {}}
        for r in range(args.rounds):
            for name, tree in trees.items():
                figures = run_epoch(tree, args, Path(tmp) / f"{name}-{r}.json")
                for model, res in figures.items():
                    slot = samples[name].setdefault(model, {"train": [], "eval": []})
                    for kind in ("train", "eval"):
                        slot[kind].append(res[kind])
            print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}",
                  file=sys.stderr)

    print(f"base {args.base} vs head {args.head}: median over {args.rounds} alternated rounds "
          f"of epoch.py (--repeats {args.repeats}); ratio = head / base (below 1: head faster)")
    for model in samples["base"]:
        cells = []
        for kind in ("train", "eval"):
            base = statistics.median(samples["base"][model][kind])
            head = statistics.median(samples["head"][model][kind])
            cells.append(f"{kind} {base:7.3f} -> {head:7.3f} s (x{head / base:.2f})")
        print(f"  {model}: " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
