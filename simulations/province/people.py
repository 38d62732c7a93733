"""People first: households, students, guardians and unrelated adults with valid unique IDs.

Households come in three kinds: county households (their students are in k12 or senior
high at the county's education bureau), university households (their students study at one
of the universities; they come from origin counties of all three regions) and adult-only
households (people who appear in departmental records but in no student household, so that
departmental tables hold far more people than any school's students).

Every person gets a GB 11643-1999 ID from :func:`fedid.ids.make_ids`: the household's county
code (adults: 80 % the household's county, otherwise another county of the same region),
the birth date, and a sequence code in 2..995 (odd for men) drawn so that IDs are unique.
Sequence codes 996-999 are never used: the legacy 15-digit form of such a number would
upgrade to an 1800s birth date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedid.ids import make_ids
from simulations.scenario import ORIGIN_COUNTIES, REGIONS, Scenario

__all__ = [
    "KIND_ADULT",
    "KIND_COUNTY",
    "KIND_UNIVERSITY",
    "ROLE_ADULT",
    "ROLE_GUARDIAN",
    "ROLE_STUDENT",
    "STAGES",
    "STRUCTURES",
    "People",
    "agency_ids",
    "build_people",
]

KIND_COUNTY, KIND_UNIVERSITY, KIND_ADULT = 0, 1, 2
ROLE_STUDENT, ROLE_GUARDIAN, ROLE_ADULT = 0, 1, 2
STAGES: tuple[str, str, str] = ("k12", "senior_high", "university")
STRUCTURES: tuple[str, str, str, str] = ("both_parents", "divorced", "bereaved", "orphan")
_COUNTY_SIZES = np.array([0.60, 0.32, 0.08])  # students per county household: 1, 2, 3
_UNIVERSITY_SIZES = np.array([0.93, 0.07])
_SENIOR_SHARE = 0.25  # of county students (ages 15-17 versus 6-14)
_HOME_CODE_SHARE = 0.8  # adults registered at birth in the household's county

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class People:
    """Households and persons as two frames (one row each), with IDs.

    ``households``: kind, agency (index into :func:`agency_ids`, -1 for adult-only), region
    (0 east, 1 central, 2 west), rural, code, structure (index into STRUCTURES),
    n_students, n_guardians.
    ``persons``: household, role, slot (guardian slot 0/1), male, birth (datetime64[D]),
    age, code, region, rural, stage (-1 unless student), agency (-1 unless student).
    ``ids``: each person's ID, aligned with ``persons``.
    """

    households: pd.DataFrame
    persons: pd.DataFrame
    ids: npt.NDArray[np.str_]  # persons' IDs as a native numpy array (fast to index)


def agency_ids(scn: Scenario) -> tuple[str, ...]:
    """Education-side agency ids: counties first, then universities."""
    return tuple(c.agency_id for c in scn.counties) + tuple(u.agency_id for u in scn.universities)


def _split(total: int, weights: npt.NDArray[np.float64]) -> IntArray:
    """Integers proportional to ``weights`` summing to ``total`` (largest remainder)."""
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: total - int(out.sum())]] += 1
    result: IntArray = out
    return result


def _household_sizes(rng: np.random.Generator, n: int, probs: npt.NDArray[np.float64]) -> IntArray:
    """Students per household, summing exactly to ``n``."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    mean = float(np.dot(np.arange(1, len(probs) + 1), probs))
    draw = rng.choice(len(probs), size=int(n / mean * 1.1) + 20, p=probs) + 1
    cum = np.cumsum(draw)
    k = int(np.searchsorted(cum, n))
    sizes = draw[: k + 1].astype(np.int64)
    sizes[-1] -= int(cum[k]) - n
    return sizes


