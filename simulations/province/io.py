"""Write a generated province to disk atomically (:mod:`simulations.province.tables` reads
its tables back typed).

Layout (the team's data contract)::

    DIR/manifest.json                      seed, scenario, generator version, counts,
                                           realised calibration, files with sha256
    DIR/schema.toml                        copy of the schema used
    DIR/agencies/education/<agency>.parquet|csv
    DIR/agencies/departments/<department>.parquet|csv
    DIR/ground_truth/students.parquet|csv  evaluation only, never read by agency code

Everything is first written to a temporary sibling folder, which is renamed to ``DIR``
only when complete: a failure leaves nothing half written. Parquet files are written by
pyarrow without timestamps, so the same province gives byte-identical files. CSV files are
UTF-8 with empty fields for nulls; ``read_table`` restores the schema's types.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fedid.errors import ConfigError
from privacy.atomic import atomic_directory
from simulations.province.generate import GENERATOR_VERSION, Province

__all__ = ["Format", "write_province"]

Format = Literal["parquet", "csv"]



def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(frame: pd.DataFrame, path: Path, fmt: Format) -> None:
    if fmt == "parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, path, compression="zstd")
    else:
        frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


def _manifest(province: Province, files: dict[str, dict[str, Any]], fmt: Format) -> str:
    body = {
        "generator": "simulations.province",
        "generator_version": GENERATOR_VERSION,
        "seed": province.seed,
        "format": fmt,
        "scenario": province.scenario.to_dict(),
        "schema": "schema.toml",
        "agencies": {
            "education": sorted(province.education),
            "departments": sorted(province.departments),
        },
        "counts": {
            "students": len(province.ground_truth),
            **{name: len(t) for name, t in sorted({
                **province.education, **province.departments
            }.items())},
        },
        "calibration": province.calibration,
        "files": files,
    }
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_province(
    province: Province, out: Path, *, fmt: Format = "parquet", overwrite: bool = False
) -> Path:
    """Write ``province`` to ``out`` atomically; return the manifest path."""
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"format must be 'parquet' or 'csv'. Got {fmt!r}")
    out = out.resolve()
    if out.exists() and not overwrite:
        raise ConfigError(f"output folder exists: {out} (choose another or overwrite)")
    with atomic_directory(out) as tmp:
        (tmp / "schema.toml").write_text(province.schema.text, encoding="utf-8")
        groups = {
            "agencies/education": province.education,
            "agencies/departments": province.departments,
            "ground_truth": {"students": province.ground_truth},
        }
        files: dict[str, dict[str, Any]] = {}
        for folder, tables in groups.items():
            (tmp / folder).mkdir(parents=True)
            for name, frame in sorted(tables.items()):
                rel = f"{folder}/{name}.{fmt}"
                _write(frame, tmp / rel, fmt)
                files[rel] = {"rows": len(frame), "sha256": _sha256(tmp / rel)}
        files["schema.toml"] = {"rows": 0, "sha256": _sha256(tmp / "schema.toml")}
        (tmp / "manifest.json").write_text(_manifest(province, files, fmt), encoding="utf-8")
    return out / "manifest.json"
