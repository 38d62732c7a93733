"""``fedid audit``: measure what the accountant promises, on a simulated federation.

Steps (each reported through ``progress``):

1. the province (the default synthetic one, or ``--data``) and a reference population for
   the shadow models (another draw of the same generator: "next year", none of the targets);
2. white-box audit (:func:`simulations.audit_fed.canary_federation`), per epsilon: Dirac
   gradient canaries in every education agency's training rows, each present with
   probability 1/2; the coordinator's attack scores each canary by its slot's update summed
   over rounds, from each node's own update (the default) and from the sum of updates only
   (secure aggregation); the one-run bound (:func:`privacy.audit.audit_scores`) per agency
   at the given confidence against the accountant's epsilon for that agency;
3. the known-broken configurations (:mod:`simulations.audit_broken`), same canaries and
   attack (``known_seed``: the coordinator first subtracts the noise it can replay);
4. the release audit (:mod:`simulations.audit_release`), correct and ``exact_counts``;
5. membership inference on the real records (:mod:`simulations.audit_mia`) per epsilon
   and for the non-private reference.

A configuration is FLAGGED when some agency's lower bound exceeds the epsilon its
accountant reports, or when a release is uncovered. The correct configuration must not be
flagged; every broken one must be. Writes ``audit.json`` and ``audit.html`` into ``out``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedid.errors import ConfigError
from fedid.model.train import TrainConfig
from fedid.schema import Schema, load_schema
from privacy.atomic import atomic_write_bytes
from privacy.audit import audit_scores
from simulations.audit_broken import BROKEN_MODES
from simulations.audit_fed import CanaryRun, canary_federation

__all__ = ["ALL_BROKEN", "AuditConfig", "run_audit"]

ALL_BROKEN = (*BROKEN_MODES, "exact_counts")
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Everything ``fedid audit`` needs."""

    out: Path
    data: Path | None = None          # agency tables laid out as a province (None: generate)
    seed: int = 20261129              # the generated province's seed (simulate's default)
    students: int | None = None       # None: the generator's default province (12,000)
    epsilons: tuple[float, ...] = (1.0,)
    delta: float = 1e-5
    rounds: int = 5
    local_epochs: int | None = None   # None: the nodes' default (TrainConfig)
    canaries: int = 400               # per agency (rows + canaries stay <= one full batch)
    confidence: float = 0.95
    shadows: int = 4
    broken: tuple[str, ...] = ALL_BROKEN
    membership: bool = True
    nonprivate: bool = True           # also attack the non-private control
    audit_seed: int = 0

    def __post_init__(self) -> None:
        if not self.epsilons or any(not e > 0 for e in self.epsilons):
            raise ConfigError(f"epsilons must be > 0. Got {list(self.epsilons)}.")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1). Got {self.delta}.")
        if self.canaries < 10:
            raise ConfigError(f"canaries must be >= 10 per agency. Got {self.canaries}.")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"confidence must be in [0.5, 1). Got {self.confidence}.")
        if self.membership and self.shadows < 2:
            raise ConfigError(f"shadows must be >= 2. Got {self.shadows}.")
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1. Got {self.rounds}.")
        unknown = sorted(set(self.broken) - set(ALL_BROKEN))
        if unknown:
            raise ConfigError(f"broken modes must be among {ALL_BROKEN}. Got {unknown}.")


def _labelled(root: Path, schema: Schema) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    from simulations.bench.model_utility import load_province

    agencies, truth = load_province(root, schema)
    return ({a: f[f["label_level"].notna()].reset_index(drop=True) for a, f in agencies.items()},
            truth)


