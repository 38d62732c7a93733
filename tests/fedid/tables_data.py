"""Small valid agency tables for the table and `fedid check` tests (built with make_ids)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedid.ids import make_ids
from fedid.schema import Schema


def people(n: int, *, born: str, seed: int, address: int = 510104) -> list[str]:
    rng = np.random.default_rng(seed)
    days = rng.choice(3650, size=n, replace=False)
    ids = make_ids(
        address_codes=address,
        birth_dates=np.datetime64(born) + days,
        sequences=rng.integers(0, 1000, n),
    )
    return [str(x) for x in ids]


def education_frame(schema: Schema, n: int = 6, seed: int = 1) -> pd.DataFrame:
    """A valid education table: every layout column, Chinese labels and 是/否 booleans."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {
        "student_id": people(n, born="2006-01-01", seed=seed),
        "guardian1_id": people(n, born="1975-01-01", seed=seed + 1),
        "guardian2_id": [*people(n - 1, born="1976-01-01", seed=seed + 2), ""],
        "household_size": rng.integers(2, 7, n).tolist(),
        "labour_force_count": rng.integers(0, 3, n).tolist(),
        "siblings_in_school": rng.integers(0, 3, n).tolist(),
        "left_behind_child": ["否", "是", "false", "true", "0", "1"][:n] * (n // 6 or 1),
        "rural_hukou": ["是"] * n,
        "campus_card_spending": np.round(rng.uniform(200, 1500, n), 2).tolist(),
        "grade_percentile": np.round(rng.uniform(0, 100, n), 1).tolist(),
        "psych_risk_level": rng.integers(0, 4, n).tolist(),
        "applied": ["true", "false"] * (n // 2),
        "stage": ["k12", "senior_high", "university"] * (n // 3),
        "label_level": ["none", "特别困难", "general", "", "hardship", "一般困难"][:n]
        * (n // 6 or 1),
    }
    for flag in schema.dimension_flags:
        data[f"label_{flag}"] = ["0", "1"] * (n // 2)
    return pd.DataFrame(data).astype(object)


def civil_affairs_frame(n: int = 5, seed: int = 3) -> pd.DataFrame:
    """A valid civil-affairs table; the second person carries a legacy 15-digit number."""
    ids = people(n, born="1950-01-01", seed=seed)
    ids[1] = ids[1][:6] + ids[1][8:17]
    return pd.DataFrame(
        {
            "person_id": ids,
            "household_income_per_capita": ["12000", "", "8000.5", "30000", "0"][:n],
            "family_structure": ["both_parents", "", "divorced", "orphan", "bereaved"][:n],
            "dibao": ["1", "0", "", "0", "1"][:n],
            "tekun": ["0"] * n,
            "low_income_edge": ["0"] * n,
            "temporary_relief": ["0", "1500", "", "0", "200"][:n],
        }
    ).astype(object)
