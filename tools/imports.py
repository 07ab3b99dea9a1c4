"""The import graph of the lesson package `utils/`, read with `ast` (imports inside functions included): its modules,
arrows (module A imports module B, each pair once), floors, cycles and upward imports.

Floors: the longest-path layering of the graph. A module that imports no other utils module is on floor 0 (the
ground floor); any other stands one floor above the highest module it imports (the modules of a cycle share one
floor, the cycle counted as one node).

An upward import is either of:
- an import of the repository's tooling (`tools`, `scripts`, `tests`) from utils: the lessons stand below it;
- an import of a module on the importer's own floor or above, the floors counted from the module-level imports
  alone (what Python loads in order). An import inside a function is deferred, so it can close a cycle or lean on a
  module above without failing at import time; here it must point down like any other.

Usage: python -m tools.imports [--package utils] [--arrows]
"""
from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABOVE = ("tools", "scripts", "tests")  # the repository's packages that utils must not import


@dataclass
class Graph:
    """Modules (dotted names below the package, e.g. 'bpe'), arrows with where each is made, and upward imports
    of the tooling."""

    package: str
    modules: list[str]
    arrows: dict[tuple[str, str], list[tuple[int, bool]]] = field(default_factory=dict)  # -> [(line, top level)]
    tooling: list[tuple[str, str, int]] = field(default_factory=list)  # (module, imported name, line)

    def targets(self, module: str, top_level_only: bool = False) -> set[str]:
        return {b for (a, b), where in self.arrows.items()
                if a == module and (not top_level_only or any(top for _, top in where))}


def module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool, package: str) -> list[str]:
    """Absolute dotted names a node imports (each `from X import a, b` gives X.a and X.b: a may be a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        here = [package, *module.split(".")] if module else [package]
        base = here if is_package else here[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{a.name}" for a in node.names] + [prefix]


def _resolve(name: str, package: str, modules: set[str]) -> str | None:
    """The utils module a dotted name lands in (its longest module prefix), None outside the package."""
    parts = name.split(".")
    if parts[0] != package:
        return None
    for end in range(len(parts), 1, -1):
        if ".".join(parts[1:end]) in modules:
            return ".".join(parts[1:end])
    return ""  # the package itself (utils/__init__.py)


def read_graph(package_dir: Path | None = None) -> Graph:
    """Parse every .py file of the package (subpackages included; __init__ files are not counted as modules)."""
    package_dir = package_dir or ROOT / "utils"
    package = package_dir.name
    files = {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))
             if p.name != "__init__.py" and "__pycache__" not in p.parts}
    graph = Graph(package, sorted(files))
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        top |= {id(s) for n in tree.body if isinstance(n, (ast.If, ast.Try)) for s in ast.walk(n)}
        for node in ast.walk(tree):
            names = _imported(node, module, path.name == "__init__.py", package)
            if not names:
                continue
            if names[0].split(".")[0] in ABOVE:
                graph.tooling.append((module, names[-1] if isinstance(node, ast.ImportFrom) else names[0],
                                      node.lineno))
            # `from X import a` is an arrow to X.a when a is a module, else to X; `import X.a` to X.a
            targets = {_resolve(n, package, set(files)) for n in
                       (names[:-1] if isinstance(node, ast.ImportFrom) else names)}
            for target in targets - {None, "", module}:
                graph.arrows.setdefault((module, target), []).append((node.lineno, id(node) in top))
    return graph


def cycles(modules: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for a, w in sorted(edges):
            if a != v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    return found


def floors(modules: list[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: 0 for a module that imports none, else 1 + the highest floor it imports (a cycle's
    modules share one floor)."""
    group = {m: m for m in modules}
    for component in cycles(modules, edges):
        for m in component:
            group[m] = component[0]
    below: dict[str, set[str]] = {}
    for a, b in edges:
        if group[a] != group[b]:
            below.setdefault(group[a], set()).add(group[b])
    memo: dict[str, int] = {}

    def floor(g: str) -> int:
        if g not in memo:
            memo[g] = 1 + max((floor(h) for h in below.get(g, ())), default=-1)
        return memo[g]

    return {m: floor(group[m]) for m in modules}


def upward(graph: Graph) -> list[str]:
    """Each upward arrow as 'module:lines -> target' (see the module's docstring)."""
    top_edges = {e for e, where in graph.arrows.items() if any(top for _, top in where)}
    level = floors(graph.modules, top_edges)
    out = [f"{m}:{line} -> {name} (tooling)" for m, name, line in graph.tooling]
    for (a, b), where in sorted(graph.arrows.items()):
        if level[b] >= level[a]:
            lines = ", ".join(str(line) for line, _ in where)
            out.append(f"{a}:{lines} -> {b} (floor {level[a]} imports floor {level[b]})")
    return out


def report(graph: Graph) -> dict:
    edges = set(graph.arrows)
    level = floors(graph.modules, edges)
    return {"modules": len(graph.modules), "floors": max(level.values(), default=-1) + 1, "arrows": len(edges),
            "upward": upward(graph), "cycles": cycles(graph.modules, edges), "level": level}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default=str(ROOT / "utils"), help="the package folder (default utils/)")
    parser.add_argument("--arrows", action="store_true", help="also list every arrow")
    args = parser.parse_args(argv)
    graph = read_graph(Path(args.package))
    r = report(graph)
    print(f"{r['modules']} modules, {r['floors']} floors, {r['arrows']} arrows, {len(r['upward'])} upward imports, "
          f"{len(r['cycles'])} cycles" + "".join(f" ({len(c)} modules: {', '.join(c)})" for c in r["cycles"]))
    for n in range(r["floors"]):
        print(f"  floor {n}: " + ", ".join(m for m in graph.modules if r["level"][m] == n))
    for line in r["upward"]:
        print(f"  upward: {line}")
    if args.arrows:
        for (a, b), where in sorted(graph.arrows.items()):
            kind = "top" if any(top for _, top in where) else "in a function"
            print(f"  {a} -> {b}  ({kind}, line {', '.join(str(line) for line, _ in where)})")
    return 1 if r["cycles"] or r["upward"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