def _train_split(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The rows each node trains on: its fixed 80 % split of the labelled rows."""
    from clients.training import holdout_split

    return {a: f[~holdout_split(len(f))].reset_index(drop=True) for a, f in frames.items()}


def _province(cfg: AuditConfig, say: Progress) -> tuple[Path, Path]:
    from simulations.bench.model_utility import synth

    if cfg.data is not None:
        root = cfg.data
    else:
        root = cfg.out / "province"
        if not (root / "manifest.json").exists():
            say("generating the province")
            synth(root, cfg.seed, cfg.students)
    reference = cfg.out / "reference"
    if cfg.membership and not (reference / "manifest.json").exists():
        say("generating the reference population (shadow models)")
        synth(reference, cfg.seed + 1, cfg.students)
    return root, reference


def _white_box(run: CanaryRun, *, mode: str, cfg: AuditConfig) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for agency, inc in run.included.items():
        node = run.node_updates[agency]
        if mode == "known_seed":
            node = node - run.known_noise[agency]
        claimed = run.epsilon[agency]
        rec: dict[str, Any] = {
            "accountant_epsilon": claimed,
            "noise_multiplier": run.noise_multiplier[agency],
            "training_rows": run.num_examples[agency],
            "per_node_update": audit_scores(-node.sum(axis=0), inc, delta=cfg.delta,
                                            confidence=cfg.confidence).to_dict(),
        }
        if mode == "correct":
            rec["secure_aggregation_sum"] = audit_scores(
                -run.sum_updates[agency].sum(axis=0), inc, delta=cfg.delta,
                confidence=cfg.confidence).to_dict()
        rec["exceeds_accountant"] = any(
            v["epsilon_lower_bound"] > claimed for k, v in rec.items()
            if isinstance(v, dict) and "epsilon_lower_bound" in v)
        per[agency] = rec
    used = ["each node's per-round update of its canary slots (the coordinator's view)"]
    if mode == "correct":
        used.append("the sum of all nodes' updates only (secure aggregation)")
    if mode == "known_seed":
        used.append("the node's noise, replayed from the seed the coordinator chose")
    return {"per_agency": per, "flagged": any(r["exceeds_accountant"] for r in per.values()),
            "max_lower_bound": max(r["per_node_update"]["epsilon_lower_bound"]
                                   for r in per.values()),
            "releases_used": used}


def _perfect_power(cfg: AuditConfig) -> float:
    """The bound a perfect attacker would reach with this many canaries (the audit's reach)."""
    inc = np.arange(cfg.canaries) % 2 == 0
    return audit_scores(inc.astype(float), inc, delta=cfg.delta,
                        confidence=cfg.confidence).epsilon_lower_bound


def run_audit(cfg: AuditConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run every step; write ``audit.json`` and ``audit.html``; return the figures."""
    import torch

    from simulations.audit_mia import membership_inference
    from simulations.audit_release import release_audit
    from simulations.audit_report import write_page

    torch.set_num_threads(1)  # small nets: one thread is faster than two on a shared machine
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    root, reference = _province(cfg, say)
    schema = load_schema(root / "schema.toml")
    labelled, truth = _labelled(root, schema)
    frames = _train_split(labelled)
    train_cfg = TrainConfig(rounds=cfg.rounds)
    if cfg.local_epochs is not None:
        train_cfg = replace(train_cfg, local_epochs=cfg.local_epochs)
    out: dict[str, Any] = {
        "config": {"epsilons": list(cfg.epsilons), "delta": cfg.delta, "rounds": cfg.rounds,
                   "local_epochs": train_cfg.local_epochs,
                   "canaries_per_agency": cfg.canaries, "confidence": cfg.confidence,
                   "shadows": cfg.shadows, "broken": list(cfg.broken),
                   "province": str(root), "audit_seed": cfg.audit_seed},
        "audit_reach": {"perfect_attacker_lower_bound": _perfect_power(cfg)},
        "white_box": {}, "membership": {}, "verdicts": {},
    }
    rng = np.random.default_rng(cfg.audit_seed)
    for eps in cfg.epsilons:
        key = f"{eps:g}"
        out["white_box"][key] = {}
        for mode in ("correct", *[b for b in cfg.broken if b in BROKEN_MODES]):
            say(f"white-box audit, epsilon {eps:g}: {mode}")
            run = canary_federation(
                frames=frames, schema=schema, config=train_cfg, epsilon=eps, delta=cfg.delta,
                canaries=cfg.canaries, seed=cfg.audit_seed + 1, rng=rng,
                broken=() if mode == "correct" else (mode,))
            out["white_box"][key][mode] = _white_box(run, mode=mode, cfg=cfg)
            out["verdicts"][f"{mode} at epsilon {key}"] = out["white_box"][key][mode]["flagged"]
    first = cfg.epsilons[0]
    out["releases"] = {}
    for mode in ("correct", *(["exact_counts"] if "exact_counts" in cfg.broken else [])):
        say(f"release audit: {mode}")
        out["releases"][mode] = release_audit(
            frames=frames, schema=schema, config=train_cfg, epsilon=first, delta=cfg.delta,
            seed=cfg.audit_seed + 2, exact_counts=mode == "exact_counts")
        out["verdicts"][f"{mode} releases"] = out["releases"][mode]["flagged"]
    if cfg.membership:
        runs: list[float | None] = [*cfg.epsilons, *([None] if cfg.nonprivate else [])]
        ref_frames, _ = _labelled(reference, schema)
        for eps_or_none in runs:
            key = "non_private" if eps_or_none is None else f"{eps_or_none:g}"
            out["membership"][key] = membership_inference(
                targets=labelled, reference=ref_frames, truth=truth, schema=schema,
                config=train_cfg, epsilon=eps_or_none, delta=cfg.delta, shadows=cfg.shadows,
                seed=cfg.audit_seed + 3, confidence=cfg.confidence, say=say)
    out["wall_seconds"] = time.perf_counter() - t0
    out["load_average"] = list(os.getloadavg())
    atomic_write_bytes(cfg.out / "audit.json",
                       json.dumps(out, indent=1, default=float).encode("utf-8"))
    write_page(cfg.out / "audit.html", out)
    say("done")
    return out
