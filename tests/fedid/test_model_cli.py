"""``fedid train`` and ``fedid evaluate`` on a small synthetic province."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cli.main import app
from fedid.schema import load_schema


def test_train_then_evaluate(small_province: Path, tmp_path: Path) -> None:
    schema = load_schema(small_province / "schema.toml")
    truth = pd.read_parquet(small_province / "ground_truth" / "students.parquet")
    evidence_cols = [
        i.name for i in schema.indicators if schema.departments[i.department].side == "evidence"
    ]
    evidence = tmp_path / "evidence.parquet"
    truth[["student_id", *evidence_cols]].to_parquet(evidence)
    table = sorted((small_province / "agencies" / "education").glob("*.parquet"))[0]
    out = tmp_path / "model"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(table),
            "--evidence",
            str(evidence),
            "--epsilon",
            "1",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--seed",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    n = len(pd.read_parquet(table))
    assert figures["students"] == n
    assert 0 < figures["epsilon"] <= 1.0
    assert figures["delta"] == 1e-5  # a public constant, never derived from n
    card = json.loads((out / "card.json").read_text())
    assert card["epsilon_spent"] == figures["epsilon"]
    assert "evaluation_on_private_data" in card["dp_caveats"]
    recs = tmp_path / "recs.csv"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(out),
            "--data",
            str(table),
            "--evidence",
            str(evidence),
            "--truth",
            str(small_province / "ground_truth" / "students.parquet"),
            "--recommendations",
            str(recs),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert 0 <= metrics["accuracy"] <= 1
    rows = pd.read_csv(recs)
    assert len(rows) == n
    assert rows["reasons"].notna().all()
