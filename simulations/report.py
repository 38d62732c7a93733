"""``summary.json`` and a self-contained ``report.html`` for a simulated year, for reviewers.

The report opens with the verdict (:func:`verdict`): what was protected and at which budget,
what privacy cost against the centralized non-private model, what the review queue achieves
against today's self-report process, which groups fare worst. Then tables with readable labels
and units, and every plot embedded as a base64 PNG (:mod:`simulations.report_plots`), so the
file opens with nothing next to it except ``summary.json``, which it links.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from privacy.atomic import atomic_write_bytes
from simulations.audit_report import section as audit_section
from simulations.report_noise import noise_section, noise_verdict
from simulations.report_plots import plots

__all__ = ["REVIEW_TARGETS", "render_html", "verdict", "write"]

#: The project's review targets (capacity -> missed, wrong aid after review with reviewers
#: right every time): a third of the default province's self-report rates at 7.5 %, and
#: 3 % / 4 % at 10 %.
REVIEW_TARGETS = {0.075: (0.057, 0.077), 0.10: (0.030, 0.040)}

# (label, unit) per summary field; "%" fields are shares printed as percentages
_LABELS: dict[str, tuple[str, str]] = {
    "macro_f1": ("Macro-F1", ""), "accuracy": ("Level accuracy", "%"),
    "level_accuracy": ("Level accuracy", "%"),
    "missed_rate": ("Missed (of students in hardship)", "%"),
    "wrong_aid_rate": ("Wrong aid (of students aided)", "%"),
    "hidden_found": ("Hidden hardship found", "%"), "hidden_count": ("Hidden hardship", "students"),
    "n": ("Students", ""), "students": ("Students", ""), "train_rows": ("Training rows", ""),
    "epsilon_spent": ("Epsilon spent", ""), "epsilon_budget": ("Epsilon budget", ""),
    "delta": ("Delta", ""), "accountant": ("Accountant", ""), "steps": ("DP-SGD steps", ""),
    "noise_multiplier": ("Noise multiplier", ""), "within_budget": ("Within budget", ""),
    "capacity": ("Review capacity (of each agency's students)", "%"),
    "reviewed_share": ("Reviewed (of all students)", "%"),
    "rural_minus_urban_missed_points": ("Rural minus urban missed", "points"),
    "target_ratio": ("Worst rate / its target", ""),
    "threshold": ("Threshold (P(hardship); the rubric: its points)", ""),
    "min_wrong_aid_at_missed_target": ("Least wrong aid at the missed target", "%"),
    "province": ("Province: generate or load", "s"), "flower_total": ("Flower year, total", "s"),
    "year_nodes": ("Nodes start", "s"), "year_matching": ("Matching", "s"),
    "year_training": ("Training", "s"), "year_identify": ("Identification", "s"),
    "review": ("Evaluation against truth", "s"),
    "review_models": ("of which: models against truth (reference trained)", "s"),
    "review_queue_eval": ("of which: review-queue evaluation", "s"),
    "num_examples": ("Held-out rows", ""), "nodes": ("Nodes", ""),
    "round": ("Round", ""),
    "epsilon": ("Epsilon per agency", ""), "epsilon_spent_max": ("Epsilon spent, largest", ""),
    "queue_missed_rate": ("Missed after review (of students in hardship)", "%"),
    "queue_wrong_aid_rate": ("Wrong aid after review (of students aided)", "%"),
    "queue_level_accuracy": ("Level accuracy after review", "%"),
    "seconds": ("Wall time", "s"),
}
_ROWS = {
    "federated": "Federated DP model", "self_report_baseline": "Self-report (today)",
    "self_report": "Self-report alone (today)", "centralized_nonprivate": "Centralized non-private",
    "centralized": "Centralized non-private queue", "rules": "Rule-layer queue",
    "random": "Random queue", "noiseless_rubric": "Generator's noiseless rubric (diagnostic)",
}


def _label(key: str) -> str:
    name, unit = _LABELS.get(key, (key.replace("_", " ").capitalize(), ""))
    return f"{name} ({unit})" if unit else name


def _cell(key: str, value: Any) -> str:
    unit = _LABELS.get(key, ("", ""))[1]
    if isinstance(value, bool) or value is None:
        return html.escape("yes" if value is True else "no" if value is False else "-")
    if isinstance(value, float | int) and unit == "%":
        return f"{100 * float(value):.1f}"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100 and unit != "s":
        return f"{int(value):,}"  # a count (held-out rows, students)
    if isinstance(value, float):
        return f"{value:.1f}" if unit == "points" or abs(value) >= 100 else f"{value:.3g}"
    return html.escape(str(value))


def _table(rows: dict[str, dict[str, Any]], cols: list[str] | None = None) -> str:
    cols = cols or sorted({k for r in rows.values() for k, v in r.items()
                           if not isinstance(v, list | dict)})
    head = "".join(f"<th>{html.escape(_label(c))}</th>" for c in cols)
    body = "".join(
        f"<tr><th>{html.escape(_ROWS.get(name, name))}</th>"
        + "".join(f"<td>{_cell(c, r.get(c))}</td>" for c in cols) + "</tr>"
        for name, r in rows.items())
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _at(rq: dict[str, Any], queue: str, capacity: float, acc: str = "1") -> dict[str, Any]:
    for point in rq.get("curves", {}).get(acc, {}).get(queue, []):
        if abs(point["capacity"] - capacity) < 1e-9:
            return dict(point)
    return {}


def _met(value: float, target: float) -> str:
    return "met" if value <= target + 1e-12 else "NOT met"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def verdict(summary: dict[str, Any]) -> list[str]:
    """The report's opening sentences, each computed from the summary."""
    out: list[str] = []
    per = summary.get("privacy", {}).get("per_agency", {})
    if per:
        spent = max(float(r["epsilon_spent"]) for r in per.values())
        budget = min(float(r["epsilon_budget"]) for r in per.values())
        ok = all(r.get("within_budget") for r in per.values())
        delta = max(float(r["delta"]) for r in per.values())
        out.append(
            f"Protected: every training agency's records under record-level differential "
            f"privacy, at most epsilon {spent:.2f} spent per agency against a budget of "
            f"{budget:g} (delta {delta:g}), {'all' if ok else 'NOT all'} within budget; "
            "student and guardian IDs were matched blinded, and the review queue stays on "
            "each node with its counts (nothing of it reaches the coordinator).")
    out.extend(noise_verdict(summary.get("distributed_noise")))  # distributed-noise mode
    ident = summary.get("identification", {})
    fed, cen = ident.get("federated", {}), ident.get("centralized_nonprivate", {})
    rq = summary.get("review_queue", {})
    if fed and cen:
        cost = 100 * (float(cen["macro_f1"]) - float(fed["macro_f1"]))
        text = (f"Privacy cost: macro-F1 {fed['macro_f1']:.3f} federated against "
                f"{cen['macro_f1']:.3f} centralized non-private ({cost:.1f} points)")
        f10, c10 = _at(rq, "federated", 0.10), _at(rq, "centralized", 0.10)
        if f10 and c10:
            text += (f"; after reviewing 10 % of students, missed {_pct(f10['missed_rate'])} "
                     f"against {_pct(c10['missed_rate'])} and wrong aid "
                     f"{_pct(f10['wrong_aid_rate'])} against {_pct(c10['wrong_aid_rate'])}")
        out.append(text + ".")
    base = rq.get("self_report", {})
    if base:
        parts = []
        for cap, (t_missed, t_wrong) in REVIEW_TARGETS.items():
            f, r = _at(rq, "federated", cap), _at(rq, "random", cap)
            if not f:
                continue
            parts.append(
                f"reviewing {100 * cap:g} % of each agency's students from the queue leaves "
                f"missed {_pct(f['missed_rate'])} and wrong aid {_pct(f['wrong_aid_rate'])} "
                f"(a random {100 * cap:g} %: {_pct(r.get('missed_rate', float('nan')))} and "
                f"{_pct(r.get('wrong_aid_rate', float('nan')))}; targets missed at most "
                f"{_pct(t_missed)}: {_met(f['missed_rate'], t_missed)}, wrong aid at most "
                f"{_pct(t_wrong)}: {_met(f['wrong_aid_rate'], t_wrong)})")
        f9 = _at(rq, "federated", 0.10, "0.9")
        if f9:
            third_m, third_w = base["missed_rate"] / 3, base["wrong_aid_rate"] / 3
            parts.append(
                f"with reviewers right 90 % of the time, 10 % leaves missed "
                f"{_pct(f9['missed_rate'])} and wrong aid {_pct(f9['wrong_aid_rate'])} (a third "
                f"of self-report's, {_pct(third_m)} and {_pct(third_w)}: "
                f"{_met(f9['missed_rate'], third_m)} and {_met(f9['wrong_aid_rate'], third_w)})")
        out.append(f"Review queue against today's process (missed {_pct(base['missed_rate'])},"
                   f" wrong aid {_pct(base['wrong_aid_rate'])}): " + "; ".join(parts) + ".")
    out.extend(_worst_groups(rq))
    return out


