"""Agency tables: encodings, Parquet, typed loading, and the full list of problems."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedid.errors import ConfigError, DataValidationError
from fedid.schema import Schema, load_schema
from fedid.tables import (
    decode,
    infer_kind,
    layout,
    load_agency_table,
    validate_agency_table,
    validate_frame,
)
from tests.fedid.tables_data import civil_affairs_frame, education_frame


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_encodings_load(tmp_path: Path, schema: Schema, encoding: str) -> None:
    frame = education_frame(schema)
    frame["姓名"] = "张三"  # an extra column with a Chinese header
    path = tmp_path / "edu.csv"
    frame.to_csv(path, index=False, encoding=encoding)
    table = load_agency_table(path, schema=schema)
    assert table.report.encoding == encoding
    assert table.report.counts() == {"unknown_column": 1}
    assert "姓名" not in table.frame.columns
    assert table.frame["label_level"].tolist()[:3] == ["none", "special", "general"]
    assert pd.isna(table.frame["label_level"].iloc[3])
    assert table.frame["rural_hukou"].all()
    assert table.frame["left_behind_child"].tolist() == [False, True, False, True, False, True]


def test_typed_frame_from_parquet(tmp_path: Path, schema: Schema) -> None:
    frame = education_frame(schema)
    path = tmp_path / "edu.parquet"
    frame.to_parquet(path)
    table = load_agency_table(path, schema=schema)
    f = table.frame
    assert table.key_column == "student_id"
    assert list(f.columns) == [c.name for c in layout(schema, "education")]
    assert f["campus_card_spending"].dtype == np.float64
    assert str(f["household_size"].dtype) == "Int64"
    assert str(f["applied"].dtype) == "boolean"
    assert list(f["stage"].cat.categories) == ["k12", "senior_high", "university"]
    assert f["student_id"].tolist() == frame["student_id"].tolist()
    assert pd.isna(f["guardian2_id"].iloc[-1])
    assert table.report.ok
    assert table.report.stats["empty_guardian2_id"] == 1


def test_department_legacy_ids_are_upgraded(tmp_path: Path, schema: Schema) -> None:
    frame = civil_affairs_frame()
    path = tmp_path / "agencies" / "departments" / "civil_affairs.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    table = load_agency_table(path, schema=schema, kind=None)
    assert (table.kind, table.department) == ("department", "civil_affairs")
    assert table.report.legacy_ids == 1
    keys = table.frame["person_id"].tolist()
    assert all(len(k) == 18 for k in keys)
    assert keys[1][:6] + keys[1][8:17] == frame["person_id"].iloc[1]
    assert table.frame["dibao"].tolist()[:2] == [True, False]
    assert pd.isna(table.frame["dibao"].iloc[2])
    assert list(table.frame["family_structure"].cat.categories)[-1] == "orphan"


def test_legacy_and_new_number_of_one_person_are_duplicates(schema: Schema) -> None:
    frame = civil_affairs_frame()
    full = validate_frame(frame.iloc[:2], schema=schema, kind="department",
                          department="civil_affairs")  # fmt: skip
    assert full.ok
    legacy = frame["person_id"].iloc[1]
    both = pd.concat([frame.iloc[:2], frame.iloc[:2]], ignore_index=True)
    both.loc[3, "person_id"] = legacy
    report = validate_frame(both, schema=schema, kind="department", department="civil_affairs")
    dup = report.problems_df[report.problems_df["kind"] == "duplicate_key"]
    assert dup["row"].tolist() == [3, 4]
    assert dup["message"].tolist() == ["same person as row 1", "same person as row 2"]


def test_corrupted_table_reports_every_problem(tmp_path: Path, schema: Schema) -> None:
    frame = education_frame(schema, n=12)
    ids = frame["student_id"].tolist()
    good = ids[2]
    frame.loc[0, "student_id"] = good[:-1] + ("0" if good[-1] != "0" else "1")  # check char
    frame.loc[1, "student_id"] = "99" + good[2:]  # province
    frame.loc[2, "guardian1_id"] = good[:10] + "13" + good[12:]  # month 13
    frame.loc[3, "student_id"] = ids[4]  # duplicate of row 5
    frame.loc[5, "student_id"] = "  "  # missing
    frame.loc[6, "household_size"] = "25"  # out of range [1, 20]
    frame.loc[7, "grade_percentile"] = "ninety"  # wrong type
    frame.loc[8, "psych_risk_level"] = "1.5"  # not an integer
    frame.loc[9, "stage"] = "primary"  # bad category
    frame.loc[10, "applied"] = "maybe"  # wrong type
    frame.loc[11, "campus_card_spending"] = "-3"  # out of range
    frame = frame.drop(columns=["siblings_in_school"])  # missing column
    frame["remarks"] = "x"  # unknown column
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False, encoding="gbk")
    before = _digest(path)
    report = validate_agency_table(path, schema=schema)
    assert _digest(path) == before
    assert not report.ok
    got = {(p.kind.value, p.row, p.column) for p in report}
    assert got == {
        ("missing_column", None, "siblings_in_school"),
        ("unknown_column", None, "remarks"),
        ("bad_id", 1, "student_id"),
        ("bad_id", 2, "student_id"),
        ("bad_id", 3, "guardian1_id"),
        ("duplicate_key", 5, "student_id"),
        ("missing_value", 6, "student_id"),
        ("out_of_range", 7, "household_size"),
        ("wrong_type", 8, "grade_percentile"),
        ("wrong_type", 9, "psych_risk_level"),
        ("bad_category", 10, "stage"),
        ("wrong_type", 11, "applied"),
        ("out_of_range", 12, "campus_card_spending"),
    }
    assert report.counts()["bad_id"] == 3
    assert report.errors == 12
    assert report.warnings == 1
    messages = " ".join(p.message for p in report)
    assert "check character" in messages
    assert "province code" in messages
    assert "calendar date" in messages
    assert "must be in [1, 20]; got '25'" in messages
    for value in frame["student_id"].tolist() + frame["guardian1_id"].tolist():
        if len(str(value).strip()) >= 15:
            assert str(value).strip() not in messages
    with pytest.raises(DataValidationError) as info:
        load_agency_table(path, schema=schema)
    assert info.value.exit_code == 3
    assert info.value.report is not None


def test_strict_makes_unknown_columns_errors(schema: Schema) -> None:
    frame = education_frame(schema)
    frame["extra"] = 1
    assert validate_frame(frame, schema=schema, kind="education").ok
    strict = validate_frame(frame, schema=schema, kind="education", strict=True)
    assert strict.counts() == {"unknown_column": 1}
    assert not strict.ok


def test_row_numbers_survive_blank_lines(tmp_path: Path, schema: Schema) -> None:
    frame = civil_affairs_frame()
    lines = frame.to_csv(index=False).splitlines()
    text = "\n".join([*lines[:3], "", *lines[3:], "", ""]) + "\n"  # blank data row 3
    path = tmp_path / "ca.csv"
    path.write_text(text, encoding="utf-8")
    report = validate_agency_table(path, schema=schema, kind="department",
                                   department="civil_affairs")  # fmt: skip
    assert report.rows == 6
    assert [(p.kind.value, p.row) for p in report] == [("missing_value", 3)]
    assert report.stats["trailing_blank_rows"] == 2


def test_unreadable_files(tmp_path: Path, schema: Schema) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("person_id,dibao\n1,2\n3,4,5\n", encoding="utf-8")
    report = validate_agency_table(ragged, schema=schema, kind="department",
                                   department="civil_affairs")  # fmt: skip
    assert report.counts() == {"unreadable": 1}
    assert "malformed CSV" in report.problems()[0].message
    binary = tmp_path / "latin.csv"
    binary.write_bytes(b"person_id\n\xff\xfe\xfa\n")
    report = validate_agency_table(binary, schema=schema, kind="department",
                                   department="civil_affairs")  # fmt: skip
    assert "GB18030" in report.problems()[0].message
    forced = validate_agency_table(binary, schema=schema, kind="department",
                                   department="civil_affairs", encoding="utf-8")  # fmt: skip
    assert "not valid utf-8" in forced.problems()[0].message
    assert validate_agency_table(tmp_path / "x.xlsx", schema=schema).counts() == {"unreadable": 1}


def test_duplicate_column(tmp_path: Path, schema: Schema) -> None:
    frame = civil_affairs_frame()
    text = frame.to_csv(index=False).replace("tekun,", "dibao,", 1)
    path = tmp_path / "dup.csv"
    path.write_text(text, encoding="utf-8")
    report = validate_agency_table(path, schema=schema, kind="department",
                                   department="civil_affairs")  # fmt: skip
    assert report.counts() == {"missing_column": 1, "duplicate_column": 1}


def test_decode_prefers_utf8_then_gbk() -> None:
    assert decode("困难".encode())[1] == "utf-8"
    assert decode("\ufeff困难".encode())[1] == "utf-8-sig"
    assert decode("困难".encode("gbk"))[1] == "gbk"
    assert decode("䶮".encode("gb18030"))[1] == "gb18030"


def test_infer_kind(schema: Schema) -> None:
    assert infer_kind("x/agencies/departments/health.parquet", (), schema) == (
        "department", "health",
    )  # fmt: skip
    assert infer_kind("x/agencies/education/county_3.parquet", (), schema)[0] == "education"
    assert infer_kind("t.csv", ("person_id", "disability_grade"), schema) == (
        "department", "disability_federation",
    )  # fmt: skip
    assert infer_kind("t.csv", ("student_id",), schema) == ("education", "education")
    with pytest.raises(ConfigError, match="--department"):
        infer_kind("t.csv", ("person_id",), schema)
    with pytest.raises(ConfigError, match="--kind"):
        infer_kind("t.csv", ("a",), schema)
    with pytest.raises(ConfigError, match="evidence side"):
        layout(schema, "education", "tax")


def test_million_rows_vectorised_smoke(schema: Schema) -> None:
    """20,000 rows validate quickly (vectorised); the throughput benchmark is separate."""
    n = 20_000
    frame = pd.DataFrame(
        {
            "person_id": education_frame(schema, n=6)["student_id"].tolist() * (n // 6)
            + ["x"] * (n % 6),
            "disability_grade": np.arange(n) % 6,
        }
    )
    report = validate_frame(frame, schema=schema, kind="department",
                            department="disability_federation")  # fmt: skip
    counts = report.counts()
    assert counts["duplicate_key"] == n - 6 - (n % 6)
    assert counts["bad_id"] == n % 6
    assert counts["out_of_range"] == sum(1 for i in range(n) if i % 6 == 5)


_POOL = education_frame(load_schema(), n=6)["student_id"].tolist()
_cells = st.one_of(
    st.integers(-2, 7).map(str),
    st.sampled_from(["", "NA", "2.0", "2.5", "abc", " 3 ", "1e0"]),
)


@settings(max_examples=60, deadline=None)
@given(
    grades=st.lists(_cells, min_size=1, max_size=15),
    people=st.lists(st.sampled_from([*_POOL, "", "123", _POOL[0][:-1] + "Y"]), min_size=15),
)
def test_every_bad_cell_reported_once(grades: list[str], people: list[str]) -> None:
    schema = load_schema()
    ids = people[: len(grades)]
    frame = pd.DataFrame({"person_id": ids, "disability_grade": grades})
    report = validate_frame(frame, schema=schema, kind="department",
                            department="disability_federation")  # fmt: skip
    got = {(p.row, p.column, p.kind.value) for p in report}
    assert len(got) == len(report)  # one problem per cell and rule
    expect: set[tuple[int | None, str | None, str]] = set()
    seen: set[str] = set()
    for row, (pid, grade) in enumerate(zip(ids, grades, strict=True), start=1):
        text = grade.strip()
        if text not in ("", "NA"):
            value = float(text) if text.replace(".", "", 1).replace("e", "", 1).lstrip(
                "-").isdigit() else None  # fmt: skip
            if value is None or value != int(value):
                expect.add((row, "disability_grade", "wrong_type"))
            elif not 0 <= value <= 4:
                expect.add((row, "disability_grade", "out_of_range"))
        if pid == "":
            expect.add((row, "person_id", "missing_value"))
        elif pid not in _POOL:
            expect.add((row, "person_id", "bad_id"))
        elif pid in seen:
            expect.add((row, "person_id", "duplicate_key"))
        seen.add(pid)
    assert got == expect


def test_id_like_values_in_other_columns_are_withheld(schema: Schema) -> None:
    pid = education_frame(schema)["student_id"].iloc[0]
    frame = pd.DataFrame({"person_id": [pid], "disability_grade": [pid]})  # shifted column
    report = validate_frame(frame, schema=schema, kind="department",
                            department="disability_federation")  # fmt: skip
    (problem,) = report.problems()
    assert problem.kind.value in ("wrong_type", "out_of_range")  # X or digit check character
    assert "withheld" in problem.message
    assert pid not in problem.message
