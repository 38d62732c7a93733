"""The coordinator as a Flower ServerApp (thin: the year lives in :mod:`server.year`).

Settings come from the run config (``flwr run --run-config`` / pyproject
``[tool.flwr.app.config]``) merged over the simulation file when one is set
(``FEDID_SIMULATION_CONFIG``, written by ``fedid simulate``). A progress callback can
be installed by the simulation driver with :func:`set_progress` (same process).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from clients.config import SIMULATION_ENV, load_simulation_file
from fedid.errors import FedIdError
from server import lifecycle
from server.year import Progress, YearConfig, run_year

__all__ = ["app", "set_progress"]

_log = logging.getLogger(__name__)
_progress: list[Progress] = []
_results: list[dict[str, Any]] = []

app = ServerApp()


def set_progress(callback: Progress | None) -> None:
    """Install (or clear) the progress callback used by the next run in this process."""
    _progress.clear()
    if callback is not None:
        _progress.append(callback)


def last_result() -> dict[str, Any] | None:
    """The year record of the last run in this process (simulation only)."""
    return _results[-1] if _results else None


def year_config(run_config: dict[str, Any]) -> YearConfig:
    """Simulation file's ``coordinator`` section, overridden by the run config."""
    raw: dict[str, Any] = {}
    sim = os.environ.get(SIMULATION_ENV)
    if sim:
        raw.update(load_simulation_file(Path(sim)).get("coordinator", {}))
    raw.update(run_config)
    return YearConfig.from_mapping(raw)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run one school year."""
    cfg = year_config(dict(context.run_config))
    notify = str(context.run_config.get("notify-nodes", False)).lower() == "true"
    try:
        result = run_year(grid, cfg, _progress[0] if _progress else None)
    except FedIdError as exc:  # deployment: nodes learn the year is over and why
        if notify:
            lifecycle.announce(grid, state="failed", reason=str(exc), session=cfg.session)
        raise
    if notify:
        lifecycle.announce(grid, state="finished", reason="", session=cfg.session)
    _results.append(result)
