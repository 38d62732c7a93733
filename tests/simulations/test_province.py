"""The synthetic province: reproducibility, IDs, calibration, self-report, ground truth, I/O."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from fedid.errors import ConfigError
from fedid.ids import parse, validate
from fedid.schema import load_schema
from fedid.tables import validate_agency_table
from simulations.province import Province, generate_province, read_table, write_province
from simulations.province import io as province_io
from simulations.province.departments import to_legacy
from simulations.province.schema_view import load_schema_view
from simulations.reference_join import reference_join
from simulations.scenario import Scenario

SEED = 11
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def timed_province() -> tuple[Province, float]:
    start = time.perf_counter()
    province = generate_province(seed=SEED)
    return province, time.perf_counter() - start


@pytest.fixture(scope="module")
def province(timed_province: tuple[Province, float]) -> Province:
    return timed_province[0]


@pytest.fixture(scope="module")
def written(province: Province, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "default"
    write_province(province, out)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _all_students(province: Province) -> pd.DataFrame:
    return pd.concat(province.education.values(), ignore_index=True)


# ----------------------------------------------------------------- reproducibility, layout


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    scn = Scenario(students=1500)
    write_province(generate_province(scn, seed=5), tmp_path / "a")
    write_province(generate_province(scn, seed=5), tmp_path / "b")
    write_province(generate_province(scn, seed=6), tmp_path / "c")
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) == 6 + 12 + 1 + 2  # tables, ground truth, schema, manifest
    assert a["ground_truth/students.parquet"] != c["ground_truth/students.parquet"]


def test_manifest_lists_every_file_with_its_sha256(written: Path, province: Province) -> None:
    manifest = json.loads((written / "manifest.json").read_text(encoding="utf-8"))
    files = {p for p in _hashes(written) if p != "manifest.json"}
    assert set(manifest["files"]) == files
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((written / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["seed"] == SEED
    assert manifest["scenario"]["students"] == 12_000
    assert manifest["counts"]["students"] == 12_000
    assert manifest["calibration"]["self_report"] == province.calibration["self_report"]
    assert sorted(manifest["agencies"]["departments"]) == sorted(
        load_schema().evidence_departments
    )


def test_default_generates_fast_and_tables_stay_small(
    timed_province: tuple[Province, float],
) -> None:
    province, seconds = timed_province
    assert seconds < 60
    assert sum(len(t) for t in province.education.values()) == 12_000
    assert all(len(t) <= 9_000 for t in province.departments.values())
    assert all(len(t) >= 100 for t in province.departments.values())


def test_students_and_scale_set_the_size() -> None:
    assert len(generate_province(Scenario(students=777), seed=1).ground_truth) == 777
    assert Scenario().scaled(2.5).students == 30_000
    with pytest.raises(ConfigError):
        Scenario().scaled(0)


# ----------------------------------------------------------------- IDs and geography


def test_all_ids_valid_and_unique(province: Province) -> None:
    students = _all_students(province)
    sid = students["student_id"].to_numpy().astype(str)
    assert validate(sid).all_ok
    assert not validate(sid).legacy.any()
    assert len(np.unique(sid)) == len(sid)
    guardians = pd.concat([students["guardian1_id"], students["guardian2_id"].dropna()])
    assert validate(guardians.to_numpy().astype(str)).all_ok
    assert not set(guardians) & set(sid)
    legacy = total = 0
    for table in province.departments.values():
        check = validate(table["person_id"].to_numpy().astype(str))
        assert check.all_ok
        assert len(np.unique(check.canonical)) == len(table)
        legacy += int(check.legacy.sum())
        total += len(table)
    assert 0.04 <= legacy / total <= 0.06


def test_legacy_form_drops_century_and_check() -> None:
    assert to_legacy(np.array(["11010519491231002X"]))[0] == "110105491231002"


def test_address_codes_fit_region_and_county(province: Province) -> None:
    gt = province.ground_truth
    students = gt["student_id"].to_numpy().astype(str)
    assert (parse(students).region == gt["region"].to_numpy().astype(str)).all()
    edu = _all_students(province).set_index("student_id").loc[gt["student_id"]]
    g1 = parse(edu["guardian1_id"].to_numpy().astype(str))
    assert (g1.region == gt["region"].to_numpy().astype(str)).all()
    for county in province.scenario.counties:
        table = province.education[county.agency_id]
        codes = parse(table["student_id"].to_numpy().astype(str)).address_code
        assert (codes == str(county.address_code)).all()
    assert set(gt["region"]) == {"east", "central", "west"}


def test_birth_years_fit_stage(province: Province) -> None:
    gt = province.ground_truth
    ref = np.datetime64(province.scenario.reference_date.isoformat())
    age = (ref - parse(gt["student_id"].to_numpy().astype(str)).birth_date).astype(int) / 365.25
    stage = gt["stage"].to_numpy().astype(str)
    for name, low, high in (("k12", 6, 15), ("senior_high", 15, 18), ("university", 18, 22)):
        sel = stage == name
        assert sel.any()
        assert age[sel].min() >= low - 0.01
        assert age[sel].max() <= high + 0.01
    students = _all_students(province)
    g_age = (ref - parse(students["guardian1_id"].to_numpy().astype(str)).birth_date).astype(int)
    assert (g_age / 365.25 >= 18).all()


# ----------------------------------------------------------------- calibration


def test_special_group_rates_and_skew(province: Province) -> None:
    rates = province.calibration["special_groups_share_of_people"]
    for name, target in (("dibao", 0.028), ("tekun", 0.0033), ("edge", 0.004),
                         ("poverty_monitoring", 0.002)):
        assert abs(rates[name]["all_people"] - target) <= 0.1 * target + 0.0005
    dibao = rates["dibao"]["by_cell"]
    assert dibao["west_rural"] > 3 * dibao["east_urban"]
    assert dibao["west_rural"] > dibao["central_rural"] > dibao["east_rural"]


def test_student_rates_within_domain_ranges(province: Province) -> None:
    st = province.calibration["students"]
    assert 0.005 <= st["student_disability"] <= 0.015
    assert 0.08 <= st["single_parent"] <= 0.12
    assert 0.10 <= st["left_behind_rural_k12"] <= 0.15
    assert 0.17 <= st["university_psych_level_2_plus"] <= 0.25
    gt = province.ground_truth
    spend = gt["campus_card_spending"].to_numpy()
    hard = gt["true_level"].to_numpy().astype(str) != "none"
    assert 600 <= np.median(spend[~hard]) <= 1500
    assert 250 <= np.median(spend[hard]) <= 650


def test_hardship_shares_follow_region_and_rurality(province: Province) -> None:
    shares = province.calibration["true_hardship_share"]
    for stage in ("k12", "senior_high"):
        for region, target in (("east", 0.10), ("central", 0.20), ("west", 0.30)):
            assert abs(shares[stage][region] - target) <= 0.05, (stage, region)
    assert 0.15 <= shares["university"]["all"] <= 0.32
    ru = province.calibration["true_hardship_share_rural_urban"]
    assert ru["rural"] > 2 * ru["urban"]


def test_dimension_mix_among_university_hardship(province: Province) -> None:
    mix = province.calibration["university_hardship_dimension_mix"]
    assert abs(mix["economic"] - 0.583) <= 0.03
    assert abs(mix["academic"] - 0.327) <= 0.03
    assert abs(mix["psychological"] - 0.245) <= 0.03
    assert mix["compound_2_plus"] > 0.40
    # ARCHITECTURE.md (plan): 68 % of university hardship students from central/west, 71 % rural
    assert abs(mix["from_central_or_west"] - 0.68) <= 0.05
    assert abs(mix["rural"] - 0.71) <= 0.05
    gt = province.ground_truth
    hard = gt["true_level"].to_numpy().astype(str) != "none"
    flags = gt[[f"true_{f}" for f in province.schema.dimension_flags]].to_numpy(dtype=bool)
    assert flags[hard].any(axis=1).all()
    assert not flags[~hard].any()


def test_truth_is_mostly_explained_by_indicators(province: Province) -> None:
    share = province.calibration["explainable_share"]
    assert 0.90 <= share["level"] <= 0.99
    assert 0.95 <= share["binary"] <= 0.995
    # the noiseless rubric's errors are exactly the students whose latent term flipped them
    rubric = province.calibration["noiseless_rubric"]
    hard_share = 1.0 - province.calibration["true_level_distribution"]["0"]
    flipped = rubric["missed_rate"] * hard_share + rubric["wrong_aid_rate"] * (
        hard_share * (1 - rubric["missed_rate"]) / (1 - rubric["wrong_aid_rate"])
    )
    assert 0 < rubric["missed_rate"] < 0.2
    assert 0 < rubric["wrong_aid_rate"] < 0.2
    assert abs(flipped - (1 - share["binary"])) <= 0.002
    gt = province.ground_truth
    direct = (
        gt["dibao"].fillna(False) | gt["tekun"].fillna(False)
        | gt["poverty_monitoring"].fillna(False) | gt["martyr_family"].fillna(False)
        | (gt["family_structure"].fillna("") == "orphan")
        | gt["student_disability_grade"].fillna(0).isin([1, 2])
    ).to_numpy(dtype=bool)
    assert direct.any()
    assert (gt["true_level"].to_numpy().astype(str)[direct] == "special").all()


# ----------------------------------------------------------------- self-report labels


def test_self_report_rates_near_plan(province: Province) -> None:
    gt = province.ground_truth.set_index("student_id")
    edu = _all_students(province).set_index("student_id").loc[gt.index]
    hard = gt["true_level"].to_numpy().astype(str) != "none"
    aided = edu["label_level"].to_numpy().astype(str) != "none"
    applied = edu["applied"].to_numpy(dtype=bool)
    assert abs((~applied[hard]).mean() - 0.127) <= 0.02
    assert abs((~aided[hard]).mean() - 0.17) <= 0.02
    assert abs((~hard[aided]).mean() - 0.23) <= 0.02
    # plan: education aid and temporary relief overlap for about 15 % of recipients
    assert 0.10 <= province.calibration["self_report"]["aided_with_temporary_relief"] <= 0.20
    hidden = gt["hidden_hardship"].to_numpy(dtype=bool)
    assert (hidden == (hard & ~applied)).all()
    assert not (aided & ~applied).any()


def test_label_noise_is_independent_of_indicators_given_truth(province: Province) -> None:
    gt = province.ground_truth.set_index("student_id")
    edu = _all_students(province).set_index("student_id").loc[gt.index]
    hard = gt["true_level"].to_numpy().astype(str) != "none"
    missed = edu["label_level"].to_numpy().astype(str) == "none"
    rural = gt["rural"].to_numpy(dtype=bool)
    # missed rate among hardship students does not depend on an indicator (rural hukou)
    assert abs(missed[hard & rural].mean() - missed[hard & ~rural].mean()) <= 0.05


def test_education_tables_hold_the_contract_columns_only(province: Province) -> None:
    schema = province.schema
    owned = [i.name for i in schema.indicators if i.department == "education"]
    expected = [
        "student_id", "guardian1_id", "guardian2_id", *owned, "stage", "applied",
        "label_level", *(f"label_{f}" for f in schema.dimension_flags),
    ]
    for table in province.education.values():
        assert list(table.columns) == expected
    for table in province.departments.values():
        assert table.columns[0] == "person_id"
        assert not any(c.startswith(("true_", "label_")) for c in table.columns)


def test_agency_code_never_reads_ground_truth() -> None:
    sources = list((REPO / "clients").rglob("*.py"))
    assert sources, "the agency node package has no modules to scan"
    offenders = [p.name for p in sources if "ground_truth" in p.read_text(encoding="utf-8")]
    assert offenders == []


# ----------------------------------------------------------------- ground truth and I/O


def test_ground_truth_equals_plaintext_join_of_written_tables(written: Path) -> None:
    schema = load_schema(written / "schema.toml")
    ref = reference_join(written)
    gt = pd.read_parquet(written / "ground_truth" / "students.parquet")
    gt = gt.sort_values("home_agency", kind="stable").reset_index(drop=True)
    cols = ["home_agency", "student_id", *schema.indicator_names]
    pd.testing.assert_frame_equal(ref[cols], gt[cols])
    # guardian-keyed and legacy-keyed evidence is present, and nulls where nobody holds it
    assert gt["dibao"].notna().any()
    assert gt["dibao"].isna().any()
    assert gt["parent_disability_grade"].notna().any()


def _independent_join(written: Path, ind_name: str, edu: pd.DataFrame) -> pd.Series:
    """One indicator's join written with pandas merges, independent of reference_join."""
    ind = load_schema(written / "schema.toml").indicator(ind_name)
    table = pd.read_parquet(written / "agencies" / "departments" / f"{ind.department}.parquet")
    canon = validate(table["person_id"].to_numpy().astype(str)).canonical
    values = pd.Series(table[ind.source_field].to_numpy(dtype=object), index=canon)
    if ind.keyed_by == "student":
        return values.reindex(edu.index.astype(str))
    both = pd.concat(
        [
            values.reindex(edu["guardian1_id"].fillna("").astype(str)).reset_index(drop=True),
            values.reindex(edu["guardian2_id"].fillna("").astype(str)).reset_index(drop=True),
        ],
        axis=1,
    ).astype(float)
    if ind.combine == "sum":
        out = both.sum(axis=1, min_count=1)
    elif ind.combine in ("max", "any"):
        out = both.max(axis=1)
    else:  # min_positive
        out = both.where(both > 0).min(axis=1)
        out = out.where(out.notna() | both.isna().all(axis=1), 0.0)
    return pd.Series(out.to_numpy(), index=edu.index)


