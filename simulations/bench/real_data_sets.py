"""Public tabular datasets bundled with statsmodels, written in fedid's ``--data`` layout.

Each dataset gets a custom binary schema: one education-side department holding every
column, no evidence department, dimensions named freely, no label process (so no label-noise
correction: threshold 1/2). Ranges are the documented ranges of the variables (statsmodels'
dataset notes), never statistics of a split.

:func:`write_split` splits one dataset per seed into a stratified 20 % test set and
``agencies`` education agencies with strong label skew: each class's rows are dealt to the
agencies in Dirichlet(``alpha``) proportions, so agencies differ in size and in positive
share. Layout written::

    DIR/schema.toml
    DIR/agencies/education/agency_<k>.csv   student_id (a valid ID number standing in for
                                            the row), features, label_level
    DIR/agencies/education/test.csv         the test rows, unlabelled
    DIR/ground_truth/students.parquet       student_id, true_level, applied (test rows)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DATASETS", "load_dataset", "row_ids", "schema_toml", "write_split"]

# name -> (statsmodels loader, label rule, positive level name, indicators)
# indicator: (column, type, min, max, dimension)
DATASETS: dict[str, dict[str, Any]] = {
    "randhie": {
        "label": ("mdvis", 0.0), "positive": "visited",
        "indicators": [
            ("lncoins", "float", 0.0, 4.7, "insurance"), ("idp", "bool", None, None, "insurance"),
            ("lpi", "float", 0.0, 7.5, "insurance"), ("fmde", "float", 0.0, 8.5, "insurance"),
            ("physlm", "bool", None, None, "health"), ("disea", "float", 0.0, 60.0, "health"),
            ("hlthg", "bool", None, None, "health"), ("hlthf", "bool", None, None, "health"),
            ("hlthp", "bool", None, None, "health"),
        ],
    },
    "fair": {
        "label": ("affairs", 0.0), "positive": "affair",
        "indicators": [
            ("rate_marriage", "ordinal", 1, 5, "marriage"), ("age", "float", 17.0, 42.0, "person"),
            ("yrs_married", "float", 0.0, 23.0, "marriage"),
            ("children", "float", 0.0, 5.5, "family"),
            ("religious", "ordinal", 1, 4, "person"), ("educ", "int", 9, 20, "person"),
            ("occupation", "ordinal", 1, 6, "work"), ("occupation_husb", "ordinal", 1, 6, "work"),
        ],
    },
}


def load_dataset(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """(features, level name) of a bundled dataset."""
    import statsmodels.api as sm

    spec = DATASETS[name]
    raw = getattr(sm.datasets, name).load_pandas().data
    col, cut = spec["label"]
    level = np.where(raw[col].to_numpy() > cut, spec["positive"], "none")
    features = raw[[c for c, *_ in spec["indicators"]]].copy()
    for c, kind, *_ in spec["indicators"]:
        if kind == "bool":
            features[c] = features[c].astype(bool)
        elif kind in ("int", "ordinal"):
            features[c] = features[c].round().astype(int)
    return features.reset_index(drop=True), pd.Series(level, name="label_level")


def schema_toml(name: str) -> str:
    """The custom schema of a dataset (binary, education-side only)."""
    spec = DATASETS[name]
    lines = [f'[schema]\nname = "{name}"\nversion = 1\n',
             f'[levels]\nnames = ["none", "{spec["positive"]}"]\n',
             "[outputs]\ndimension_flags = []\n",
             '[departments.records]\nside = "education"\nlabel = "the holder of the survey"\n']
    for col, kind, lo, hi, dim in spec["indicators"]:
        lines.append(f'[[indicators]]\nname = "{col}"\ndimension = "{dim}"\n'
                     f'department = "records"\ntype = "{kind}"')
        if lo is not None:
            lines.append(f"min = {lo}\nmax = {hi}")
        lines.append("")
    return "\n".join(lines)


def row_ids(n: int) -> np.ndarray[Any, Any]:
    """``n`` distinct valid ID numbers standing in for the rows' keys (pseudonyms)."""
    from fedid.ids import make_ids

    i = np.arange(n)
    dates = np.datetime64("2004-01-01") + (i // 1000)
    return np.asarray(make_ids(address_codes=110101, birth_dates=dates, sequences=i % 1000))


def write_split(name: str, folder: Path, *, seed: int, agencies: int = 8,
                alpha: float = 0.5, test_share: float = 0.2) -> Path:
    """Write one seed's split of ``name`` to ``folder`` (layout in the module docstring)."""
    features, level = load_dataset(name)
    rng = np.random.default_rng(seed)
    n = len(features)
    ids = row_ids(n)
    is_test = np.zeros(n, dtype=bool)
    owner = np.full(n, -1)
    for value in np.unique(level):
        rows = rng.permutation(np.flatnonzero(level.to_numpy() == value))
        n_test = round(len(rows) * test_share)
        is_test[rows[:n_test]] = True
        rest = rows[n_test:]
        shares = rng.dirichlet(np.full(agencies, alpha))
        cuts = np.round(np.cumsum(shares) * len(rest)).astype(int)[:-1]
        for k, part in enumerate(np.split(rest, cuts)):
            owner[part] = k
    edu = folder / "agencies" / "education"
    edu.mkdir(parents=True, exist_ok=True)
    (folder / "ground_truth").mkdir(exist_ok=True)
    (folder / "schema.toml").write_text(schema_toml(name), encoding="utf-8")
    table = features.assign(student_id=ids, label_level=level.to_numpy())
    cols = ["student_id", *features.columns, "label_level"]
    for k in range(agencies):
        part = table[owner == k][cols]
        part.to_csv(edu / f"agency_{k}.csv", index=False)
    test = table[is_test]
    test[cols[:-1]].to_csv(edu / "test.csv", index=False)
    pd.DataFrame({"student_id": test["student_id"].to_numpy(),
                  "true_level": test["label_level"].to_numpy(),
                  "applied": np.ones(len(test), dtype=bool)}).to_parquet(
        folder / "ground_truth" / "students.parquet", index=False)
    return folder
