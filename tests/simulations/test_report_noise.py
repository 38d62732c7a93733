"""The report's distributed-noise section and verdict sentence, from a summary block."""

from __future__ import annotations

from simulations.report import render_html, verdict
from simulations.report_noise import TRUST_STATEMENT, noise_section, noise_verdict

BLOCK = {
    "per_agency": {a: {"epsilon_trusted": 0.9973, "epsilon_fallback": 2.5904,
                       "epsilon_budget": 1.0, "delta": 1e-5, "parties": 6,
                       "noise_multiplier": 17.516, "share_multiplier": 7.151,
                       "sample_rate": 1.0, "shared_rounds": 20} for a in ("edu_a", "edu_b")},
    "agreement": {"noise_std": 87.578, "required": {"edu_a": 87.578, "edu_b": 80.0}},
    "trust_statement": TRUST_STATEMENT,
}


def test_section_and_verdict_carry_both_epsilons_and_the_trust_statement() -> None:
    html = render_html({"distributed_noise": BLOCK})
    assert "id='distributed-noise'" in html
    assert "holds against the coordinator only while secure aggregation holds" in html
    assert "<td>2.59</td>" in html  # the fallback epsilon, per agency
    assert "standard deviation 87.58" in html
    (line,) = noise_verdict(BLOCK)
    assert "trusted" in line
    assert "2.59" in line
    assert "1/6 share" in line
    summary = {"distributed_noise": BLOCK, "privacy": {"per_agency": {
        "edu_a": {"epsilon_spent": 0.9973, "epsilon_budget": 1.0, "within_budget": True,
                  "delta": 1e-5}}}}
    assert verdict(summary)[1] == line  # right after what was protected
    assert noise_section(None) == ""
    assert noise_verdict({"per_agency": {}}) == []