def _worst_groups(rq: dict[str, Any]) -> list[str]:
    groups = rq.get("groups", {}).get("federated", {})
    if not groups:
        return []
    rows = [(m["missed_rate"], value if name == "rural" else f"{name} {value}", m)
            for name, parts in groups.items()
            for value, m in parts.items() if m.get("students", 0) >= 100]
    rows.sort(key=lambda r: r[0], reverse=True)
    worst = "; ".join(f"{label}: missed {_pct(rate)}, wrong aid {_pct(m['wrong_aid_rate'])}"
                      for rate, label, m in rows[:3])
    point = _at(rq, "federated", float(rq.get("groups", {}).get("capacity", 0.1)))
    gap = point.get("rural_minus_urban_missed_points")
    gap_text = f" Rural minus urban missed rate: {gap:.1f} points." if gap is not None else ""
    cap = 100 * float(rq.get("groups", {}).get("capacity", 0.1))
    return [f"Groups faring worst after reviewing {cap:g} % (groups of 100 or more "
            f"students): {worst}.{gap_text}"]


def _queue_table(rq: dict[str, Any]) -> str:
    parts = []
    for acc in rq.get("accuracies", []):
        key = f"{acc:g}"
        rows: dict[str, dict[str, Any]] = {"self_report": rq["self_report"]}
        for cap in (0.05, 0.075, 0.10, 0.15, 0.20):
            for name in ("federated", "centralized", "rules", "random"):
                point = _at(rq, name, cap, key)
                if point:
                    rows[f"{_ROWS.get(name, name)}, {100 * cap:g} %"] = point
        cols = ["missed_rate", "wrong_aid_rate", "level_accuracy", "reviewed_share",
                "rural_minus_urban_missed_points"]
        parts.append(f"<h3>Reviewers right {100 * float(acc):g} % of the time</h3>"
                     + _table(rows, cols))
    return "".join(parts)