def _student_households(scn: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    weights = np.array([c.weight for c in scn.counties] + [u.weight for u in scn.universities])
    per_agency = _split(scn.students, weights.astype(np.float64))
    parts: list[pd.DataFrame] = []
    for a, county in enumerate(scn.counties):
        sizes = _household_sizes(rng, int(per_agency[a]), _COUNTY_SIZES)
        m = len(sizes)
        parts.append(pd.DataFrame({
            "kind": np.full(m, KIND_COUNTY, dtype=np.int8),
            "agency": np.full(m, a, dtype=np.int16),
            "region": np.full(m, REGIONS.index(county.region), dtype=np.int8),
            "rural": rng.random(m) < county.rural_share,
            "code": np.full(m, county.address_code, dtype=np.int64),
            "n_students": sizes,
        }))
    for u, uni in enumerate(scn.universities):
        a = len(scn.counties) + u
        sizes = _household_sizes(rng, int(per_agency[a]), _UNIVERSITY_SIZES)
        m = len(sizes)
        region = rng.choice(3, size=m, p=np.array(uni.intake)).astype(np.int8)
        parts.append(pd.DataFrame({
            "kind": np.full(m, KIND_UNIVERSITY, dtype=np.int8),
            "agency": np.full(m, a, dtype=np.int16),
            "region": region,
            "rural": rng.random(m) < np.array(uni.rural_share)[region],
            "code": _origin_codes(rng, region),
            "n_students": sizes,
        }))
    return pd.concat(parts, ignore_index=True)


def _origin_codes(rng: np.random.Generator, region: npt.NDArray[np.int8]) -> IntArray:
    """A random origin county code of each element's region."""
    out = np.empty(len(region), dtype=np.int64)
    for r, name in enumerate(REGIONS):
        idx = np.flatnonzero(region == r)
        codes = np.array(ORIGIN_COUNTIES[name], dtype=np.int64)
        out[idx] = codes[rng.integers(0, len(codes), size=idx.size)]
    return out


def _add_adult_households(
    scn: Scenario, rng: np.random.Generator, hh: pd.DataFrame
) -> pd.DataFrame:
    m = round(scn.unrelated_household_ratio * len(hh))
    src = rng.integers(0, len(hh), size=m)  # live where student households live
    adults = pd.DataFrame({
        "kind": np.full(m, KIND_ADULT, dtype=np.int8),
        "agency": np.full(m, -1, dtype=np.int16),
        "region": hh["region"].to_numpy()[src],
        "rural": hh["rural"].to_numpy()[src],
        "code": hh["code"].to_numpy()[src],
        "n_students": np.zeros(m, dtype=np.int64),
    })
    out = pd.concat([hh, adults], ignore_index=True)
    n = len(out)
    probs = np.array([
        1.0 - scn.divorced_rate - scn.bereaved_rate - scn.orphan_rate,
        scn.divorced_rate, scn.bereaved_rate, scn.orphan_rate,
    ])
    structure = rng.choice(4, size=n, p=probs).astype(np.int8)
    is_adult = out["kind"].to_numpy() == KIND_ADULT
    structure[is_adult] = 0
    n_guard = np.where(structure == 0, 2, 1)
    n_guard = np.where(structure == 3, 1 + (rng.random(n) < 0.5), n_guard)
    n_guard = np.where(is_adult, 1 + (rng.random(n) < 0.6), n_guard)
    out["structure"] = structure
    out["n_guardians"] = n_guard.astype(np.int64)
    return out


def _birth_dates(
    scn: Scenario, rng: np.random.Generator, age: npt.NDArray[np.float64]
) -> npt.NDArray[np.datetime64]:
    """Birth dates of people whose (fractional) age at the reference date is ``age``."""
    ref = np.datetime64(scn.reference_date.isoformat(), "D")
    days = np.floor(age * 365.25).astype(np.int64)
    return ref - days.astype("timedelta64[D]")


def _students(scn: Scenario, rng: np.random.Generator, hh: pd.DataFrame) -> pd.DataFrame:
    counts = hh["n_students"].to_numpy()
    home = np.repeat(np.arange(len(hh)), counts)
    n = len(home)
    kind = hh["kind"].to_numpy()[home]
    stage = np.where(kind == KIND_UNIVERSITY, 2, (rng.random(n) < _SENIOR_SHARE).astype(np.int64))
    low = np.array([6.0, 15.0, 18.0])[stage]
    span = np.array([9.0, 3.0, 4.0])[stage]
    age = low + span * rng.random(n)
    return pd.DataFrame({
        "household": home,
        "role": np.full(n, ROLE_STUDENT, dtype=np.int8),
        "slot": np.zeros(n, dtype=np.int8),
        "male": rng.random(n) < 0.52,
        "age": age,
        "stage": stage.astype(np.int8),
        "agency": hh["agency"].to_numpy()[home],
    })


def _guardians(
    rng: np.random.Generator, hh: pd.DataFrame, students: pd.DataFrame
) -> pd.DataFrame:
    n_h = len(hh)
    oldest = np.full(n_h, np.nan)
    np.fmax.at(oldest, students["household"].to_numpy(), students["age"].to_numpy())
    structure = hh["structure"].to_numpy()
    is_adult = hh["kind"].to_numpy() == KIND_ADULT
    base = np.where(
        structure == 3, oldest + rng.uniform(45, 62, n_h), oldest + rng.uniform(21, 38, n_h)
    )
    base = np.where(is_adult, rng.uniform(22, 72, n_h), base)
    n_g = hh["n_guardians"].to_numpy()
    home = np.repeat(np.arange(n_h), n_g)
    slot = np.arange(len(home)) - np.repeat(np.cumsum(n_g) - n_g, n_g)
    n = len(home)
    spouse_gap = np.clip(rng.normal(0.0, 3.0, n), -8, 8)
    age = base[home] + np.where(slot == 1, spouse_gap, 0.0)
    floor = np.where(np.isnan(oldest[home]), 18.5, oldest[home] + 18.0)
    age = np.maximum(age, floor)
    first_male = rng.random(n_h) < 0.5
    single_male = rng.random(n_h) < 0.3
    male = np.where(
        n_g[home] == 2,
        np.where(slot == 0, first_male[home], ~first_male[home]),
        single_male[home],
    )
    role = np.where(is_adult[home], ROLE_ADULT, ROLE_GUARDIAN).astype(np.int8)
    return pd.DataFrame({
        "household": home,
        "role": role,
        "slot": slot.astype(np.int8),
        "male": male,
        "age": age,
        "stage": np.full(n, -1, dtype=np.int8),
        "agency": np.full(n, -1, dtype=np.int16),
    })


def _unique_sequences(
    rng: np.random.Generator, code: IntArray, ymd: IntArray, male: npt.NDArray[np.bool_]
) -> IntArray:
    """Sequence codes in 2..995 (odd = male) such that (code, date, sequence) is unique."""
    n = len(code)
    seq = 2 * rng.integers(1, 498, size=n) + male
    base = code * 10**11 + ymd * 10**3
    todo = np.arange(n)
    for _ in range(200):
        key = base + seq
        _, first = np.unique(key, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        todo = np.flatnonzero(dup)
        if todo.size == 0:
            return seq
        seq[todo] = 2 * rng.integers(1, 498, size=todo.size) + male[todo]
    raise RuntimeError(f"could not draw unique ID sequences; {todo.size} collisions remain")


def build_people(scn: Scenario, rng: np.random.Generator) -> People:
    """Households and persons of a scenario, with unique valid IDs (see module docstring)."""
    hh = _add_adult_households(scn, rng, _student_households(scn, rng))
    students = _students(scn, rng, hh)
    persons = pd.concat([students, _guardians(rng, hh, students)], ignore_index=True)
    home = persons["household"].to_numpy()
    region = hh["region"].to_numpy()[home]
    code = hh["code"].to_numpy()[home].copy()
    adult = persons["role"].to_numpy() != ROLE_STUDENT
    moved = adult & (rng.random(len(persons)) > _HOME_CODE_SHARE)
    code[moved] = _origin_codes(rng, region[moved])
    birth = _birth_dates(scn, rng, persons["age"].to_numpy())
    month_start = birth.astype("datetime64[M]")
    ymd = (
        (birth.astype("datetime64[Y]").astype(np.int64) + 1970) * 10_000
        + (month_start.astype(np.int64) % 12 + 1) * 100
        + (birth - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    )
    seq = _unique_sequences(rng, code, ymd, persons["male"].to_numpy())
    ids = np.empty(len(persons), dtype="U18")
    step = 500_000
    for start in range(0, len(persons), step):
        sl = slice(start, start + step)
        ids[sl] = make_ids(address_codes=code[sl], birth_dates=birth[sl], sequences=seq[sl])
    persons["birth"] = birth
    persons["code"] = code
    persons["region"] = region
    persons["rural"] = hh["rural"].to_numpy()[home]
    return People(households=hh, persons=persons, ids=ids)
