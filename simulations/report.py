"""``summary.json`` and a self-contained ``report.html`` for a simulated year.

The HTML embeds every plot as a base64 PNG (matplotlib, Agg backend), so the file
opens in a browser with nothing else next to it. Plots: epsilon spent per agency over
rounds against its budget, utility over rounds, the confusion matrix of the federated
model, missed rates by group, matching coverage and duplicate aid per agency.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from fedid.atomic import atomic_write_bytes

__all__ = ["render_html", "write"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(summary: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: list[tuple[str, str]] = []
    per = summary.get("privacy", {}).get("per_agency", {})
    if per:
        fig, ax = plt.subplots(figsize=(7, 4))
        for agency, rec in sorted(per.items()):
            series = rec.get("epsilon_by_round", [])
            if series:
                ax.plot(range(1, len(series) + 1), series, marker="o", label=agency)
        budgets = {rec.get("epsilon_budget") for rec in per.values()}
        for b in budgets:
            if b:
                ax.axhline(float(b), color="red", linestyle="--", linewidth=1)
        ax.set_xlabel("round")
        ax.set_ylabel("epsilon spent (accountant)")
        ax.set_title("Privacy spend per agency (dashed: budget)")
        ax.legend(fontsize=6, ncol=2)
        out.append(("Epsilon per agency over rounds", _png(fig)))
    rounds = summary.get("training", {}).get("rounds", [])
    if rounds:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in ("macro_f1", "accuracy"):
            ys = [r["metrics"].get(key) for r in rounds]
            if any(y is not None for y in ys):
                ax.plot([r["round"] for r in rounds], ys, marker="o", label=key)
        ref = summary.get("identification", {}).get("centralized_nonprivate", {})
        if "macro_f1" in ref:
            ax.axhline(ref["macro_f1"], color="gray", linestyle="--",
                       label="centralized non-private macro-F1 (all students)")
        ax.set_xlabel("round")
        ax.set_ylabel("held-out metric (vs recorded labels)")
        ax.set_title("Utility over rounds")
        ax.legend(fontsize=7)
        out.append(("Utility over rounds", _png(fig)))
    ident = summary.get("identification", {})
    fed = ident.get("federated", {})
    if fed.get("confusion"):
        levels = ident.get("levels", [])
        mat = np.array(fed["confusion"])
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.imshow(mat, cmap="Blues")
        ax.set_xticks(range(len(levels)), levels, rotation=30)
        ax.set_yticks(range(len(levels)), levels)
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_xlabel("recommended")
        ax.set_ylabel("true level")
        ax.set_title("Federated DP model vs ground truth")
        out.append(("Confusion matrix", _png(fig)))
    groups = summary.get("fairness", {}).get("groups", {})
    if groups:
        labels, fed_vals = [], []
        for gname, parts in groups.items():
            for value, m in sorted(parts.items()):
                labels.append(f"{gname}:{value}")
                fed_vals.append(100 * m["missed_rate"])
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar(range(len(labels)), fed_vals, color="tab:orange")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("missed rate (%)")
        ax.set_title("Missed rate by group (federated DP model)")
        out.append(("Group gaps", _png(fig)))
    per_home = summary.get("matching", {}).get("per_home", {})
    if per_home:
        names = sorted(per_home)
        cov = [100 * per_home[n].get("coverage", 0.0) for n in names]
        dup = [per_home[n].get("duplicate_aid", 0.0) for n in names]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
        a1.bar(range(len(names)), cov)
        a1.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        a1.set_ylabel("key positions (students, guardians) matched (%)")
        a1.set_title("Matching coverage (>= 1 department)")
        a2.bar(range(len(names)), dup, color="tab:red")
        a2.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        a2.set_ylabel("students (released count)")
        a2.set_title("Duplicate aid: aided + civil-affairs relief")
        out.append(("Matching coverage and duplicate aid", _png(fig)))
    return out


def _table(rows: dict[str, dict[str, Any]]) -> str:
    cols = sorted({k for r in rows.values() for k in r if not isinstance(r[k], list | dict)})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for name, r in rows.items():
        cells = "".join(
            f"<td>{r[c]:.4g}</td>" if isinstance(r.get(c), float) else
            f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"


def render_html(summary: dict[str, Any]) -> str:
    """The report as one HTML string with embedded PNGs."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>fedid simulated year"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px}</style></head><body><h1>fedid: a simulated school year</h1>"]
    ident = summary.get("identification", {})
    rows = {k: v for k, v in ident.items() if isinstance(v, dict) and "macro_f1" in v}
    if rows:
        parts.append("<h2>Identification vs ground truth</h2>" + _table(rows))
    points = ident.get("operating_points", {})
    if points.get("targets"):
        t = points["targets"]
        best = {k: v for k, v in points.items() if k != "targets"}
        parts.append(
            "<h2>Best threshold against the rate targets (diagnostic)</h2><p>Missed at most"
            f" {t['missed_target']:.3f} and wrong aid at most {t['wrong_target']:.3f} (a third"
            " of the self-report baseline's). Each ranking's threshold is chosen against the"
            " ground truth, so these are not deployable results; a target ratio at most 1"
            " meets both targets.</p>" + _table(best))
    per = summary.get("privacy", {}).get("per_agency", {})
    if per:
        parts.append("<h2>Privacy spend (from each node's accountant)</h2>" + _table(per))
    walls = summary.get("wall_seconds", {})
    if walls:
        parts.append("<h2>Wall time (s)</h2>" + _table({"seconds": walls}))
    for title, png in _plots(summary):
        parts.append(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{png}'>")
    notes = summary.get("notes", [])
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>summary.json</h2><pre>" + html.escape(
        json.dumps(summary, indent=1, default=str)[:200_000]) + "</pre></body></html>")
    return "".join(parts)


def write(out: Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sj = out / "summary.json"
    atomic_write_bytes(sj, json.dumps(summary, indent=1, default=str).encode("utf-8"))
    rh = out / "report.html"
    atomic_write_bytes(rh, render_html(summary).encode("utf-8"))
    return sj, rh
