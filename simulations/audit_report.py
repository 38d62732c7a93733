"""The reviewer's report section "What the audit measured" (an HTML fragment), and a page.

:func:`section` renders the figures of :func:`simulations.audit.run_audit` (also
``summary["audit"]`` of a simulated year run with ``--audit``); :func:`write_page` wraps it
in a standalone page (``audit.html``). Every number comes from the audit's figures.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from privacy.atomic import atomic_write_bytes

__all__ = ["section", "write_page"]


def _f(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_f(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _white_box(audit: dict[str, Any]) -> str:
    parts = []
    for eps, modes in audit.get("white_box", {}).items():
        correct = modes.get("correct", {}).get("per_agency", {})
        broken = [m for m in modes if m != "correct"]
        head = ["agency", "accountant epsilon", "lower bound (node updates)",
                "lower bound (sum only)", *[f"{m}: lower bound" for m in broken]]
        rows = []
        for agency, rec in sorted(correct.items()):
            rows.append([
                agency, rec["accountant_epsilon"],
                rec["per_node_update"]["epsilon_lower_bound"],
                rec["secure_aggregation_sum"]["epsilon_lower_bound"],
                *[modes[m]["per_agency"][agency]["per_node_update"]["epsilon_lower_bound"]
                  for m in broken]])
        parts.append(f"<h3>Budget epsilon {html.escape(eps)}</h3>" + _table(head, rows))
    return "".join(parts)


def _membership(audit: dict[str, Any]) -> str:
    parts = []
    for key, run in audit.get("membership", {}).items():
        label = "non-private reference" if key == "non_private" else f"epsilon {key}"
        attacks = run["attacks"]
        agencies = sorted(attacks["loss"]["per_agency"])
        head = ["agency", *[f"{a}: {m}" for a in attacks for m in ("AUC", "TPR@0.1%FPR")],
                "one-run bound (LiRA scores)"]
        rows = [[ag, *[attacks[a]["per_agency"][ag].get(m, "") for a in attacks
                       for m in ("auc", "tpr_at_0.1%_fpr")],
                 attacks["lira_offline"]["per_agency"][ag]["one_run"]["epsilon_lower_bound"]]
                for ag in agencies]
        rows.append(["all agencies", *[attacks[a]["pooled"].get(m, "") for a in attacks
                                       for m in ("auc", "tpr_at_0.1%_fpr")], ""])
        group_rows = [[f"{g}: {v}", *[attacks[a]["groups"][g][v].get(m, "") for a in attacks
                                      for m in ("auc", "tpr_at_0.1%_fpr")], ""]
                      for g in attacks["loss"]["groups"]
                      for v in sorted(attacks["loss"]["groups"][g])]
        parts.append(f"<h3>Membership inference, {html.escape(label)} ({run['targets']}"
                     f" targets, {run['shadows']} shadow federations)</h3>"
                     + _table(head, rows + group_rows))
    return "".join(parts)


def _releases(audit: dict[str, Any]) -> str:
    rows = []
    for mode, rec in audit.get("releases", {}).items():
        fields: dict[str, Any] = {}
        for per in rec["per_agency"].values():
            fields.update(per)
        for name, f in sorted(fields.items()):
            rows.append([mode, name, "yes" if f["changes_with_one_record"] else "no",
                         f["covered_by"] or "NOTHING", "UNCOVERED" if f["uncovered"] else ""])
    return _table(["configuration", "reply field", "changes with one record", "covered by",
                   ""], rows)


def section(audit: dict[str, Any] | None) -> str:
    """The HTML fragment (empty string when there is no audit)."""
    if not audit:
        return ""
    c = audit["config"]
    verdicts = [[k, "FLAGGED" if v else "not flagged"] for k, v in audit["verdicts"].items()]
    used = sorted({u for modes in audit.get("white_box", {}).values() for m in modes.values()
                   for u in m.get("releases_used", [])})
    mia_used = sorted({u for r in audit.get("membership", {}).values()
                       for u in r.get("releases_used", [])})
    return (
        "<h2>What the audit measured</h2>"
        f"<p>One-run audit (Steinke, Nasr and Jagielski 2023): {c['canaries_per_agency']}"
        f" Dirac gradient canaries per agency, each present with probability 1/2; empirical"
        f" epsilon lower bounds at {100 * c['confidence']:g} % confidence (delta"
        f" {c['delta']:g}), against the epsilon each agency's accountant reports. With this"
        " many canaries a perfect attacker would show at most epsilon"
        f" {audit['audit_reach']['perfect_attacker_lower_bound']:.2f}: a larger budget cannot"
        " be refuted by this audit. A configuration is flagged when a lower bound exceeds"
        " the accountant's epsilon or a reply field is uncovered.</p>"
        + _table(["configuration", "verdict"], verdicts)
        + "<p>Releases the white-box attacks used: " + html.escape("; ".join(used))
        + ". Releases the membership-inference attacks used: "
        + html.escape("; ".join(mia_used)) + ".</p>"
        + _white_box(audit)
        + "<h3>Reply fields (release audit)</h3>" + _releases(audit)
        + _membership(audit)
    )


def write_page(path: Path, audit: dict[str, Any]) -> None:
    """A standalone page holding :func:`section`."""
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>fedid privacy audit"
            "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
            "padding:2px 6px}</style></head><body>" + section(audit) + "</body></html>")
    atomic_write_bytes(path, page.encode("utf-8"))
