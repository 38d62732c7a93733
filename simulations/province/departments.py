"""The twelve departmental (evidence-side) tables: one row per person the department covers.

Each department holds records only for the people its domain covers, keyed by the person's
OWN ID (usually a guardian's; students only for civil affairs' family structure and the
disability federation), including unrelated adults, so that intersections with any school's
students are partial as in reality. Columns are ``person_id`` plus the source fields of the
indicators the department owns, typed by the schema (nullable where a field does not apply
to that person). A share of rows (``Scenario.legacy_id_share``) is written with the legacy
15-digit form of the ID, possible only for people born 1900-1999.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulations.province.people import ROLE_STUDENT, STRUCTURES, People
from simulations.province.schema_view import SchemaView
from simulations.scenario import Scenario

__all__ = ["PANDAS_TYPES", "build_departments", "to_legacy", "typed_column"]

BoolArray = npt.NDArray[np.bool_]
#: nullable pandas dtype of each schema type
PANDAS_TYPES = {
    "float": "Float64", "int": "Int64", "ordinal": "Int64", "bool": "boolean",
    "category": "string",
}


def typed_column(values: object, kind: str) -> pd.api.extensions.ExtensionArray:
    """A nullable pandas array for a schema type (float, int, ordinal, bool, category)."""
    dtype = PANDAS_TYPES[kind]
    if kind == "bool":
        return pd.array(values, dtype="Float64").astype("boolean")
    if kind == "category":
        return pd.array(values, dtype="string")
    return pd.array(values, dtype=dtype)


def _frame(
    people: People, rows: BoolArray, fields: dict[str, tuple[str, npt.NDArray[np.float64]]]
) -> pd.DataFrame:
    idx = np.flatnonzero(rows)
    data: dict[str, object] = {"person_id": people.ids[idx]}
    for name, (kind, values) in fields.items():
        data[name] = typed_column(values[idx], kind)
    return pd.DataFrame(data)


def _h(people: People, column: str) -> npt.NDArray[np.float64]:
    """A household column broadcast to persons, as float (NaN allowed)."""
    home = people.persons["household"].to_numpy()
    out: npt.NDArray[np.float64] = people.households[column].to_numpy()[home].astype(np.float64)
    return out


def _civil_affairs(people: People) -> pd.DataFrame:
    ps = people.persons
    adult = ps["role"].to_numpy() != ROLE_STUDENT
    student = ~adult
    flags = {k: _h(people, k) for k in ("dibao", "tekun", "edge", "relief", "checked")}
    covered = adult & (
        (flags["dibao"] + flags["tekun"] + flags["edge"] + flags["relief"] + flags["checked"]) > 0
    )
    structure = people.households["structure"].to_numpy()[ps["household"].to_numpy()]
    kin = student & (structure > 0)
    rows = covered | kin
    nan = np.full(len(ps), np.nan)
    fs = np.array(STRUCTURES, dtype=object)[structure]
    fs = np.where(kin, fs, None)
    hipc = np.where(covered & (flags["checked"] > 0), _h(people, "hipc"), nan)
    out = _frame(people, rows, {
        "household_income_per_capita": ("float", hipc),
        "dibao": ("bool", np.where(covered, flags["dibao"], nan)),
        "tekun": ("bool", np.where(covered, flags["tekun"], nan)),
        "low_income_edge": ("bool", np.where(covered, flags["edge"], nan)),
        "temporary_relief": ("float", np.where(covered, ps["temporary_relief"], nan)),
    })
    out.insert(2, "family_structure", typed_column(fs[rows], "category"))
    return out


def _adult(people: People) -> BoolArray:
    out: BoolArray = people.persons["role"].to_numpy() != ROLE_STUDENT
    return out


def _agriculture(people: People) -> pd.DataFrame:
    pm, former = _h(people, "poverty_monitoring"), _h(people, "former_poverty")
    rows = _adult(people) & ((pm + former) > 0)
    return _frame(people, rows, {"poverty_monitoring": ("bool", pm)})


def _disability(people: People) -> pd.DataFrame:
    grade = people.persons["disability_grade"].to_numpy().astype(np.float64)
    return _frame(people, grade > 0, {"disability_grade": ("ordinal", grade)})


def _health(people: People) -> pd.DataFrame:
    ps = people.persons
    return _frame(people, ps["health_record"].to_numpy(), {
        "medical_out_of_pocket": ("float", ps["medical_out_of_pocket"].to_numpy()),
        "major_illness": ("bool", ps["major_illness"].to_numpy().astype(np.float64)),
    })


def _human_resources(people: People) -> pd.DataFrame:
    ps = people.persons
    rows = ps["formal"].to_numpy() | ps["unemployed"].to_numpy()
    return _frame(people, rows, {
        "social_insurance_base": ("float", ps["insurance_base"].to_numpy()),
        "unemployed": ("bool", ps["unemployed"].to_numpy().astype(np.float64)),
    })


def _tax(people: People) -> pd.DataFrame:
    taxable = people.persons["taxable"].to_numpy()
    return _frame(people, taxable > 60_000, {"taxable_income": ("float", taxable)})


def _housing_fund(people: People) -> pd.DataFrame:
    fund = people.persons["housing_fund"].to_numpy()
    return _frame(people, fund > 0, {"housing_fund_deposit": ("float", fund)})


def _natural_resources(people: People) -> pd.DataFrame:
    props = people.persons["properties"].to_numpy().astype(np.float64)
    return _frame(people, props > 0, {"num_properties": ("int", props)})


def _traffic_police(people: People) -> pd.DataFrame:
    veh = people.persons["vehicles"].to_numpy().astype(np.float64)
    return _frame(people, veh > 0, {"num_vehicles": ("int", veh)})


def _market_regulation(people: People) -> pd.DataFrame:
    ps = people.persons
    owner = ps["business"].to_numpy()
    rows = owner | ps["deregistered"].to_numpy()
    return _frame(people, rows, {"business_owner": ("bool", owner.astype(np.float64))})


def _veterans(people: People) -> pd.DataFrame:
    martyr, care = _h(people, "martyr"), _h(people, "special_care")
    rows = _adult(people) & ((martyr + care) > 0)
    return _frame(people, rows, {"martyr_family": ("bool", martyr)})


def _emergency(people: People) -> pd.DataFrame:
    loss = people.persons["disaster_loss"].to_numpy()
    return _frame(people, loss > 0, {"disaster_loss": ("float", loss)})


_BUILDERS: dict[str, Callable[[People], pd.DataFrame]] = {
    "civil_affairs": _civil_affairs,
    "agriculture": _agriculture,
    "disability_federation": _disability,
    "health": _health,
    "human_resources": _human_resources,
    "tax": _tax,
    "housing_fund": _housing_fund,
    "natural_resources": _natural_resources,
    "traffic_police": _traffic_police,
    "market_regulation": _market_regulation,
    "veterans_affairs": _veterans,
    "emergency_management": _emergency,
}


def to_legacy(ids: npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
    """The legacy 15-digit form of 18-digit IDs born 1900-1999 (drop century and check)."""
    codes = np.ascontiguousarray(ids, dtype="U18").view(np.uint32).reshape(len(ids), 18)
    short = np.concatenate([codes[:, :6], codes[:, 8:17]], axis=1)
    out: npt.NDArray[np.str_] = np.ascontiguousarray(short).view("U15").reshape(len(ids))
    return out


def _apply_legacy(
    scn: Scenario, rng: np.random.Generator, table: pd.DataFrame
) -> pd.DataFrame:
    ids = table["person_id"].to_numpy().astype("U18")
    eligible = np.char.startswith(ids, "19", start=6)
    n_eligible = int(eligible.sum())
    if n_eligible == 0 or scn.legacy_id_share == 0:
        return table
    p = min(1.0, scn.legacy_id_share * len(ids) / n_eligible)
    pick = eligible & (rng.random(len(ids)) < p)
    out_ids = ids.astype(object)
    out_ids[pick] = to_legacy(ids[pick])
    table = table.copy()
    table["person_id"] = pd.array(out_ids, dtype="string")
    return table


def build_departments(
    scn: Scenario, rng: np.random.Generator, people: People, schema: SchemaView
) -> dict[str, pd.DataFrame]:
    """Every evidence-side department's table (rows shuffled, some legacy IDs)."""
    out: dict[str, pd.DataFrame] = {}
    for dept in schema.evidence_departments:
        builder = _BUILDERS.get(dept)
        if builder is None:
            raise KeyError(f"the generator has no model for department {dept!r}")
        table = builder(people)
        expected = ["person_id", *schema.source_fields(dept)]
        if sorted(table.columns) != sorted(expected):
            raise KeyError(f"department {dept!r}: generator columns do not match the schema")
        table = table[expected]
        table = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
        out[dept] = _apply_legacy(scn, rng, table)
    return out
