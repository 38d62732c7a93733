"""Federation benchmark: simulate wall time per phase, deployment overhead per round, and
the federated DP model against non-private references.

``python -m simulations.bench.federation [--students N] [--rounds R] [--skip-deploy]``
prints one JSON line:

- ``simulate``: wall seconds per phase of one ``fedid simulate`` year (matching on,
  epsilon 1 per agency) on a generated province (default size unless ``--students``);
- ``dp_vs_nonprivate``: identification metrics against ground truth of the federated DP
  model at epsilon 1 and at larger budgets (same matched evidence, copied from the first
  run so matching is not repeated), the centralized non-private reference and the
  self-report baseline;
- ``deployment``: a real SuperLink and three SuperNodes on loopback (TLS, node auth):
  mean seconds per training round against the same rounds in the simulation engine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from simulations.simulate import SimulationConfig, run

_METRICS = ("macro_f1", "accuracy", "missed_rate", "wrong_aid_rate", "hidden_found")


def _pick(d: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(d[k]), 4) for k in _METRICS if k in d}


def _round_seconds(out: Path) -> list[float]:
    ledger = json.loads((out / "coordinator" / "ledger.json").read_text())
    return [float(r["seconds"]) for r in ledger["rounds"]]


def _run_or_reuse(cfg: SimulationConfig, reuse: bool) -> dict[str, Any]:
    """Run the year, or with ``reuse`` read the summary an earlier run left in ``cfg.out``."""
    done = cfg.out / "summary.json"
    if reuse and done.exists():
        summary: dict[str, Any] = json.loads(done.read_text())
        return summary
    if cfg.out.exists() and cfg.data is None:
        shutil.rmtree(cfg.out)
    return run(cfg)


def _dp_sweep(base: Path, first: dict[str, Any], epsilons: list[float], rounds: int,
              reuse: bool = False) -> dict[str, Any]:
    ident = first["identification"]
    out: dict[str, Any] = {
        "self_report_baseline": _pick(ident["self_report_baseline"]),
        "centralized_nonprivate": _pick(ident["centralized_nonprivate"]),
        "federated_dp": {"1.0": _pick(ident["federated"])},
    }
    for eps in epsilons:
        target = base / f"eps_{eps}"
        for node in (base / "eps_1" / "nodes").iterdir():
            ev = node / "evidence.parquet"
            if ev.exists():
                (target / "nodes" / node.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(ev, target / "nodes" / node.name / "evidence.parquet")
        cfg = SimulationConfig(out=target, data=base / "eps_1" / "province", rounds=rounds,
                               epsilon=eps, matching=False, reference=False, fresh=False)
        summary = _run_or_reuse(cfg, reuse)
        out["federated_dp"][str(eps)] = _pick(summary["identification"]["federated"])
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deployment(base: Path, province: Path, rounds: int) -> dict[str, Any]:
    from clients.config import NodeSettings
    from clients.deploy import supernode_command
    from fedid.pki import make_key_pair, make_trial_pki
    from server.deploy import SuperLinkLauncher, flower_env, stop_group

    names = {"university_a": "education", "university_b": "education",
             "civil_affairs": "department"}
    certs = base / "certs"
    make_trial_pki(certs, hosts=[])
    keys = {name: make_key_pair(base / "node-keys", name) for name in names}  # (key, pub)
    coord = SuperLinkLauncher(out=base / "coordinator", certs=certs, port=_free_port())
    coord.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, kind in names.items():
            coord.register(keys[name][1], name)
            folder = "education" if kind == "education" else "departments"
            s = NodeSettings(agency_id=name, kind=kind,
                             department="education" if kind == "education" else name,
                             data=province / "agencies" / folder / f"{name}.parquet",
                             schema=province / "schema.toml", out=base / "nodes" / name,
                             epsilon=1.0, delta=1e-5)
            cmd = supernode_command(s, superlink=coord.address, ca=certs / "ca.crt",
                                    key=keys[name][0], port=_free_port())
            procs.append(subprocess.Popen(  # noqa: S603
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=flower_env(),
                start_new_session=True))
        t0 = time.perf_counter()
        run_id = coord.submit({"out": str(base / "run"), "rounds": rounds, "min-nodes": 3,
                               "matching": False, "wait-nodes": 180.0, "timeout": 300.0,
                               "schema": str(province / "schema.toml")})
        info = coord.wait(run_id, timeout=1800)
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            stop_group(p)
        coord.stop()
    deployed = _round_seconds(base / "run")
    sim_out = base / "sim"
    sub = base / "subprovince"
    for name, kind in names.items():
        folder = "education" if kind == "education" else "departments"
        (sub / "agencies" / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(province / "agencies" / folder / f"{name}.parquet",
                    sub / "agencies" / folder / f"{name}.parquet")
    shutil.copy(province / "schema.toml", sub / "schema.toml")
    run(SimulationConfig(out=sim_out, data=sub, rounds=rounds, matching=False,
                         reference=False, min_nodes=3))
    simulated = _round_seconds(sim_out)
    mean_d = sum(deployed) / len(deployed)
    mean_s = sum(simulated) / len(simulated)
    return {"status": info["status"], "run_wall_s": round(wall, 1), "rounds": rounds,
            "round_s_deployed": [round(x, 2) for x in deployed],
            "round_s_simulated": [round(x, 2) for x in simulated],
            "overhead_per_round_s": round(mean_d - mean_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[4.0, 100.0])
    parser.add_argument("--skip-deploy", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="Reuse the summaries of finished runs already in --out.")
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="fedid-bench-federation-"))
    t0 = time.perf_counter()
    first = _run_or_reuse(SimulationConfig(out=base / "eps_1", students=args.students,
                                           rounds=args.rounds, epsilon=1.0), args.reuse)
    total = (time.perf_counter() - t0 if not args.reuse
             else sum(v for k, v in first["wall_seconds"].items()
                      if k in ("province", "flower_total", "review")))
    result: dict[str, Any] = {
        "benchmark": "federation",
        "students": first["identification"].get("students_in_truth"),
        "simulate": {"total_s": round(total, 1),
                     **{k: round(v, 1) for k, v in first["wall_seconds"].items()},
                     "matching_steps_s": {k: round(v, 1) for k, v in
                                          first["matching"].get("seconds", {}).items()}},
        "dp_vs_nonprivate": _dp_sweep(base, first, args.epsilons, args.rounds, args.reuse),
        "rural_minus_urban_missed_points": round(
            first["fairness"]["gaps"].get("rural_minus_urban_missed_points", float("nan")), 2),
    }
    if not args.skip_deploy:
        result["deployment"] = _deployment(base / "deploy", base / "eps_1" / "province",
                                           rounds=3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
