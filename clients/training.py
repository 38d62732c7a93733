"""The node's model work, on top of :mod:`fedid.model` (no DP code here).

- the node's inputs: its own validated table plus the evidence it matched
  (``<out>/evidence.parquet``, written by :mod:`clients.matching`), through
  :func:`fedid.model.features.build_inputs`;
- a fixed split of the labelled rows: by default 80 % train, 20 % held out for federated
  evaluation (node setting ``holdout``, 0 to train on every labelled row; the split
  depends on the row count, the share and a fixed seed only);
- :func:`train_round` runs one :func:`fedid.model.train.train_local` call from the
  global arrays and the node's persisted :class:`~fedid.model.train.LocalState`
  (budget, accountant history, calibrated noise); the budget guard inside refuses a
  round that would exceed the node's own budget;
- :func:`train_round` takes the node's own resolved settings (:mod:`clients.config`); on
  the first round it calibrates the noise multiplier for the whole planned training
  composed with the node's one planned count release (identification), so both fit the
  node's budget;
- :func:`identify` writes ``<out>/recommendations.parquet`` on the node (owner-only
  permissions, like ``evidence.parquet``) and returns exact counts, which the node noises
  and charges before anything leaves (:mod:`clients.node`); when matching ran without
  some departments (their nodes did not reply, ``<out>/evidence_sources.json``), every
  recommendation names them in ``evidence_missing``: their evidence (and their rule hits)
  could not be seen.
- next to the recommendations, ``<out>/review_queue.parquet`` (:mod:`fedid.review`,
  owner-only): the students whose recorded recognition most likely needs to change, up
  to the node's ``review-capacity``; the coordinator gets the queue's counts only (noised
  with the other identification counts).

Arrays travel as a list in the network's state-dict order (:func:`weight_names`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.app import Context
from numpy.typing import NDArray

from clients.config import NodeSettings
from clients.privacy_state import NodePrivacyLedger
from fedid.errors import BudgetExceededError, DataValidationError, TrainingError
from fedid.model.evaluate import macro_f1
from fedid.model.features import build_inputs, level_targets
from fedid.model.model import HardshipModel
from fedid.model.train import LocalState, TrainConfig, new_local_state, train_local
from fedid.review import Capacity, node_queue
from fedid.schema import Schema, load_schema
from privacy.atomic import atomic_file, atomic_write_bytes
from privacy.dp import (
    check_budget,
    count_release_entry,
    release_counts_gaussian,
    secure_rng,
)
from privacy.errors import BudgetExceededError as RawBudgetExceededError

__all__ = [
    "HOLDOUT_FRACTION",
    "SIZE_FLOOR",
    "SIZE_NOISE",
    "RoundOutcome",
    "charged_public_rows",
    "evaluate",
    "evidence_missing",
    "has_labels",
    "holdout_split",
    "identify",
    "initial_arrays",
    "labelled_rows",
    "noisy_rows",
    "public_rows",
    "train_round",
    "weight_names",
    "write_private_parquet",
    "write_sources",
]

_log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2
_SPLIT_SEED = 7
_LABEL = "label_level"
#: identification counts that are not about any student (public, not noised)
PUBLIC_COUNTS = ("evidence_missing_departments",)


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """One trained round: arrays to send, examples used, new node state, epsilon after."""

    arrays: list[NDArray[np.float32]]
    num_examples: int
    state: LocalState
    epsilon: float


@lru_cache(maxsize=8)
def _schema(path: Path | None) -> Schema:
    return load_schema(path)


def schema_of(s: NodeSettings) -> Schema:
    return _schema(s.schema)


@lru_cache(maxsize=8)
def _table(
    path: Path, mtime: float, kind: str, department: str, schema: Path | None
) -> pd.DataFrame:
    from fedid.tables import load_agency_table

    table = load_agency_table(path, schema=_schema(schema),
                              kind="education" if kind == "education" else "department",
                              department=None if kind == "education" else department)
    return table.frame


def table_of(s: NodeSettings) -> pd.DataFrame:
    """The node's own validated table (cached while the file is unchanged)."""
    if not s.data.exists():
        raise DataValidationError(f"agency table {s.data} does not exist.")
    return _table(s.data, s.data.stat().st_mtime, s.kind, s.department, s.schema)


