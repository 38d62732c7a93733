"""The epsilon curve: utility and review-queue outcomes for several budgets on one province.

    python -m simulations.epsilon_curve --out DIR [--students N] [--seed S] [--rounds 5]
        [--epsilons 0.25 0.5 1 2 4 8] [--capacity 0.10]

One simulated year at epsilon 1 (matching, DP training, identification, the review queue, and
the evaluation with the centralized non-private reference) in ``DIR/eps_1``; then the year
again for every other epsilon on the same province with the same matched evidence (matching
does not depend on epsilon; its evidence is copied, ``matching`` off) in ``DIR/eps_<e>``. Per
budget: macro-F1, the model's missed and wrong-aid rates as a list, and missed, wrong aid and
level accuracy after reviewers resolve each agency's queue at ``--capacity`` (accuracy 1);
the non-private point is the centralized model and its queue from the epsilon-1 year. Writes
``DIR/epsilon_curve.json`` and ``DIR/report.html`` (the epsilon-1 report with the curve
plotted), prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from privacy.atomic import atomic_write_bytes
from simulations.simulate import SimulationConfig, run

__all__ = ["curve_point", "main", "run_curve"]

EPSILONS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _queue_at(summary: dict[str, Any], queue: str, capacity: float) -> dict[str, float]:
    for point in summary.get("review_queue", {}).get("curves", {}).get("1", {}).get(queue, []):
        if abs(point["capacity"] - capacity) < 1e-9:
            return {"queue_missed_rate": point["missed_rate"],
                    "queue_wrong_aid_rate": point["wrong_aid_rate"],
                    "queue_level_accuracy": point["level_accuracy"]}
    return {}


def curve_point(summary: dict[str, Any], *, epsilon: float | None,
                capacity: float) -> dict[str, Any]:
    """One point: the federated model at ``epsilon``, or (None) the non-private reference."""
    ident = summary["identification"]
    model = ident["federated"] if epsilon is not None else ident["centralized_nonprivate"]
    point: dict[str, Any] = {
        "epsilon": epsilon,
        **{k: model[k] for k in ("macro_f1", "missed_rate", "wrong_aid_rate")},
        **_queue_at(summary, "federated" if epsilon is not None else "centralized", capacity),
    }
    if epsilon is not None:
        per = summary.get("privacy", {}).get("per_agency", {})
        point["epsilon_spent_max"] = max((float(r["epsilon_spent"]) for r in per.values()),
                                         default=0.0)
    return point


def _copy_evidence(source: Path, target: Path) -> None:
    for node in (source / "nodes").iterdir():
        for name in ("evidence.parquet", "evidence_sources.json"):
            if (node / name).exists():
                (target / "nodes" / node.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(node / name, target / "nodes" / node.name / name)


def run_curve(*, out: Path, students: int | None, seed: int, rounds: int,
              epsilons: tuple[float, ...], capacity: float) -> dict[str, Any]:
    """Run every year (see the module docstring) and return the curve."""
    from simulations import report

    base_dir = out / "eps_1"
    base = run(SimulationConfig(out=base_dir, students=students, seed=seed, rounds=rounds,
                                epsilon=1.0))
    points = {1.0: curve_point(base, epsilon=1.0, capacity=capacity)}
    for eps in epsilons:
        if eps == 1.0:
            continue
        target = out / f"eps_{eps:g}"
        if target.exists():
            shutil.rmtree(target)
        _copy_evidence(base_dir, target)
        summary = run(SimulationConfig(out=target, data=base_dir / "province", seed=seed,
                                       rounds=rounds, epsilon=eps, matching=False,
                                       reference=False, fresh=False))
        points[eps] = curve_point(summary, epsilon=eps, capacity=capacity)
    curve = {"capacity": capacity, "students": base["identification"].get("students_scored"),
             "seed": seed,
             "points": [points[e] for e in sorted(points)]
             + [curve_point(base, epsilon=None, capacity=capacity)]}
    atomic_write_bytes(out / "epsilon_curve.json", json.dumps(curve, indent=1).encode("utf-8"))
    report.write(out, {**base, "epsilon_curve": curve})
    return curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--students", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epsilons", type=float, nargs="+", default=list(EPSILONS))
    parser.add_argument("--capacity", type=float, default=0.10)
    args = parser.parse_args(argv)
    curve = run_curve(out=args.out, students=args.students, seed=args.seed, rounds=args.rounds,
                      epsilons=tuple(args.epsilons), capacity=args.capacity)
    print(json.dumps(curve))


if __name__ == "__main__":
    main()
