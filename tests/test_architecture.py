"""The shape of the package, read from its source with ``ast`` (nothing is imported to judge it).

- No import cycle anywhere in ``numnet``, counting module-level and function-level imports, and
  counting that importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` too.
- ``numnet.core`` (the library) imports the standard library, NumPy and itself; never
  ``numnet.lab`` or another third-party package, except an optional dependency imported lazily
  inside a function and named in :data:`CORE_OPTIONAL`.
- An import inside a function loads only an optional dependency (:data:`OPTIONAL`): never a
  numnet module (those are imported at the top, where the graph above sees them), never the
  standard library. The command line loads its handler modules lazily through one mechanism,
  ``numnet.lab.cli.handler`` (an ``importlib.import_module`` call); dynamic imports appear
  nowhere else but in ``numnet/__init__.py``'s short names.
- Model names, dtypes, devices, kernels and data-set names are spelled out only in
  ``numnet.core.names``; files are written only through ``numnet.core.io``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "numnet"

#: Optional dependencies an import inside a function may load (top-level package names).
OPTIONAL = frozenset({"torch", "dask", "distributed", "cupy", "matplotlib", "PIL",
                      "threadpoolctl", "tqdm", "nbformat", "nbclient", "jax", "onnx",
                      "onnxruntime"})
#: The ones the core may load that way (the thread runtime, the CUDA backend, a torch check).
CORE_OPTIONAL = frozenset({"threadpoolctl", "cupy", "torch"})
#: Modules allowed to import by name at run time (``importlib.import_module``/``__import__``).
DYNAMIC_IMPORTERS = frozenset({"numnet", "numnet.lab.cli"})
#: The one module that spells out the names of models, dtypes, devices, kernels, data sets.
NAMES_MODULE = "numnet.core.names"
NAME_SETS = {
    "model names": {"model1", "model2", "model3", "model4"},
    "dtypes": {"float32", "float64"},
    "devices": {"cpu", "cuda"},
    "kernels": {"plain", "fast"},
    "data-set names": {"mnist", "fashion-mnist"},
}
#: Modules that may open a file for writing themselves: the I/O module, and the download that
#: streams into a ``numnet.core.io.temporary_path`` (renamed into the cache once verified).
WRITERS = frozenset({"numnet.core.io", "numnet.lab.data.download"})


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module (or package) as written, resolved to an absolute name
    names: tuple[str, ...]  # for ``from target import a, b``; () for ``import target``
    in_function: bool
    line: int

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def where(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def sources() -> dict[str, tuple[Path, ast.Module]]:
    """Every module of the package: ``{name: (path, syntax tree)}``."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        out[module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


def is_package(name: str) -> bool:
    return sources()[name][0].name == "__init__.py"


