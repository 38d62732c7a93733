"""The synthetic province: private matching equals the plaintext reference join and the
ground truth exactly (every student, every evidence indicator, no false matches)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulations.province  # noqa: F401  (imported first: avoids an import cycle there)
from fedid.matching import MatchingConfig, match_in_process
from fedid.schema import Schema, load_schema
from simulations.reference_join import load_province_tables, reference_join


def _equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    na, nb = a.isna().to_numpy(), b.isna().to_numpy()
    out = na == nb
    both = ~na & ~nb
    av, bv = a[both].to_numpy(dtype=object), b[both].to_numpy(dtype=object)
    same = np.array([
        abs(float(x) - float(y)) < 0.005 if isinstance(x, float | np.floating)
        or isinstance(y, float | np.floating) else x == y
        for x, y in zip(av, bv, strict=True)], dtype=bool)
    out[np.flatnonzero(both)] = same
    return out


def compare_province(root: Path, schema: Schema, resolved: dict[str, pd.DataFrame]
                     ) -> dict[str, int]:
    """Mismatching cells against reference_join and ground truth (both must be 0)."""
    ref = reference_join(root).set_index("student_id")
    truth = pd.read_parquet(root / "ground_truth" / "students.parquet").set_index("student_id")
    got = pd.concat(resolved.values()).set_index("student_id")
    assert len(got) == len(ref) == len(truth)
    got = got.loc[ref.index]
    cells = bad_ref = bad_truth = non_null = 0
    for ind in schema.indicators:
        if ind.department == "education":
            continue
        bad_ref += int((~_equal(got[ind.name], ref[ind.name])).sum())
        bad_truth += int((~_equal(got[ind.name], truth.loc[ref.index, ind.name])).sum())
        cells += len(got)
        non_null += int(got[ind.name].notna().sum())
    return {"cells": cells, "non_null": non_null, "bad_vs_reference": bad_ref,
            "bad_vs_ground_truth": bad_truth}


def test_small_province_equals_reference_and_ground_truth(small_province: Path) -> None:
    schema = load_schema(small_province / "schema.toml")
    education, departments, _ = load_province_tables(small_province)
    legacy = sum(int((t["person_id"].str.len() == 15).sum()) for t in departments.values())
    assert legacy > 0
    res = match_in_process(schema=schema, homes=education, departments=departments,
                       config=MatchingConfig(paillier_bits=2048))
    stats = compare_province(small_province, schema, res.resolved)
    assert stats["non_null"] > 1000
    assert stats["bad_vs_reference"] == 0
    assert stats["bad_vs_ground_truth"] == 0
    assert not math.isnan(sum(res.timings.values()))


@pytest.mark.slow
def test_default_province_3072_bits(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "prov"
    subprocess.run([sys.executable, "-m", "cli.main", "synth", "--out", str(root)],
                   check=True)
    schema = load_schema(root / "schema.toml")
    education, departments, _ = load_province_tables(root)
    res = match_in_process(schema=schema, homes=education, departments=departments,
                       config=MatchingConfig())
    stats = compare_province(root, schema, res.resolved)
    assert stats["bad_vs_reference"] == 0
    assert stats["bad_vs_ground_truth"] == 0