def _node_evaluation_section(evaluation: dict[str, Any]) -> str:
    weighted = evaluation.get("weighted", [])
    if not weighted:
        return ""
    rows = {f"After round {p['round']}": p for p in weighted}
    return ("<h2>Held-out metrics per round (node-side)</h2><p>Read by the simulation from "
            f"{html.escape(str(evaluation.get('source', 'each node')))}. Means over the "
            "education nodes weighted by their held-out rows; the model's figures against the "
            "ground truth are in the table above.</p>"
            + _table(rows, ["macro_f1", "accuracy", "num_examples", "nodes"]))


def _epsilon_curve_section(curve: dict[str, Any]) -> str:
    points = curve.get("points", [])
    if not points:
        return ""
    cap = 100 * float(curve.get("capacity", 0.1))
    rows = {(f"epsilon {p['epsilon']:g} per agency" if p.get("epsilon") is not None
             else "centralized non-private"): p for p in points}
    return (f"<h2>Epsilon curve: utility and the review queue against the budget</h2><p>The "
            "same province and the same matched evidence at every budget; the model's list "
            "against the ground truth, and the rates after reviewing "
            f"{cap:g} % of each agency's students from its queue (reviewers right every "
            "time).</p>"
            + _table(rows, ["macro_f1", "missed_rate", "wrong_aid_rate", "queue_missed_rate",
                            "queue_wrong_aid_rate", "queue_level_accuracy",
                            "epsilon_spent_max"]))


