"""``fedid check``: validate agency tables against the schema and print every problem.

``fedid check FILE`` validates one CSV or Parquet table; ``fedid check DIR`` validates every
agency table of a province folder (``DIR/agencies/education/*``,
``DIR/agencies/departments/*``; ground truth is never read) or, for any other folder, every
CSV/Parquet file in it, with one summary line per file. Kind and department are inferred
from the path or the columns unless given; in a folder, a file whose kind cannot be inferred
is listed as skipped (with the reason), not validated. The schema is ``--schema``, else
the province's ``schema.toml``, else the embedded default. Exit status: 0 when no file has an error
(warnings allowed), 3 when any has. Input files are only read, never written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fedid.errors import ConfigError, DataValidationError
from fedid.schema import Schema, load_schema
from fedid.tables import FORMATS, Kind, ValidationReport, validate_agency_table

__all__ = ["check", "find_tables", "register", "schema_for"]

_DEFAULT_SHOWN = 50


def schema_for(path: Path, schema: Path | None) -> tuple[Schema, str]:
    """The schema to check ``path`` against, and where it came from."""
    if schema is not None:
        return load_schema(schema), str(schema)
    start = path if path.is_dir() else path.parent
    for folder in (start, *list(start.parents)[:3]):
        candidate = folder / "schema.toml"
        if candidate.is_file() and (folder / "agencies").is_dir():
            return load_schema(candidate), str(candidate)
    return load_schema(), "default"


def find_tables(folder: Path) -> list[Path]:
    """Agency tables of a province folder (education first), or the folder's own tables."""
    agencies = folder / "agencies"
    roots = [agencies / "education", agencies / "departments"] if agencies.is_dir() else [folder]
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += sorted(p for p in root.iterdir() if p.suffix.lower() in FORMATS)
    return found


def _problems_table(report: ValidationReport, limit: int | None) -> Table:
    table = Table(title=f"problems ({len(report)} in total)", title_justify="left")
    for col in ("row", "column", "kind", "severity", "message"):
        table.add_column(col, overflow="fold")
    for p in report.problems(limit):
        style = "red" if p.severity == "error" else "yellow"
        table.add_row(
            "" if p.row is None else str(p.row), p.column or "", p.kind.value,
            f"[{style}]{p.severity}[/]", p.message,
        )  # fmt: skip
    return table


def _summary_table(reports: list[ValidationReport], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("file", "left"), ("kind", "left"), ("department", "left"),
                         ("rows", "right"), ("legacy IDs", "right"), ("errors", "right"),
                         ("warnings", "right"),
                         ("problems by kind", "left")):  # fmt: skip
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in reports:
        per = ", ".join(f"{k} {n}" for k, n in r.counts().items()) or "-"
        table.add_row(
            Path(r.path).name, r.kind, r.department, f"{r.rows:,}", f"{r.legacy_ids:,}",
            f"[red]{r.errors}[/]" if r.errors else "0",
            f"[yellow]{r.warnings}[/]" if r.warnings else "0", per,
        )  # fmt: skip
    return table


def check(
    path: Annotated[Path, typer.Argument(help="A CSV/Parquet table, or a folder of them.")],
    schema: Annotated[
        Path | None,
        typer.Option("--schema", help="Schema TOML (default: the province's or the embedded one)."),
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="education or department (default: inferred).")
    ] = None,
    department: Annotated[
        str | None, typer.Option("--department", help="Owning department (default: inferred).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="CSV encoding (default: detect UTF-8/GBK).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Unknown columns are errors, not warnings.")
    ] = False,
    max_problems: Annotated[
        int | None,
        typer.Option("--max-problems", help="Problems to list per file (default: 50; JSON: all)."),
    ] = None,
) -> None:
    """Validate agency tables: every problem by row and column, and a summary.

    Exits 0 when there are no errors, 3 when any table has one. Never modifies its input.
    """
    if kind is not None and kind not in ("education", "department"):
        raise ConfigError(f"--kind must be education or department. Got {kind!r}")
    if not path.exists():
        raise ConfigError(f"no such file or folder: {path}")
    if max_problems is not None and max_problems < 0:
        raise ConfigError(f"--max-problems must be >= 0. Got {max_problems}")
    the_schema, schema_source = schema_for(path, schema)
    started = time.perf_counter()
    files = find_tables(path) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise ConfigError(f"{path}: no CSV or Parquet tables found")
    if path.is_dir() and (kind is not None or department is not None):
        raise ConfigError("--kind and --department apply to a single file, not a folder")
    the_kind: Kind | None = kind  # type: ignore[assignment]  # checked above
    reports: list[ValidationReport] = []
    skipped: list[tuple[Path, str]] = []  # folder mode: files that are not agency tables
    for f in files:
        try:
            reports.append(
                validate_agency_table(
                    f,
                    schema=the_schema,
                    kind=the_kind,
                    department=department,
                    encoding=encoding,
                    strict=strict,
                )
            )
        except ConfigError as exc:
            if not path.is_dir():
                raise
            skipped.append((f, str(exc)))
    if not reports:
        raise ConfigError(f"{path}: none of the {len(files)} files is a recognisable agency table")
    seconds = time.perf_counter() - started
    rows = sum(r.rows for r in reports)
    failed = any(not r.ok for r in reports)
    if as_json:
        doc: dict[str, Any] = {
            "path": str(path),
            "schema": schema_source,
            "ok": not failed,
            "files": [r.to_dict(max_problems=max_problems) for r in reports],
            "skipped": [{"path": str(f), "reason": why} for f, why in skipped],
            "rows": rows,
            "seconds": round(seconds, 3),
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        console = Console(soft_wrap=False)
        if not console.is_terminal:
            console.width = max(console.width, 140)
        limit = _DEFAULT_SHOWN if max_problems is None else max_problems
        for r in reports:
            if len(r) and limit:
                console.print(f"\n[bold]{r.path}[/]")
                console.print(_problems_table(r, limit))
        for f, why in skipped:
            console.print(f"[yellow]skipped[/] {f}: {why}")
        verdict = "[red]FAILED[/]" if failed else "[green]OK[/]"
        console.print(_summary_table(reports, f"{path} (schema: {schema_source})"))
        console.print(
            f"{verdict}: {len(reports)} table(s), {rows:,} rows, "
            f"{sum(r.errors for r in reports)} errors, {sum(r.warnings for r in reports)} "
            f"warnings in {seconds:.1f} s"
        )
    if failed:
        bad = [r for r in reports if not r.ok]
        raise DataValidationError(
            f"{len(bad)} of {len(reports)} table(s) failed validation "
            f"({sum(r.errors for r in bad)} errors)",
            bad[0] if len(bad) == 1 else bad,
        )


def register(app: typer.Typer) -> None:
    """Add ``fedid check`` to the CLI."""
    app.command("check")(check)
