"""A whole simulated year in Flower's simulation engine on the small province.

One run (module fixture) with every message leaving every node recorded; the tests check
the outputs, where student-level results live, the privacy figures, and scan the
transcript for raw IDs and plaintext values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clients.gate import read_ledger
from clients.release import PROTECTIONS
from simulations.leakscan import needles_from_province, scan
from simulations.simulate import SimulationConfig, run

ROUNDS = 2


@pytest.fixture(scope="module")
def year(
    small_province: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sim") / "run"
    cfg = SimulationConfig(out=out, data=small_province, rounds=ROUNDS, epsilon=1.0,
                           transcript=True, min_nodes=3)
    return out, run(cfg)


def test_outputs_and_report(year: tuple[Path, dict[str, Any]]) -> None:
    out, summary = year
    on_disk = json.loads((out / "summary.json").read_text())
    fed = summary["identification"]["federated"]
    assert on_disk["identification"]["federated"]["n"] == fed["n"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert "Best threshold against the rate targets" in html
    ident = summary["identification"]
    for key in ("federated", "self_report_baseline", "centralized_nonprivate"):
        assert 0.0 <= ident[key]["macro_f1"] <= 1.0
        assert 0.0 <= ident[key]["missed_rate"] <= 1.0
    assert "rural_minus_urban_missed_points" in summary["fairness"]["gaps"]
    points = ident["operating_points"]
    base = ident["self_report_baseline"]
    assert points["targets"]["missed_target"] == pytest.approx(base["missed_rate"] / 3)
    for key in ("federated", "noiseless_rubric"):
        assert 0.0 < points[key]["target_ratio"] < float("inf")
    # the generator's own noiseless formula ranks at least as well as the trained model
    assert points["noiseless_rubric"]["target_ratio"] <= points["federated"]["target_ratio"]
    curves = summary["review_queue"]["curves"]
    assert {"federated", "centralized", "rules", "random"} <= set(curves["1"])
    assert "Review-queue curve" in html
    assert "id='verdict'" in html
    walls = summary["wall_seconds"]
    assert {"year_matching", "year_training", "year_identify", "review"} <= set(walls)


def test_privacy_spend_from_each_node_accountant(year: tuple[Path, dict[str, Any]]) -> None:
    _, summary = year
    per = summary["privacy"]["per_agency"]
    assert len(per) == 6
    for rec in per.values():
        series = rec["epsilon_by_round"]
        assert len(series) == ROUNDS
        assert series == sorted(series)
        assert 0 < rec["epsilon_spent"] <= rec["epsilon_budget"] == 1.0
        assert rec["accountant"] == "prv"
    declared = summary["privacy"]["declared_to_coordinator"]
    for agency, rec in per.items():  # the last training declaration, before identification
        assert 0 < declared[agency] < rec["epsilon_spent"]


def test_every_release_is_in_the_node_ledgers(year: tuple[Path, dict[str, Any]]) -> None:
    """Each node's ledger lists every reply it sent; the charges add up to its epsilon."""
    out, summary = year
    per = summary["privacy"]["per_agency"]
    replies = sorted((out / "transcript").glob("*.bin"))
    ledgers = {a: read_ledger(out / "nodes" / a) for a in summary["agencies"]}
    assert sum(len(e) for e in ledgers.values()) == len(replies)
    kinds = {e["kind"] for entries in ledgers.values() for e in entries}
    assert {"query.info", "query.init", "train", "evaluate", "query.identify",
            "query.match"} <= kinds
    for agency, entries in ledgers.items():
        assert entries, agency
        assert all(e["status"] == "released" for e in entries), agency
        assert all(set(e["fields"].values()) <= set(PROTECTIONS) for e in entries)
        charged = sum(e["charged_epsilon"] for e in entries)
        if agency in per:
            assert charged == pytest.approx(per[agency]["epsilon_spent"], rel=1e-9)
            dp = [e for e in entries if e["charged_epsilon"] > 0]
            # DP-SGD updates, identification counts, the home's matching aggregates
            assert {e["kind"] for e in dp} == {"train", "query.identify", "query.match"}
            assert all(set(e["fields"].values()) & {"dp", "protocol"} for e in dp)
        else:
            assert charged == 0.0


def test_results_stay_on_each_agency_node(year: tuple[Path, dict[str, Any]]) -> None:
    out, summary = year
    education = [a for a, i in summary["agencies"].items() if i["kind"] == "education"]
    for agency in education:
        rec = pd.read_parquet(out / "nodes" / agency / "recommendations.parquet")
        assert len(rec) > 0
        assert "reasons" in rec.columns
        for private in ("evidence.parquet", "recommendations.parquet"):  # owner-only
            assert (out / "nodes" / agency / private).stat().st_mode & 0o777 == 0o600
    coordinator_files = list((out / "coordinator").rglob("*"))
    assert coordinator_files
    assert not [p for p in coordinator_files if p.suffix == ".parquet"]
    totals = summary["coordinator_aggregates"]["total"]
    # noised on each node (Gaussian, std release-noise x sqrt(counts)), never exact
    noised = [k for k in totals if k != "evidence_missing_departments"]
    std = 20.0 * len(noised) ** 0.5 * len(education) ** 0.5
    assert abs(totals["students"] - summary["identification"]["students_scored"]) < 5 * std
    # the review queue and its counts stay on its node, owner-only (no bounded sensitivity)
    queued = 0
    for agency in education:
        path = out / "nodes" / agency / "review_queue.parquet"
        assert path.stat().st_mode & 0o077 == 0
        queued += len(pd.read_parquet(path))
    assert queued > 0
    assert not [k for k in totals if k.startswith("review_queue")]
    assert not list((out / "coordinator").rglob("review_queue*"))


def test_matching_figures(year: tuple[Path, dict[str, Any]]) -> None:
    _, summary = year
    per_home = summary["matching"]["per_home"]
    assert len(per_home) == 6
    for fig in per_home.values():
        assert 0.0 < fig["coverage"] <= 1.0
        assert fig["key_positions_matched"] <= fig["key_positions"]


def test_no_raw_id_or_plaintext_value_in_any_message(
    year: tuple[Path, dict[str, Any]], small_province: Path, tmp_path: Path
) -> None:
    out, _ = year
    files = sorted((out / "transcript").glob("*.bin"))
    kinds = {f.name.split("-")[1] for f in files}
    assert {"train", "evaluate", "query.match", "query.identify", "query.info"} <= kinds
    needles = needles_from_province(small_province)
    assert len(needles.ids) > 1000
    assert len(needles.ints) + len(needles.floats) > 100
    report = scan(files, needles)
    assert report.bytes > 100_000
    assert report.clean, (report.id_hits, report.value_hits)
    # The scanner does find what it looks for.
    some_id = sorted(needles.ids)[0]
    some_value = str(sorted(needles.ints)[0]).encode()
    planted = tmp_path / "planted.bin"
    planted.write_bytes(b"\x01" + some_id.encode("utf-16-le") + b"\x02" + some_value + b" ")
    caught = scan([planted], needles)
    assert caught.id_hits
    assert caught.value_hits
