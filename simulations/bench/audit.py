"""Privacy audit benchmark: ``fedid audit`` figures as one JSON line.

    python -m simulations.bench.audit [--epsilon 1 --epsilon 8] [--canaries 400] [--out DIR]
    python -m simulations.bench.audit --from DIR/audit.json    # summarise an earlier run

Prints, per budget: each agency's accountant epsilon and the white-box lower bounds (node
updates, sum only), each broken configuration's largest bound and verdict, the release
audit's uncovered fields, and the membership-inference AUC / TPR at 0.1 % FPR (largest over
agencies, and pooled) with the non-private control; wall seconds and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["compact_figures", "main"]


def _r(v: float) -> float:
    return round(float(v), 4)


def compact_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of an audit (see the module docstring)."""
    out: dict[str, Any] = {"config": figures["config"], "audit_reach": figures["audit_reach"],
                           "verdicts": figures["verdicts"], "white_box": {}, "membership": {}}
    for eps, modes in figures["white_box"].items():
        correct = modes["correct"]["per_agency"]
        out["white_box"][eps] = {
            "per_agency": {a: {"accountant": _r(r["accountant_epsilon"]),
                               "noise_multiplier": _r(r["noise_multiplier"]),
                               "bound_node": _r(r["per_node_update"]["epsilon_lower_bound"]),
                               "bound_sum": _r(r["secure_aggregation_sum"]["epsilon_lower_bound"])}
                           for a, r in sorted(correct.items())},
            **{m: {"max_bound": _r(v["max_lower_bound"]), "flagged": v["flagged"]}
               for m, v in modes.items() if m != "correct"},
        }
    out["releases"] = {m: r["uncovered"] for m, r in figures.get("releases", {}).items()}
    for key, run in figures.get("membership", {}).items():
        out["membership"][key] = {
            attack: {"max_agency_auc": _r(max(r["auc"] for r in a["per_agency"].values())),
                     "pooled_auc": _r(a["pooled"]["auc"]),
                     "pooled_tpr_at_0.1%_fpr": _r(a["pooled"]["tpr_at_0.1%_fpr"]),
                     "max_group_auc": _r(max(c["auc"] for g in a["groups"].values()
                                             for c in g.values() if "auc" in c))}
            for attack, a in run["attacks"].items()}
    out["wall_seconds"] = _r(figures["wall_seconds"])
    out["load_average_at_end"] = figures["load_average"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, action="append")
    parser.add_argument("--canaries", type=int, default=400)
    parser.add_argument("--shadows", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--from", dest="source", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.source is not None:
        figures = json.loads(args.source.read_text(encoding="utf-8"))
    else:
        from simulations.audit import AuditConfig, run_audit

        out = args.out or Path(tempfile.mkdtemp(prefix="fedid-audit-"))
        figures = run_audit(AuditConfig(out=out, epsilons=tuple(args.epsilon or [1.0]),
                                        canaries=args.canaries, shadows=args.shadows))
    line = compact_figures(figures)
    line["cpus"] = os.cpu_count()
    print(json.dumps(line, default=float))


if __name__ == "__main__":
    main()
