"""``fedid ledger``: everything a node released, for its privacy reviewer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` command."""

    @app.command("ledger")
    def ledger(
        out: Annotated[Path, typer.Option("--out", help="The node's output folder.")],
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
        = False,
    ) -> None:
        """Print a node's releases: kind, scope, protection of each field, epsilon charged."""
        from clients.gate import read_ledger
        from fedid.errors import ConfigError

        entries = read_ledger(out)
        if not entries and not out.is_dir():
            raise ConfigError(f"--out must be a node's output folder. Got {out}.")
        if as_json:
            for entry in entries:
                typer.echo(json.dumps(entry, sort_keys=True))
            return
        charged = 0.0
        for e in entries:
            charged += float(e.get("charged_epsilon", 0.0))
            fields = ", ".join(f"{k}:{v}" for k, v in sorted(e.get("fields", {}).items()))
            status = e["status"] if e["status"] == "released" else f"error {e.get('error')}"
            typer.echo(f"{e['kind']:<15} {e.get('scope') or '-':<14} {status:<22} "
                       f"charged {float(e.get('charged_epsilon', 0.0)):.4f}  {fields}")
        last = entries[-1] if entries else {}
        typer.echo(json.dumps({
            "releases": sum(1 for e in entries if e["status"] == "released"),
            "refused_or_failed": sum(1 for e in entries if e["status"] != "released"),
            "charged_epsilon_sum": charged,
            "epsilon_total": float(last.get("epsilon_total", 0.0)),
            "delta": float(last.get("delta", 0.0)),
        }))
