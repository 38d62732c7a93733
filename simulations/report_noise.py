"""The distributed-noise part of a simulated year's summary and report, with its trust statement.

:func:`noise_summary` reads what each training node recorded in distributed-noise mode
(``nodes/<agency>/privacy_ledger.json`` → ``distributed_noise``, and its accountant in
``local_state.bin``) and recomputes both epsilons from the accountant history: the trusted
one, which the node's budget guard charged, and the fallback one, which holds with the
node's own share only. :func:`noise_section` renders them for ``report.html`` under
:data:`TRUST_STATEMENT`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fedid.model.train import LocalState
from privacy.dp import shared_noise_spend

__all__ = ["TRUST_STATEMENT", "noise_section", "noise_summary", "noise_verdict"]

TRUST_STATEMENT = (
    "Each agency added only its share of the Gaussian noise; the sum the coordinator "
    "unmasked carried the full noise. The trusted epsilon (charged to each agency's budget) "
    "holds against the coordinator only while secure aggregation holds (no masking key "
    "substituted, the coordinator colluding with no agency) and at least K agencies, the "
    "agency itself included, add their share of the agreed noise and keep it secret. If "
    "either fails, only the fallback epsilon holds: the agency's own share alone, noise "
    "multiplier sigma / sqrt(K)."
)


def _node(folder: Path) -> dict[str, Any] | None:
    ledger = folder / "privacy_ledger.json"
    if not (ledger.exists() and (folder / "local_state.bin").exists()):
        return None
    record = json.loads(ledger.read_text(encoding="utf-8")).get("distributed_noise")
    if not record or not record.get("shared"):
        return None
    state = LocalState.from_bytes((folder / "local_state.bin").read_bytes())
    shared = [(float(e[0]), float(e[1]), int(e[2]), int(e[3])) for e in record["shared"]]
    spend = shared_noise_spend(state.accountant, shared=shared, delta=state.budget.delta)
    sigma, rate, _, parties = shared[-1]
    return {
        "epsilon_trusted": spend.epsilon, "epsilon_fallback": spend.fallback_epsilon,
        "epsilon_budget": state.budget.epsilon, "delta": state.budget.delta,
        "parties": parties, "noise_multiplier": sigma,
        "share_multiplier": sigma / parties ** 0.5, "sample_rate": rate,
        "shared_rounds": sum(e[2] for e in shared),
        "required_noise_std": [p["noise_std"] for p in record.get("sessions", {}).values()],
    }


def noise_summary(out: Path, year: dict[str, Any]) -> dict[str, Any]:
    """The summary block: per training agency both epsilons, the agreed noise, the trust
    statement."""
    sim = json.loads((out / "simulation.json").read_text(encoding="utf-8"))
    per: dict[str, Any] = {}
    for agency in sim["agencies"]:
        found = _node(Path(agency["out"]))
        if found is not None:
            per[agency["agency-id"]] = found
    return {"per_agency": per,
            "agreement": year.get("training", {}).get("distributed_noise", {}),
            "trust_statement": TRUST_STATEMENT}


def noise_verdict(block: dict[str, Any] | None) -> list[str]:
    """The verdict's sentence on distributed noise ([] when the year did not use it): the
    epsilon above is the trusted one; what holds without the trust."""
    if not block or not block.get("per_agency"):
        return []
    per = block["per_agency"].values()
    trusted = max(float(r["epsilon_trusted"]) for r in per)
    fallback = max(float(r["epsilon_fallback"]) for r in per)
    parties = min(int(r["parties"]) for r in per)
    return [f"Distributed noise: each agency added a 1/{parties} share of the noise under the "
            f"secure sum, so the epsilon above ({trusted:.2f}) is the trusted one: it holds "
            "against the coordinator only while secure aggregation holds and at least "
            f"{parties} agencies add their share; with its own share alone an agency has "
            f"epsilon {fallback:.2f} (see 'Distributed noise under the secure sum')."]


_COLUMNS = (
    ("epsilon_trusted", "Epsilon, trusted (charged)"),
    ("epsilon_fallback", "Epsilon, own share only (fallback)"),
    ("epsilon_budget", "Epsilon budget"), ("delta", "Delta"),
    ("parties", "K (agencies adding a share)"), ("noise_multiplier", "Noise multiplier of the sum"),
    ("share_multiplier", "Noise multiplier of one share"), ("sample_rate", "Sample rate"),
    ("shared_rounds", "Rounds (one step each)"),
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def noise_section(block: dict[str, Any] | None) -> str:
    """The report's section ("" when the year did not run in distributed-noise mode)."""
    if not block or not block.get("per_agency"):
        return ""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _COLUMNS)
    rows = "".join(
        f"<tr><th>{html.escape(agency)}</th>"
        + "".join(f"<td>{_fmt(r.get(key))}</td>" for key, _ in _COLUMNS) + "</tr>"
        for agency, r in sorted(block["per_agency"].items()))
    agreed = block.get("agreement", {}).get("noise_std")
    agreed_text = (f" The agreed noise of the sum: standard deviation {agreed:.4g} per "
                   "coordinate (the largest any agency's budget required)."
                   if isinstance(agreed, float) else "")
    return ("<section id='distributed-noise'><h2>Distributed noise under the secure sum</h2>"
            f"<p><strong>Trust statement.</strong> {html.escape(TRUST_STATEMENT)}"
            f"{html.escape(agreed_text)} Each round is one DP-FedSGD step: one noisy sum of "
            "clipped per-record gradients per agency, the step taken by the coordinator.</p>"
            f"<table><tr><th>Agency</th>{head}</tr>{rows}</table></section>")
