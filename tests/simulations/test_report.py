"""The reviewers' report renders its verdict, readable tables and every plot (parsed HTML)."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

from simulations.report import render_html, verdict, write
from simulations.workflow import Cohort, workflow_curve


class _Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[tuple[str, bytes]] = []
        self.links: list[str] = []
        self.verdict_items: list[str] = []
        self.pre = 0
        self._tag: str | None = None
        self._in_verdict = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self._tag = tag
        if tag == "section" and a.get("id") == "verdict":
            self._in_verdict = True
        if tag == "img":
            src = a.get("src") or ""
            self.images.append((a.get("alt") or "", base64.b64decode(src.split(",", 1)[1])))
        if tag == "a":
            self.links.append(a.get("href") or "")
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._in_verdict = False
        self._tag = None

    def handle_data(self, data: str) -> None:
        if self._tag in ("h1", "h2", "h3"):
            self.headings.append(data)
        if self._in_verdict and self._tag == "li":
            self.verdict_items.append(data)


def _summary() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = 2000
    truth = (rng.random(n) < 0.2).astype(np.int64) * rng.integers(1, 3, n)
    flip = rng.random(n) < 0.15
    recorded = np.where(flip, np.where(truth > 0, 0, 1), truth).astype(np.int64)
    agency = np.where(np.arange(n) < 1000, "a", "b").astype(object)
    cohort = Cohort(agency=agency, recorded=recorded, truth=truth, rural=rng.random(n) < 0.5,
                    groups={"region": rng.choice(np.array(["east", "west"], dtype=object), n)})
    score = np.where(truth != recorded, 1.0, 0.0) + rng.random(n)
    order = {a: np.flatnonzero(agency == a)[np.argsort(-score[agency == a])] for a in "ab"}
    rq = workflow_curve(cohort, {"federated": order, "centralized": order})
    ident = {"levels": ["none", "low", "high"],
             "federated": {"macro_f1": 0.55, "accuracy": 0.85, "missed_rate": 0.4,
                           "wrong_aid_rate": 0.05, "n": 2000.0, "confusion": [[5, 1, 0],
                                                                              [1, 3, 1],
                                                                              [0, 1, 2]]},
             "centralized_nonprivate": {"macro_f1": 0.70, "accuracy": 0.89,
                                        "missed_rate": 0.2, "wrong_aid_rate": 0.06, "n": 2000.0}}
    per = {a: {"epsilon_by_round": [0.4, 0.7, 0.95], "epsilon_spent": 0.95, "delta": 1e-5,
               "epsilon_budget": 1.0, "accountant": "rdp", "steps": 30,
               "noise_multiplier": 1.1, "within_budget": True} for a in ("a", "b")}
    return {
        "privacy": {"per_agency": per}, "identification": ident, "review_queue": rq,
        # what the coordinator holds: a constant per round, no metric
        "training": {"rounds": [{"round": r, "metrics": {"kept_on_node": 1.0}}
                                for r in (1, 2, 3)]},
        "node_evaluation": {
            "source": "nodes/<agency>/evaluation.jsonl",
            "weighted": [{"round": r, "nodes": 2, "num_examples": 400.0,
                          "macro_f1": 0.4 + r / 20, "accuracy": 0.8} for r in (1, 2, 3)],
            "per_agency": {a: [{"round": r, "num_examples": 200.0, "macro_f1": 0.4 + r / 20,
                                "accuracy": 0.8} for r in (1, 2, 3)] for a in "ab"}},
        "fairness": {"groups": {"rural": {"rural": {"missed_rate": 0.3},
                                          "urban": {"missed_rate": 0.2}}}},
        "matching": {"per_home": {"a": {"coverage": 0.9, "duplicate_aid": 3.0}}},
        "wall_seconds": {"province": 1.0},
        "epsilon_curve": {"capacity": 0.1, "points": [
            {"epsilon": e, "macro_f1": 0.5 + e / 100, "queue_missed_rate": 0.1 / e,
             "queue_wrong_aid_rate": 0.05} for e in (0.5, 1.0, 2.0)] + [
            {"epsilon": None, "macro_f1": 0.7, "queue_missed_rate": 0.05,
             "queue_wrong_aid_rate": 0.02}]},
    }


def test_report_opens_with_its_verdict_and_renders_every_plot(tmp_path: Path) -> None:
    summary = _summary()
    parsed = _Parsed()
    parsed.feed(render_html(summary))
    # the verdict comes first, and covers protection, cost, the queue and the groups
    assert parsed.headings[:2] == ["fedid: a simulated school year", "Verdict"]
    items = parsed.verdict_items
    assert items == verdict(summary)
    assert len(items) == 4
    assert items[0].startswith("Protected:")
    assert "epsilon 0.95" in items[0]
    assert items[1].startswith("Privacy cost:")
    assert "15.0 points" in items[1]
    assert items[2].startswith("Review queue against today's process")
    assert items[3].startswith("Groups faring worst")
    # every plot is there and is a PNG
    titles = [t for t, _ in parsed.images]
    assert titles == ["Epsilon per agency over rounds", "Utility over rounds",
                      "Confusion matrix", "Group gaps", "Matching coverage and duplicate aid",
                      "Review-queue curve", "Epsilon curve"]
    assert all(png.startswith(b"\x89PNG") for _, png in parsed.images)
    # readable labels, summary.json linked and not dumped
    assert "Missed (of students in hardship) (%)" in render_html(summary)
    assert "missed_rate" not in "".join(parsed.headings)
    assert parsed.links == ["summary.json"]
    assert parsed.pre == 0
    # node-side round metrics and the epsilon curve also as tables, labelled
    assert "Held-out metrics per round (node-side)" in parsed.headings
    assert "Epsilon curve: utility and the review queue against the budget" in parsed.headings
    page = render_html(summary)
    assert "nodes/&lt;agency&gt;/evaluation.jsonl" in page
    assert "Missed after review (of students in hardship) (%)" in page
    assert "<th>epsilon 0.5 per agency</th>" in page
    assert "<th>Province: generate or load</th><td>1</td>" in page
    sj, rh = write(tmp_path, summary)
    assert sj.exists()
    assert rh.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_utility_over_rounds_needs_node_side_figures() -> None:
    """The coordinator's rounds carry a constant only: without the nodes' own figures the
    chart is left out rather than drawn empty."""
    summary = _summary()
    del summary["node_evaluation"]
    parsed = _Parsed()
    parsed.feed(render_html(summary))
    assert "Utility over rounds" not in [t for t, _ in parsed.images]
    assert "Held-out metrics per round (node-side)" not in parsed.headings


def test_report_without_truth_still_renders() -> None:
    parsed = _Parsed()
    parsed.feed(render_html({"privacy": {"per_agency": {}}, "notes": ["n"]}))
    assert parsed.images == []
    assert parsed.links == ["summary.json"]
