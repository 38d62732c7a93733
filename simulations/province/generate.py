"""Generate a whole synthetic province in memory: people, agencies' tables, ground truth.

Order: people (IDs) -> latent circumstances -> departmental tables (as written, legacy IDs
included) -> education-owned indicators -> the plaintext join of the written departmental
tables (:mod:`simulations.province.join`) -> the true level and flags from the joined
indicators -> the self-report labels from the true level only -> education tables and
ground truth. Each phase draws from its own child of ``numpy.random.SeedSequence(seed)``,
so the same seed and scenario give identical tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedid.errors import ConfigError
from simulations.province.calibration import calibration_report
from simulations.province.departments import build_departments, typed_column
from simulations.province.education import student_frame
from simulations.province.join import join_evidence
from simulations.province.labels import Labels, self_report
from simulations.province.latent import add_latent
from simulations.province.people import agency_ids, build_people
from simulations.province.schema_view import SchemaView, load_schema_view
from simulations.province.truth import Truth, assign_truth
from simulations.scenario import REGIONS, Scenario

__all__ = ["GENERATOR_VERSION", "Province", "generate_province"]

GENERATOR_VERSION = "1.0"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Province:
    """A generated province: agency tables, ground truth and realised calibration figures.

    ``education``: agency id -> education-side table; ``departments``: department name ->
    evidence-side table; ``ground_truth``: one row per student (evaluation only).
    """

    scenario: Scenario
    seed: int
    schema: SchemaView
    education: dict[str, pd.DataFrame]
    departments: dict[str, pd.DataFrame]
    ground_truth: pd.DataFrame
    calibration: dict[str, Any]


def _education_tables(
    schema: SchemaView, agencies: tuple[str, ...], st: pd.DataFrame, labels: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    owned = [i for i in schema.indicators if schema.department_sides[i.department] == "education"]
    frame = pd.DataFrame({
        "student_id": pd.array(st["student_id"].to_numpy(), dtype="string"),
        "guardian1_id": pd.array(st["guardian1_id"].to_numpy(), dtype="string"),
        "guardian2_id": pd.array(st["guardian2_id"].to_numpy(), dtype="string"),
    })
    for ind in owned:
        frame[ind.name] = typed_column(st[ind.name].to_numpy().astype(np.float64), ind.type)
    frame["stage"] = pd.array(st["stage"].to_numpy(), dtype="string")
    for col in labels.columns:
        frame[col] = labels[col].to_numpy()
    agency = st["agency"].to_numpy()
    return {
        name: frame[agency == a].reset_index(drop=True) for a, name in enumerate(agencies)
    }


def _label_frame(
    schema: SchemaView, applied: Any, level: Any, flags: dict[str, Any]
) -> pd.DataFrame:
    out = pd.DataFrame({
        "applied": pd.array(applied, dtype="boolean"),
        "label_level": pd.array(np.array(schema.levels, dtype=object)[level], dtype="string"),
    })
    for name in schema.dimension_flags:
        out[f"label_{name}"] = pd.array(flags[name], dtype="boolean")
    return out


def _ground_truth(
    schema: SchemaView,
    agencies: tuple[str, ...],
    st: pd.DataFrame,
    joined: pd.DataFrame,
    truth: Truth,
    labels: Labels,
) -> pd.DataFrame:
    levels = np.array(schema.levels, dtype=object)
    gt = pd.DataFrame({
        "student_id": pd.array(st["student_id"].to_numpy(), dtype="string"),
        "home_agency": pd.array(np.array(agencies, dtype=object)[st["agency"]], dtype="string"),
        "sex": pd.array(np.where(st["male"], "male", "female"), dtype="string"),
        "region": pd.array(np.array(REGIONS, dtype=object)[st["region"]], dtype="string"),
        "rural": pd.array(st["rural"].to_numpy(), dtype="boolean"),
        "stage": pd.array(st["stage"].to_numpy(), dtype="string"),
        "applied": pd.array(labels.applied, dtype="boolean"),
        "true_level": pd.array(levels[truth.level], dtype="string"),
    })
    for name in schema.dimension_flags:
        gt[f"true_{name}"] = pd.array(truth.flags[name], dtype="boolean")
    gt["hidden_hardship"] = pd.array((truth.level >= 1) & ~labels.applied, dtype="boolean")
    for col in joined.columns:
        gt[col] = joined[col].array
    return gt


def _check_schema(schema: SchemaView) -> None:
    """The generator models the default schema's indicators, flags and 2-3 hardship levels."""
    default = load_schema_view()
    missing = {i.name for i in default.indicators} - {i.name for i in schema.indicators}
    if missing or set(schema.dimension_flags) != set(default.dimension_flags):
        raise ConfigError(
            "the generator needs the default schema's indicators and dimension flags; "
            f"missing indicators: {sorted(missing)}, flags: {list(schema.dimension_flags)}"
        )
    if len(schema.levels) not in (3, 4):
        raise ConfigError(
            f"the generator supports 2 or 3 hardship levels plus none. Got {len(schema.levels)}"
        )


def generate_province(
    scenario: Scenario | None = None,
    *,
    seed: int = 0,
    schema_path: Path | None = None,
) -> Province:
    """Generate the province of ``scenario`` (default: :class:`Scenario()`) from ``seed``.

    ``schema_path``: a schema TOML with the default schema's indicators (default: the
    packaged schema). Deterministic: the same arguments give identical frames.
    """
    scn = Scenario() if scenario is None else scenario
    schema = load_schema_view(schema_path)
    _check_schema(schema)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    people = build_people(scn, rngs[0])
    add_latent(scn, rngs[1], people)
    departments = build_departments(scn, rngs[2], people, schema)
    st = student_frame(scn, rngs[3], people)
    order = rngs[4].permutation(len(st))  # agency tables in random row order
    st = st.iloc[order].sort_values("agency", kind="stable").reset_index(drop=True)
    joined = join_evidence(st, departments, schema)
    truth = assign_truth(
        scn, rngs[5], joined=joined, region=st["region"].to_numpy(),
        university=st["stage"].to_numpy() == "university",
    )
    if len(schema.levels) == 3:  # two hardship levels: the middle two collapse into one
        truth = replace(truth, level=np.array([0, 1, 1, 2])[truth.level])
    labels = self_report(
        scn, rngs[6], true_level=truth.level, true_flags=truth.flags,
        top_level=len(schema.levels) - 1,
    )
    agencies = agency_ids(scn)
    label_frame = _label_frame(schema, labels.applied, labels.level, labels.flags)
    education = _education_tables(schema, agencies, st, label_frame)
    gt = _ground_truth(schema, agencies, st, joined, truth, labels)
    calibration = calibration_report(
        scn, people=people, students=st, joined=joined, truth=truth, labels=labels,
        departments=departments, education=education,
    )
    _log.info("generated %d students in %d agencies", len(st), len(agencies))
    return Province(
        scenario=scn, seed=seed, schema=schema, education=education,
        departments=departments, ground_truth=gt, calibration=calibration,
    )
