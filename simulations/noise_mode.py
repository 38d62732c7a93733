"""``fedid simulate --secure-aggregation --distributed-noise``: the simulation file's settings.

Every labelled education agency opts in with ``distributed-noise = true`` and
``distributed-noise-parties = K``, K the number of labelled education agencies (all of them
must add their share: one drop-out after the key exchange stops the year, fail closed), and
plans :data:`DEFAULT_ROUNDS` shared rounds unless ``--rounds`` says otherwise. The
coordinator asks for the mode. Its server step uses the run config's defaults
(:class:`server.year_config.YearConfig`).

The rule behind the defaults (BENCHMARKS.md, "distributed noise"; chosen with
:mod:`simulations.bench.noise_tuning` on province seed 101, never on a reported seed). The
mode trains full-batch (the nodes' batch size 2,048 covers a default-province agency's
public size, so q = 1): each round costs a Flower exchange, and subsampling pays only with
more rounds. For full-batch Gaussian steps sigma grows as sqrt(rounds), so the
signal-to-noise ratio of the summed steps does not grow with the rounds: they buy
optimisation only. The server's learning rate follows ``16 / rounds``
(:func:`server.noise_round.rule_learning_rate`); on the tuning province macro-F1 was 0.47
at 10 rounds, 0.645 (mean of 3 draws) at 20, 0.639 (3) at 40 and 0.639 (1) at 80, so
:data:`DEFAULT_ROUNDS` is the fewest rounds within a point of the best.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DEFAULT_ROUNDS", "apply_noise_mode"]

#: shared rounds of the mode when ``--rounds`` is not given (see the module docstring)
DEFAULT_ROUNDS = 20


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
