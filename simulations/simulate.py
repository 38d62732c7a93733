"""A whole school year of a province in Flower's simulation engine.

Steps:

1. the province: generate one with ``fedid synth`` (default), or use agency tables a
   user supplies (``--data DIR``; the layout is README's "Bring your own data")::

       DIR/schema.toml                          (or --schema FILE)
       DIR/agencies/education/<agency>.csv      one education agency per file (or .parquet)
       DIR/agencies/departments/<department>.csv  evidence departments (optional)
       DIR/ground_truth/students.parquet        optional: student_id, true_level [, applied]

2. one virtual SuperNode per agency (education-side and departmental), each pointed
   at its own table and its own output folder ``DIR/nodes/<agency>/`` through the
   simulation file (``DIR/simulation.json``, see :mod:`clients.config`);
3. the ServerApp runs the year (:mod:`server.year`): matching, DP training rounds,
   identification, aggregates under ``DIR/coordinator/``; the final federated model is
   also written as a model directory ``DIR/coordinator/final_model/`` (the format
   ``fedid evaluate --model`` loads);
4. the reviewer's evaluation against ground truth when it exists
   (:mod:`simulations.review`), then ``summary.json`` and ``report.html``
   (:mod:`simulations.report`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedid.errors import ConfigError, FederationError
from privacy.atomic import atomic_write_bytes
from privacy.identity import AgencyIdentity, Roster

__all__ = ["SimulationConfig", "agencies_of", "run"]

_log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]

_RUN_OUTPUTS = ("nodes", "coordinator", "roster.toml", "transcript", "summary.json",
                "report.html", "simulation.json", "flwr", "epsilon_curve",
                "epsilon_curve.json")
_APP_DIR = Path(__file__).resolve().parents[1]  # the fedid Flower app (pyproject.toml)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """Everything ``fedid simulate`` needs."""

    out: Path
    data: Path | None = None
    schema: Path | None = None
    students: int | None = None  # None: the generator's default province (12,000)
    seed: int = 20261129
    rounds: int = 5
    epsilon: float = 1.0
    delta: float = 1e-5
    min_nodes: int = 2
    matching: bool = True
    grouping: str = "province"
    transcript: bool = False
    workers: int = 2
    reference: bool = True
    train: tuple[tuple[str, float], ...] = ()
    secure_aggregation: bool = False  # coordinator sees only the sum (server.secure_round)
    #: with secure_aggregation: distributed noise (simulations.noise_mode, server.noise_round)
    distributed_noise: bool = False
    # Tests only: every node's own ``test-seed`` (reproducible DP noise); None: OS CSPRNG.
    node_test_seed: int | None = None
    holdout: float = 0.2  # share of each node's labelled rows held out of training
    #: every node's ``train-recipe``: "fixed" (the tuned defaults) or "rule" (fedid.model.recipe)
    recipe: str = "fixed"
    # A simulated year starts from nothing: earlier node folders (with their spent
    # budgets), coordinator state and reports in ``out`` are removed (the province stays).
    fresh: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1. Got {self.rounds}.")
        if not self.epsilon > 0:
            raise ConfigError(f"epsilon must be > 0. Got {self.epsilon}.")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1). Got {self.delta}.")
        if self.students is not None and self.students < 100:
            raise ConfigError(f"students must be >= 100. Got {self.students}.")
        if self.grouping not in ("province", "per_agency"):
            raise ConfigError(f"grouping must be province|per_agency. Got {self.grouping!r}.")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1. Got {self.workers}.")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"holdout must be in [0, 1). Got {self.holdout}.")
        if self.distributed_noise and not self.secure_aggregation:
            raise ConfigError("distributed noise needs secure aggregation (each node's share "
                              "carries 1/K of the noise).")
        if self.recipe not in ("fixed", "rule"):
            raise ConfigError(f"recipe must be 'fixed' or 'rule'. Got {self.recipe!r}.")


def _synth(cfg: SimulationConfig, target: Path) -> None:
    cmd = [sys.executable, "-m", "cli.main", "synth", "--out", str(target),
           "--seed", str(cfg.seed)]
    if cfg.students is not None:
        cmd += ["--students", str(cfg.students)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise FederationError(f"fedid synth failed (exit {done.returncode}): {done.stderr[-800:]}")


def agencies_of(province: Path) -> list[tuple[str, str, str, Path]]:
    """(agency id, kind, department, table) for every agency table under ``province``."""
    found: list[tuple[str, str, str, Path]] = []
    edu = province / "agencies" / "education"
    dep = province / "agencies" / "departments"
    for path in sorted(edu.glob("*.parquet")) + sorted(edu.glob("*.csv")):
        found.append((path.stem, "education", "education", path))
    for path in sorted(dep.glob("*.parquet")) + sorted(dep.glob("*.csv")):
        found.append((path.stem, "department", path.stem, path))
    if not any(kind == "education" for _, kind, _, _ in found):
        raise ConfigError(f"no education agency table under {edu} (*.parquet or *.csv).")
    return found


def _rows(table: Path) -> int:
    if table.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(table).metadata.num_rows)
    with table.open("rb") as handle:
        return sum(1 for _ in handle) - 1


def _message_timeout(found: list[tuple[str, str, str, Path]]) -> float:
    """Seconds the coordinator waits for one batch of replies: 900 s, plus 0.1 s per row of
    the largest table (a county of 45,000 students decrypts its matching results for
    minutes on two shared cores; the timeout detects a lost node, it is not a deadline)."""
    return 900.0 + 0.1 * max(_rows(table) for *_, table in found)


def _write_simulation_file(cfg: SimulationConfig, province: Path, schema: Path) -> Path:
    agencies = []
    found = agencies_of(province)
    # Each node's identity key in its own folder, and the roster of public keys that an
    # operator would distribute out of band (privacy.identity).
    roster = Roster.of(AgencyIdentity.load_or_create(
        cfg.out / "nodes" / agency / "identity", agency=agency, kind=kind,
        department="" if kind == "education" else department).public
        for agency, kind, department, _ in found)
    roster.save(cfg.out / "roster.toml")
    for agency, kind, department, table in found:
        agencies.append({
            "agency-id": agency, "kind": kind, "department": department,
            "data": str(table.resolve()), "schema": str(schema.resolve()),
            "out": str((cfg.out / "nodes" / agency).resolve()),
            "epsilon": cfg.epsilon, "delta": cfg.delta,  # each node states its own budget
            **({"test-seed": cfg.node_test_seed} if cfg.node_test_seed is not None else {}),
            "roster": str((cfg.out / "roster.toml").resolve()), "holdout": cfg.holdout,
            "train-recipe": cfg.recipe,
        })
    coordinator: dict[str, Any] = {
        "out": str(cfg.out.resolve()), "rounds": cfg.rounds, "min-nodes": cfg.min_nodes,
        "expected-nodes": len(agencies),
        "session": "year", "matching": cfg.matching, "seed": cfg.seed,
        "grouping": cfg.grouping, "secure-aggregation": cfg.secure_aggregation,
        "schema": str(schema.resolve()),
        "wait-nodes": 120.0, "timeout": _message_timeout(found),
        **{f"train-{k}": v for k, v in cfg.train},
    }
    if cfg.distributed_noise:
        from simulations.noise_mode import apply_noise_mode

        apply_noise_mode(agencies, coordinator, rounds=cfg.rounds)
    path = cfg.out / "simulation.json"
    atomic_write_bytes(path, json.dumps({"agencies": agencies, "coordinator": coordinator},
                                        indent=1).encode("utf-8"))
    return path


def run(cfg: SimulationConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the year; write summary.json and report.html; return the summary."""
    say = progress or (lambda _e, _d: None)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.fresh:
        for name in _RUN_OUTPUTS:
            target = cfg.out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    if cfg.data is None:
        say("phase", {"name": "synth"})
        province = cfg.out / "province"
        if not (province / "manifest.json").exists():
            _synth(cfg, province)
        schema = province / "schema.toml"
    else:
        province = cfg.data
        schema = cfg.schema or (province / "schema.toml")
        if not schema.exists():
            raise ConfigError(f"schema file {schema} does not exist; pass --schema FILE.")
    times["province"] = time.perf_counter() - t0
    sim_file = _write_simulation_file(cfg, province, schema)
    n_nodes = len(json.loads(sim_file.read_text())["agencies"])

    t0 = time.perf_counter()
    year = _run_flower(cfg, sim_file, n_nodes, say)
    times["flower_total"] = time.perf_counter() - t0
    times.update({f"year_{k}": v for k, v in year["phase_seconds"].items()})
    save_final_model(cfg.out, schema, recipe=cfg.recipe)

    from simulations import report, review

    t0 = time.perf_counter()
    say("phase", {"name": "review"})
    summary = review.summarise(cfg=cfg, province=province, schema=schema, year=year)
    times["review"] = time.perf_counter() - t0
    times.update(summary.pop("review_seconds", {}))  # the review's two largest parts
    summary["wall_seconds"] = times
    if cfg.distributed_noise:
        from simulations.report_noise import noise_summary

        summary["distributed_noise"] = noise_summary(cfg.out, year)
    report.write(cfg.out, summary)
    say("done", {"out": str(cfg.out)})
    return summary


