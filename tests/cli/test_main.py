"""The ``fedid`` entry point: help, version and error-to-exit-code mapping."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

import cli.main as main_module
from cli.main import app
from fedid import __version__


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fedid {__version__}"


def test_help_lists_subcommands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_console_entry_point_maps_usage_errors_to_nonzero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "No such command" in proc.stderr


def test_console_entry_point_keeps_typer_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = typer.Typer()

    @probe.command()
    def fail() -> None:
        raise typer.Exit(code=9)

    monkeypatch.setattr(main_module, "app", probe)
    monkeypatch.setattr(sys, "argv", ["fedid"])
    with pytest.raises(SystemExit) as excinfo:
        main_module.main()
    assert excinfo.value.code == 9
