"""``fedid match``: a whole private matching round over agency tables, in one process."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from fedid.errors import ConfigError

__all__ = ["register"]

_log = logging.getLogger(__name__)


def _tables(province: Path | None, home: list[Path] | None, evidence: list[Path] | None
            ) -> tuple[Path | None, list[Path], list[Path]]:
    if province is not None:
        if home or evidence:
            raise ConfigError("give either --province or --home/--evidence, not both")
        edu = sorted((province / "agencies" / "education").glob("*.parquet"))
        deps = sorted((province / "agencies" / "departments").glob("*.parquet"))
        schema = province / "schema.toml"
        return (schema if schema.exists() else None), edu, deps
    if not home or not evidence:
        raise ConfigError("give --province DIR, or at least one --home and one --evidence file")
    return None, list(home), list(evidence)


def match(
    out: Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")],
    province: Annotated[
        Path | None, typer.Option("--province", help="A province folder from `fedid synth`.")
    ] = None,
    home: Annotated[
        list[Path] | None,
        typer.Option("--home", help="Education table (repeatable); agency id = file stem."),
    ] = None,
    evidence: Annotated[
        list[Path] | None,
        typer.Option("--evidence", help="Department table (repeatable); department = file stem."),
    ] = None,
    schema_file: Annotated[Path | None, typer.Option("--schema", help="Schema TOML.")] = None,
    key_bits: Annotated[int, typer.Option("--key-bits", help="Paillier modulus bits.")] = 3072,
    grouping: Annotated[
        str, typer.Option("--grouping", help="province (one key per run) or per_agency.")
    ] = "province",
    evidence_keys: Annotated[
        str, typer.Option("--evidence-keys", help="per_department or shared scalars.")
    ] = "per_department",
    min_cell: Annotated[int, typer.Option("--min-cell", help="Suppress smaller counts.")] = 10,
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", help="DP epsilon on released counts.")
    ] = None,
) -> None:
    """Resolve every education agency's students against every department's records."""
    from fedid.matching import MatchingConfig, ReleaseConfig, match_in_process, write_outputs
    from fedid.schema import load_schema
    from fedid.tables.validate import load_agency_table

    found_schema, edu, deps = _tables(province, home, evidence)
    schema = load_schema(schema_file or found_schema)

    def load(path: Path, kind: Literal["education", "department"]) -> pd.DataFrame:
        dep = path.stem if kind == "department" else None
        return load_agency_table(path, schema=schema, kind=kind, department=dep).frame

    homes = {p.stem: load(p, "education") for p in edu}
    departments = {p.stem: load(p, "department") for p in deps}
    config = MatchingConfig(
        paillier_bits=key_bits, grouping=grouping,  # type: ignore[arg-type]
        evidence_keys=evidence_keys,  # type: ignore[arg-type]
        release=ReleaseConfig(min_cell=min_cell, epsilon=epsilon))
    t0 = time.perf_counter()
    result = match_in_process(schema=schema, homes=homes, departments=departments, config=config)
    write_outputs(result, out)
    students = sum(len(f) for f in result.resolved.values())
    typer.echo(f"matched {students} students of {len(homes)} agencies against "
               f"{len(departments)} departments in {time.perf_counter() - t0:.1f} s -> {out}")


def register(app: typer.Typer) -> None:
    app.command("match")(match)
