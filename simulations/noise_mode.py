"""``fedid simulate --secure-aggregation --distributed-noise``: the simulation file's settings.

Every labelled education agency opts in with ``distributed-noise = true`` and
``distributed-noise-parties = K``, K the number of labelled education agencies (all of them
must add their share: one drop-out after the key exchange stops the year, fail closed), and
plans :data:`DEFAULT_ROUNDS` shared rounds unless ``--rounds`` says otherwise. The
coordinator asks for the mode. Its server step uses the run config's defaults
(:class:`server.year_config.YearConfig`).

The rule behind the defaults (BENCHMARKS.md, "distributed noise", tuned on province seed
101, never on the reported seed): each round costs a Flower exchange of three messages per
node, so the mode trains full-batch (the node's batch size 2,048 covers a default-province
agency's public size, q = 1; amplification by subsampling pays only with more rounds), and
for full-batch Gaussian steps the signal-to-noise ratio of the summed steps does not grow
with the number of rounds (sigma grows as sqrt(rounds)); rounds then buy optimisation only,
and :data:`DEFAULT_ROUNDS` was where the tuning province's held-out macro-F1 stopped rising.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DEFAULT_ROUNDS", "apply_noise_mode"]

#: shared rounds of the mode when ``--rounds`` is not given (see the module docstring)
DEFAULT_ROUNDS = 40


def _labelled(table: Path) -> bool:
    try:
        frame = (pd.read_parquet(table, columns=["label_level"]) if table.suffix == ".parquet"
                 else pd.read_csv(table, usecols=["label_level"], encoding="utf-8-sig"))
    except (KeyError, ValueError):  # no label column: the agency is only scored
        return False
    return bool(frame["label_level"].notna().any())


def apply_noise_mode(agencies: list[dict[str, Any]], coordinator: dict[str, Any], *,
                     rounds: int) -> None:
    """Add the mode's keys to the simulation file's node entries and coordinator section."""
    trainers = [a for a in agencies
                if a["kind"] == "education" and _labelled(Path(a["data"]))]
    for agency in trainers:
        agency.update({"distributed-noise": True, "distributed-noise-parties": len(trainers),
                       "train-rounds": rounds, "train-rounds-range": f"1,{max(20, rounds)}"})
    coordinator["distributed-noise"] = True