def _card_settings(config: Any) -> dict[str, Any]:
    """The training settings a model card states: as given for the fixed recipe; under the
    rule each node's batch, epochs, clipping and learning rate follow its own public size,
    so the card states the rule instead of the fixed values."""
    out: dict[str, Any] = config.to_dict()
    if config.recipe == "rule":
        from fedid.model.recipe import BATCH, CLIP, LR_TIMES_CLIP, TOTAL_EPOCHS

        for name in ("batch_size", "local_epochs", "learning_rate", "max_grad_norm"):
            out.pop(name, None)
        out["rule"] = (f"per node: expected batch min(public size, {BATCH}), "
                       f"{TOTAL_EPOCHS} epochs split over the rounds, clipping {CLIP:g}, "
                       f"learning rate {LR_TIMES_CLIP / CLIP:g} (fedid/model/recipe.py)")
    return out


def save_final_model(out: Path, schema: Path, *, recipe: str = "fixed") -> Path | None:
    """``out/coordinator/final_model.npz`` (positional arrays) as a model directory with a
    card, next to it: ``out/coordinator/final_model/``. None if there is no final model.
    ``recipe``: the nodes' training recipe, for the card (under the rule each node's batch,
    epochs, clipping and learning rate follow its own public size)."""
    import numpy as np

    from fedid.model import ModelCard, model_from_arrays, save_model
    from fedid.model.train import TrainConfig
    from fedid.schema import load_schema
    from simulations.review import privacy_per_agency

    npz = out / "coordinator" / "final_model.npz"
    if not npz.exists():
        return None
    with np.load(npz, allow_pickle=False) as data:
        arrays = [np.array(data[f"arr_{i}"]) for i in range(len(data.files))]
    sch = load_schema(schema)
    config = TrainConfig(recipe=recipe)
    model = model_from_arrays(sch, arrays, config.hidden)
    privacy = privacy_per_agency(out / "simulation.json")
    card = ModelCard(
        name=f"fedid federated model ({sch.name})",
        data_counts={"training_agencies": len(privacy)},
        training={**_card_settings(config), "federated": "FedAvg over the labelled education nodes",
                  "per_agency": {a: {k: p[k] for k in ("epsilon_spent", "epsilon_budget",
                                                      "delta", "noise_multiplier", "steps")}
                                 for a, p in privacy.items()}},
        budget=None,
        metrics={"see": "summary.json (identification against the ground truth, if given)"},
    )
    return save_model(out / "coordinator" / "final_model", model, card)


