"""Where a node's settings come from: Flower node config, or a simulation file.

In deployment each agency starts its SuperNode with ``--node-config`` naming its own
table, schema, output folder and privacy budget, e.g.::

    flower-supernode ... --node-config 'agency-id="edu_county_01" kind="education"
        data="/srv/fedid/students.parquet" schema="/srv/fedid/schema.toml"
        out="/srv/fedid/out" epsilon=1.0 delta=1e-5
        education-keys="/srv/edu-shared/keys"'

``education-keys`` (education side only) is a folder the education agencies share among
themselves (never with the coordinator or departments) for the run keyring of a
province-wide matching run.

In Flower's simulation engine every virtual node gets only ``partition-id``; the
simulation writes one JSON file describing every agency and points the nodes at it
with the ``FEDID_SIMULATION_CONFIG`` environment variable (inherited by the
simulation's worker processes). The coordinator never chooses a node's data or
budget: both come from the node's own side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedid.errors import ConfigError

__all__ = ["SIMULATION_ENV", "NodeSettings", "load_simulation_file", "node_settings"]

SIMULATION_ENV = "FEDID_SIMULATION_CONFIG"
_KINDS = ("education", "department")


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
    education_keys: Path | None = None
    #: share of the labelled rows held out of training for federated evaluation
    holdout: float = 0.2

    def __post_init__(self) -> None:
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

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> NodeSettings:
        """Build settings from node-config style keys (``agency-id``, ``data`` ...)."""
        missing = [k for k in ("agency-id", "kind", "data", "out") if k not in raw]
        if missing:
            raise ConfigError(f"node config is missing keys {missing}.")
        kind = str(raw["kind"])
        schema = raw.get("schema")
        return cls(
            agency_id=str(raw["agency-id"]),
            kind=kind,
            department=str(raw.get("department", "education" if kind == "education" else "")),
            data=Path(str(raw["data"])),
            schema=Path(str(schema)) if schema else None,
            out=Path(str(raw["out"])),
            epsilon=float(raw.get("epsilon", 1.0)),
            delta=float(raw.get("delta", 1e-5)),
            education_keys=Path(str(raw["education-keys"])) if raw.get("education-keys")
            else None,
            holdout=float(raw.get("holdout", 0.2)),
        )


def load_simulation_file(path: Path) -> dict[str, Any]:
    """Read a simulation description written by :mod:`simulations.simulate`."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read simulation config {path}: {exc}") from exc
    if not isinstance(data.get("agencies"), list):
        raise ConfigError(f"simulation config {path} has no 'agencies' list.")
    return data


def node_settings(node_config: Mapping[str, Any]) -> NodeSettings:
    """Settings for this node: explicit node config first, else the simulation file."""
    if "agency-id" in node_config:
        return NodeSettings.from_mapping(node_config)
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
