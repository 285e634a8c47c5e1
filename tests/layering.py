"""The import graph of the project's packages and the layering contract it must keep.

Read with ``ast`` (nothing is imported or run), so a function-local import, a
``TYPE_CHECKING`` import and a module-level one all count: each is a dependency.

The contract (``../shared/ARCHITECTURE.md``, ``correctnet/README.md``):

- packages: ``xbar`` < ``mapping`` < ``correctnet``; a module imports only its own package
  and the ones below it;
- ``xbar`` never imports ``torch``;
- inside ``correctnet``, by rank: ``errors``, ``lazy`` < the package root and its helpers
  (``seeding``, ``fileio``, ``distributed``) < ``workloads`` < {``training``,
  ``compensation``, ``sweep``} < ``search`` < ``study`` < ``commands`` < ``cli`` <
  ``__main__``; a module imports only its own subpackage and lower ranks (parts of one rank
  not each other);
- no import circle between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

#: Top-level packages, lowest first.
PACKAGES: tuple[str, ...] = ("xbar", "mapping", "correctnet")

#: Rank of each part of ``correctnet`` (first dotted component after ``correctnet``);
#: ``""`` is the package root (``correctnet/__init__.py``).
CORRECTNET_RANKS: dict[str, int] = {
    "errors": 0, "lazy": 0,
    "": 1, "seeding": 1, "fileio": 1, "distributed": 1,
    "workloads": 2,
    "training": 3, "compensation": 3, "sweep": 3,
    "search": 4,
    "study": 5,
    "commands": 6,
    "cli": 7,
    "__main__": 8,
}

#: Modules a package may never import (prefix match on the dotted name).
FORBIDDEN: dict[str, tuple[str, ...]] = {"xbar": ("torch",), "mapping": ("correctnet",)}


def module_name(root: Path, path: Path) -> str:
    """Dotted module name of ``path`` below the folder ``root`` (``pkg/__init__.py`` -> ``pkg``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a relative ``from . import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(source: str, module: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """Every module ``source`` imports (``from pkg import sub`` is ``pkg.sub`` when known)."""
    known = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    found.discard(module)
    return found


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """``{module: modules it imports}`` for every ``.py`` file of ``packages`` below ``root``."""
    files = {module_name(root, p): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    return {name: imports_of(path.read_text(), name, path.name == "__init__.py", files)
            for name, path in sorted(files.items())}


def _package(module: str) -> str:
    return module.split(".")[0]


def _correctnet_part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(graph: Mapping[str, Iterable[str]], packages: tuple[str, ...] = PACKAGES,
               ranks: Mapping[str, int] = CORRECTNET_RANKS,
               forbidden: Mapping[str, tuple[str, ...]] = FORBIDDEN) -> list[str]:
    """Every import of ``graph`` that breaks the layering, one line each (empty: none)."""
    order = {p: i for i, p in enumerate(packages)}
    out = []
    for src, targets in graph.items():
        src_pkg = _package(src)
        for dst in sorted(targets):
            dst_pkg = _package(dst)
            if any(dst == f or dst.startswith(f + ".") for f in forbidden.get(src_pkg, ())):
                out.append(f"{src} imports {dst}: {src_pkg} never imports {dst_pkg}")
                continue
            if dst_pkg not in order:
                continue                      # third-party or standard library
            if order[dst_pkg] > order[src_pkg]:
                out.append(f"{src} imports {dst}: {src_pkg} is below {dst_pkg}")
            elif src_pkg == dst_pkg == "correctnet":
                a, b = _correctnet_part(src), _correctnet_part(dst)
                if a not in ranks or b not in ranks:
                    out.append(f"{src} imports {dst}: "
                               f"{'correctnet.' + (a if a not in ranks else b)} has no rank")
                elif a != b and ranks[b] >= ranks[a]:
                    out.append(f"{src} imports {dst}: correctnet.{a} (rank {ranks[a]}) may not "
                               f"import correctnet.{b} (rank {ranks[b]})")
    return out


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import circles of ``graph`` (strongly connected components of two or more modules).

    Only edges between modules of the graph count (a package's ``__init__`` is not an implied
    dependency of its submodules).
    """
    nodes = list(graph)
    edges = {n: [m for m in graph[n] if m in graph] for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:            # iterative Tarjan: no recursion limit
        nonlocal counter
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter
                counter += 1
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(edges[nxt])))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])

    for n in nodes:
        if n not in index:
            visit(n)
    return found
