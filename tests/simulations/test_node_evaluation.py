"""The report's utility over rounds comes from each node's own evaluation.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.review import node_evaluation


def _write(path: Path, entries: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def test_node_evaluation_weighted_by_held_out_rows(tmp_path: Path) -> None:
    agencies = [{"agency-id": a, "kind": k, "out": str(tmp_path / a)}
                for a, k in (("a", "education"), ("b", "education"), ("c", "education"),
                             ("dep", "department"))]
    sim = tmp_path / "simulation.json"
    sim.write_text(json.dumps({"agencies": agencies}), encoding="utf-8")
    _write(tmp_path / "a" / "evaluation.jsonl", [
        {"session": "old", "round": 1, "num_examples": 10, "accuracy": 0.0, "macro_f1": 0.0},
        {"session": "year", "round": 1, "num_examples": 100, "accuracy": 0.8, "macro_f1": 0.5},
        {"session": "year", "round": 2, "num_examples": 100, "accuracy": 0.9, "macro_f1": 0.6}])
    _write(tmp_path / "b" / "evaluation.jsonl", [
        {"session": "year", "round": 1, "num_examples": 300, "accuracy": 0.4, "macro_f1": 0.3}])
    _write(tmp_path / "c" / "evaluation.jsonl", [  # no held-out rows: nothing to average
        {"session": "year", "round": 1, "num_examples": 0}])
    _write(tmp_path / "dep" / "evaluation.jsonl", [
        {"session": "year", "round": 1, "num_examples": 50, "accuracy": 1.0, "macro_f1": 1.0}])
    got = node_evaluation(sim, "year")
    assert got["weighted"] == [
        {"round": 1, "nodes": 2, "num_examples": 400.0,
         "accuracy": pytest.approx(0.5), "macro_f1": pytest.approx(0.35)},
        {"round": 2, "nodes": 1, "num_examples": 100.0,
         "accuracy": pytest.approx(0.9), "macro_f1": pytest.approx(0.6)}]
    assert set(got["per_agency"]) == {"a", "b"}
    assert "evaluation.jsonl" in got["source"]
    assert node_evaluation(sim, "none") == {}
