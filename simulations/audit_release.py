"""Release audit: every field of a node's training reply against what covers it.

DP-SGD noise covers the model arrays only. Any other field a node sends is either declared
outside the reported epsilon (the record count sent as the FedAvg weight, and the spend it
determines, both named in the model card's caveats) or it is an uncovered release. The
check is empirical: each agency's reply is computed on its rows and on the same rows less
one record, with the same node randomness; a field that changes and is neither charged to
the accountant nor declared is named as uncovered.

The broken configuration ``exact_counts`` (harness only) makes the node also send the
exact count of its training rows per recognition level, as a careless "diagnostic"
release would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from fedid.model.features import level_targets
from fedid.model.train import TrainConfig, new_local_state, train_local
from fedid.schema import Schema

__all__ = ["COVER", "release_audit"]

# field -> what covers it; a field missing here that depends on the data is uncovered
COVER: Final[Mapping[str, str]] = {
    "arrays": "DP-SGD noise, charged to the node's accountant",
    "num_examples": "declared outside epsilon: the record count (FedAvg weight; model-card"
                    " caveat fedavg_weights)",
    "epsilon_spent": "declared outside epsilon: a function of the record count and the public"
                     " recipe",
}


def _reply(frame: pd.DataFrame, schema: Schema, config: TrainConfig, *, epsilon: float,
           delta: float, seed: int, exact_counts: bool) -> dict[str, Any]:
    result = train_local(inputs=frame, schema=schema,
                         state=new_local_state(epsilon=epsilon, delta=delta), config=config,
                         seed=seed)
    reply: dict[str, Any] = {
        "arrays": np.concatenate([v.ravel() for v in (result.state.weights or {}).values()]),
        "num_examples": result.n_records,
        "epsilon_spent": result.state.epsilon_spent,
    }
    if exact_counts:
        levels = level_targets(frame, schema)
        reply["label_counts"] = np.bincount(levels, minlength=len(schema.levels.names))
    return reply


def release_audit(
    *,
    frames: Mapping[str, pd.DataFrame],
    schema: Schema,
    config: TrainConfig,
    epsilon: float,
    delta: float,
    seed: int,
    exact_counts: bool = False,
) -> dict[str, Any]:
    """Per agency, each reply field: changes with one record? covered by what? uncovered?"""
    per: dict[str, Any] = {}
    uncovered: dict[str, list[str]] = {}
    for i, (agency, frame) in enumerate(sorted(frames.items())):
        full, less = (
            _reply(rows, schema, config, epsilon=epsilon, delta=delta, seed=seed + i,
                   exact_counts=exact_counts)
            for rows in (frame, frame.iloc[:-1].reset_index(drop=True)))
        fields = {}
        for name, value in full.items():
            changed = not np.array_equal(np.asarray(value), np.asarray(less[name]))
            cover = COVER.get(name, "")
            fields[name] = {"changes_with_one_record": changed, "covered_by": cover or None,
                            "uncovered": changed and not cover}
            if changed and not cover:
                uncovered.setdefault(agency, []).append(name)
        per[agency] = fields
    return {
        "per_agency": per,
        "uncovered": uncovered,
        "flagged": bool(uncovered),
        "method": "each reply computed on the agency's rows and on the same rows less one"
                  " record, same node randomness (one round)",
    }