def test_reference_join_agrees_with_an_independent_join(written: Path) -> None:
    ref = reference_join(written).set_index("student_id")
    edu = pd.concat(
        [pd.read_parquet(p) for p in (written / "agencies" / "education").glob("*.parquet")]
    ).set_index("student_id").loc[ref.index]
    schema = load_schema(written / "schema.toml")
    for ind in schema.indicators:
        if ind.department == "education":
            continue
        expected = _independent_join(written, ind.name, edu)
        got = ref[ind.name]
        assert (got.isna().to_numpy() == expected.isna().to_numpy()).all(), ind.name
        present = got.notna().to_numpy()
        assert present.any(), ind.name
        if ind.type == "category":
            assert (got[present].astype(str) == expected[present].astype(str)).all()
        else:
            np.testing.assert_array_equal(
                got[present].to_numpy(dtype=float), expected[present].to_numpy(dtype=float),
                err_msg=ind.name,
            )
    # some evidence reaches students only through a 15-digit legacy ID
    tax = pd.read_parquet(written / "agencies" / "departments" / "tax.parquet")
    legacy = tax["person_id"].str.len() == 15
    assert legacy.any()
    upgraded = set(validate(tax.loc[legacy, "person_id"].to_numpy().astype(str)).canonical)
    assert upgraded & set(edu["guardian1_id"].dropna()) | upgraded & set(
        edu["guardian2_id"].dropna()
    )


