"""Where a node's settings come from: Flower node config, or a simulation file.

In deployment each agency starts its SuperNode with ``--node-config`` naming its own
table, schema, output folder and privacy budget, e.g.::

    flower-supernode ... --node-config 'agency-id="edu_county_01" kind="education"
        data="/srv/fedid/students.parquet" schema="/srv/fedid/schema.toml"
        out="/srv/fedid/out" epsilon=1.0 delta=1e-5
        roster="/srv/fedid/roster.toml"'

``epsilon`` and ``delta`` are required: a node without a stated budget does not start
(delta is the node's own choice, e.g. below 1 / (a public bound on its size), never
derived from its exact row count). The node's training settings are fixed here too
(:class:`TrainingSettings`): ``train-<name>`` sets a value, ``train-<name>-range = "lo,hi"``
the interval inside which the coordinator may propose another value per round; a proposal
outside it is refused. ``public-size`` is the number of labelled students the agency
declares public (training's sample rate, steps and divisor come from it; unset: its
row count noised once, charged to its budget). ``release-noise`` is the noise
multiplier of the node's Gaussian count releases (identification counts), ``min-cell``
the suppression threshold of released counts. ``distributed-noise = true`` with
``distributed-noise-parties = K`` opts the agency into distributed noise under the secure
sum (:mod:`clients.noise_share`); the coordinator's run config must ask for the same mode,
or the node refuses its rounds. ``test-seed`` makes the node's DP noise
reproducible: tests only (it never comes from a message).

``roster`` is the list of every agency's public identity keys (:class:`privacy.identity.Roster`),
distributed out of band; ``identity`` (default ``<out>/identity``) is the folder of this
node's own identity key (made on the node). Matching needs both (:mod:`clients.matching`);
with a roster, secure aggregation signs and checks masking keys with them too.
``matching-grouping`` (``province`` or ``per_agency``) and ``matching-peers`` (under
``province``: the only other homes this home shares a run keyring with, comma-separated)
bound which agencies a home's matching keyring may reach, whatever the coordinator names.

Every key is parsed by :func:`fedid.settings.parse_settings` (one rule per type); an
unknown key is refused, except the two Flower's simulation engine adds itself
(:data:`FLOWER_KEYS`).

In Flower's simulation engine every virtual node gets only ``partition-id`` (and
``num-partitions``); the
simulation writes one JSON file describing every agency and points the nodes at it
with the ``FEDID_SIMULATION_CONFIG`` environment variable (inherited by the
simulation's worker processes). The coordinator never chooses a node's data or
budget: both come from the node's own side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedid.errors import ConfigError
from fedid.review import Capacity
from fedid.settings import parse_float, parse_settings, setting
from fedid.simulation_file import SIMULATION_ENV, load_simulation_file

__all__ = ["FLOWER_KEYS", "TUNABLE", "NodeSettings", "TrainingSettings", "node_settings",
           "parse_matching_peers"]

_KINDS = ("education", "department")
#: keys Flower's simulation engine adds to every node's config (not the agency's own)
FLOWER_KEYS = frozenset({"partition-id", "num-partitions"})
#: name -> (default value, default range the coordinator may propose in), per federated round
#: (defaults: fedid.model.train.TrainConfig's, chosen on synthetic provinces)
TUNABLE: dict[str, tuple[float, tuple[float, float]]] = {
    "rounds": (5, (1, 20)),
    "local_epochs": (8, (1, 16)),
    "batch_size": (2048, (256, 8192)),
    "learning_rate": (0.2, (0.01, 1.0)),
}
_INTEGER = ("rounds", "local_epochs", "batch_size")
#: the settings the recipe's rule chooses when the node sets none of them
RULE_SET = frozenset({"local_epochs", "batch_size", "learning_rate"})


def parse_matching_peers(key: str, value: Any) -> tuple[str, ...] | None:
    """Home agency ids, as ``"a,b"`` or a list naming at least one (a list naming none is
    refused: it would read as unset, i.e. any home; sharing with none is
    ``matching-grouping = "per_agency"``)."""
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(n, str) for n in value):
        names = [str(n).strip() for n in value]
    else:
        raise ConfigError(f"{key} must be home agency ids, 'a,b' or a list. Got {value!r}.")
    bad = [n for n in names if not n or any(c in n for c in " \t'\"[]/\\") or ".." in n]
    if bad or not names:
        raise ConfigError(f"{key} must list plain agency ids separated by commas (at least "
                          "one; for none, matching-grouping per_agency). "
                          f"Got {value!r}.")
    return tuple(sorted(set(names)))


def _parse_range(key: str, value: Any) -> tuple[float, float]:
    """``"lo,hi"`` (or a pair) with ``0 < lo <= hi``."""
    text = ",".join(str(v) for v in value) if isinstance(value, tuple | list) else str(value)
    parts = text.split(",")
    try:
        low, high = float(parts[0]), float(parts[1])
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"{key} must be 'lo,hi'. Got {text!r}.") from exc
    if len(parts) != 2 or not (0 < low <= high):
        raise ConfigError(f"{key} must be 'lo,hi' with 0 < lo <= hi. Got {text!r}.")
    return low, high


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    """The node's own training hyperparameters and the ranges it lets the coordinator use."""

    values: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    #: names the node's own config sets (``train-<name>``)
    explicit: frozenset[str] = frozenset()
    #: ``train-recipe``: ``"fixed"`` (default: the values above, tuned on synthetic
    #: provinces) or ``"rule"``: batch, epochs, clipping and learning rate from the recipe's
    #: rule (:func:`fedid.model.recipe.by_rule`, public quantities only) unless the node's
    #: config sets one of :data:`RULE_SET`. On the default province the rule trained worse
    #: in the federation (BENCHMARKS.md, "node boundary"), so it is the agency's opt-in.
    recipe_name: str = "fixed"

    def __post_init__(self) -> None:
        for name, value in self.values.items():
            lo, hi = self.ranges[name]
            if not lo <= value <= hi:
                raise ConfigError(
                    f"train-{name} must lie in its range [{lo:g}, {hi:g}]. Got {value:g}.")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TrainingSettings:
        """Parse the node's ``train-<name>`` and ``train-<name>-range`` keys (and no others)."""
        known = {f"train-{n}{end}" for n in TUNABLE for end in ("", "-range")} | {"train-recipe"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"node config: unknown key(s) {unknown}"
                              f" (training settings: {sorted(TUNABLE)}).")
        values = {name: parse_float(f"train-{name}", raw.get(f"train-{name}", default))
                  for name, (default, _range) in TUNABLE.items()}
        ranges = {name: _parse_range(f"train-{name}-range", raw.get(f"train-{name}-range", bounds))
                  for name, (_default, bounds) in TUNABLE.items()}
        explicit = frozenset(n for n in TUNABLE if f"train-{n}" in raw)
        recipe = str(raw.get("train-recipe", "fixed"))
        if recipe not in ("fixed", "rule"):
            raise ConfigError(f"train-recipe must be 'fixed' or 'rule'. Got {recipe!r}.")
        return cls(values=values, ranges=ranges, explicit=explicit, recipe_name=recipe)

    def recipe(self, proposed: Mapping[str, float]) -> str:
        """``"rule"`` when the node opted in (``train-recipe = "rule"``) and neither its config
        nor an accepted proposal sets a value the rule would choose, else ``"fixed"``."""
        if self.recipe_name == "fixed" or RULE_SET & (self.explicit | set(proposed)):
            return "fixed"
        return "rule"

    def resolve(self, proposed: Mapping[str, float]) -> dict[str, float]:
        """The node's values, with the coordinator's proposals where the node allows them.

        Raises:
            ConfigError: an unknown setting, or a value outside the node's range.
        """
        out = dict(self.values)
        for name, value in proposed.items():
            if name not in self.ranges:
                raise ConfigError(
                    f"training setting {name!r} is not one the coordinator may propose"
                    f" (allowed: {sorted(self.ranges)}).")
            lo, hi = self.ranges[name]
            if not (lo <= value <= hi) or (name in _INTEGER and value != int(value)):
                raise ConfigError(
                    f"proposed {name} must lie in the node's range [{lo:g}, {hi:g}]"
                    f"{' and be an integer' if name in _INTEGER else ''}. Got {value:g}.")
            out[name] = float(value)
        return out


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """One agency node: what it holds, where it writes, what it may spend."""

    agency_id: str
    kind: str
    department: str
    data: Path
    schema: Path | None
    out: Path
    epsilon: float
    delta: float
    training: TrainingSettings = field(
        default_factory=lambda: TrainingSettings.from_mapping({}),
        metadata=setting(prefix="train-", parse=lambda _p, found: TrainingSettings.from_mapping(
            found)))
    release_noise: float = 20.0
    min_cell: int = 10
    test_seed: int | None = None
    roster: Path | None = None
    identity: Path | None = None
    review_capacity: str = "10%"  # the agency's reviewers: "10%" of its students or "250"
    #: share of the labelled rows held out of training for federated evaluation
    holdout: float = 0.2
    #: the matching grouping this agency agreed to: ``province`` (one run keyring shared
    #: with the roster's other education agencies) or ``per_agency`` (its keyring is never
    #: sealed to another agency, and it opens no other agency's keyring)
    matching_grouping: str = "province"
    #: the number of labelled students the agency declares public (e.g. its published
    #: enrolment). Training's sample rate, steps and DP divisor come from it (its training
    #: share: ``(1 - holdout) x public-size``), so the update does not reveal the real count.
    #: Unset: the training-row count plus Gaussian noise, released once and charged to the
    #: node's budget (clients.training.public_rows)
    public_size: int | None = None
    #: refuse every train request without secure aggregation (a deployment whose nodes all
    #: have a roster should set it: the coordinator then cannot ask for a bare update)
    require_secure_aggregation: bool = False
    #: under ``province`` grouping, the only other homes this home shares a run keyring
    #: with (``matching-peers = "edu_a,edu_b"``; a run naming any other home is refused
    #: before a key is made or a keyring sealed or opened). None (unset): any home of the
    #: roster the coordinator names, as before
    matching_peers: tuple[str, ...] | None = field(
        default=None, metadata=setting(parse=parse_matching_peers))
    #: distributed-noise mode (clients.noise_share): the agency trains only in rounds that
    #: ask for it, under secure aggregation, adding its 1/K share of the noise; K is
    #: ``distributed-noise-parties``, the number of agencies (itself included) that must add
    #: their share: it refuses any sum announced with fewer participants
    distributed_noise: bool = False
    distributed_noise_parties: int | None = None

    def __post_init__(self) -> None:
        if self.distributed_noise and self.distributed_noise_parties is None:
            raise ConfigError("distributed-noise needs distributed-noise-parties (the number "
                              "of agencies that must add their share). Got none.")
        if self.distributed_noise and self.roster is None:
            raise ConfigError("distributed-noise needs a roster: a node masks its share only "
                              "with masking keys its peers signed (THREAT_MODEL.md). Got none.")
        if self.distributed_noise_parties is not None and self.distributed_noise_parties < 2:
            raise ConfigError("distributed-noise-parties must be >= 2. Got "
                              f"{self.distributed_noise_parties}.")
        if self.matching_grouping not in ("province", "per_agency"):
            raise ConfigError("matching-grouping must be 'province' or 'per_agency'."
                              f" Got {self.matching_grouping!r}.")
        if self.public_size is not None and self.public_size < 1:
            raise ConfigError(f"public-size must be >= 1. Got {self.public_size}.")
        if self.matching_peers is not None and (
                self.kind != "education" or self.matching_grouping != "province"):
            raise ConfigError("matching-peers applies to an education node under "
                              "matching-grouping 'province'. Got kind "
                              f"{self.kind!r}, grouping {self.matching_grouping!r}.")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"holdout must be in [0, 1). Got {self.holdout}.")
        if not self.agency_id or "/" in self.agency_id or ".." in self.agency_id:
            raise ConfigError(f"agency-id must be a plain name. Got {self.agency_id!r}.")
        if self.kind not in _KINDS:
            raise ConfigError(f"kind must be one of {_KINDS}. Got {self.kind!r}.")
        if not self.epsilon > 0:
            raise ConfigError(f"epsilon must be > 0. Got {self.epsilon}.")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1). Got {self.delta}.")
        if not self.release_noise > 0:
            raise ConfigError(f"release-noise must be > 0. Got {self.release_noise}.")
        if self.min_cell < 0:
            raise ConfigError(f"min-cell must be >= 0. Got {self.min_cell}.")
        Capacity.parse(self.review_capacity)  # raises ConfigError naming the value

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> NodeSettings:
        """Build settings from node-config style keys (``agency-id``, ``data`` ...).

        One parser (:func:`fedid.settings.parse_settings`): ``agency-id``, ``kind``, ``data``,
        ``out``, ``epsilon`` and ``delta`` are required (a node states its own budget),
        unknown keys are refused, and every error names the key and the value.
        """
        defaults = {"department": "education" if raw.get("kind") == "education" else "",
                    "schema": None}
        return parse_settings(cls, {**defaults, **raw}, what="node config")


def node_settings(node_config: Mapping[str, Any]) -> NodeSettings:
    """Settings for this node: explicit node config first, else the simulation file."""
    if "agency-id" in node_config:
        return NodeSettings.from_mapping(
            {k: v for k, v in node_config.items() if k not in FLOWER_KEYS})
    sim_path = os.environ.get(SIMULATION_ENV)
    if sim_path is None or "partition-id" not in node_config:
        raise ConfigError(
            "node config has no 'agency-id' and no simulation config is set "
            f"({SIMULATION_ENV}); start the node with --node-config."
        )
    agencies = load_simulation_file(Path(sim_path))["agencies"]
    pid = int(node_config["partition-id"])
    if not 0 <= pid < len(agencies):
        raise ConfigError(f"partition-id must be in [0, {len(agencies)}). Got {pid}.")
    return NodeSettings.from_mapping(agencies[pid])
