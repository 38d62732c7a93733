"""Benchmark: national ID validation (IDs/s) and agency-table validation (rows/s).

Run ``python -m simulations.bench.validation [--ids N] [--rows N]``; prints one JSON line.

- IDs: ``fedid.ids.validate`` on N valid 18-digit numbers given as a numpy ``str`` array, a
  Python list, and a pandas (Arrow-backed) column; ``to_canonical`` on 15-digit legacy
  numbers; ``make_ids`` and ``parse``. For scale, the same check written as a plain Python
  loop (one ``int`` sum per ID), the obvious per-record implementation.
- Tables: ``validate_agency_table`` on an education table of N rows (every layout column:
  3 ID columns, 7 indicators, applied, stage, 5 labels) written as Parquet and as UTF-8 CSV.

Figures are best of three (IDs) or one run (tables); ``*_cpu_*`` use process CPU time (more
stable on a shared machine; pyarrow's CSV reader may use a second thread), the others wall
time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedid.ids import make_ids, parse, to_canonical, validate
from fedid.schema import load_schema
from fedid.tables import validate_agency_table

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _python_loop(ids: list[str]) -> int:
    """The per-record peer: charset, date and checksum per ID in pure Python."""
    ok = 0
    for s in ids:
        if len(s) != 18 or not s[:17].isdigit():
            continue
        try:
            dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
        except ValueError:
            continue
        total = sum(int(c) * w for c, w in zip(s[:17], _W, strict=True))
        ok += "10X98765432"[total % 11] == s[17]
    return ok


def _best(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def _ids(n: int, seed: int) -> np.ndarray[Any, np.dtype[np.str_]]:
    rng = np.random.default_rng(seed)
    return make_ids(
        address_codes=rng.choice([110105, 330521, 411422, 520525, 621121], n),
        birth_dates=np.datetime64("1960-01-01") + rng.integers(0, 20000, n),
        sequences=rng.integers(0, 1000, n),
    )


def bench_ids(n: int) -> dict[str, float]:
    ids = _ids(n, seed=1)
    as_list = ids.tolist()
    column = pd.Series(ids, dtype="str")
    rng = np.random.default_rng(2)
    born_1900s = make_ids(  # 15-digit numbers exist only for 19xx births, sequences < 996
        address_codes=110105,
        birth_dates=np.datetime64("1930-01-01") + rng.integers(0, 25000, n // 4),
        sequences=rng.integers(0, 996, n // 4),
    )
    legacy = np.array([s[:6] + s[8:17] for s in born_1900s.tolist()])
    out: dict[str, float] = {"ids": n}
    for name, fn, count in (
        ("validate_numpy", lambda: validate(ids), n),
        ("validate_list", lambda: validate(as_list), n),
        ("validate_arrow_column", lambda: validate(column), n),
        ("to_canonical_legacy15", lambda: to_canonical(legacy), len(legacy)),
        ("parse", lambda: parse(ids), n),
        (
            "make_ids",
            lambda: make_ids(
                address_codes=110105,
                birth_dates=np.datetime64("1990-01-01") + rng.integers(0, 9000, n),
                sequences=rng.integers(0, 1000, n),
            ),
            n,
        ),
    ):
        wall, cpu = _best(fn)
        out[f"{name}_per_s"] = round(count / wall)
        out[f"{name}_cpu_per_s"] = round(count / cpu)
    sample = as_list[: min(n, 200_000)]
    wall, cpu = _best(lambda: _python_loop(sample), repeat=1)
    out["python_loop_per_s"] = round(len(sample) / wall)
    out["ratio_validate_numpy_vs_python_loop"] = round(
        out["validate_numpy_per_s"] / out["python_loop_per_s"], 1
    )
    return out


def _education_table(rows: int, seed: int) -> pd.DataFrame:
    schema = load_schema()
    rng = np.random.default_rng(seed)
    students = pd.unique(_ids(int(rows * 1.05) + 10, seed=seed))[:rows]
    n = len(students)
    guardians = _ids(2 * n, seed=seed + 1)
    data: dict[str, Any] = {
        "student_id": students,
        "guardian1_id": guardians[:n],
        "guardian2_id": pd.Series(guardians[n:], dtype="str").where(rng.random(n) < 0.7),
        "household_size": rng.integers(1, 8, n),
        "labour_force_count": rng.integers(0, 4, n),
        "siblings_in_school": rng.integers(0, 4, n),
        "left_behind_child": rng.random(n) < 0.1,
        "rural_hukou": rng.random(n) < 0.5,
        "campus_card_spending": np.round(rng.uniform(100, 2000, n), 2),
        "grade_percentile": np.round(rng.uniform(0, 100, n), 1),
        "psych_risk_level": rng.integers(0, 4, n),
        "applied": rng.random(n) < 0.2,
        "stage": rng.choice(["k12", "senior_high", "university"], n),
        "label_level": rng.choice(list(schema.levels), n),
    }
    for flag in schema.dimension_flags:
        data[f"label_{flag}"] = rng.random(n) < 0.1
    return pd.DataFrame(data)


def bench_tables(rows: int) -> dict[str, float]:
    frame = _education_table(rows, seed=3)
    out: dict[str, float] = {"table_rows": len(frame), "table_columns": frame.shape[1]}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("parquet", "csv"):
            path = Path(tmp) / f"school.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path)
            else:
                frame.to_csv(path, index=False)
            wall, cpu = _best(lambda p=path: validate_agency_table(p), repeat=1)  # type: ignore[misc]
            report = validate_agency_table(path)
            if report.errors:
                raise RuntimeError(f"benchmark table has errors: {report.summary()}")
            out[f"table_{fmt}_rows_per_s"] = round(len(frame) / wall)
            out[f"table_{fmt}_cpu_rows_per_s"] = round(len(frame) / cpu)
            out[f"table_{fmt}_seconds"] = round(wall, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="IDs to validate")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table")
    args = parser.parse_args()
    figures = {"benchmark": "validation", **bench_ids(args.ids), **bench_tables(args.rows)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
