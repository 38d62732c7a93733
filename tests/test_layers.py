"""The import direction of DESIGN.md holds: each layer imports only from the layers above it.

privacy (1) <- fedid (2) <- clients, server (3) <- simulations (4). ``flwr`` is never imported
at module level in privacy/ or fedid/. Imports inside a function body are allowed only in
fedid/cli (the CLI drives the higher layers lazily).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"privacy": 1, "fedid": 2, "clients": 3, "server": 3, "simulations": 4}


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """Every imported top-level module with whether the import sits at module level."""
    found: list[tuple[str, bool]] = []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            found.append((name.split(".")[0], id(node) in top_level))
    return found


def _modules() -> list[Path]:
    return sorted(p for pkg in LAYER for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_layers(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    in_cli = path.relative_to(ROOT).parts[:2] == ("fedid", "cli")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name, module_level in _imports(tree):
        if name == "flwr" and LAYER[package] <= 2:
            assert not module_level, f"{path}: flwr imported at module level"
        if name in LAYER and LAYER[name] > LAYER[package]:
            where = f"{path}: imports {name} (a higher layer)"
            assert in_cli, where
            assert not module_level, where


def test_layer_scan_sees_every_package() -> None:
    seen = {p.relative_to(ROOT).parts[0] for p in _modules()}
    assert seen == set(LAYER)
