"""``fedid schema``: show the indicator schema or validate a province's schema file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedid.schema import Indicator, Schema, load_schema, schema_format

__all__ = ["register", "schema_app"]

schema_app = typer.Typer(
    name="schema",
    help="Show the indicator schema (default or a province's file) or validate a schema file.",
    no_args_is_help=True,
)


def _range(ind: Indicator) -> str:
    if ind.categories:
        return " | ".join(ind.categories)
    if ind.min is None:
        return ""
    return f"{_num(ind.min)} .. {_num(ind.max)}"


def _num(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _indicators_table(schema: Schema) -> Table:
    table = Table(title=f"{len(schema.indicators)} indicators", title_justify="left")
    for col in ("name", "dimension", "department", "type", "range / categories", "unit",
                "keyed by", "combine", "source field"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for i in schema.indicators:
        table.add_row(
            i.name, i.dimension, i.department, i.type, _range(i), i.unit, i.keyed_by,
            i.combine or "", "" if i.source_field == i.name else i.source_field,
        )  # fmt: skip
    return table


def _threshold_source(schema: Schema) -> str:
    if schema.threshold is not None:
        return "[labels] threshold"
    if schema.label_noise is not None:
        return "corrected for the declared label process"
    return "no label process declared: no correction"


def _overview(schema: Schema) -> str:
    levels = ", ".join(
        f"{n} ({lab})" for n, lab in zip(schema.levels, schema.levels.labels, strict=True)
    )
    return (
        f"schema {schema.name!r} v{schema.version} from {schema.source}\n"
        f"levels: {levels}\n"
        f"dimension flags: {', '.join(schema.dimension_flags) or '(none)'}\n"
        f"decision threshold on P(level >= 1): {schema.hardship_threshold:.3f} "
        f"({_threshold_source(schema)})\n"
        f"departments: {len(schema.education_departments)} education-side, "
        f"{len(schema.evidence_departments)} evidence-side\n"
        f"rules: {len(schema.direct_rules)} direct recognition, "
        f"{len(schema.exclusion_rules)} exclusion"
    )


@schema_app.command("show")
def show(
    file: Annotated[
        Path | None, typer.Argument(help="Schema TOML (default: the embedded default).")
    ] = None,
    as_toml: Annotated[
        bool, typer.Option("--toml", help="Print the validated schema as normalised TOML,"
                           " preceded by the file format as comments.")
    ] = False,
) -> None:
    """Print the schema (levels, flags, threshold, departments, rules, every indicator), then
    the schema file format."""
    schema = load_schema(file)
    if as_toml:
        typer.echo(schema.to_toml(documented=True), nl=False)
        return
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(_overview(schema))
    console.print(_indicators_table(schema))
    console.print(schema_format(), markup=False, highlight=False)


@schema_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="Schema TOML to check.")],
) -> None:
    """Check a schema file; exit 2 with the file, entry and rule broken if it is invalid."""
    schema = load_schema(file)
    typer.echo(
        f"OK: {file} is a valid schema ({len(schema.indicators)} indicators, "
        f"{len(schema.levels)} levels, {len(schema.departments)} departments)"
    )


def register(app: typer.Typer) -> None:
    """Add ``fedid schema show|validate`` to the CLI."""
    app.add_typer(schema_app, name="schema")
