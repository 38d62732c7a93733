"""Regenerate this example's CSV tables (deterministic; the committed files came from it).

Three schools hold 1,500, 1,200 and 900 students with four indicators and a recorded hardship
label (binary: "none" / "aided"); a fourth table, school_d, holds 200 students without
labels, to be scored. ``ground_truth/students.csv`` holds every student's true level, as an
evaluation would (for example from a later home-visit audit). Run from the repository root:
``python examples/byod/make_example.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedid.ids import make_ids

HERE = Path(__file__).parent
SIZES = {"school_a": 1500, "school_b": 1200, "school_c": 900, "school_d": 400}


def main() -> None:
    rng = np.random.default_rng(2026)
    n = sum(SIZES.values())
    i = np.arange(n)
    ids = make_ids(address_codes=510104, birth_dates=np.datetime64("2008-03-01") + i // 900,
                   sequences=i % 900)
    income = np.round(rng.lognormal(mean=10.3, sigma=0.6, size=n).clip(0, 150_000), -1)
    size = rng.integers(2, 8, size=n)
    single = rng.random(n) < 0.15
    grades = np.round(rng.normal(75, 10, size=n).clip(0, 100), 1)
    score = -4.0 * (income / 30_000 - 1) + 0.6 * (size - 4) + 2.0 * single + rng.logistic(size=n)
    truth = np.where(score > 1.5, "aided", "none")
    # the recorded label misses some students in hardship (they did not apply)
    applied = rng.random(n) < 0.85
    label = np.where((truth == "aided") & applied, "aided", "none")
    table = pd.DataFrame({"student_id": ids, "household_income": income, "family_size": size,
                          "single_parent": single, "grade_average": grades,
                          "applied": applied, "label_level": label})
    out = HERE / "agencies" / "education"
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, rows in SIZES.items():
        part = table.iloc[start : start + rows]
        if name == "school_d":
            part = part.drop(columns=["label_level"])
        part.to_csv(out / f"{name}.csv", index=False)
        start += rows
    (HERE / "ground_truth").mkdir(exist_ok=True)
    pd.DataFrame({"student_id": ids, "true_level": truth}).to_csv(
        HERE / "ground_truth" / "students.csv", index=False)


if __name__ == "__main__":
    main()
