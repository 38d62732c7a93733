"""Latent circumstances of households and people, from which every agency's records derive.

Each household has a latent poverty score ``z`` (normal, mean by region plus a rural shift,
SD 1). Special-group memberships are taken as the top shares of a noisy ranking of ``z``,
weighted by household size, so that the share of PEOPLE covered equals the scenario's
rate exactly (ARCHITECTURE.md: dibao 2.8 %, tekun 0.33 %, edge 0.4 %, poverty monitoring 0.2 %);
the rural west gets more because its ``z`` is higher. Everything else (employment, wages,
property, vehicles, illness, disability, disasters, relief, income checks) is drawn per
household or person from ``z`` with noise. Amounts are whole CNY, so sums are exact.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulations.province.people import KIND_ADULT, ROLE_STUDENT, People
from simulations.scenario import Scenario

__all__ = ["add_latent"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_GRADE_PROBS = np.array([0.12, 0.20, 0.30, 0.38])  # disability grade 1 (most severe) .. 4


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return out


def _top_share(
    score: FloatArray, weight: FloatArray, share: float, eligible: BoolArray
) -> BoolArray:
    """Highest-scoring eligible elements whose weight adds up to ``share`` of all weight."""
    target = share * float(weight.sum())
    order = np.argsort(-np.where(eligible, score, -np.inf), kind="stable")
    cum = np.cumsum(np.where(eligible, weight, 0.0)[order])
    take = order[: int(np.searchsorted(cum, target, side="right"))]
    out = np.zeros(len(score), dtype=bool)
    out[take] = True
    return out & eligible


def _household_latent(scn: Scenario, rng: np.random.Generator, hh: pd.DataFrame) -> None:
    n = len(hh)
    region = hh["region"].to_numpy()
    rural = hh["rural"].to_numpy()
    structure = hh["structure"].to_numpy()
    z = np.array(scn.poverty_mean)[region] + scn.rural_poverty_shift * rural + rng.normal(0, 1, n)
    z += 0.4 * (structure == 2) + 0.6 * (structure == 3) + 0.2 * (structure == 1)
    weight = (hh["n_students"] + hh["n_guardians"]).to_numpy().astype(np.float64)
    everyone = np.ones(n, dtype=bool)
    frail = (structure >= 2).astype(np.float64)
    tekun = _top_share(
        z + rng.normal(0, 0.6, n) + 1.5 * frail + 1.0 * (structure == 3),
        weight, scn.tekun_rate, everyone,
    )
    dibao_score = z + rng.normal(0, 0.5, n)
    dibao = _top_share(dibao_score, weight, scn.dibao_rate, ~tekun)
    edge = _top_share(dibao_score, weight, scn.edge_rate, ~tekun & ~dibao)
    pm_score = z + rng.normal(0, 0.7, n)
    pm = _top_share(pm_score, weight, scn.poverty_monitoring_rate, rural)
    former = _top_share(pm_score, weight, scn.former_poverty_rate, rural & ~pm)
    hh["z"] = z
    hh["tekun"], hh["dibao"], hh["edge"] = tekun, dibao, edge
    hh["poverty_monitoring"], hh["former_poverty"] = pm, former
    martyr = rng.random(n) < scn.martyr_rate
    hh["martyr"] = martyr
    hh["special_care"] = ~martyr & (rng.random(n) < scn.special_care_rate)
    urban = ~rural
    hh["n_properties"] = np.minimum(
        rng.poisson(np.exp(-0.1 - 0.6 * z) * np.where(urban, 1.0, 0.3)), 6
    ) * ~(dibao | tekun)
    hh["n_vehicles"] = np.minimum(rng.poisson(np.exp(-0.9 - 0.6 * z + 0.2 * urban)), 4) * ~(
        dibao | tekun
    )
    p_disaster = 0.02 * np.array([0.7, 1.0, 1.6])[region] * np.where(rural, 1.3, 0.8)
    hh["disaster"] = rng.random(n) < p_disaster


def _person_latent(scn: Scenario, rng: np.random.Generator, people: People) -> None:
    hh, ps = people.households, people.persons
    home = ps["household"].to_numpy()
    n = len(ps)
    z = hh["z"].to_numpy()[home]
    urban = ~ps["rural"].to_numpy()
    age = ps["age"].to_numpy()
    adult = ps["role"].to_numpy() != ROLE_STUDENT
    working = adult & (age < 60)
    # disability: students and adults, more likely in poorer households
    tilt = np.exp(0.3 * z)
    p_dis = np.where(adult, scn.adult_disability_rate, scn.student_disability_rate)
    disabled = rng.random(n) < p_dis * tilt / tilt.mean()
    grade = rng.choice(4, size=n, p=_GRADE_PROBS) + 1
    ps["disability_grade"] = np.where(disabled, grade, 0)
    able = working & ~(disabled & (grade <= 2))
    formal = able & (rng.random(n) < _sigmoid(-1.5 - 0.9 * z + 1.6 * urban))
    unemployed = able & ~formal & (rng.random(n) < _sigmoid(-2.6 + 0.5 * z + 1.0 * urban))
    wage = np.round(np.exp(11.1 - 0.35 * z + 0.15 * urban + rng.normal(0, 0.4, n)))
    business = able & (rng.random(n) < _sigmoid(-2.4 - 0.5 * z + 0.3 * urban))
    biz_income = np.round(np.exp(11.3 - 0.4 * z + rng.normal(0, 0.7, n)))
    ps["formal"], ps["unemployed"], ps["business"] = formal, unemployed, business
    ps["deregistered"] = adult & ~business & (rng.random(n) < 0.03)
    ps["insurance_base"] = np.where(formal, np.round(np.clip(wage / 12, 4000, 35000)), 0.0)
    ps["taxable"] = np.where(formal, wage, 0.0) + np.where(business, biz_income, 0.0)
    fund = formal & (rng.random(n) < 0.5 + 0.3 * urban)
    ps["housing_fund"] = np.where(fund, np.round(0.24 * ps["insurance_base"].to_numpy()), 0.0)
    ill = adult & (rng.random(n) < _sigmoid(-3.8 + 0.3 * z + 0.04 * (age - 45)))
    other_medical = adult & ~ill & (rng.random(n) < 0.12)
    moop = np.where(ill, np.exp(rng.normal(10.0, 0.8, n)), np.exp(rng.normal(8.0, 0.7, n)))
    ps["major_illness"], ps["health_record"] = ill, ill | other_medical
    ps["medical_out_of_pocket"] = np.where(ill | other_medical, np.round(moop), 0.0)


def _assets_and_events(scn: Scenario, rng: np.random.Generator, people: People) -> None:
    hh, ps = people.households, people.persons
    home = ps["household"].to_numpy()
    n = len(ps)
    slot = ps["slot"].to_numpy()
    adult = ps["role"].to_numpy() != ROLE_STUDENT
    two = hh["n_guardians"].to_numpy()[home] == 2
    first = adult & (slot == 0)
    second = adult & (slot == 1)
    # properties and vehicles split between the (up to two) adults of a household
    n_prop = hh["n_properties"].to_numpy()
    to_first = rng.binomial(n_prop, np.where(hh["n_guardians"].to_numpy() == 2, 0.6, 1.0))
    ps["properties"] = np.where(
        first, to_first[home], np.where(second, (n_prop - to_first)[home], 0)
    )
    n_veh = hh["n_vehicles"].to_numpy()
    veh_first = rng.binomial(n_veh, np.where(hh["n_guardians"].to_numpy() == 2, 0.7, 1.0))
    ps["vehicles"] = np.where(
        first, veh_first[home], np.where(second, (n_veh - veh_first)[home], 0)
    )
    disaster = hh["disaster"].to_numpy()[home]
    loss = np.round(np.exp(rng.normal(9.3, 1.0, n)))
    loss_second = second & two & (rng.random(n) < 0.3)
    ps["disaster_loss"] = np.where(disaster & (first | loss_second), loss, 0.0)
    # household-level illness drives relief and income checks
    ill_any = np.zeros(len(hh), dtype=bool)
    np.logical_or.at(ill_any, home, ps["major_illness"].to_numpy())
    poor = (hh["dibao"] | hh["tekun"]).to_numpy()
    edge = hh["edge"].to_numpy()
    p_relief = (
        0.015 + 0.5 * hh["disaster"].to_numpy() + 0.3 * ill_any + 0.4 * poor + 0.2 * edge
        + 0.03 * (hh["z"].to_numpy() > 1.0)
    )
    relief = rng.random(len(hh)) < p_relief
    amount = np.round(np.exp(rng.normal(8.0, 0.6, len(hh))))
    ps["temporary_relief"] = np.where(first & relief[home], amount[home], 0.0)
    checked = poor | edge | relief | (rng.random(len(hh)) < 0.03)
    line = np.where(hh["rural"].to_numpy(), scn.dibao_line[1], scn.dibao_line[0])
    z = hh["z"].to_numpy()
    hipc = np.where(
        poor,
        line * rng.uniform(0.35, 0.95, len(hh)),
        np.where(
            edge,
            line * rng.uniform(1.0, 1.5, len(hh)),
            np.exp(np.log(line * 3.5) - 0.5 * z + rng.normal(0, 0.35, len(hh))),
        ),
    )
    hh["relief"], hh["checked"], hh["hipc"] = relief, checked, np.round(hipc)


def add_latent(scn: Scenario, rng: np.random.Generator, people: People) -> None:
    """Add the latent columns to ``people``'s frames in place (see module docstring)."""
    _household_latent(scn, rng, people.households)
    _person_latent(scn, rng, people)
    _assets_and_events(scn, rng, people)
    is_adult_hh = people.households["kind"].to_numpy() == KIND_ADULT
    people.households["student_household"] = ~is_adult_hh