def test_written_tables_pass_the_agency_validator(written: Path) -> None:
    schema = load_schema(written / "schema.toml")
    for path in sorted((written / "agencies").rglob("*.parquet")):
        kind = "education" if path.parent.name == "education" else "department"
        dept = None if kind == "education" else path.stem
        report = validate_agency_table(path, schema=schema, kind=kind, department=dept)
        assert report.ok, path.name


def test_cli_writes_readable_csv(tmp_path: Path) -> None:
    out = tmp_path / "csv"
    result = CliRunner().invoke(
        app, ["synth", "--out", str(out), "--students", "600", "--format", "csv", "--seed", "2",
              "--legacy-id-share", "0.1"],
    )
    assert result.exit_code == 0, result.output
    schema = load_schema(out / "schema.toml")
    ref = reference_join(out)
    gt = read_table(out / "ground_truth" / "students.csv", load_schema_view(out / "schema.toml"))
    gt = gt.sort_values("home_agency", kind="stable").reset_index(drop=True)
    cols = ["home_agency", "student_id", *schema.indicator_names]
    pd.testing.assert_frame_equal(ref[cols], gt[cols])
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "csv"
    assert manifest["scenario"]["legacy_id_share"] == 0.1
    again = CliRunner().invoke(app, ["synth", "--out", str(out)])
    assert again.exit_code != 0