def render_html(summary: dict[str, Any]) -> str:
    """The report as one HTML string with embedded PNGs."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>fedid simulated year"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px}</style></head><body><h1>fedid: a simulated school year</h1>"]
    lines = verdict(summary)
    if lines:
        parts.append("<section id='verdict'><h2>Verdict</h2><ul>" + "".join(
            f"<li>{html.escape(line)}</li>" for line in lines) + "</ul></section>")
    rq = summary.get("review_queue", {})
    if rq.get("curves"):
        parts.append(
            "<h2>Review queue: rates after simulated review</h2><p>Each agency's reviewers "
            "resolve the first students of its queue (capacity in % of the agency's "
            "students); everyone else keeps last year's recognition. Rates in %. A reviewer "
            "who errs leaves a wrong record as it was and changes a right one. No queue reads "
            "the truth: the node's ranking uses the published self-report rates, its own "
            "counts and a calibration fitted to its own records (all on the node); the weight "
            "of level-only errors was chosen on a tuning province never reported. The queue "
            "and its counts stay on each node (its ranking is calibrated on the agency's own "
            "counts, so no noise of bounded sensitivity could protect a released count).</p>"
            + _queue_table(rq))
    ident = summary.get("identification", {})
    rows = {k: v for k, v in ident.items() if isinstance(v, dict) and "macro_f1" in v}
    if rows:
        parts.append("<h2>The model's recommendation as a list, against ground truth</h2>"
                     + _table(rows, ["macro_f1", "accuracy", "missed_rate", "wrong_aid_rate",
                                     "hidden_found", "n"]))
    points = ident.get("operating_points", {})
    if points.get("targets"):
        t = points["targets"]
        best = {k: v for k, v in points.items() if k != "targets"}
        parts.append(
            "<h2>Best threshold against the rate targets (diagnostic)</h2><p>Missed at most"
            f" {_pct(t['missed_target'])} and wrong aid at most {_pct(t['wrong_target'])} (a"
            " third of the self-report baseline's). Each threshold is chosen against the"
            " ground truth, so these are not deployable results.</p>"
            + _table(best, ["target_ratio", "missed_rate", "wrong_aid_rate", "threshold",
                            "min_wrong_aid_at_missed_target"]))
    parts.append(_node_evaluation_section(summary.get("node_evaluation", {})))
    parts.append(_epsilon_curve_section(summary.get("epsilon_curve", {})))
    per = summary.get("privacy", {}).get("per_agency", {})
    if per:
        parts.append("<h2>Privacy spend (from each node's accountant)</h2>" + _table(
            per, ["epsilon_spent", "epsilon_budget", "delta", "accountant", "steps",
                  "noise_multiplier", "within_budget"]))
    parts.append(audit_section(summary.get("audit")))  # "What the audit measured" (if run)
    parts.append(noise_section(summary.get("distributed_noise")))  # distributed-noise mode
    walls = summary.get("wall_seconds", {})
    if walls:
        parts.append("<h2>Wall time per phase</h2>" + _table(
            {_label(k).removesuffix(" (s)"): {"seconds": float(v)} for k, v in walls.items()},
            ["seconds"]))
    for title, png in plots(summary):
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{png}'>")
    notes = summary.get("notes", [])
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("<p>Every figure above, and more: <a href='summary.json'>summary.json</a>."
                 "</p></body></html>")
    return "".join(parts)


def write(out: Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sj = out / "summary.json"
    atomic_write_bytes(sj, json.dumps(summary, indent=1, default=str).encode("utf-8"))
    rh = out / "report.html"
    atomic_write_bytes(rh, render_html(summary).encode("utf-8"))
    return sj, rh
