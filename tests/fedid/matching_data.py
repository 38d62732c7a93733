"""Small hand-made agency tables for the matching tests (built with fedid.ids.make_ids)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedid.ids import make_ids
from fedid.schema import Schema


def _ids(rng: np.random.Generator, n: int, *, born: tuple[int, int]) -> np.ndarray:
    address = rng.choice([110105, 440524, 610102, 420106], size=n)
    days = rng.integers(0, 3650, size=n)
    start = np.datetime64(f"{born[0]}-01-01")
    dates = start + days.astype("timedelta64[D]")
    seq = rng.integers(0, 996, size=n)
    ids = make_ids(address_codes=address, birth_dates=dates, sequences=seq)
    return np.unique(ids)


def to_legacy(id18: str) -> str:
    """The 15-digit legacy form of an 18-digit ID born 1900-1999."""
    return id18[:6] + id18[8:17]


def _value(rng: np.random.Generator, ind: object, n: int) -> pd.Series:
    t = ind.type  # type: ignore[attr-defined]
    if t == "bool":
        return pd.Series(rng.random(n) < 0.4, dtype="boolean")
    if t == "category":
        cats = ind.categories  # type: ignore[attr-defined]
        return pd.Series(rng.choice(list(cats), size=n), dtype="string")
    lo, hi = ind.min, ind.max  # type: ignore[attr-defined]
    if t == "float":
        top = min(float(hi), 50000.0)
        return pd.Series(np.round(rng.uniform(float(lo), top, size=n), 2), dtype="Float64")
    return pd.Series(rng.integers(int(lo), int(hi) + 1, size=n), dtype="Int64")


def make_tables(
    schema: Schema, *, students: int = 60, seed: int = 7, homes: int = 2, records: int = 40,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Education tables of ``homes`` agencies and one table per evidence department.

    Guardians are born in the 1970s (so legacy 15-digit IDs exist); some students share
    guardians (siblings, also across agencies). Each department holds ``records`` people:
    about half students/guardians, half outsiders; a third of adult IDs in legacy form;
    some fields null.
    """
    rng = np.random.default_rng(seed)
    kids = _ids(rng, students, born=(2006, 1))[:students]
    adults = _ids(rng, students * 2, born=(1972, 1))
    g1 = rng.choice(adults[: students], size=len(kids))  # some repeats: siblings
    g2 = np.where(rng.random(len(kids)) < 0.7, rng.choice(adults[students:], size=len(kids)),
                  None)
    outsiders = _ids(rng, records * 3, born=(1960, 1))
    agency = np.arange(len(kids)) % homes
    home_tables: dict[str, pd.DataFrame] = {}
    for a in range(homes):
        sel = agency == a
        n = int(sel.sum())
        home_tables[f"school_{a}"] = pd.DataFrame({
            "student_id": pd.Series(kids[sel], dtype="string"),
            "guardian1_id": pd.Series(g1[sel], dtype="string"),
            "guardian2_id": pd.Series(g2[sel], dtype="string"),
            "applied": pd.Series(rng.random(n) < 0.3, dtype="boolean"),
            "label_level": pd.Series(rng.choice(["none", "general", "special"], size=n),
                                     dtype="string"),
        })
        for ind in schema.owned_by("education"):
            home_tables[f"school_{a}"][ind.name] = _value(rng, ind, n).to_numpy()
    people = np.concatenate([kids, adults, outsiders])
    dep_tables: dict[str, pd.DataFrame] = {}
    for dep in schema.evidence_departments:
        fields = schema.source_fields(dep)
        if not fields:
            continue
        ours = rng.choice(np.concatenate([kids, adults]), size=records // 2, replace=False)
        theirs = rng.choice(outsiders, size=records - len(ours), replace=False)
        pid = np.concatenate([ours, theirs]).astype(object)
        legacy = np.array([p[6:8] == "19" and rng.random() < 0.33 for p in pid])
        pid[legacy] = [to_legacy(p) for p in pid[legacy]]
        frame = pd.DataFrame({"person_id": pd.Series(pid, dtype="string")})
        for ind in fields:
            col = _value(rng, ind, len(pid))
            col[rng.random(len(pid)) < 0.1] = pd.NA
            frame[ind.source_field] = col
        dep_tables[dep] = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    del people
    return home_tables, dep_tables
