"""The package's shape: no import cycle, sub-packages layered as the course, modules a reader can hold.

Imports are read from the source (every ``import`` and ``from ... import``, also inside
functions and ``TYPE_CHECKING`` blocks), not from ``sys.modules``, so a lazy import that
would close a cycle is found too. ``ARCHITECTURE.md`` explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fwi_teach"
#: The layers, lowest first: a module may import only from its own layer or lower ones.
LAYERS = ("runtime", "physics", "data", "models", "evaluation", "training", "plotting", "experiments", "book",
          "cli", "__main__")
MAX_LINES = 410


def module_names(root: Path) -> dict:
    """``{dotted module name: path}`` of every module under the package folder ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: dict) -> bool:
    return modules.get(name, Path()).name == "__init__.py"


def import_edges(root: Path) -> dict:
    """``{module: set of package modules it imports}``, with the packages each import runs.

    Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those edges are kept
    except for the importer's own enclosing packages (which are already being imported).
    """
    modules = module_names(root)
    edges = {}
    for name, path in modules.items():
        base = name if _is_package(name, modules) else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    anchor = ".".join(parts[:len(parts) - node.level + 1])
                    mod = f"{anchor}.{node.module}" if node.module else anchor
                else:
                    mod = node.module
                targets.add(mod)
                targets.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules)
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        full = set()
        for t in targets:
            if t not in modules:
                continue
            parts = t.split(".")
            full.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                        if p in modules and p not in own and p != name)
        edges[name] = full
    return edges


def find_cycles(edges: dict) -> list:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_import_cycle_in_the_package():
    cycles = find_cycles(import_edges(PACKAGE))
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_finder_finds_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from .b import g\ndef f():\n    return g()\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from .a import f  # a lazy import still closes the cycle\n")
    (pkg / "c.py").write_text("from .sub import f\n")
    edges = import_edges(pkg)
    assert edges["toy.c"] == {"toy.sub"}
    assert find_cycles(edges) == [["toy.sub.a", "toy.sub.b"]]
    (pkg / "sub" / "b.py").write_text("def g():\n    return 1\n")
    assert find_cycles(import_edges(pkg)) == []


def test_sub_packages_import_only_lower_layers():
    modules = module_names(PACKAGE)
    top = {n.split(".")[1] for n in modules if n.count(".") >= 1}
    assert top <= set(LAYERS), f"add {sorted(top - set(LAYERS))} to LAYERS (and ARCHITECTURE.md)"
    bad = [f"{m} -> {t}" for m, targets in import_edges(PACKAGE).items() for t in targets
           if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]
    assert not bad, "imports from a higher layer:\n" + "\n".join(sorted(bad))


def test_every_module_is_short_and_says_what_it_holds():
    long, undocumented = [], []
    for name, path in module_names(PACKAGE).items():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            long.append(f"{name}: {n} lines")
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if name != "fwi_teach.__main__" and not (doc and doc.strip()):
            undocumented.append(name)
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"
    assert not undocumented, f"modules without a docstring: {undocumented}"


def test_module_exports_are_defined_where_they_are_documented():
    """A module's ``__all__`` names its own definitions; re-exports belong to package ``__init__`` files
    (otherwise the API page documents one object twice)."""
    bad = []
    for name, path in module_names(PACKAGE).items():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        defined, exported = set(), []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
                if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                    exported = [e.value for e in node.value.elts]
        bad += [f"{name}.{e}" for e in exported if e not in defined]
    assert not bad, f"names in __all__ that their module only imports: {bad}"


@pytest.mark.parametrize("package", ["physics", "data", "models", "evaluation", "training", "plotting",
                                     "experiments"])
def test_sub_package_exports_exist(package):
    import importlib

    mod = importlib.import_module(f"fwi_teach.{package}")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"fwi_teach.{package}.__all__ names missing attributes: {missing}"


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_reference_in_the_docs_resolves():
    """``fwi_teach.x.y`` in docstrings, chapters, the README and ARCHITECTURE.md names something that exists."""
    import re

    root = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(root / "book").glob("*.ipynb"), *(root / "book").glob("*.md"),
             root / "README.md", root / "ARCHITECTURE.md", *(root / "benchmarks").glob("*.py")]
    stale = set()
    for path in files:
        for ref in re.findall(r"\bfwi_teach(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?![\w/])", path.read_text(encoding="utf-8")):
            if not ref.endswith(".json") and not _resolves(ref):  # (fwi_teach.json is a manifest's file name)
                stale.add(f"{path.relative_to(root)}: {ref}")
    assert not stale, "references to names that do not exist:\n" + "\n".join(sorted(stale))


def test_every_import_from_the_package_in_chapters_tests_and_benchmarks_resolves():
    """``from fwi_teach.x import name`` in a chapter, test or benchmark names something that exists."""
    import importlib
    import json

    root = PACKAGE.parent
    sources = [(p, p.read_text(encoding="utf-8")) for p in [*(root / "tests").glob("*.py"),
                                                          *(root / "benchmarks").glob("*.py")]]
    for nb in (root / "book").glob("*.ipynb"):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                code = "".join(cell["source"])
                sources.append((nb, "\n".join(line for line in code.splitlines()
                                              if not line.lstrip().startswith(("!", "%")))))
    missing = set()
    for path, code in sources:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fwi_teach":
                module = importlib.import_module(node.module)
                missing.update(f"{path.name}: from {node.module} import {a.name}" for a in node.names
                               if not hasattr(module, a.name) and not _resolves(f"{node.module}.{a.name}"))
    assert not missing, "imports of names that do not exist:\n" + "\n".join(sorted(missing))
