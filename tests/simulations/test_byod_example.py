"""The README's "Bring your own data" example, end to end through Flower (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "byod"


@pytest.mark.slow
def test_example_runs_from_csv_to_report_and_its_model_evaluates(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    done = runner.invoke(app, ["simulate", "--data", str(EXAMPLE), "--no-matching",
                               "--out", str(out), "--rounds", "2"])
    assert done.exit_code == 0, done.output
    summary = json.loads((out / "summary.json").read_text())
    fed = summary["identification"]["federated"]
    assert fed["n"] == 4000  # every student of the four schools, scored against the truth
    assert all(p["within_budget"] for p in summary["privacy"]["per_agency"].values())
    assert (out / "report.html").exists()
    evaluated = runner.invoke(app, ["evaluate", "--model", str(out / "coordinator" /
                                                             "final_model"),
                                    "--data", str(EXAMPLE / "agencies" / "education" /
                                                  "school_a.csv")])
    assert evaluated.exit_code == 0, evaluated.output
