"""The synthetic province's scenario: geography, sizes and every calibration default.

A :class:`Scenario` is a frozen record of everything :func:`simulations.province.generate_province`
needs besides the seed. Its defaults come from ARCHITECTURE.md's domain figures (calibration
points; the "plan" figures for the self-report process) and are written into
``manifest.json``.

Geography (a documented choice): one real province has a single region, but the fairness
tests need east, central and west students whose ID-derived region agrees with the ground
truth. The default "province" is therefore a composite provincial platform: four county
education bureaus in an eastern (Zhejiang, 33), a central (Henan, 41) and two western
(Guizhou, 52; Gansu, 62) provinces, plus two universities that admit students from origin
counties of all three regions. Every person's ID carries a real-looking 6-digit county code
of their own province, so ``fedid.ids.parse(...).region`` equals the ground-truth region.
Two western counties because the rural west carries most special-group cases and its
cells need enough students for group metrics.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import Any

from fedid.errors import ConfigError

__all__ = [
    "DEFAULT_COUNTIES",
    "DEFAULT_UNIVERSITIES",
    "ORIGIN_COUNTIES",
    "REGIONS",
    "CountySpec",
    "Scenario",
    "UniversitySpec",
]

REGIONS: tuple[str, str, str] = ("east", "central", "west")

#: Origin county codes per region (real 6-digit county codes of one province each region
#: uses, plus a second province): university students' and unrelated adults' home counties.
ORIGIN_COUNTIES: dict[str, tuple[int, ...]] = {
    "east": (330521, 330522, 330523, 330681, 370724, 371122, 320722, 321323),
    "central": (411422, 411426, 410221, 421127, 341221, 341222, 430524, 360730),
    "west": (520525, 520521, 621121, 621122, 511321, 530621, 450721, 610426),
}


@dataclass(frozen=True, slots=True)
class CountySpec:
    """A county education bureau (k12 and senior high) and its county.

    ``weight``: share of the province's students it enrols, relative to the other agencies.
    ``rural_share``: share of its households with rural hukou.
    """

    agency_id: str
    address_code: int
    region: str
    rural_share: float
    weight: float

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ConfigError(f"county region must be one of {REGIONS}. Got {self.region!r}")
        if not 110000 <= self.address_code <= 659999:
            raise ConfigError(f"county address code must be 6 digits. Got {self.address_code}")
        if not 0.0 <= self.rural_share <= 1.0:
            raise ConfigError(f"rural_share must be in [0, 1]. Got {self.rural_share}")
        if self.weight <= 0:
            raise ConfigError(f"county weight must be > 0. Got {self.weight}")


@dataclass(frozen=True, slots=True)
class UniversitySpec:
    """A university: intake shares by region (east, central, west) and rural share by region."""

    agency_id: str
    intake: tuple[float, float, float]
    rural_share: tuple[float, float, float]
    weight: float

    def __post_init__(self) -> None:
        if len(self.intake) != 3 or abs(sum(self.intake) - 1.0) > 1e-9:
            raise ConfigError(f"university intake must be 3 shares summing to 1. Got {self.intake}")
        if any(not 0.0 <= r <= 1.0 for r in self.rural_share) or len(self.rural_share) != 3:
            raise ConfigError(f"rural_share must be 3 values in [0, 1]. Got {self.rural_share}")
        if self.weight <= 0:
            raise ConfigError(f"university weight must be > 0. Got {self.weight}")


DEFAULT_COUNTIES: tuple[CountySpec, ...] = (
    CountySpec("county_east_330521", 330521, "east", rural_share=0.35, weight=2250),
    CountySpec("county_central_411422", 411422, "central", rural_share=0.65, weight=2250),
    CountySpec("county_west_520525", 520525, "west", rural_share=0.75, weight=2250),
    CountySpec("county_west_621121", 621121, "west", rural_share=0.80, weight=2250),
)
#: Intake and rural shares set so the plan's calibration points hold among university hardship
#: students (ARCHITECTURE.md: 68 % from central and western regions, 71 % rural; realised means over
#: seeds 0-7: 66.7 % (64-70 %) and 71.6 % (69-74 %)): the universities sit in the east and take
#: most of their students from there, and the regional poverty gradient does the rest.
DEFAULT_UNIVERSITIES: tuple[UniversitySpec, ...] = (
    UniversitySpec("university_a", (0.64, 0.20, 0.16), (0.32, 0.48, 0.58), weight=1500),
    UniversitySpec("university_b", (0.50, 0.28, 0.22), (0.42, 0.58, 0.68), weight=1500),
)


def _share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1]. Got {value}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """Sizes, geography and calibration defaults of a synthetic province.

    Sizes: ``students`` in total, split over ``counties`` and ``universities`` by weight.
    Rates are shares of people (special groups) or of students; all are documented where
    they come from (ARCHITECTURE.md calibration points or the plan's self-report figures).
    """

    students: int = 12_000
    counties: tuple[CountySpec, ...] = DEFAULT_COUNTIES
    universities: tuple[UniversitySpec, ...] = DEFAULT_UNIVERSITIES
    reference_date: dt.date = dt.date(2026, 9, 1)  # start of the school year
    #: adult-only households (people in departmental records but in no student household),
    #: as a multiple of the number of student households.
    unrelated_household_ratio: float = 0.3
    # --- special groups, shares of all people (DOMAIN: low-income about 4.7 %)
    dibao_rate: float = 0.028
    tekun_rate: float = 0.0033
    edge_rate: float = 0.004
    poverty_monitoring_rate: float = 0.002
    former_poverty_rate: float = 0.03  # exited 建档立卡 households on agriculture's roll (rural)
    martyr_rate: float = 0.0008
    special_care_rate: float = 0.01  # veterans' families on the roll, not martyrs
    student_disability_rate: float = 0.01  # DOMAIN: 0.5-1.5 %
    adult_disability_rate: float = 0.035
    # --- family (DOMAIN: single parent 8-12 %, left-behind 10-15 % of rural K-12)
    divorced_rate: float = 0.07
    bereaved_rate: float = 0.03
    orphan_rate: float = 0.003
    left_behind_rural_k12: float = 0.125
    # --- latent poverty: mean by region (east, central, west) and rural shift
    poverty_mean: tuple[float, float, float] = (-0.55, 0.0, 0.45)
    rural_poverty_shift: float = 0.45
    # --- true hardship shares of students (level >= lowest), DOMAIN: senior high about
    # 10/20/30 % east/central/west; applied to k12 too; universities follow from intake.
    hardship_share: tuple[float, float, float] = (0.10, 0.20, 0.30)
    #: of true hardship students: share at the top level and at the middle level
    special_level_share: float = 0.30
    hardship_level_share: float = 0.35
    #: dimension mix among university hardship students (plan: 58.3 / 32.7 / 24.5 %)
    economic_flag_share: float = 0.583
    academic_flag_share: float = 0.327
    psychological_flag_share: float = 0.245
    compound_share: float = 0.42  # plan: over 40 % with two or more dimensions
    #: SD of the latent (unobserved) term added to each sub-score, in rubric points
    latent_noise_sd: float = 2.0
    # --- simulated self-report and review (plan figures)
    hidden_rate: float = 0.127  # true hardship students who never apply
    wrong_aid_rate: float = 0.23  # aided students who are not in hardship
    missed_rate: float = 0.17  # true hardship students not recognised
    label_level_accuracy: float = 0.7  # recognised hardship students given their true level
    label_flag_flip: float = 0.1  # chance each recorded dimension flag is wrong
    # --- departmental tables
    legacy_id_share: float = 0.05  # departmental rows written in the 15-digit legacy form
    dibao_line: tuple[float, float] = (11_000.0, 8_000.0)  # CNY/year per capita (urban, rural)

    def __post_init__(self) -> None:
        if self.students < 10:
            raise ConfigError(f"students must be >= 10. Got {self.students}")
        if not self.counties and not self.universities:
            raise ConfigError("a scenario needs at least one county or university")
        ids = [c.agency_id for c in self.counties] + [u.agency_id for u in self.universities]
        if len(set(ids)) != len(ids):
            raise ConfigError("agency ids must be unique")
        for name in (
            "dibao_rate", "tekun_rate", "edge_rate", "poverty_monitoring_rate",
            "former_poverty_rate", "martyr_rate", "special_care_rate",
            "student_disability_rate", "adult_disability_rate", "divorced_rate",
            "bereaved_rate", "orphan_rate", "left_behind_rural_k12", "special_level_share",
            "hardship_level_share", "economic_flag_share", "academic_flag_share",
            "psychological_flag_share", "compound_share", "hidden_rate", "wrong_aid_rate",
            "missed_rate",
            "label_level_accuracy", "label_flag_flip", "legacy_id_share",
        ):
            _share(name, float(getattr(self, name)))
        for value in self.hardship_share:
            _share("hardship_share", value)
        if self.special_level_share + self.hardship_level_share >= 1.0:
            raise ConfigError("special_level_share + hardship_level_share must be < 1")
        if self.missed_rate < self.hidden_rate:
            raise ConfigError(
                f"missed_rate must be >= hidden_rate (hidden students are missed). "
                f"Got {self.missed_rate} < {self.hidden_rate}"
            )
        if self.unrelated_household_ratio < 0:
            raise ConfigError(
                f"unrelated_household_ratio must be >= 0. Got {self.unrelated_household_ratio}"
            )
        if self.latent_noise_sd < 0:
            raise ConfigError(f"latent_noise_sd must be >= 0. Got {self.latent_noise_sd}")

    def with_students(self, students: int) -> Scenario:
        """The same scenario with another total number of students."""
        return replace(self, students=students)

    def scaled(self, factor: float) -> Scenario:
        """The same scenario with ``factor`` times as many students."""
        if factor <= 0:
            raise ConfigError(f"scale must be > 0. Got {factor}")
        return replace(self, students=max(10, round(self.students * factor)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (for the manifest)."""
        out = asdict(self)
        out["reference_date"] = self.reference_date.isoformat()
        return out