def _absolute(importer: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def imports() -> tuple[Import, ...]:
    """Every import statement of the package (``if TYPE_CHECKING:`` blocks left out)."""
    found: list[Import] = []

    def visit(node: ast.AST, importer: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    visit(sub, importer, in_function)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(importer, a.name, (), in_function, child.lineno)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _absolute(importer, child.module, child.level)
                found.append(Import(importer, target, tuple(a.name for a in child.names),
                                    in_function, child.lineno))
            visit(child, importer, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    for name, (_, tree) in sources().items():
        visit(tree, name, False)
    return tuple(found)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def edges(imp: Import) -> set[str]:
    """The numnet modules an import runs: the target, each submodule it names (``from pkg
    import mod``), and the packages above them -- except the importer's own packages, which are
    already being imported when it runs."""
    modules = sources()
    if imp.top != PACKAGE:
        return set()
    targets = {imp.target} if imp.target in modules else set()
    targets |= {f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in modules}
    own = set(_ancestors(imp.importer))
    out = set()
    for t in targets:
        out |= {t, *_ancestors(t)}
    return out - own - {imp.importer}


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {name: set() for name in sources()}
    for imp in imports():
        g[imp.importer] |= edges(imp)
    return g


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in g[v]:
                components.append(component)

    for v in sorted(g):
        if v not in index:
            strongconnect(v)
    cycles = []
    for component in components:
        start = min(component)
        path, seen = [start], {start}
        while True:  # walk inside the component until a node repeats
            nxt = min(w for w in g[path[-1]] if w in component)
            if nxt in seen:
                cycles.append(path[path.index(nxt):] + [nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return cycles


def test_the_walk_sees_the_package() -> None:
    """The checks below are only as good as the walk: it finds the layers and their imports."""
    names = set(sources())
    assert {"numnet", "numnet.core.names", "numnet.lab.cli", "numnet.lab.render"} <= names
    cli = [i for i in imports() if i.importer == "numnet.lab.cli" and i.top == PACKAGE]
    assert {"numnet.lab.cli.run", "numnet.lab.cli.common"} <= set().union(*map(edges, cli))
    # a submodule import also runs its packages; the importer's own packages do not count
    imp = Import("numnet.lab.sweep.plan", "numnet.lab.experiments.plan", ("plan_runs",),
                 False, 1)
    assert edges(imp) == {"numnet.lab.experiments.plan", "numnet.lab.experiments"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    # the report reading its input through the experiments package would close a loop
    # (experiments -> runner -> report -> ...): the real graph shows it once the edge is there
    g = graph()
    g["numnet.lab.report.write"].add("numnet.lab.experiments")
    assert any("numnet.lab.experiments.runner" in c for c in find_cycles(g))


def test_no_import_cycle_anywhere() -> None:
    cycles = find_cycles(graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


CORE_MODULES = sorted(name for name in sources() if name.startswith("numnet.core"))


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_only_numpy_stdlib_and_itself(module: str) -> None:
    bad = []
    for imp in imports():
        if imp.importer != module:
            continue
        if imp.target.startswith("numnet.lab") or (imp.target == "numnet" and "lab" in imp.names):
            bad.append(f"{imp.where()} (the core never imports the application)")
        elif imp.top in sys.stdlib_module_names or imp.top == "numpy":
            continue
        elif imp.top == PACKAGE:
            if not (imp.target.startswith("numnet.core") or imp.target == "numnet"):
                bad.append(imp.where())
        elif not (imp.in_function and imp.top in CORE_OPTIONAL):
            how = "inside a function" if imp.in_function else "at module level"
            bad.append(f"{imp.where()} {how} (allowed: NumPy, the standard library, and "
                       f"{sorted(CORE_OPTIONAL)} lazily inside a function)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(sources()))
def test_function_level_imports_load_only_optional_dependencies(module: str) -> None:
    bad = [f"{imp.where()} inside a function" for imp in imports()
           if imp.importer == module and imp.in_function and imp.top not in OPTIONAL]
    assert not bad, ("import these at the top of the module (only optional dependencies "
                     f"{sorted(OPTIONAL)} may be imported lazily):\n" + "\n".join(bad))


def _dynamic_imports(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
                    isinstance(f, ast.Name) and f.id in ("import_module", "__import__")):
                lines.append(node.lineno)
    return lines


def test_dynamic_imports_only_in_the_cli_mechanism() -> None:
    found = {name: lines for name, (_, tree) in sources().items()
             if (lines := _dynamic_imports(tree))}
    assert set(found) <= DYNAMIC_IMPORTERS, found
    assert "numnet.lab.cli" in found  # the handlers' one lazy import is where it says


def test_every_cli_handler_resolves_and_help_loads_none() -> None:
    """Each subcommand names a handler under numnet.lab.cli.commands that exists; building the
    parser (``numnet --help``) imports no handler module, nor matplotlib or torch."""
    from numnet.lab import cli

    parser = cli.build_parser()
    handlers = set()

    def collect(p) -> None:
        if p.get_default("handler"):
            handlers.add(p.get_default("handler"))
        for action in p._actions:  # argparse keeps subparsers only here
            for sub in getattr(action, "choices", None) or {}:
                if isinstance(action.choices, dict):
                    collect(action.choices[sub])

    collect(parser)
    assert {"run:reproduce", "run:train", "compare:compare", "sweep:sweep",
            "data:fetch"} <= handlers
    for name in handlers:
        assert callable(cli.handler(name)), name
    code = ("import sys; from numnet.lab.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('numnet.lab.cli.commands') "
            "or m.split('.')[0] in ('matplotlib', 'torch', 'dask')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_short_names_re_export_their_core_module_and_nothing_imports_them() -> None:
    """``src/numnet/<name>.py`` (``numnet.models``, ...) each star-import ``numnet.core.<name>``
    and nothing else; numnet's own modules import the core modules, never the short names (a
    short name is for users; inside the package it would hide which layer a module uses)."""
    import numnet

    short = {f"numnet.{name}" for name in numnet.CORE_SHORT_NAMES}
    assert short <= set(sources()), sorted(short - set(sources()))
    for name in sorted(short):
        own = [i for i in imports() if i.importer == name and i.top == PACKAGE]
        assert [(i.target, i.names) for i in own] == [(f"numnet.core.{name[7:]}", ("*",))], name
    bad = [i.where() for i in imports() if i.target in short and i.importer != "numnet"]
    assert not bad, "import numnet.core.<name>, not the short name:\n" + "\n".join(bad)


def _string_sets(tree: ast.Module) -> list[tuple[int, set[str]]]:
    """The string literals of every tuple, list and set (``__all__`` left out: module names)."""
    exports = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and id(node) not in exports:
            values = {e.value for e in node.elts
                      if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if values:
                out.append((node.lineno, values))
    return out


def test_names_are_spelled_out_only_in_core_names() -> None:
    bad = []
    for name, (_, tree) in sources().items():
        if name == NAMES_MODULE:
            continue
        for line, values in _string_sets(tree):
            for what, names in NAME_SETS.items():
                if names <= values:
                    bad.append(f"{name}:{line} lists the {what}; use {NAMES_MODULE}")
    assert not bad, "\n".join(bad)


def _writes(tree: ast.Module) -> list[int]:
    """Lines that write a file directly: ``open(..., "w"...)``, ``Path.write_text/bytes``,
    ``json.dump`` to a file."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes") and not (
                isinstance(f.value, ast.Name) and f.value.id in ("io", "numnet_io")):
            lines.append(node.lineno)
        elif isinstance(f, ast.Attribute) and f.attr == "dump" and isinstance(
                f.value, ast.Name) and f.value.id == "json":
            lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id == "open":
            modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords
                                                   if k.arg == "mode"]
            if any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+")
                   for m in modes):
                lines.append(node.lineno)
    return lines


def test_files_are_written_only_through_core_io() -> None:
    found = {name: lines for name, (_, tree) in sources().items()
             if name not in WRITERS and (lines := _writes(tree))}
    assert not found, f"write through numnet.core.io (atomic): {found}"
