"""The plots of the simulated year's report, each a base64 PNG (matplotlib, Agg backend).

Epsilon spent per agency over rounds against its budget, utility over rounds (each node's
held-out metrics, which stay on the node and which the simulation reads from its folder), the
confusion matrix of the federated model, missed rates by group, matching coverage and
duplicate aid per agency, the review-queue curve (missed and wrong aid after review over
capacities, per queue) and, when the summary carries one, the epsilon curve.
"""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["plots"]

_QUEUE_COLOURS = {"federated": "tab:orange", "centralized": "tab:blue", "rules": "tab:red",
                  "random": "tab:green"}
_QUEUE_NAMES = {
    "federated": "federated DP model's queue", "centralized": "centralized non-private queue",
    "rules": "rule-layer queue", "random": "random queue",
}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for every plot the summary has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: list[tuple[str, str]] = []
    per = summary.get("privacy", {}).get("per_agency", {})
    if any(rec.get("epsilon_by_round") for rec in per.values()):
        fig, ax = plt.subplots(figsize=(7, 4))
        for agency, rec in sorted(per.items()):
            series = rec.get("epsilon_by_round", [])
            if series:
                ax.plot(range(1, len(series) + 1), series, marker="o", label=agency)
        budgets = {rec.get("epsilon_budget") for rec in per.values()}
        for b in budgets:
            if b:
                ax.axhline(float(b), color="red", linestyle="--", linewidth=1)
        ax.set_xlabel("training round")
        ax.set_ylabel("epsilon spent (accountant)")
        ax.set_title("Privacy spend per agency (dashed: budget)")
        ax.legend(fontsize=6, ncol=2)
        out.append(("Epsilon per agency over rounds", _png(fig)))
    out.extend(_utility_over_rounds(summary.get("node_evaluation", {})))
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
    out.extend(_queue_curve(summary.get("review_queue", {})))
    out.extend(_epsilon_curve(summary.get("epsilon_curve", {})))
    return out


def _utility_over_rounds(evaluation: dict[str, Any]) -> list[tuple[str, str]]:
    """Each node's held-out macro-F1 per round and their mean weighted by held-out rows."""
    weighted = evaluation.get("weighted", [])
    if not weighted:
        return []
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for agency, points in sorted(evaluation.get("per_agency", {}).items()):
        ax.plot([p["round"] for p in points], [p["macro_f1"] for p in points], linewidth=1,
                alpha=0.6, marker=".", label=f"{agency} macro-F1")
    rounds = [p["round"] for p in weighted]
    ax.plot(rounds, [p["macro_f1"] for p in weighted], color="black", linewidth=2.5,
            marker="o", label="macro-F1, all nodes (weighted by held-out rows)")
    ax.plot(rounds, [p["accuracy"] for p in weighted], color="black", linestyle="--",
            marker="s", label="level accuracy, all nodes (weighted)")
    ax.set_xticks(rounds)
    ax.set_xlabel("training round")
    ax.set_ylabel("metric on held-out rows (against recorded labels)")
    ax.set_title("Utility over rounds: node-side figures, read by the simulation\n"
                 "from nodes/*/evaluation.jsonl (never released to the coordinator)",
                 fontsize=9)
    ax.legend(fontsize=6)
    return [("Utility over rounds", _png(fig))]


def _queue_curve(rq: dict[str, Any]) -> list[tuple[str, str]]:
    curves = rq.get("curves", {})
    if not curves:
        return []
    import matplotlib.pyplot as plt

    base = rq.get("self_report", {})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "missed_rate", "Missed after review"),
                           (axes[1], "wrong_aid_rate", "Wrong aid after review")):
        for acc, style in (("1", "-"), ("0.9", ":")):
            for name, points in sorted(curves.get(acc, {}).items()):
                xs = [100 * p["capacity"] for p in points]
                ax.plot(xs, [100 * p[key] for p in points], style, marker="o", markersize=3,
                        color=_QUEUE_COLOURS.get(name),
                        label=f"{_QUEUE_NAMES.get(name, name)}, reviewers right "
                              f"{100 * float(acc):g} %")
        if key in base:
            ax.axhline(100 * base[key], color="black", linewidth=1,
                       label="self-report alone (today)")
            ax.axhline(100 * base[key] / 3, color="red", linestyle="--", linewidth=1,
                       label="a third of self-report's")
        ax.set_xlabel("review capacity (% of each agency's students)")
        ax.set_ylabel(f"{title.split(' after')[0].lower()} rate (%)")
        ax.set_title(title)
    axes[1].legend(fontsize=6)
    return [("Review-queue curve", _png(fig))]


def _epsilon_curve(curve: dict[str, Any]) -> list[tuple[str, str]]:
    points = curve.get("points", [])
    if not points:
        return []
    import matplotlib.pyplot as plt

    private = [p for p in points if p.get("epsilon") is not None]
    public = [p for p in points if p.get("epsilon") is None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = [p["epsilon"] for p in private]
    axes[0].plot(xs, [p["macro_f1"] for p in private], marker="o", label="federated DP")
    for p in public:
        axes[0].axhline(p["macro_f1"], color="gray", linestyle="--",
                        label="centralized non-private")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("epsilon per agency")
    axes[0].set_ylabel("macro-F1 vs ground truth")
    axes[0].set_title("Utility against the privacy budget")
    axes[0].legend(fontsize=7)
    for key, label, colour in (("queue_missed_rate", "missed", "tab:blue"),
                               ("queue_wrong_aid_rate", "wrong aid", "tab:orange")):
        axes[1].plot(xs, [100 * p[key] for p in private], marker="o", color=colour,
                     label=f"{label}, DP")
        for p in public:
            axes[1].axhline(100 * p[key], linestyle="--", linewidth=1, color=colour,
                            label=f"{label}, centralized non-private")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.minorticks_off()
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    axes[1].set_xlabel("epsilon per agency")
    axes[1].set_ylabel(f"rate after reviewing {100 * curve.get('capacity', 0.1):g} % (%)")
    axes[1].set_title("Review-queue outcome against the privacy budget")
    axes[1].legend(fontsize=7)
    return [("Epsilon curve", _png(fig))]
