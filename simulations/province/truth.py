"""The latent TRUE hardship level and dimension flags of every student.

The truth is a function of the student's joined indicators (exactly what an agency can see
after matching), plus a latent term for circumstances no agency records:

1. Direct recognition, as the rule layer does: 低保, 特困, poverty monitoring, orphan,
   martyr family or a severe (grade 1-2) student disability put the student at the top level.
2. Everyone else gets a quantified-scoring rubric (as schools use) of three sub-scores in
   points: economic ``E`` (low-income edge, former poverty household (agriculture's roll,
   no longer monitored), checked household income, medical cost, illness,
   unemployment, parent disability, family structure, dependency ratio, siblings in school,
   rural hukou, left-behind, milder student disability, disaster loss, relief; minus taxable
   income, insurance base, housing fund, properties, vehicles, business; plus low campus
   spending), academic ``A`` (low grade percentile) and psychological ``P`` (screening
   level). Each sub-score gets independent normal noise of SD ``latent_noise_sd``.
3. Levels: thresholds on ``E + A + P`` are set so the share of students in hardship equals
   the student-weighted mean of the regional targets (the regional and rural gradient comes
   from the indicators, not from the thresholds), with ``special_level_share`` and
   ``hardship_level_share`` of hardship students at the top and middle levels.
4. Flags (hardship students only): special_group for any special-group indicator (former
   poverty households, 脱贫家庭, included, as the national guidance lists them); economic
   for a special-group economic category or ``E`` above a threshold; academic and
   psychological for ``A``, ``P`` above thresholds. Thresholds are set so the mix among
   university hardship students matches the plan (58.3 / 32.7 / 24.5 %); a hardship student
   with no flag gets the flag of its largest sub-score excess, and a student with a single
   flag also gets the nearest further dimension when its sub-score is within a margin of
   that threshold; the margin is the smallest (0.5-point grid) for which the share with two
   or more flags reaches ``compound_share`` (plan: over 40 %) while each dimension's share
   stays within 2 points of its target (else the margin with the largest such share).

The noiseless rubric (same thresholds, no latent term) gives the "explainable" share
reported in the manifest: how often the truth is a function of observable indicators; and
its missed and wrong-aid rates against the truth: those of the rubric at its own cut (about
the most accurate binary call the indicators allow), one operating point, not a floor for
either rate alone (a lower cut trades wrong aid for missed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulations.scenario import Scenario

__all__ = ["Truth", "assign_truth", "noiseless_score"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_PSYCH_POINTS = np.array([0.0, 5.0, 14.0, 25.0])


@dataclass(frozen=True, slots=True)
class Truth:
    """Level index per student (0 = none), flags by name, and calibration figures."""

    level: npt.NDArray[np.int64]
    flags: dict[str, BoolArray]
    direct: BoolArray
    thresholds: dict[str, float]
    explainable_level: float
    explainable_binary: float
    #: missed and wrong-aid rates of the noiseless rubric (at its own cut) against the truth:
    #: the operating point of about the most accurate binary call the indicators allow
    rubric_missed_rate: float = 0.0
    rubric_wrong_aid_rate: float = 0.0


def _num(j: pd.DataFrame, name: str, fill: float) -> FloatArray:
    col = j[name]
    if isinstance(col.dtype, pd.BooleanDtype) or col.dtype == bool:
        col = col.astype("Float64")
    out: FloatArray = col.to_numpy(dtype=np.float64, na_value=fill)
    return out


def _scores(j: pd.DataFrame) -> tuple[FloatArray, FloatArray, FloatArray]:
    hipc = _num(j, "household_income_per_capita", np.inf)
    pdg = _num(j, "parent_disability_grade", 0)
    sdg = _num(j, "student_disability_grade", 0)
    fs = j["family_structure"].fillna("").astype(object).to_numpy()
    hs = np.maximum(_num(j, "household_size", 1), 1)
    lf = _num(j, "labour_force_count", 0)
    e = (
        25 * _num(j, "low_income_edge", 0)
        + 8 * (_num(j, "poverty_monitoring", 1) == 0)
        + 20 * np.clip((20_000 - hipc) / 15_000, 0, 1)
        + np.minimum(_num(j, "medical_out_of_pocket", 0) / 4000, 15)
        + 8 * _num(j, "major_illness_in_family", 0)
        + 8 * _num(j, "parents_unemployed", 0)
        + np.where((pdg >= 1) & (pdg <= 2), 15, np.where(pdg >= 3, 8, 0))
        + np.where(fs == "divorced", 6, np.where(fs == "bereaved", 12, 0))
        + 12 * np.clip((hs - lf) / hs, 0, 1)
        + 3 * _num(j, "siblings_in_school", 0)
        + 4 * _num(j, "rural_hukou", 0)
        + 3 * _num(j, "left_behind_child", 0)
        + np.where(sdg >= 3, 8, 0)
        + np.minimum(_num(j, "disaster_loss", 0) / 4000, 15)
        + np.minimum(_num(j, "temporary_relief", 0) / 800, 10)
        - np.minimum(_num(j, "taxable_income", 0) / 12_000, 12)
        - np.minimum(_num(j, "social_insurance_base", 0) / 1500, 8)
        - np.minimum(_num(j, "housing_fund_deposit", 0) / 400, 6)
        - 5 * np.minimum(_num(j, "num_properties", 0), 3)
        - 6 * np.minimum(_num(j, "num_vehicles", 0), 2)
        - 8 * _num(j, "business_owner", 0)
        + 12 * np.clip((1000 - _num(j, "campus_card_spending", 1000)) / 600, -1, 1)
    )
    a = 22 * np.clip((35 - _num(j, "grade_percentile", 50)) / 35, 0, 1)
    p = _PSYCH_POINTS[np.clip(_num(j, "psych_risk_level", 0), 0, 3).astype(np.int64)]
    return e, a, p


def _direct(j: pd.DataFrame) -> tuple[BoolArray, BoolArray, BoolArray]:
    """(direct recognition, economic special group, any special group) per student."""
    econ_group = (
        (_num(j, "dibao", 0) > 0) | (_num(j, "tekun", 0) > 0)
        | (_num(j, "poverty_monitoring", 0) > 0) | (_num(j, "low_income_edge", 0) > 0)
    )
    orphan = j["family_structure"].fillna("").astype(object).to_numpy() == "orphan"
    sdg = _num(j, "student_disability_grade", 0)
    martyr = _num(j, "martyr_family", 0) > 0
    edge = _num(j, "low_income_edge", 0) > 0
    direct = (econ_group & ~edge) | orphan | martyr | ((sdg >= 1) & (sdg <= 2))
    parent_disabled = _num(j, "parent_disability_grade", 0) > 0
    former_poverty = _num(j, "poverty_monitoring", 1) == 0  # on agriculture's roll, exited
    any_group = econ_group | orphan | martyr | (sdg > 0) | parent_disabled | former_poverty
    return direct, econ_group, any_group


def noiseless_score(joined: pd.DataFrame) -> FloatArray:
    """The rubric's points without the latent term (+inf for direct recognition) per student.

    The truth is this score plus latent noise, cut at fixed thresholds, so ranking students by
    it is the best ranking the observable indicators allow (for evaluation only).
    """
    e, a, p = _scores(joined)
    direct, _, _ = _direct(joined)
    out: FloatArray = np.where(direct, np.inf, e + a + p)
    return out


def _kth_largest(values: FloatArray, k: int) -> float:
    """Threshold t such that ``values >= t`` selects the ``k`` largest (inf when k <= 0)."""
    if k <= 0 or values.size == 0:
        return float("inf")
    k = min(k, values.size)
    return float(np.partition(values, values.size - k)[values.size - k])


def _levels(total: FloatArray, direct: BoolArray, t: dict[str, float]) -> npt.NDArray[np.int64]:
    lvl = (total >= t["general"]).astype(np.int64) + (total >= t["hardship"]) + (
        total >= t["special"]
    )
    out: npt.NDArray[np.int64] = np.where(direct, 3, lvl)
    return out


def _flags(
    subs: tuple[FloatArray, FloatArray, FloatArray],
    hard: BoolArray,
    econ_group: BoolArray,
    any_group: BoolArray,
    t: dict[str, float],
) -> dict[str, BoolArray]:
    e, a, p = subs
    econ = hard & (econ_group | (e >= t["economic"]))
    acad = hard & (a >= t["academic"])
    psych = hard & (p >= t["psychological"])
    group = hard & any_group
    none = hard & ~(econ | acad | psych | group)
    best = np.argmax(np.stack([e - t["economic"], a - t["academic"], p - t["psychological"]]), 0)
    econ |= none & (best == 0)
    acad |= none & (best == 1)
    psych |= none & (best == 2)
    # a single-flag student gets its nearest further dimension when within ``second`` points
    single = hard & ((econ.astype(np.int8) + acad + psych + group) == 1)
    excess = np.stack([e - t["economic"], a - t["academic"], p - t["psychological"]])
    excess[np.stack([econ, acad, psych])] = -np.inf
    near = np.argmax(excess, 0)
    add = single & (excess.max(axis=0) >= -t["second"])
    econ |= add & (near == 0)
    acad |= add & (near == 1)
    psych |= add & (near == 2)
    return {"economic": econ, "academic": acad, "psychological": psych, "special_group": group}


def _calibrate_flags(
    scn: Scenario,
    subs: tuple[FloatArray, FloatArray, FloatArray],
    ref: BoolArray,
    hard: BoolArray,
    econ_group: BoolArray,
    any_group: BoolArray,
    t: dict[str, float],
) -> dict[str, BoolArray]:
    """Set the flag thresholds in ``t`` so the mix among ``ref`` students hits the targets.

    A few fixed-point steps: the no-flag fallback adds flags, so each step lowers the number
    of students a threshold selects by the excess the previous step realised.
    """
    e, a, p = subs
    n_ref = int(ref.sum())
    forced = int((ref & econ_group).sum())
    free = ref & ~econ_group
    targets = {
        "economic": scn.economic_flag_share,
        "academic": scn.academic_flag_share,
        "psychological": scn.psychological_flag_share,
    }
    values = {"economic": e[free], "academic": a[ref], "psychological": p[ref]}

    def fit(second: float) -> tuple[dict[str, BoolArray], float]:
        t["second"] = second
        counts = {
            k: round(v * n_ref) - (forced if k == "economic" else 0) for k, v in targets.items()
        }
        flags: dict[str, BoolArray] = {}
        for _ in range(6):
            for name in targets:
                t[name] = _kth_largest(values[name], counts[name])
            flags = _flags(subs, hard, econ_group, any_group, t)
            for name, share in targets.items():
                excess = int(flags[name][ref].sum()) - round(share * n_ref)
                counts[name] = max(counts[name] - excess, 0)
        stacked = np.stack([f[ref] for f in flags.values()], axis=1)
        compound = float((stacked.sum(axis=1) >= 2).mean()) if n_ref else 1.0
        return flags, compound

    def marginals_ok(flags: dict[str, BoolArray]) -> bool:
        return all(
            abs(float(flags[k][ref].mean()) - v) <= 0.02 for k, v in targets.items()
        ) if n_ref else True

    best: tuple[float, float] = (-1.0, 0.0)  # (compound, margin) of the best fitting margin
    for second in np.arange(0.0, 12.5, 0.5):  # smallest margin reaching the compound target
        flags, compound = fit(float(second))
        if marginals_ok(flags):
            if compound >= scn.compound_share:
                return flags
            best = max(best, (compound, float(second)))
    flags, _ = fit(best[1])
    return flags


def assign_truth(
    scn: Scenario,
    rng: np.random.Generator,
    *,
    joined: pd.DataFrame,
    region: npt.NDArray[np.int64],
    university: BoolArray,
) -> Truth:
    """True levels and flags for the students of ``joined`` (see module docstring)."""
    clean = _scores(joined)
    n = len(joined)
    e, a, p = (s + rng.normal(0, scn.latent_noise_sd, n) for s in clean)
    noisy = (e, a, p)
    total = e + a + p
    direct, econ_group, any_group = _direct(joined)
    n_hard = round(float(np.array(scn.hardship_share)[region].sum()))
    n_hard = max(n_hard, int(direct.sum()))
    rest = total[~direct]
    n_special = max(round(scn.special_level_share * n_hard) - int(direct.sum()), 0)
    n_mid = round(scn.hardship_level_share * n_hard)
    t = {
        "general": _kth_largest(rest, n_hard - int(direct.sum())),
        "hardship": _kth_largest(rest, n_special + n_mid),
        "special": _kth_largest(rest, n_special),
    }
    level = _levels(total, direct, t)
    hard = level >= 1
    ref = hard & university if (hard & university).any() else hard
    flags = _calibrate_flags(scn, noisy, ref, hard, econ_group, any_group, t)
    clean_level = _levels(clean[0] + clean[1] + clean[2], direct, t)
    clean_hard = clean_level >= 1
    return Truth(
        level=level,
        flags=flags,
        direct=direct,
        thresholds=t,
        explainable_level=float((clean_level == level).mean()) if n else 1.0,
        explainable_binary=float((clean_hard == hard).mean()) if n else 1.0,
        rubric_missed_rate=float((hard & ~clean_hard).sum() / max(int(hard.sum()), 1)),
        rubric_wrong_aid_rate=float((clean_hard & ~hard).sum() / max(int(clean_hard.sum()), 1)),
    )
