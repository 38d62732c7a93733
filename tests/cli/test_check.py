"""``fedid check``: files and province folders, JSON and text output, exit codes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from fedid.errors import FedIdError
from fedid.schema import load_schema
from tests.fedid.tables_data import civil_affairs_frame, education_frame


def _fedid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _json(*args: str) -> tuple[int, dict[str, Any]]:
    """Run in-process (fast); fedid errors map to their exit codes as in ``main()``."""
    result = CliRunner().invoke(app, ["check", "--json", *args])
    exc = result.exception
    code = exc.exit_code if isinstance(exc, FedIdError) else result.exit_code
    if exc is not None and not isinstance(exc, FedIdError | SystemExit):
        raise exc
    return code, json.loads(result.stdout)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_clean_province_folder_passes(small_province: Path) -> None:
    code, doc = _json(str(small_province))
    assert code == 0
    assert doc["ok"] is True
    assert doc["schema"] == str(small_province / "schema.toml")
    kinds = [f["kind"] for f in doc["files"]]
    assert kinds.count("department") == 12
    assert kinds.count("education") >= 1
    assert all(f["errors"] == 0 for f in doc["files"])
    assert not any("ground_truth" in f["path"] for f in doc["files"])
    legacy = sum(f["legacy_ids"] for f in doc["files"] if f["kind"] == "department")
    assert legacy > 0  # departmental tables carry some 15-digit numbers


def test_corrupted_province_folder_fails_with_every_problem(
    small_province: Path, tmp_path: Path
) -> None:
    prov = tmp_path / "prov"
    shutil.copytree(small_province, prov, ignore=shutil.ignore_patterns("ground_truth"))
    dept = prov / "agencies" / "departments" / "disability_federation.parquet"
    frame = pd.read_parquet(dept)
    frame["person_id"] = frame["person_id"].astype(object)
    frame["disability_grade"] = frame["disability_grade"].astype(object)
    first = str(frame.loc[0, "person_id"])
    frame.loc[1, "person_id"] = first  # duplicate of row 1
    frame.loc[2, "person_id"] = "12345"  # wrong length
    frame.loc[3, "disability_grade"] = 9  # out of [0, 4]
    frame.to_parquet(dept)
    edu = sorted((prov / "agencies" / "education").iterdir())[0]
    pd.read_parquet(edu).drop(columns=["household_size"]).to_parquet(edu)
    before = _digests(prov)

    code, doc = _json(str(prov))
    assert code == 3
    assert doc["ok"] is False
    assert _digests(prov) == before
    by_name = {Path(f["path"]).name: f for f in doc["files"]}
    got = {(p["kind"], p["row"], p["column"]) for p in by_name[dept.name]["problems"]}
    assert got == {
        ("duplicate_key", 2, "person_id"),
        ("bad_id", 3, "person_id"),
        ("out_of_range", 4, "disability_grade"),
    }
    assert by_name[edu.name]["counts"] == {"missing_column": 1}
    failing = sorted(name for name, f in by_name.items() if not f["ok"])
    assert failing == sorted([dept.name, edu.name])
    assert first not in json.dumps(doc)

    text = _fedid("check", str(prov))
    assert text.returncode == 3
    assert "FAILED" in text.stdout
    assert "2 of 18 table(s) failed validation" in " ".join(text.stderr.split())


def test_single_gbk_csv_with_flags(tmp_path: Path) -> None:
    schema = load_schema()
    path = tmp_path / "school.csv"
    frame = education_frame(schema)
    frame["备注"] = "无"
    frame.to_csv(path, index=False, encoding="gbk")
    code, doc = _json(str(path))
    assert code == 0
    (report,) = doc["files"]
    assert (report["kind"], report["encoding"], report["warnings"]) == ("education", "gbk", 1)

    code, doc = _json(str(path), "--strict")
    assert code == 3
    assert doc["files"][0]["counts"] == {"unknown_column": 1}

    code, doc = _json(str(path), "--encoding", "utf-8")
    assert code == 3
    assert doc["files"][0]["counts"] == {"unreadable": 1}


def test_department_file_kind_and_department_flags(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    frame = civil_affairs_frame()
    frame.loc[2, "household_income_per_capita"] = "lots"
    frame.to_csv(path, index=False)
    code, doc = _json(str(path), "--kind", "department", "--department", "civil_affairs")
    assert code == 3
    report = doc["files"][0]
    assert report["department"] == "civil_affairs"
    assert report["legacy_ids"] == 1
    assert [(p["kind"], p["row"]) for p in report["problems"]] == [("wrong_type", 3)]
    code, doc = _json(str(path))  # inferred from the columns
    assert doc["files"][0]["department"] == "civil_affairs"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "school"], "--kind must be education or department"),
        (["--kind", "education", "--department", "police"], "no department named 'police'"),
        (["--kind", "education", "--department", "tax"], "evidence side"),
    ],
)
def test_bad_flags_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "school.csv"
    education_frame(load_schema()).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["check", str(path), *args])
    assert isinstance(result.exception, FedIdError)
    assert result.exception.exit_code == 2
    assert message in str(result.exception)


def test_console_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "school.csv"
    education_frame(load_schema()).to_csv(path, index=False)
    assert _fedid("check", str(path)).returncode == 0
    bad = _fedid("check", str(path), "--kind", "school")
    assert bad.returncode == 2
    assert "--kind must be education or department" in bad.stderr


def test_text_output_lists_problems_with_limit(tmp_path: Path) -> None:
    path = tmp_path / "ca.csv"
    frame = civil_affairs_frame()
    frame["dibao"] = np.array(["maybe"] * len(frame), dtype=object)
    frame.to_csv(path, index=False)
    result = CliRunner().invoke(app, ["check", str(path), "--max-problems", "2"])
    assert isinstance(result.exception, FedIdError)
    assert result.exception.exit_code == 3
    assert "problems (5 in total)" in result.stdout
    assert result.stdout.count("wrong_type") == 3  # two rows listed plus the summary


def test_plain_folder_lists_unrecognised_files_as_skipped(tmp_path: Path) -> None:
    education_frame(load_schema()).to_csv(tmp_path / "school.csv", index=False)
    civil_affairs_frame().to_parquet(tmp_path / "minzheng.parquet")
    pd.DataFrame({"name": ["x"]}).to_csv(tmp_path / "notes.csv", index=False)
    code, doc = _json(str(tmp_path))
    assert code == 0
    assert sorted((f["kind"], f["department"]) for f in doc["files"]) == [
        ("department", "civil_affairs"),
        ("education", "education"),
    ]
    assert [Path(s["path"]).name for s in doc["skipped"]] == ["notes.csv"]
    assert "--kind" in doc["skipped"][0]["reason"]
