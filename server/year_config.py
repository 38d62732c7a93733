"""The coordinator's settings for one school year, parsed and validated in one place.

Keys are those of the run config (pyproject ``[tool.flwr.app.config]``, overridden with
``flwr run --run-config``) or of the simulation file's ``coordinator`` section; every key
is parsed by :func:`fedid.settings.parse_settings` (one rule per type, unknown keys
refused) and the ranges and choices are checked on construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedid.errors import ConfigError
from fedid.settings import parse_settings, setting

__all__ = ["YearConfig"]

_WEIGHTINGS = ("released", "equal")
_GROUPINGS = ("province", "per_agency")


def _node_agencies(key: str, raw: Any) -> dict[int, str]:
    """``"id=agency,id=agency"`` (see server.deploy.node_agencies_arg) as a dict."""
    out: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in str(raw).split(","))):
        node, sep, agency = part.partition("=")
        if not sep or not node.strip().isdigit() or not agency.strip():
            raise ConfigError(f"{key} must be 'id=agency,...'. Got {part!r}.")
        out[int(node)] = agency.strip()
    return out


@dataclass(frozen=True, slots=True)
class YearConfig:
    """Coordinator settings for one year (from run config or the simulation file)."""

    out: Path = Path("runs/coordinator")
    rounds: int = 5
    min_nodes: int = 2
    #: nodes the coordinator expects (0: unknown); it waits for all of them up to ``wait_nodes``
    expected_nodes: int = 0
    #: node id -> the agency its key was registered for (deployment); empty: not checked
    node_agencies: dict[int, str] = field(default_factory=dict,
                                             metadata=setting(parse=_node_agencies))
    min_train_replies: int = 1
    wait_nodes: float = 120.0
    timeout: float = 600.0
    session: str = "year"
    weighting: str = "released"
    matching: bool = True
    schema: str = ""
    grouping: str = "province"
    seed: int = 0
    #: ``train-<name>`` keys: training settings passed to the nodes (``train-local_epochs``)
    train: dict[str, float] = field(default_factory=dict, metadata=setting(prefix="train-"))
    secure_aggregation: bool = False
    #: distributed noise under the secure sum (server.noise_round): one DP-FedSGD share per
    #: node and round; needs secure_aggregation. The server step's learning rate (None: the
    #: rule 16 / rounds, server.noise_round.rule_learning_rate) and momentum are
    #: post-processing of the released sums
    distributed_noise: bool = False
    distributed_noise_learning_rate: float | None = None
    distributed_noise_momentum: float = 0.9
    #: deployment: tell every node when the year finished or failed (``query.year``)
    notify_nodes: bool = False

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1. Got {self.rounds}.")
        if self.min_nodes < 1:
            raise ConfigError(f"min-nodes must be >= 1. Got {self.min_nodes}.")
        if self.min_train_replies < 1:
            raise ConfigError(f"min-train-replies must be >= 1. Got {self.min_train_replies}.")
        if self.expected_nodes < 0:
            raise ConfigError(f"expected-nodes must be >= 0. Got {self.expected_nodes}.")
        if 0 < self.expected_nodes < self.min_nodes:
            raise ConfigError(
                f"expected-nodes must be 0 or >= min-nodes ({self.min_nodes})."
                f" Got {self.expected_nodes}."
            )
        for key, value in (("timeout", self.timeout), ("wait-nodes", self.wait_nodes)):
            if not value > 0:
                raise ConfigError(f"{key} must be > 0. Got {value}.")
        if self.weighting not in _WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {_WEIGHTINGS}. Got {self.weighting!r}.")
        if self.grouping not in _GROUPINGS:
            raise ConfigError(f"grouping must be one of {_GROUPINGS}. Got {self.grouping!r}.")
        if self.distributed_noise and not self.secure_aggregation:
            raise ConfigError("distributed-noise needs secure-aggregation: each node's share "
                              "carries 1/K of the noise. Got secure-aggregation = false.")
        if self.distributed_noise_learning_rate is not None and \
                not self.distributed_noise_learning_rate > 0:
            raise ConfigError("distributed-noise-learning-rate must be > 0. Got "
                              f"{self.distributed_noise_learning_rate}.")
        if not 0 <= self.distributed_noise_momentum < 1:
            raise ConfigError("distributed-noise-momentum must be in [0, 1). Got "
                              f"{self.distributed_noise_momentum}.")
        if not self.session:
            raise ConfigError("session must be a non-empty name. Got ''.")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> YearConfig:
        """Parse run-config style keys (``min-nodes``, ``secure-aggregation``, ``train-*``)."""
        return parse_settings(cls, raw, what="coordinator config")
