"""The epsilon curve: utility and review-queue outcomes for several budgets on one province.

    fedid simulate --epsilon-curve [--out DIR] [--students N] ...
    python -m simulations.epsilon_curve --out DIR [--students N] [--seed S] [--rounds 5]
        [--epsilons 0.25 0.5 1 2 4 8] [--capacity 0.10]
    python -m simulations.epsilon_curve --from DIR [--epsilons 0.25 4]

One simulated year at the base budget (``fedid simulate``'s ``--epsilon``; 1 for the module
with ``--out``): matching, DP training, identification, the review queue, and the evaluation
with the centralized non-private reference, in ``DIR``. Then the year again for every other
epsilon on the same province with the same matched evidence, in
``DIR/epsilon_curve/eps_<e>/``: matching does not depend on epsilon, so each node's
``evidence.parquet`` is copied from ``DIR`` and matching is off, and the centralized reference
is not retrained. ``--from DIR`` starts from a year already in ``DIR`` (its ``summary.json``
and node folders), so an expensive province (county scale) is matched once and its budgets
can be added a few at a time: points already in ``DIR/epsilon_curve.json`` are kept.

Per budget: macro-F1, the model's missed and wrong-aid rates as a list, missed, wrong aid and
level accuracy after reviewers resolve each agency's queue at ``--capacity`` (accuracy 1), the
largest epsilon any agency spent, and the point's wall seconds; the non-private point is the
centralized model and its queue from the base year. The base year also paid for its matching
aggregates' Gaussian release, the other points (matching off) do not: their DP-SGD noise is
slightly lower at the same budget (THREAT_MODEL.md: two count releases together cost +3.7 %
noise at epsilon 1). Writes ``DIR/epsilon_curve.json``, adds the curve to ``DIR/summary.json``
and ``DIR/report.html`` (which plots and tabulates it), prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from fedid.errors import ConfigError
from privacy.atomic import atomic_write_bytes
from simulations.simulate import SimulationConfig, run

__all__ = ["EPSILONS", "add_budgets", "config_of", "curve_point", "main", "run_curve"]

EPSILONS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
CURVE_DIR = "epsilon_curve"

Progress = Callable[[str, dict[str, Any]], None]


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


def config_of(summary: dict[str, Any]) -> SimulationConfig:
    """The :class:`SimulationConfig` a year's ``summary.json`` was run with."""
    raw = summary.get("config", {})
    known = {f.name for f in fields(SimulationConfig)}
    if not {"out", "epsilon", "seed"} <= set(raw):
        raise ConfigError("summary.json has no run config (config.out, epsilon, seed).")
    args: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
    for key in ("out", "data", "schema"):
        if args.get(key) is not None:
            args[key] = Path(args[key])
    args["train"] = tuple((str(k), float(v)) for k, v in args.get("train", ()))
    return SimulationConfig(**args)


def _copy_evidence(source: Path, target: Path) -> None:
    for node in (source / "nodes").iterdir():
        for name in ("evidence.parquet", "evidence_sources.json"):
            if (node / name).exists():
                (target / "nodes" / node.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(node / name, target / "nodes" / node.name / name)


def _seconds(summary: dict[str, Any]) -> float:
    walls = summary.get("wall_seconds", {})
    return float(sum(v for k, v in walls.items() if k in ("province", "flower_total", "review")))


def add_budgets(
    base: dict[str, Any], *, epsilons: tuple[float, ...], capacity: float = 0.10,
    cfg: SimulationConfig | None = None, progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the year of ``base`` (a year's summary) again at every other epsilon; the curve.

    ``cfg``: the base year's config (default: read from ``base``). Writes
    ``<out>/epsilon_curve.json`` and adds the curve to ``<out>``'s summary and report
    (``<out>``: the base year's folder); keeps points an earlier call wrote there.
    """
    from simulations import report

    say = progress or (lambda _e, _d: None)
    cfg = cfg or config_of(base)
    province = cfg.data or (cfg.out / "province")
    known = cfg.out / "epsilon_curve.json"
    earlier = json.loads(known.read_text(encoding="utf-8")) if known.exists() else {}
    points: dict[float, dict[str, Any]] = {
        float(p["epsilon"]): p for p in earlier.get("points", [])
        if p.get("epsilon") is not None and earlier.get("capacity") == capacity}
    points[cfg.epsilon] = {**curve_point(base, epsilon=cfg.epsilon, capacity=capacity),
                           "wall_s": round(_seconds(base), 1), "matching": cfg.matching}

    def save() -> dict[str, Any]:  # after every point: an interrupted curve keeps its points
        curve = {"capacity": capacity,
                 "students": base["identification"].get("students_scored"),
                 "seed": cfg.seed, "base_epsilon": cfg.epsilon,
                 "points": [points[e] for e in sorted(points)]
                 + [curve_point(base, epsilon=None, capacity=capacity)]}
        atomic_write_bytes(known, json.dumps(curve, indent=1).encode("utf-8"))
        report.write(cfg.out, {**base, "epsilon_curve": curve})
        return curve

    for eps in epsilons:
        if eps == cfg.epsilon:
            continue
        say("curve", {"epsilon": eps})
        target = cfg.out / CURVE_DIR / f"eps_{eps:g}"
        if target.exists():
            shutil.rmtree(target)
        _copy_evidence(cfg.out, target)
        t0 = time.perf_counter()
        summary = run(replace(cfg, out=target, data=province, epsilon=eps, matching=False,
                              reference=False, fresh=False), progress)
        points[eps] = {**curve_point(summary, epsilon=eps, capacity=capacity),
                       "wall_s": round(time.perf_counter() - t0, 1), "matching": False}
        save()
    return save()


def run_curve(*, out: Path, students: int | None, seed: int, rounds: int,
              epsilons: tuple[float, ...], capacity: float, progress: Progress | None = None,
              ) -> dict[str, Any]:
    """The base year at epsilon 1 in ``out``, then every other budget (module docstring)."""
    base = run(SimulationConfig(out=out, students=students, seed=seed, rounds=rounds,
                                epsilon=1.0), progress)
    return add_budgets(base, epsilons=epsilons, capacity=capacity, progress=progress)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="Run the base year here, then the others.")
    where.add_argument("--from", dest="base", type=Path,
                       help="A folder holding a year already run (its summary.json).")
    parser.add_argument("--students", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epsilons", type=float, nargs="+", default=list(EPSILONS))
    parser.add_argument("--capacity", type=float, default=0.10)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def progress(event: str, data: dict[str, Any]) -> None:  # one line per phase, on stderr
        text = {"phase": f"phase {data.get('name')}",
                "curve": f"epsilon curve: the year at epsilon {data.get('epsilon')}"}.get(event)
        if text:
            print(f"[{time.perf_counter() - start:6.0f} s] {text}", file=sys.stderr, flush=True)

    if args.base is not None:
        base = json.loads((args.base / "summary.json").read_text(encoding="utf-8"))
        curve = add_budgets(base, epsilons=tuple(args.epsilons), capacity=args.capacity,
                            cfg=replace(config_of(base), out=args.base), progress=progress)
    else:
        curve = run_curve(out=args.out, students=args.students, seed=args.seed,
                          rounds=args.rounds, epsilons=tuple(args.epsilons),
                          capacity=args.capacity, progress=progress)
    print(json.dumps(curve))


if __name__ == "__main__":
    main()
