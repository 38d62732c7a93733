"""A small random frame drawn from the schema, for model tests before/without a province."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedid.schema import Schema


def random_inputs(schema: Schema, n: int, seed: int = 0) -> pd.DataFrame:
    """Indicators in their declared ranges (20 % missing), a learnable level and flags."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {"student_id": [f"S{i:06d}" for i in range(n)]}
    for ind in schema.indicators:
        missing = rng.random(n) < 0.2
        if ind.type == "category":
            vals = rng.choice(np.asarray(ind.categories, dtype=object), size=n, p=None)
            cols[ind.name] = pd.Series(np.where(missing, None, vals), dtype=object)
        elif ind.type == "bool":
            vals = rng.random(n) < 0.1
            cols[ind.name] = pd.array(
                [None if m else bool(v) for v, m in zip(vals, missing, strict=True)],
                dtype="boolean",
            )
        else:
            lo = float(ind.min if ind.min is not None else 0)
            hi = float(ind.max if ind.max is not None else 1)
            if ind.transform == "log1p":
                vals = np.expm1(rng.uniform(0, np.log1p(hi - lo), n)) + lo
            else:
                vals = rng.uniform(lo, hi, n)
            if ind.type in ("int", "ordinal"):
                vals = np.round(vals)
            cols[ind.name] = np.where(missing, np.nan, vals)
    frame = pd.DataFrame(cols)
    income = frame["household_income_per_capita"].fillna(1e6).to_numpy()
    score = (np.log1p(income) < 8.0).astype(int) + (np.log1p(income) < 6.0).astype(int)
    score += frame["major_illness_in_family"].fillna(False).to_numpy(dtype=bool).astype(int)
    level = np.clip(score, 0, len(schema.levels.names) - 1)
    names = np.asarray(schema.levels.names, dtype=object)
    frame["label_level"] = names[level]
    frame["applied"] = rng.random(n) < 0.8
    for flag in schema.dimension_flags:
        frame[f"label_{flag}"] = (level > 0) & (rng.random(n) < 0.7)
    return frame