def _run_flower(
    cfg: SimulationConfig, sim_file: Path, n_nodes: int, say: Progress
) -> dict[str, Any]:
    env = {"FEDID_SIMULATION_CONFIG": str(sim_file.resolve()),
           "RAY_DEDUP_LOGS": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
           # each virtual node gets one CPU (client-resources-num-cpus=1): one PyTorch thread
           # each, else every operation of a node's training waits for a second thread the
           # other nodes' work has taken (simulations.review.one_torch_thread)
           "OMP_NUM_THREADS": "1",
           # Ray starts its workers (here: every virtual node) at nice 15 below its driver,
           # which on a shared machine leaves the nodes' matching and training a sliver of a
           # core behind every other process; a simulation's nodes are its work
           "RAY_worker_niceness": "0",
           # Flower's processes import this fedid (a checkout run with PYTHONPATH included).
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_APP_DIR),
                                                        os.environ.get("PYTHONPATH")]))}
    if cfg.transcript:
        env["FEDID_TRANSCRIPT_DIR"] = str((cfg.out / "transcript").resolve())
    coordinator = json.loads(sim_file.read_text(encoding="utf-8"))["coordinator"]
    from simulations.flower_run import run_in_simulation

    run_in_simulation(app_dir=_APP_DIR, work=cfg.out / "flwr", num_supernodes=n_nodes,
                      workers=cfg.workers, run_config=coordinator, env=env, progress=say)
    year_file = cfg.out / "coordinator" / "year.json"
    year: dict[str, Any] = json.loads(year_file.read_text(encoding="utf-8")) \
        if year_file.exists() else {}
    if year.get("config", {}).get("out") != str(cfg.out.resolve()):
        raise FederationError(
            "the simulated year did not complete; see the log above for the failing step."
        )
    return year