def inputs_of(s: NodeSettings) -> pd.DataFrame:
    """Education table joined with the node's matched evidence (if matching ran)."""
    evidence_path = s.out / "evidence.parquet"
    evidence = pd.read_parquet(evidence_path) if evidence_path.exists() else None
    return build_inputs(table_of(s), evidence, schema_of(s))


def write_sources(out: Path, *, covered: list[str], missing: list[str]) -> None:
    """Record which departments this year's matched evidence covers and which it misses."""
    out.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"covered": covered, "missing": missing}, indent=1)
    atomic_write_bytes(out / "evidence_sources.json", body.encode("utf-8"))


def evidence_missing(s: NodeSettings) -> list[str]:
    """Departments whose evidence this year's matching could not bring (none: [])."""
    path = s.out / "evidence_sources.json"
    if not path.exists():
        return []
    try:
        return [str(d) for d in json.loads(path.read_text(encoding="utf-8"))["missing"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataValidationError(f"{path} is malformed: {exc!s}") from exc


def has_labels(s: NodeSettings) -> bool:
    if s.kind != "education":
        return False
    frame = table_of(s)
    return _LABEL in frame.columns and bool(frame[_LABEL].notna().any())


def holdout_split(n: int, fraction: float = HOLDOUT_FRACTION) -> NDArray[np.bool_]:
    """True for held-out rows: a fixed pseudorandom share (depends on n and share only)."""
    rng = np.random.default_rng(_SPLIT_SEED)
    held = np.zeros(n, dtype=bool)
    held[rng.permutation(n)[: round(n * fraction)]] = True
    return held



def _labelled(s: NodeSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    inputs = inputs_of(s)
    inputs = inputs[inputs[_LABEL].notna()].reset_index(drop=True)
    held = holdout_split(len(inputs), s.holdout)
    return inputs[~held].reset_index(drop=True), inputs[held].reset_index(drop=True)


def labelled_rows(s: NodeSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The node's labelled rows: (training rows, held-out rows), split by
    :func:`holdout_split` with the node's ``holdout`` share."""
    return _labelled(s)


def write_private_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` readable by the node's user only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, mode=0o600) as tmp:
        frame.to_parquet(tmp, index=False)


#: noise multiplier of the one Gaussian release of a node's training-row count that shapes
#: its training when it declares no ``public-size`` (one student moves the count by at most
#: 1). Large, so that its charge is small: composed with the default province's training
#: and identification release it moves epsilon from 0.9738 to 0.9746 (PRV, delta 1e-5); a
#: standard deviation of 100 rows costs a node of a few thousand rows a few per cent of its
#: effective learning rate.
SIZE_NOISE = 100.0
#: the least public size a noisy count gives (post-processing of the release). Below three
#: noise deviations a draw says little about the count, and a draw near 1 would shape a
#: small agency's training as full-batch steps divided by 1: on a development split an
#: 11-row agency drawn to 1 took steps of eleven clipped gradients plus noise, unscaled, and
#: turned the federated model's ranking upside down (AUC 0.41). With the floor a small
#: agency is shaped as one of 300 rows (under the rule: batch 128, sample rate 1/3, a divisor
#: of 100), so its few real rows move the model less. A declared ``public-size`` is floored
#: the same way (public configuration: harmless).
SIZE_FLOOR = 3 * int(SIZE_NOISE)


def public_rows(s: NodeSettings, state: LocalState, n_train: int) -> tuple[int, LocalState]:
    """The training size the node's update is shaped by (never the exact row count), and
    the state that records how it was obtained.

    The declared ``public-size`` times the training share; else :func:`noisy_rows` (seeded
    by the node's ``test-seed`` in tests only).
    """
    if s.public_size is not None:
        return max(SIZE_FLOOR, round(s.public_size * (1.0 - s.holdout))), state
    return noisy_rows(state, n_train, seed=s.test_seed)


def charged_public_rows(s: NodeSettings, ledger: NodePrivacyLedger,
                        context: Context) -> tuple[int, LocalState]:
    """The node's training state (from its ledger) and its public size (:func:`public_rows`).
    A size drawn now is charged to the ledger and saved at once, before anything can refuse
    the round: a refusal keeps the draw, so a coordinator asking again gets no fresh one."""
    state = LocalState.from_bytes(ledger.state) if ledger.state is not None else new_state(s)
    drawn = state.public_rows is None and s.public_size is None
    rows, state = public_rows(s, state, len(_labelled(s)[0]))
    if drawn:
        ledger.charge(state=state.to_bytes(), epsilon_total=state.accountant.epsilon(s.delta),
                      delta=s.delta)
        ledger.save(context)
    return rows, state


def noisy_rows(state: LocalState, n_train: int, *, seed: int | None) -> tuple[int, LocalState]:
    """The training-row count plus Gaussian noise of ``SIZE_NOISE``, at least ``SIZE_FLOOR``,
    drawn once and kept in the state (OS CSPRNG unless ``seed``), charged to the accountant
    before anything else (BudgetExceededError if it does not fit). What the update's shape
    then reveals about the count is post-processing of that charged release."""
    if state.public_rows is not None:
        return state.public_rows, state
    entry = count_release_entry(SIZE_NOISE)
    try:
        check_budget(state.budget, state.accountant, noise_multiplier=entry[0],
                     sample_rate=entry[1], steps=entry[2])
    except RawBudgetExceededError as exc:
        raise BudgetExceededError(f"training refused: no budget for the size release ({exc!s})"
                                  ) from exc
    rng = secure_rng(seed) if seed is not None else None
    noised = release_counts_gaussian({"rows": float(n_train)}, noise_multiplier=SIZE_NOISE,
                                     max_counts_per_record=1, rng=rng)
    rows = max(SIZE_FLOOR, int(noised.values["rows"]))
    return rows, replace(state, public_rows=rows, accountant=state.accountant.record(
        noise_multiplier=entry[0], sample_rate=entry[1], steps=entry[2]))


def _config(values: dict[str, float], *, recipe: str, rows: int) -> TrainConfig:
    """The node's resolved settings (clients.config.TrainingSettings.resolve) as a config
    shaped by the public training size ``rows``: with ``recipe="rule"`` batch, epochs,
    clipping and learning rate come from the recipe's rule for ``rows`` (fedid.model.recipe),
    else the values as set."""
    if recipe == "rule":
        return TrainConfig(rounds=int(values["rounds"]), recipe="rule",
                           public_rows=rows).for_agency(rows)
    return TrainConfig(
        rounds=int(values["rounds"]),
        local_epochs=int(values["local_epochs"]),
        batch_size=int(values["batch_size"]),
        learning_rate=float(values["learning_rate"]),
        public_rows=rows,
    )


def weight_names(schema: Schema) -> list[str]:
    return list(HardshipModel(schema=schema, hidden=TrainConfig().hidden).build_net().state_dict())


def _to_dict(schema: Schema, arrays: list[NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
    names = weight_names(schema)
    if len(names) != len(arrays):
        raise TrainingError(f"expected {len(names)} model arrays. Got {len(arrays)}.")
    return {n: np.asarray(a, dtype=np.float32) for n, a in zip(names, arrays, strict=True)}


def initial_arrays(s: NodeSettings, *, seed: int) -> list[NDArray[np.float32]]:
    """A fresh network's weights from the public schema and ``seed`` (no data)."""
    import torch

    torch.manual_seed(seed)
    net = HardshipModel(schema=schema_of(s), hidden=TrainConfig().hidden).build_net()
    return [v.detach().cpu().numpy().astype(np.float32) for v in net.state_dict().values()]


def new_state(s: NodeSettings) -> LocalState:
    return new_local_state(epsilon=s.epsilon, delta=s.delta)


def train_round(
    s: NodeSettings,
    *,
    arrays: list[NDArray[np.float32]],
    state: LocalState,
    values: dict[str, float],
    recipe: str = "fixed",
    seed: int | None,
) -> RoundOutcome:
    """One local DP round from the global ``arrays``; BudgetExceededError if over budget.

    ``values``: the node's resolved training settings; ``seed``: None in production (OS
    CSPRNG), set only from the node's own test configuration.
    """
    import torch

    torch.set_num_threads(1)
    schema = schema_of(s)
    train_rows, _ = _labelled(s)
    rows, state = public_rows(s, state, len(train_rows))
    config = _config(values, recipe=recipe, rows=rows)
    start = replace(state, weights=_to_dict(schema, arrays))
    # the first round calibrates for the whole plan and the one identification release
    result = train_local(inputs=train_rows, schema=schema, state=start, config=config,
                         seed=seed, reserved=(count_release_entry(s.release_noise),))
    weights = result.state.weights
    if weights is None:
        raise TrainingError("local training returned no weights.")
    names = weight_names(schema)
    return RoundOutcome(
        arrays=[weights[n] for n in names], num_examples=result.n_records,
        state=result.state, epsilon=result.state.epsilon_spent,
    )


def evaluate(s: NodeSettings, arrays: list[NDArray[np.float32]]) -> dict[str, float]:
    """Held-out metrics vs the recorded labels (not covered by the DP guarantee)."""
    schema = schema_of(s)
    _, held = _labelled(s)
    if len(held) == 0:
        return {"num_examples": 0}
    model = HardshipModel(schema=schema, hidden=TrainConfig().hidden,
                          weights=_to_dict(schema, arrays))
    rec = model.recommend(held)
    y = level_targets(held, schema)
    p = rec["level_index"].to_numpy(dtype=np.int64)
    return {
        "num_examples": len(held),
        "accuracy": float(np.mean(y == p)),
        "macro_f1": macro_f1(pred=p, true=y, n_levels=len(schema.levels.names)),
    }


def identify(s: NodeSettings, arrays: list[NDArray[np.float32]]) -> dict[str, float]:
    """Score every student, write recommendations on this node; return exact counts.

    One student adds at most 1 to each count except :data:`PUBLIC_COUNTS` (the L2
    sensitivity of the rest is ``sqrt(their number)``); the caller noises them.
    """
    schema = schema_of(s)
    inputs = inputs_of(s)
    model = HardshipModel(schema=schema, hidden=TrainConfig().hidden,
                          weights=_to_dict(schema, arrays))
    rec = model.recommend(inputs)
    missing = evidence_missing(s)
    if missing:
        rec["evidence_missing"] = ",".join(missing)
    write_private_parquet(rec, s.out / "recommendations.parquet")
    # The queue and its counts stay on the node: its ranking is calibrated on the agency's
    # own counts (fedid.review.posterior), so one student can reorder many entries and the
    # counts have no bounded sensitivity to noise them with (THREAT_MODEL.md).
    node_queue(out=s.out, model=model, inputs=inputs, recommendations=rec,
               capacity=Capacity.parse(s.review_capacity), evidence_missing=missing)
    aided = rec["level_index"].to_numpy() > 0
    applied = inputs["applied"].astype(bool).to_numpy() if "applied" in inputs else None
    counts: dict[str, float] = {"students": float(len(rec))}
    for i, name in enumerate(schema.levels.names):
        counts[f"level_{name}"] = float(np.sum(rec["level_index"].to_numpy() == i))
    counts["rule_recognised"] = float(np.sum(rec["source"] == "rule"))
    counts["needs_review"] = float(np.sum(rec["review"].astype(bool)))
    counts["evidence_missing_departments"] = float(len(missing))
    if applied is not None:
        counts["hidden_hardship"] = float(np.sum(aided & ~applied))
        counts["applied"] = float(np.sum(applied))
    if "temporary_relief" in inputs:
        relief = pd.to_numeric(inputs["temporary_relief"], errors="coerce").fillna(0).to_numpy()
        counts["duplicate_aid"] = float(np.sum(aided & (relief > 0)))
    for flag in schema.dimension_flags:
        counts[f"flag_{flag}"] = float(np.sum(rec[f"flag_{flag}"].astype(bool)))
    return counts
