"""The synthetic province with perturbed scenario parameters: a check against tuning the
recipe to one generator setting.

The scenario shifts the generator's calibration, label noise and sizes away from the
defaults the former recipe was tuned on (:data:`PERTURBED`). Every education agency of the
province is one federated agency; each student's evidence comes from the exact plaintext join
in the ground truth (standing in for matching, as the centralized reference does); a
stratified-by-agency 20 % of students is the test set, scored against the TRUE level
(training uses the recorded, noisy labels). The default schema declares its label process,
so fedid decides at the corrected threshold; the peer takes the arg-max level.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PERTURBED", "synthetic_agencies"]

#: Shifts from the default scenario (never used to choose the recipe).
PERTURBED: dict[str, Any] = {
    "students": 9_000, "latent_noise_sd": 2.5, "missed_rate": 0.22, "wrong_aid_rate": 0.18,
    "hidden_rate": 0.15, "hardship_share": (0.14, 0.22, 0.27), "dibao_rate": 0.035,
    "label_level_accuracy": 0.6,
}


def synthetic_agencies(
    folder: Path, *, seed: int, holdout: float
) -> tuple[Any, list[tuple[pd.DataFrame, pd.DataFrame]], pd.DataFrame]:
    """(schema, per-agency (train, held-out) inputs, test inputs with ``true_level``)."""
    from clients.training import holdout_split
    from fedid.model.features import build_inputs
    from fedid.schema import load_schema
    from fedid.tables import load_agency_table
    from simulations.province import generate_province, write_province
    from simulations.reference import truth_evidence
    from simulations.scenario import Scenario

    if not (folder / "manifest.json").exists():
        scenario = replace(Scenario(), **PERTURBED)
        write_province(generate_province(scenario, seed=seed), folder)
    schema = load_schema(folder / "schema.toml")
    truth = pd.read_parquet(folder / "ground_truth" / "students.parquet")
    evidence = truth_evidence(truth, schema)
    rng = np.random.default_rng(seed)
    agencies, tests = [], []

    for path in sorted((folder / "agencies" / "education").glob("*.parquet")):
        frame = load_agency_table(path, schema=schema, kind="education").frame
        inputs = build_inputs(frame, evidence, schema)
        is_test = rng.random(len(inputs)) < 0.2
        tests.append(inputs[is_test])
        rows = inputs[~is_test & inputs["label_level"].notna().to_numpy()]
        rows = rows.reset_index(drop=True)
        held = holdout_split(len(rows), holdout)
        agencies.append((rows[~held].reset_index(drop=True), rows[held].reset_index(drop=True)))
    test = pd.concat(tests, ignore_index=True).merge(
        truth[["student_id", "true_level"]], on="student_id")
    test["true_level"] = test["true_level"].astype(str)
    return schema, agencies, test
