"""Realised calibration figures of a generated province (written into the manifest)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulations.province.labels import Labels
from simulations.province.people import ROLE_ADULT, ROLE_GUARDIAN, ROLE_STUDENT, STAGES, People
from simulations.province.truth import Truth
from simulations.scenario import REGIONS, Scenario

__all__ = ["calibration_report"]


def _r(x: float) -> float:
    return round(float(x), 4)


def _share(mask: npt.NDArray[np.bool_], within: npt.NDArray[np.bool_] | None = None) -> float:
    sel = mask if within is None else mask[within]
    return _r(sel.mean()) if sel.size else float("nan")


def _by_stage_region(
    value: npt.NDArray[np.bool_], stage: npt.NDArray[np.str_], region: npt.NDArray[np.int64]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in STAGES:
        row = {}
        for r, name in enumerate(REGIONS):
            sel = (stage == s) & (region == r)
            if sel.any():
                row[name] = _share(value, sel)
        if (stage == s).any():
            row["all"] = _share(value, stage == s)
        out[s] = row
    return out


def _people_figures(scn: Scenario, people: People) -> dict[str, Any]:
    hh, ps = people.households, people.persons
    weight = (hh["n_students"] + hh["n_guardians"]).to_numpy().astype(np.float64)
    role = ps["role"].to_numpy()
    rates: dict[str, Any] = {}
    for col in ("dibao", "tekun", "edge", "poverty_monitoring"):
        flag = hh[col].to_numpy()
        by: dict[str, float] = {}
        for r, name in enumerate(REGIONS):
            for rural, tag in ((False, "urban"), (True, "rural")):
                sel = (hh["region"].to_numpy() == r) & (hh["rural"].to_numpy() == rural)
                if weight[sel].sum() > 0:
                    by[f"{name}_{tag}"] = _r(weight[sel & flag].sum() / weight[sel].sum())
        rates[col] = {"all_people": _r(weight[flag].sum() / weight.sum()), "by_cell": by}
    low = (hh["dibao"] | hh["tekun"] | hh["edge"] | hh["poverty_monitoring"]).to_numpy()
    rates["low_income_any"] = _r(weight[low].sum() / weight.sum())
    return {
        "counts": {
            "households": len(hh),
            "people": len(ps),
            "students": int((role == ROLE_STUDENT).sum()),
            "guardians": int((role == ROLE_GUARDIAN).sum()),
            "unrelated_adults": int((role == ROLE_ADULT).sum()),
        },
        "special_groups_share_of_people": rates,
    }


def _student_figures(st: pd.DataFrame, joined: pd.DataFrame) -> dict[str, Any]:
    stage = st["stage"].to_numpy().astype(str)
    rural = st["rural"].to_numpy()
    fs = joined["family_structure"].fillna("").astype(object).to_numpy()
    spend = st["campus_card_spending"].to_numpy()
    psych = st["psych_risk_level"].to_numpy()
    return {
        "student_disability": _share(joined["student_disability_grade"].notna().to_numpy()),
        "single_parent": _share(np.isin(fs, ["divorced", "bereaved"])),
        "orphan": _share(fs == "orphan"),
        "left_behind_rural_k12": _share(
            st["left_behind_child"].to_numpy(), (stage == "k12") & rural
        ),
        "university_psych_level_2_plus": _share(psych >= 2, stage == "university"),
        "campus_spending_p10_p50_p90": [_r(v) for v in np.percentile(spend, [10, 50, 90])],
        "rural_share": _share(rural),
    }


def _truth_figures(
    st: pd.DataFrame, joined: pd.DataFrame, truth: Truth, labels: Labels
) -> dict[str, Any]:
    stage = st["stage"].to_numpy().astype(str)
    region = st["region"].to_numpy()
    rural = st["rural"].to_numpy()
    hard = truth.level >= 1
    uni = hard & (stage == "university")
    flags = np.stack(list(truth.flags.values()), axis=1)
    aided = labels.level >= 1
    relief = joined["temporary_relief"].fillna(0).to_numpy(dtype=float) > 0
    return {
        "true_hardship_share": _by_stage_region(hard, stage, region),
        "true_hardship_share_rural_urban": {
            "rural": _share(hard, rural), "urban": _share(hard, ~rural)
        },
        "true_level_distribution": {
            str(k): _r((truth.level == k).mean()) for k in range(int(truth.level.max()) + 1)
        },
        "direct_recognition_share": _share(truth.direct),
        "university_hardship_dimension_mix": {
            **{k: _share(v, uni) for k, v in truth.flags.items()},
            "compound_2_plus": _share(flags.sum(axis=1) >= 2, uni),
            "from_central_or_west": _share(region > 0, uni),
            "rural": _share(rural, uni),
        },
        "all_hardship_dimension_mix": {
            **{k: _share(v, hard) for k, v in truth.flags.items()},
            "compound_2_plus": _share(flags.sum(axis=1) >= 2, hard),
        },
        "explainable_share": {
            "level": _r(truth.explainable_level), "binary": _r(truth.explainable_binary)
        },
        "noiseless_rubric": {
            "missed_rate": _r(truth.rubric_missed_rate),
            "wrong_aid_rate": _r(truth.rubric_wrong_aid_rate),
        },
        "rubric_thresholds": {k: _r(v) for k, v in truth.thresholds.items()},
        "self_report": {
            "hidden_rate": _share(~labels.applied, hard),
            "missed_rate": _share(~aided, hard),
            "wrong_aid_rate": _share(~hard, aided),
            "applied_share": _share(labels.applied),
            "label_level_exact_among_recognised_hardship": _share(
                labels.level == truth.level, hard & aided
            ),
            "labelled_aided_share": _by_stage_region(aided, stage, region),
            # DOMAIN (plan): education aid and temporary relief overlap for 15 % of recipients
            "aided_with_temporary_relief": _share(relief, aided),
        },
    }


def calibration_report(
    scn: Scenario,
    *,
    people: People,
    students: pd.DataFrame,
    joined: pd.DataFrame,
    truth: Truth,
    labels: Labels,
    departments: dict[str, pd.DataFrame],
    education: dict[str, pd.DataFrame],
) -> dict[str, Any]:
    """Every realised rate the manifest reports, computed from the generated data."""
    tables: dict[str, Any] = {}
    for name, table in {**education, **departments}.items():
        key = "student_id" if name in education else "person_id"
        legacy = int((table[key].str.len() == 15).sum())  # generated IDs are valid
        tables[name] = {"rows": len(table), "legacy_ids": legacy}
    return {
        **_people_figures(scn, people),
        "students": _student_figures(students, joined),
        **_truth_figures(students, joined, truth, labels),
        "tables": tables,
    }
