"""``fedid synth``: generate a synthetic province and write it in the team's layout."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from fedid.errors import ConfigError

__all__ = ["register"]

_log = logging.getLogger(__name__)


def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to create (must not exist).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same bytes.")] = 0,
    scale: Annotated[
        float, typer.Option("--scale", help="Multiply the default number of students (12,000).")
    ] = 1.0,
    students: Annotated[
        int | None, typer.Option("--students", help="Total students (overrides --scale).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Table format: parquet or csv.")] = (
        "parquet"
    ),
    legacy_id_share: Annotated[
        float | None,
        typer.Option(
            "--legacy-id-share",
            help="Share of departmental rows with 15-digit legacy IDs (default 0.05).",
        ),
    ] = None,
) -> None:
    """Generate a synthetic province: agency tables, ground truth and a manifest.

    Writes DIR/agencies/education/*, DIR/agencies/departments/*, DIR/ground_truth/
    (evaluation only), DIR/schema.toml and DIR/manifest.json (seed, scenario, counts,
    realised calibration rates, sha256 of every file). Nothing is written if it fails.
    """
    from dataclasses import replace

    from simulations.province import generate_province, write_province
    from simulations.scenario import Scenario

    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"--format must be parquet or csv. Got {fmt!r}")
    scenario = Scenario()
    scenario = scenario.with_students(students) if students is not None else scenario.scaled(scale)
    if legacy_id_share is not None:
        scenario = replace(scenario, legacy_id_share=legacy_id_share)
    start = time.perf_counter()
    province = generate_province(scenario, seed=seed)
    manifest = write_province(province, out, fmt="csv" if fmt == "csv" else "parquet")
    seconds = time.perf_counter() - start
    rates = province.calibration["self_report"]
    typer.echo(
        f"wrote {len(province.ground_truth)} students, {len(province.education)} education "
        f"agencies, {len(province.departments)} departments to {manifest.parent} in "
        f"{seconds:.1f} s (hidden {rates['hidden_rate']:.3f}, missed "
        f"{rates['missed_rate']:.3f}, wrong aid {rates['wrong_aid_rate']:.3f})"
    )


def register(app: typer.Typer) -> None:
    """Add ``fedid synth`` to the CLI."""
    app.command("synth")(synth)