def test_failed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    province = generate_province(Scenario(students=300), seed=3)
    calls = {"n": 0}
    original = province_io._write

    def flaky(frame: pd.DataFrame, path: Path, fmt: province_io.Format) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        original(frame, path, fmt)

    monkeypatch.setattr(province_io, "_write", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_province(province, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_scenario_rejects_bad_rates() -> None:
    with pytest.raises(ConfigError, match="hidden_rate"):
        Scenario(hidden_rate=1.5)
    with pytest.raises(ConfigError, match="missed_rate"):
        replace(Scenario(), missed_rate=0.05)


@pytest.mark.parametrize("module", ["simulations.reference_join", "simulations.province.io",
                                    "simulations.province.join", "simulations.province.tables"])
def test_modules_import_first_without_a_cycle(module: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_two_hardship_levels_schema(tmp_path: Path) -> None:
    text = (REPO / "fedid" / "data" / "default_schema.toml").read_text(encoding="utf-8")
    text = text.replace(
        'names = ["none", "general", "hardship", "special"]',
        'names = ["none", "hardship", "special"]',
    ).replace('"一般困难", ', "")
    path = tmp_path / "three.toml"
    path.write_text(text, encoding="utf-8")
    province = generate_province(Scenario(students=2000), seed=4, schema_path=path)
    levels = set(province.ground_truth["true_level"])
    assert levels == {"none", "hardship", "special"}
    labels = set(pd.concat(province.education.values())["label_level"])
    assert labels <= {"none", "hardship", "special"}
    assert "general" not in labels
