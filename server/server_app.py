"""The coordinator as a Flower ServerApp (thin: the year lives in :mod:`server.year`).

Settings come from the run config (``flwr run --run-config`` / pyproject
``[tool.flwr.app.config]``) merged over the simulation file when one is set
(``FEDID_SIMULATION_CONFIG``, written by ``fedid simulate``), parsed into a
:class:`server.year_config.YearConfig`. When ``FEDID_PROGRESS_FILE`` names a file, the
year's progress events (phase, round, matching, done; no IDs, keys or values) are appended
to it as JSON lines, which ``fedid simulate`` follows from its own process.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedid.errors import FedIdError
from fedid.simulation_file import SIMULATION_ENV, load_simulation_file
from server import lifecycle
from server.year import Progress, run_year
from server.year_config import YearConfig

__all__ = ["PROGRESS_ENV", "app", "year_config"]

PROGRESS_ENV = "FEDID_PROGRESS_FILE"

_log = logging.getLogger(__name__)

app = ServerApp()


def year_config(run_config: dict[str, Any]) -> YearConfig:
    """Simulation file's ``coordinator`` section, overridden by the run config."""
    raw: dict[str, Any] = {}
    sim = os.environ.get(SIMULATION_ENV)
    if sim:
        raw.update(load_simulation_file(Path(sim)).get("coordinator", {}))
    raw.update(run_config)
    return YearConfig.from_mapping(raw)


def _progress_file(path: Path) -> Progress:
    """A progress callback appending one JSON line per event (flushed at once)."""

    def say(event: str, data: dict[str, Any]) -> None:
        line = json.dumps({"event": event, "data": data}, default=str) + "\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    return say


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run one school year."""
    cfg = year_config(dict(context.run_config))
    target = os.environ.get(PROGRESS_ENV)
    notify = cfg.notify_nodes
    try:
        run_year(grid, cfg, _progress_file(Path(target)) if target else None)
    except FedIdError as exc:  # deployment: nodes learn the year is over and why
        if notify:
            lifecycle.announce(grid, state="failed", reason=str(exc), session=cfg.session)
        raise
    if notify:
        lifecycle.announce(grid, state="finished", reason="", session=cfg.session)
