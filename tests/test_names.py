"""One name per concept: no public class, function or module name means two things.

A public name (no leading underscore) defined at the top level of two modules, or two
modules with the same file name, must be listed below with the one concept they share:
the same interface implemented by each backend, the same step seen from two roles, a
per-module convention. Anything else is a second concept under a name already taken,
and fails here: rename one of them. An entry whose name is no longer defined twice fails
too, so the lists stay true.

The shell (``cli/``) is left out: its modules and command functions are named after the
``fedid`` subcommand they implement, which is the name users see.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("privacy", "fedid", "clients", "server", "simulations")

#: public top-level names defined in several modules, with the one concept they share
SHARED_NAMES: dict[str, str] = {
    "main": "a module's entry point (python -m simulations.bench.X, the ServerApp's main)",
    "measure": "a benchmark's one measurement in this process (simulations/bench/*)",
    "BlindingKey": "the blinding interface, one class per backend (ristretto255, X25519)",
    "hash_to_group": "the blinding interface, one function per backend",
    "train": "the train message: Flower handler (client_app) and the node's step (node)",
    "evaluate": "evaluating the model on labelled rows: Flower handler, node step, the node's"
                " local evaluation and the metrics themselves (fedid.model.evaluate)",
    "identify": "the identify message: Flower handler, node step, scoring (training)",
    "info": "the info query: Flower handler and the node's step",
    "init": "the init query: Flower handler and the node's step",
    "match": "the matching message: Flower handler and the node's step",
    "noise": "the distributed-noise query: Flower handler and the node's step",
}

#: module file names used by several modules, with the one concept they share
SHARED_MODULES: dict[str, str] = {
    "matching": "the matching protocol: node side, coordinator side and its benchmark",
    "transport": "moving protocol messages: in memory (fedid.matching) and over Flower (server)",
    "deploy": "running for real: the node's SuperNode (clients) and the SuperLink (server)",
    "errors": "the one error tree: its privacy-layer part and the rest (fedid.errors)",
    "lifecycle": "the year's notices (query.year): the coordinator sends them (server), the"
                 " node records and acts on them (clients)",
    "audit": "the empirical privacy audit: its bounds and attacks (privacy), the harness"
             " (simulations) and its benchmark (simulations/bench)",
}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _public_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            defines = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            if isinstance(node, defines) and not node.name.startswith("_"):
                found[node.name].append(_where(path))
    return found


def _module_names() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        if path.name != "__init__.py":
            found[path.stem].append(_where(path))
    return found


def _twice(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: where for name, where in found.items() if len(where) > 1}


def test_no_public_name_means_two_things() -> None:
    unexplained = {n: w for n, w in _twice(_public_definitions()).items()
                   if n not in SHARED_NAMES}
    assert unexplained == {}, "rename one, or list the shared concept in SHARED_NAMES"


def test_no_module_name_means_two_things() -> None:
    unexplained = {n: w for n, w in _twice(_module_names()).items() if n not in SHARED_MODULES}
    assert unexplained == {}, "rename one, or list the shared concept in SHARED_MODULES"


def test_the_lists_name_only_real_duplicates() -> None:
    assert set(SHARED_NAMES) - set(_twice(_public_definitions())) == set()
    assert set(SHARED_MODULES) - set(_twice(_module_names())) == set()
