"""A simulated year in distributed-noise mode, end to end, on the small province.

Three rounds (one DP-FedSGD step each), no matching (the mode does not touch it), every
message leaving a node recorded: the agreed noise, both epsilons per node in the summary,
the node ledgers and the report, and a scan of every message for IDs and values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clients.gate import read_ledger
from simulations.leakscan import needles_from_province, scan
from simulations.report_noise import TRUST_STATEMENT
from simulations.simulate import SimulationConfig, run

ROUNDS = 3


@pytest.fixture(scope="module")
def year(
    small_province: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sim_noise") / "run"
    cfg = SimulationConfig(out=out, data=small_province, rounds=ROUNDS, epsilon=1.0,
                           transcript=True, min_nodes=3, matching=False,
                           secure_aggregation=True, distributed_noise=True)
    return out, run(cfg)


@pytest.mark.slow
def test_both_epsilons_per_node_in_summary_ledgers_and_report(
    year: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = year
    block = summary["distributed_noise"]
    per = block["per_agency"]
    assert len(per) == 6
    agreed = block["agreement"]
    assert agreed["noise_std"] == max(agreed["required"].values())
    spent = summary["privacy"]["per_agency"]
    for agency, rec in per.items():
        assert rec["parties"] == 6
        assert rec["shared_rounds"] == ROUNDS
        assert rec["noise_multiplier"] == pytest.approx(agreed["noise_std"] / 5.0)
        assert rec["epsilon_trusted"] == pytest.approx(spent[agency]["epsilon_spent"])
        assert 0.9 < rec["epsilon_trusted"] <= rec["epsilon_budget"] == 1.0
        assert rec["epsilon_fallback"] > 1.5 * rec["epsilon_trusted"]
        node = json.loads((out / "nodes" / agency / "privacy_ledger.json").read_text())
        assert node["distributed_noise"]["spend"]["fallback_epsilon"] == pytest.approx(
            rec["epsilon_fallback"])
        entries = read_ledger(out / "nodes" / agency)
        assert all(e["status"] == "released" for e in entries)
        assert sum(1 for e in entries if e["kind"] == "query.noise") == 1
        trains = [e for e in entries if e["kind"] == "train"]
        assert len(trains) == ROUNDS
        assert all(e["fields"]["metrics.epsilon_fallback"] == "accounting" for e in trains)
        assert sum(e["charged_epsilon"] for e in entries) == pytest.approx(
            rec["epsilon_trusted"], rel=1e-9)
    year_file = json.loads((out / "coordinator" / "year.json").read_text())
    assert year_file["training"]["distributed_noise"]["noise_std"] == agreed["noise_std"]
    html = (out / "report.html").read_text()
    assert "id='distributed-noise'" in html
    assert "holds against the coordinator only while secure aggregation holds" in TRUST_STATEMENT
    assert "holds against the coordinator only while secure aggregation holds" in html
    assert "Distributed noise: each agency added a 1/6 share" in html  # in the verdict
    assert 0.0 <= summary["identification"]["federated"]["macro_f1"] <= 1.0


@pytest.mark.slow
def test_no_raw_id_or_plaintext_value_in_any_message(
    year: tuple[Path, dict[str, Any]], small_province: Path
) -> None:
    out, _ = year
    files = sorted((out / "transcript").glob("*.bin"))
    kinds = {f.name.split("-")[1] for f in files}
    assert {"train", "query.noise", "query.secagg", "query.identify"} <= kinds
    report = scan(files, needles_from_province(small_province))
    assert report.clean, (report.id_hits, report.value_hits)
