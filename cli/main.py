"""Entry point of the ``fedid`` command.

Each subcommand lives in its own module of :mod:`cli` and exposes
``register(app: typer.Typer) -> None``. This module is the only place that
configures logging and maps :class:`fedid.errors.FedIdError` to exit codes.
Commands that drive higher layers (simulations, the Flower apps) import them
inside the command body, so ``fedid`` itself never imports ``flwr`` at load.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import warnings

import typer
from rich.console import Console

import cli
from fedid import __version__
from fedid.errors import FedIdError

__all__ = ["app", "main"]

_err = Console(stderr=True)

app = typer.Typer(
    name="fedid",
    help=(
        "Privacy-preserving federated identification of students in hardship.\n\n"
        "Agencies keep their records; a coordinator aggregates DP model updates and "
        "resolves shared students through blinded tokens and Paillier encryption."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-v, -vv)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Configure logging for every subcommand."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="Protobuf gencode version")


def _register_subcommands() -> None:
    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if info.name in {"main"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cli.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_subcommands()


def main() -> None:
    """Run the CLI, mapping fedid errors to their exit codes with a one-line message."""
    try:
        # Outside standalone mode click returns (not raises) the code of a typer.Exit.
        code = app(standalone_mode=False)
    except FedIdError as exc:
        _err.print(f"[bold red]error:[/] {exc}")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
