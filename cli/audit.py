"""``fedid audit``: an empirical privacy audit of a simulated federation (canaries, attacks)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["audit_summary_line", "register"]

_console = Console(stderr=True)


def audit_summary_line(figures: dict[str, Any]) -> str:
    """One line per verdict, for the terminal."""
    lines = [f"{k}: {'FLAGGED' if v else 'not flagged'}" for k, v in figures["verdicts"].items()]
    for key, run in figures.get("membership", {}).items():
        aucs = [r["auc"] for a in run["attacks"].values() for r in a["per_agency"].values()
                if "auc" in r]
        if aucs:
            lines.append(f"membership inference ({key}): max agency AUC {max(aucs):.3f}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command."""

    @app.command("audit")
    def audit(
        out: Annotated[Path | None, typer.Option(
            "--out", help="Audit folder (default: a fresh runs/audit-<time>).")] = None,
        data: Annotated[Path | None, typer.Option(
            "--data", help="A province folder (agencies/education/*, ground_truth/, "
            "schema.toml) instead of a generated one.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of a generated province.")
                        ] = 20261129,
        epsilon: Annotated[list[float] | None, typer.Option(
            "--epsilon", help="Budget per agency; repeat for several (default 1).")] = None,
        delta: Annotated[float, typer.Option("--delta", help="Delta per agency.")] = 1e-5,
        canaries: Annotated[int, typer.Option(
            "--canaries", help="Gradient canaries per agency.")] = 400,
        confidence: Annotated[float, typer.Option(
            "--confidence", help="Confidence of the lower bounds.")] = 0.95,
        shadows: Annotated[int, typer.Option(
            "--shadows", help="Shadow federations for offline LiRA.")] = 4,
        broken: Annotated[str, typer.Option(
            "--broken", help="Known-broken configurations to check (comma-separated; "
            "'none' for none).")] = "noise_off,known_seed,clip_off,exact_counts",
        no_membership: Annotated[bool, typer.Option(
            "--no-membership", help="Skip membership inference on real records.")] = False,
        no_nonprivate: Annotated[bool, typer.Option(
            "--no-nonprivate", help="Skip the non-private control of the membership "
            "inference (it does not depend on the budget).")] = False,
    ) -> None:
        """Audit DP training empirically: canaries, one-run lower bounds, attacks."""
        from simulations.audit import AuditConfig, run_audit

        target = out or Path("runs") / f"audit-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        modes = () if broken.strip() == "none" else tuple(
            m.strip() for m in broken.split(",") if m.strip())
        cfg = AuditConfig(out=target, data=data, seed=seed, epsilons=tuple(epsilon or [1.0]),
                          delta=delta, canaries=canaries, confidence=confidence,
                          shadows=shadows, broken=modes, membership=not no_membership,
                          nonprivate=not no_nonprivate)
        start = time.perf_counter()

        def progress(message: str) -> None:
            _console.print(f"[{time.perf_counter() - start:6.0f} s] {message}")

        figures = run_audit(cfg, progress)
        _console.print(audit_summary_line(figures))
        _console.print(f"[green]done[/] in {time.perf_counter() - start:.0f} s: "
                       f"{target / 'audit.json'}, {target / 'audit.html'}")
