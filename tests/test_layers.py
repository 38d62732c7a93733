"""The import graph follows the layers of ARCHITECTURE.md, lazy imports included.

privacy (1) <- fedid (2) <- clients, server (3, siblings) <- simulations (4) <- cli (the
shell). A module may import its own layer's package and the layers below it, never a
layer above, never a sibling package of its layer, never the shell; only the shell imports
everything. Imports inside functions and ``TYPE_CHECKING`` blocks count like any other. No
modules import each other in a circle. ``flwr`` is imported only by layer 3 and above, by
the shell, and by the one Flower message codec below them (``fedid/records.py``).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"privacy": 1, "fedid": 2, "clients": 3, "server": 3, "simulations": 4, "cli": 5}
SHELL = "cli"
FLOWER_CODEC = "fedid.records"


def _modules(root: Path) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in LAYER:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join(parts)] = path
    return mods


def _targets(
    mods: dict[str, Path], module: str, node: ast.Import | ast.ImportFrom
) -> Iterator[str]:
    """The module each imported name comes from (relative imports resolved)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    prefix = node.module or ""
    if node.level:
        base = module.split(".")
        package = base if mods[module].name == "__init__.py" else base[:-1]
        package = package[: len(package) - (node.level - 1)]
        prefix = ".".join(package + ([node.module] if node.module else []))
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        yield sub if sub in mods else prefix


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> project modules it imports, module -> outside top-level packages)."""
    mods = _modules(root)
    edges: dict[str, set[str]] = defaultdict(set)
    outside: dict[str, set[str]] = defaultdict(set)
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(mods, module, node):
                name = target
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    edges[module].add(name)
                elif not name and target.split(".")[0] not in LAYER:
                    outside[module].add(target.split(".")[0])
    return edges, outside


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def violations(root: Path) -> list[str]:
    """Every layering rule broken under ``root``, one line each (empty: the layers hold)."""
    edges, outside = import_graph(root)
    bad: list[str] = []
    for a, targets in sorted(edges.items()):
        pa = a.split(".")[0]
        for b in sorted(targets):
            pb = b.split(".")[0]
            if pa == SHELL:
                continue
            if pb == SHELL:
                bad.append(f"{a} -> {b}: imports the shell")
            elif LAYER[pb] > LAYER[pa]:
                bad.append(f"{a} -> {b}: upward (layer {LAYER[pa]} -> {LAYER[pb]})")
            elif LAYER[pb] == LAYER[pa] and pa != pb:
                bad.append(f"{a} -> {b}: sibling")
    for module, packages in sorted(outside.items()):
        if "flwr" in packages and LAYER[module.split(".")[0]] < 3 and module != FLOWER_CODEC:
            bad.append(f"{module} -> flwr: only layer 3+, the shell and {FLOWER_CODEC}")
    bad += ["cycle: " + " <-> ".join(c) for c in _cycles(edges)]
    return bad


def test_layers_hold() -> None:
    assert violations(ROOT) == []


def test_every_package_is_scanned() -> None:
    seen = {p.relative_to(ROOT).parts[0] for p in _modules(ROOT).values()}
    assert seen == set(LAYER)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for pkg in LAYER:
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"privacy/a.py": "def f():\n    import fedid.b\n", "fedid/b.py": ""},
         "privacy.a -> fedid.b: upward (layer 1 -> 2)"),
        ({"server/a.py": "from clients import b\n", "clients/b.py": ""},
         "server.a -> clients.b: sibling"),
        ({"simulations/a.py": "from cli.main import app\n", "cli/main.py": ""},
         "simulations.a -> cli.main: imports the shell"),
        ({"fedid/a.py": "def f():\n    from fedid import b\n", "fedid/b.py": "from . import a\n"},
         "cycle: fedid.a <-> fedid.b"),
        ({"fedid/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from fedid.b import X\n", "fedid/b.py": "import fedid.a\n"},
         "cycle: fedid.a <-> fedid.b"),
        ({"fedid/a.py": "def f():\n    import flwr.app\n"},
         "fedid.a -> flwr: only layer 3+, the shell and fedid.records"),
    ],
    ids=["lazy-upward", "sibling", "shell", "lazy-cycle", "type-checking-cycle", "flwr"],
)
def test_each_rule_is_caught(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert violations(_tree(tmp_path, files)) == [expected]


def test_allowed_imports_pass(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "cli/main.py": "import simulations.a\nimport server.b\nimport clients.c\n",
        "simulations/a.py": "import server.b\nimport clients.c\n",
        "server/b.py": "import flwr\nfrom fedid import records\n",
        "clients/c.py": "from fedid.records import x\n",
        "fedid/records.py": "import flwr.app\nfrom privacy import d\n",
        "privacy/d.py": "import numpy\n",
    })
    assert violations(root) == []
