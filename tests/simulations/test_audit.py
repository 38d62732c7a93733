"""The privacy audit catches known-broken DP training and does not flag the correct one.

Small settings (1 round of 2 local epochs, 80 canaries per agency, the small province) in
the default run; the default province with the CLI's settings in the slow run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulations.audit import AuditConfig, run_audit
from simulations.audit_report import section
from simulations.bench.audit import compact_figures
from simulations.report import render_html


@pytest.fixture(scope="module")
def audit(small_province: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = AuditConfig(out=tmp_path_factory.mktemp("audit"), data=small_province,
                      students=3000, epsilons=(1.0,), rounds=1, local_epochs=2, canaries=80,
                      broken=("noise_off", "known_seed", "exact_counts"), membership=False)
    return run_audit(cfg)


def test_correct_configuration_not_flagged(audit: dict[str, Any]) -> None:
    correct = audit["white_box"]["1"]["correct"]
    assert not correct["flagged"]
    for rec in correct["per_agency"].values():
        assert rec["accountant_epsilon"] == pytest.approx(1.0, abs=0.01)
        assert rec["per_node_update"]["epsilon_lower_bound"] <= rec["accountant_epsilon"]
        assert rec["secure_aggregation_sum"]["epsilon_lower_bound"] <= rec["accountant_epsilon"]
    assert not audit["releases"]["correct"]["flagged"]
    assert audit["verdicts"]["correct at epsilon 1"] is False


@pytest.mark.parametrize("mode", ["noise_off", "known_seed"])
def test_broken_noise_is_caught_for_every_agency(audit: dict[str, Any], mode: str) -> None:
    broken = audit["white_box"]["1"][mode]
    assert broken["flagged"]
    for rec in broken["per_agency"].values():
        assert rec["per_node_update"]["epsilon_lower_bound"] > rec["accountant_epsilon"]
        # the canaries separate (nearly) perfectly
        assert rec["per_node_update"]["correct"] >= 0.95 * rec["per_node_update"]["guesses"]


def test_uncovered_release_is_named(audit: dict[str, Any]) -> None:
    rel = audit["releases"]["exact_counts"]
    assert rel["flagged"]
    assert all(fields == ["label_counts"] for fields in rel["uncovered"].values())
    assert len(rel["uncovered"]) == len(audit["white_box"]["1"]["correct"]["per_agency"])
    # the record count changes too, but it is declared outside epsilon, not uncovered
    some = next(iter(audit["releases"]["correct"]["per_agency"].values()))
    assert some["num_examples"]["changes_with_one_record"]
    assert not some["num_examples"][
        "uncovered"]


def test_report_section_and_files(audit: dict[str, Any]) -> None:
    html = section(audit)
    assert "What the audit measured" in html
    assert "FLAGGED" in html
    out = Path(audit["config"]["province"])
    assert out.exists()
    # the simulated year's report includes the section when summary.json carries the audit
    assert "What the audit measured" in render_html({"audit": audit})
    assert "What the audit measured" not in render_html({})
    line = compact_figures(audit)
    assert line["verdicts"] == audit["verdicts"]
    assert line["releases"]["exact_counts"] == audit["releases"]["exact_counts"]["uncovered"]


@pytest.mark.slow
def test_default_province_epsilon_one(tmp_path: Path) -> None:
    cfg = AuditConfig(out=tmp_path / "audit", epsilons=(1.0,), shadows=2,
                      broken=("noise_off", "known_seed", "clip_off", "exact_counts"))
    figures = run_audit(cfg)
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["verdicts"] == \
        figures["verdicts"]
    assert figures["verdicts"]["correct at epsilon 1"] is False
    for mode in ("noise_off", "known_seed", "clip_off"):
        assert figures["verdicts"][f"{mode} at epsilon 1"] is True
    for attack in figures["membership"]["1"]["attacks"].values():
        for rec in attack["per_agency"].values():
            assert rec["auc"] <= 0.55


def test_membership_inference_figures(small_province: Path) -> None:
    from fedid.model.train import TrainConfig
    from fedid.schema import load_schema
    from simulations.audit import _labelled
    from simulations.audit_mia import membership_inference

    schema = load_schema(small_province / "schema.toml")
    labelled, truth = _labelled(small_province, schema)
    names = sorted(labelled)
    targets = {a: labelled[a] for a in names[:2]}
    reference = {a: labelled[a] for a in names[2:4]}  # other students: never targets
    fig = membership_inference(
        targets=targets, reference=reference, truth=truth, schema=schema,
        config=TrainConfig(rounds=1, local_epochs=1), epsilon=1.0, delta=1e-5, shadows=2,
        seed=0, confidence=0.95, say=lambda _m: None)
    assert fig["targets"] == sum(len(f) for f in targets.values())
    for attack in ("loss", "lira_offline"):
        res = fig["attacks"][attack]
        assert set(res["per_agency"]) == set(targets)
        assert set(res["groups"]) == {"rural", "region", "sex", "stage"}
        for rec in res["per_agency"].values():
            assert 0.0 <= rec["auc"] <= 1.0
            assert 0.0 <= rec["tpr_at_0.1%_fpr"] <= 1.0
            assert rec["one_run"]["epsilon_lower_bound"] <= 1.0
