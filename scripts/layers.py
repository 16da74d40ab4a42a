"""Prints the guardian's import graph: its floors, its arrows and its circles.

Every `import` counts, those inside functions too (the AST of each module is walked, nothing is
imported). A floor is a module's height: 0 for a module that imports nothing of the guardian, else
one more than the highest module it imports (a circle counts as one module). Usage:

    python scripts/layers.py [--arrows]     # from the repository's top; exits 1 when there is a circle

It prints the modules' floors, then the same for the folders (each of guardian's subpackages as one node,
a module at the top as itself): the layers README "How the code is laid out" names.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "guardian"


def modules(top: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((top / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(top).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that `name` imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from guardian import gateway` names a module; `from guardian.x import y` names x
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known] or [base]
        else:
            continue
        for target in targets:
            # `import guardian.core.levels` also runs the packages above it, but those are only folders
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != PACKAGE:
                found.add(target)
    return found


def graph(top: Path) -> dict[str, set[str]]:
    found = modules(top)
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor; the members of a circle share one."""
    group_of = {member: tuple(group) for group in circles(edges) for member in group}
    height: dict[str, int] = {}

    def floor(node: str) -> int:
        if node not in height:
            members = group_of.get(node, (node,))
            for member in members:
                height[member] = 0  # a guard while the circle's own floor is worked out
            below = {d for m in members for d in edges[m]} - set(members)
            level = 1 + max(map(floor, below)) if below else 0
            for member in members:
                height[member] = level
        return height[node]

    for node in edges:
        floor(node)
    return height


def folders(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each subpackage of the guardian as one node (guardian.core.policy -> guardian.core)."""
    def folder(name: str) -> str:
        return ".".join(name.split(".")[:2])

    collapsed: dict[str, set[str]] = {}
    for name, targets in edges.items():
        collapsed.setdefault(folder(name), set()).update(folder(t) for t in targets)
    return {name: targets - {name} for name, targets in collapsed.items()}


def show(edges: dict[str, set[str]], what: str, arrows: bool) -> list[list[str]]:
    height = floors(edges)
    loops = circles(edges)
    by_floor: dict[int, list[str]] = {}
    for name, level in height.items():
        by_floor.setdefault(level, []).append(name)
    print(f"{len(edges)} {what}, {len(by_floor)} floors, {sum(map(len, edges.values()))} arrows, {len(loops)} circles")
    for level in sorted(by_floor, reverse=True):
        print(f"  floor {level:2}: {' '.join(sorted(by_floor[level]))}")
    for group in loops:
        print(f"  circle: {' <-> '.join(group)}")
    if arrows:
        for name in sorted(edges):
            for target in sorted(edges[name]):
                print(f"  {name} -> {target}")
    return loops


def main(argv: list[str]) -> int:
    edges = graph(Path.cwd())
    loops = show(edges, "modules", "--arrows" in argv)
    show(folders(edges), "folders", "--arrows" in argv)
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
