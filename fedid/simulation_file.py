"""The simulation file: one JSON description of a simulated province's agencies and coordinator.

``fedid simulate`` writes it (``DIR/simulation.json``) and points every process of the
simulation at it with the ``FEDID_SIMULATION_CONFIG`` environment variable: each virtual
node reads its own entry of ``agencies`` (:mod:`clients.config`), the coordinator reads
``coordinator`` (:mod:`server.run_config`). It lives below both apps because both read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedid.errors import ConfigError

__all__ = ["SIMULATION_ENV", "load_simulation_file"]

SIMULATION_ENV = "FEDID_SIMULATION_CONFIG"


def load_simulation_file(path: Path) -> dict[str, Any]:
    """Read a simulation description written by :mod:`simulations.simulate`."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read simulation config {path}: {exc}") from exc
    if not isinstance(data.get("agencies"), list):
        raise ConfigError(f"simulation config {path} has no 'agencies' list.")
    return data
