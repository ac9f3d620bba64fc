"""The package's layers, and the check that every import runs down them.

``python -m grok_circuits._layout`` prints the package tree with line counts, then every import
that breaks a rule (or that there is none). The rules, checked on the source (imports inside
functions count: an import at call time is still a dependency):

1. **Layers.** Inside a package whose children have a declared order (:data:`LAYERS`), a module
   may import only from a lower layer. Two children of one layer are independent: neither
   imports the other. A child missing from the order is an error, so a new module is placed
   on purpose.
2. **Facades.** A package's ``__init__`` may import anything inside its own package, and nothing
   inside a package imports that package's ``__init__`` (``grok_circuits`` or
   ``grok_circuits.analysis``), which sits above all of it.
3. **No circle.** Where no order is declared (inside ``tasks/`` or ``training/``, say), the
   imports must still form no cycle.

The check is also a test (``tests/test_layout.py``), so a change that breaks a rule fails CI.
"""

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = "grok_circuits"
ROOT = Path(__file__).resolve().parent

#: For each package, its children (modules and subpackages) from the bottom layer up; the
#: children of one tuple form one layer. Packages not listed here have no order, only rule 3.
LAYERS: dict[str, list[tuple[str, ...]]] = {
    PACKAGE: [
        ("_lazy", "_layout", "io", "checks", "backend"),
        ("config",),
        ("tasks", "recurrence"),
        ("model",),
        ("hf",),
        ("runs",),
        ("training",),
        ("viz",),  # draws what training logs: the progress measures' registry
        ("analysis",),
        ("sweeps",),
        ("cli",),
    ],
    f"{PACKAGE}.analysis": [
        ("_inputs", "metrics", "components", "stats", "results"),
        ("accuracy", "over_checkpoints"),
        ("lens", "patching"),
        ("circuits", "edges"),
        ("paper",),
    ],
}


def module_name(path: Path, root: Path = ROOT) -> str:
    """``grok_circuits/analysis/edges/graph.py`` -> ``grok_circuits.analysis.edges.graph``; a
    package's ``__init__.py`` is named as the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(path: Path, modules: Iterable[str], root: Path = ROOT) -> set[str]:
    """The package modules that the file at ``path`` imports, anywhere in it. ``from X import
    y`` counts as importing ``X.y`` when that is a module, else ``X``."""
    known = set(modules)
    here = module_name(path, root)
    package = here if _is_package(path) else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:  # import grok_circuits.x.y: the module x.y
                name = name.rpartition(".")[0]
            if name and name != here:
                out.add(name)
    return out


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], set[str]]:
    """Every module of the package mapped to the package modules it imports, and the set of
    modules that are packages (``__init__``)."""
    files = sorted(root.rglob("*.py"))
    names = {module_name(f, root): f for f in files}
    packages = {module_name(f, root) for f in files if _is_package(f)}
    return {m: imports_of(f, names, root) for m, f in names.items()}, packages


def violations(
    graph: Mapping[str, set[str]], packages: set[str], layers: Mapping | None = None
) -> list[str]:
    """Every broken rule of ``graph`` (module -> modules it imports), one line each."""
    layers = LAYERS if layers is None else layers
    out: list[str] = []
    for package, order in layers.items():
        declared = {c for layer in order for c in layer}
        children = {
            m.split(".")[package.count(".") + 1] for m in graph if m.startswith(package + ".")
        }
        for child in sorted(children - declared):
            out.append(f"{package}.{child} has no layer: add it to LAYERS['{package}']")
    edges: dict[str, set[str]] = {m: set() for m in graph}
    for m, targets in graph.items():
        for t in sorted(targets):
            if m in packages and t.startswith(m + "."):
                continue  # a facade imports its own package
            if t in packages and m.startswith(t + "."):
                out.append(f"{m} imports {t}, the facade of its own package: import the module")
                continue
            edges[m].add(t)
            a, b = m.split("."), t.split(".")
            k = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
            parent = ".".join(a[:k])
            if parent not in layers:
                continue
            la = next((i for i, ly in enumerate(layers[parent]) if a[k] in ly), None)
            lb = next((i for i, ly in enumerate(layers[parent]) if b[k] in ly), None)
            if la is None or lb is None:
                continue  # reported above
            if lb > la:
                out.append(f"{m} imports {t}: up from layer {a[k]} to layer {b[k]} of {parent}")
            elif lb == la:
                out.append(f"{m} imports {t}: {a[k]} and {b[k]} share a layer of {parent}")
    out += [f"import circle: {' -> '.join(c)}" for c in _cycles(edges)]
    return out


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (Tarjan): the shortest path from the
    group's first module back to itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_shortest_circle(edges, g) for g in groups]


def _shortest_circle(edges: Mapping[str, set[str]], group: list[str]) -> list[str]:
    start, inside = group[0], set(group)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, set()) & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start, start]


def tree(root: Path = ROOT) -> str:
    """The package's folders and modules with their line counts, folders first."""

    def walk(folder: Path, depth: int) -> tuple[list[str], int]:
        lines, total = [], 0
        for sub in sorted(p for p in folder.iterdir() if (p / "__init__.py").exists()):
            body, n = walk(sub, depth + 1)
            lines += [f"{'  ' * depth}{sub.name}/  {n}", *body]
            total += n
        for f in sorted(folder.glob("*.py")):
            n = len(f.read_text().splitlines())
            lines.append(f"{'  ' * depth}{f.name}  {n}")
            total += n
        return lines, total

    lines, total = walk(root, 1)
    return "\n".join([f"{root.name}/  {total}", *lines])


def main() -> int:
    print(tree())
    graph, packages = import_graph()
    found = violations(graph, packages)
    n = sum(len(v) for v in graph.values())
    if found:
        print(f"\n{len(found)} broken layout rule(s) among {n} imports:")
        print("\n".join(f"  {line}" for line in found))
        return 1
    print(f"\nlayout holds: {n} imports between {len(graph)} modules, none runs up, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
