"""Education-owned indicators of every student and the education-side tables' key columns.

Household size, labour force, siblings in school, left-behind status and rural hukou come
from the household; campus-card spending falls with latent poverty (most students 600-1500
CNY a month, poor students 250-500; a few high spenders); grade percentiles are ranks within
agency and stage, slightly lower for poorer and at-risk students; psychological screening
levels are higher at university (about 21 % at level >= 2, DOMAIN's college depression risk)
and for left-behind and single-parent children.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulations.province.people import KIND_COUNTY, ROLE_STUDENT, STAGES, People
from simulations.scenario import Scenario

__all__ = ["student_frame"]

FloatArray = npt.NDArray[np.float64]
# cut points of the latent psychological score for levels 1, 2, 3 by stage (k12, senior, univ)
_PSYCH_CUTS = np.array([[0.95, 1.3, 1.85], [0.9, 1.2, 1.8], [0.55, 0.85, 1.5]])
_SPEND_STAGE = np.array([0.85, 0.92, 1.0])


def _guardian_ids(people: People) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    ps = people.persons
    n_h = len(people.households)
    g1 = np.full(n_h, None, dtype=object)
    g2 = np.full(n_h, None, dtype=object)
    adult = ps["role"].to_numpy() != ROLE_STUDENT
    home = ps["household"].to_numpy()
    slot = ps["slot"].to_numpy()
    ids = people.ids.astype(object)
    g1[home[adult & (slot == 0)]] = ids[adult & (slot == 0)]
    g2[home[adult & (slot == 1)]] = ids[adult & (slot == 1)]
    return g1, g2


def _labour_force(people: People) -> npt.NDArray[np.int64]:
    ps = people.persons
    adult = ps["role"].to_numpy() != ROLE_STUDENT
    able = adult & (ps["age"].to_numpy() < 60)
    grade = ps["disability_grade"].to_numpy()
    able &= ~((grade >= 1) & (grade <= 2)) & ~ps["major_illness"].to_numpy()
    out = np.zeros(len(people.households), dtype=np.int64)
    np.add.at(out, ps["household"].to_numpy(), able.astype(np.int64))
    return out


def student_frame(scn: Scenario, rng: np.random.Generator, people: People) -> pd.DataFrame:
    """One row per student: IDs, agency, stage, group columns and education-owned indicators.

    Columns: student_id, guardian1_id, guardian2_id, agency (int), stage (name), sex, region
    (index), rural, household, and the education-owned indicators of the default schema.
    """
    hh, ps = people.households, people.persons
    is_student = ps["role"].to_numpy() == ROLE_STUDENT
    st = ps[is_student]
    n = len(st)
    home = st["household"].to_numpy()
    g1, g2 = _guardian_ids(people)
    z = hh["z"].to_numpy()[home]
    rural = st["rural"].to_numpy()
    region = st["region"].to_numpy()
    stage = st["stage"].to_numpy().astype(np.int64)
    structure = hh["structure"].to_numpy()[home]
    hh_rural = hh["rural"].to_numpy().astype(np.float64)
    extra_members = rng.poisson(0.4 + 0.5 * hh_rural)[home]
    n_students = hh["n_students"].to_numpy()[home]
    n_guard = hh["n_guardians"].to_numpy()[home]
    size = np.clip(n_guard + n_students + extra_members, 1, 20)
    labour = np.minimum(_labour_force(people)[home] + (rng.random(n) < 0.15), size)
    siblings = np.minimum(n_students - 1 + rng.poisson(0.15, n), 10)
    lb_p = scn.left_behind_rural_k12 * np.array([0.7, 1.1, 1.15])[region]
    county_k12 = (hh["kind"].to_numpy()[home] == KIND_COUNTY) & (stage == 0)
    lb_draw = rng.random(len(hh))[home]  # one draw per household: siblings share it
    left_behind = county_k12 & rural & (lb_draw < lb_p)
    spend = _SPEND_STAGE[stage] * np.exp(np.log(1100.0) - 0.35 * z + rng.normal(0, 0.25, n))
    spend = np.where(rng.random(n) < 0.02, spend * 2.6, spend)
    psych_latent = (
        rng.normal(0, 1, n) + 0.25 * z + 0.45 * left_behind + 0.25 * (structure > 0)
    )
    cuts = _PSYCH_CUTS[stage]
    psych = (psych_latent[:, None] > cuts).sum(axis=1)
    ability = rng.normal(0, 1, n) - 0.45 * z - 0.6 * psych_latent
    frame = pd.DataFrame({
        "student_id": people.ids[is_student],
        "guardian1_id": g1[home],
        "guardian2_id": g2[home],
        "agency": st["agency"].to_numpy(),
        "stage_index": stage,
        "household": home,
        "male": st["male"].to_numpy(),
        "region": region,
        "rural": rural,
        "ability": ability,
        "household_size": size.astype(np.int64),
        "labour_force_count": labour.astype(np.int64),
        "siblings_in_school": siblings.astype(np.int64),
        "left_behind_child": left_behind,
        "rural_hukou": rural,
        "campus_card_spending": np.round(np.clip(spend, 0, 50_000), 1),
        "psych_risk_level": psych.astype(np.int64),
    })
    pct = frame.groupby(["agency", "stage_index"])["ability"].rank(pct=True, method="first")
    frame["grade_percentile"] = np.round(100.0 * pct.to_numpy() - 0.05, 1).clip(0, 100)
    frame["stage"] = np.array(STAGES, dtype=object)[stage]
    return frame.drop(columns=["ability"])
