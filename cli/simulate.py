"""``fedid simulate``: a whole school year of a province in Flower's simulation engine."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["YearProgress", "register"]

_console = Console(stderr=True)


def _fresh_out() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"simulate-{stamp}"


def _audit(cfg: Any, summary: dict[str, Any], say: Any) -> dict[str, Any]:
    """Run ``fedid audit`` on the simulated province; add its figures; rewrite the report."""
    from simulations import report
    from simulations.audit import AuditConfig, run_audit

    province = cfg.data or (cfg.out / "province")
    summary["audit"] = run_audit(AuditConfig(
        out=cfg.out / "audit", data=province, seed=cfg.seed, students=cfg.students,
        epsilons=(cfg.epsilon,), delta=cfg.delta, rounds=cfg.rounds), say)
    report.write(cfg.out, summary)
    return summary


def _progress_line(event: str, data: dict[str, Any], elapsed: float) -> None:
    """A progress line on stderr (the bar only redraws on a terminal)."""
    if event == "phase":
        text = f"phase {data['name']}"
    elif event == "round":
        f1 = data.get("metrics", {}).get("macro_f1")
        text = f"round {data['round']}" + (f" held-out macro-F1 {f1:.3f}" if f1 is not None
                                           else "")
    elif event == "matching":
        text = f"matching {data.get('home', '')}"
    elif event == "curve":
        text = f"epsilon curve: the year at epsilon {data['epsilon']:g}"
    else:
        return
    print(f"[{elapsed:6.0f} s] {text}", file=sys.stderr, flush=True)


class YearProgress:
    """The progress bar of ``fedid simulate``: the phase, and the rounds as ``k/N``.

    Counts are text fields ("{task.fields[count]}"), never "{task.completed}/{task.total}":
    the phase line has no total and would end as "0/None".
    """

    def __init__(self, console: Console, rounds: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console, self.rounds = console, rounds
        self.start = time.perf_counter()
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                            console=console, transient=False)
        self.phase = self.bar.add_task("starting", total=None, count="")
        self.rounds_task = self.bar.add_task("training rounds", total=rounds, visible=False,
                                             count=f"0/{rounds}")
        self.prefix = ""

    def __enter__(self) -> YearProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if not self.console.is_terminal:  # a log file or pipe: one plain line per event
            _progress_line(event, data, time.perf_counter() - self.start)
        if event == "phase":
            self.say(f"phase: {data['name']}")
            if data["name"] == "training":
                self.bar.update(self.rounds_task, visible=True, completed=0,
                                count=f"0/{self.rounds}", description="training rounds")
        elif event == "round":
            f1 = data.get("metrics", {}).get("macro_f1")
            extra = f" (held-out macro-F1 {f1:.3f})" if f1 is not None else ""
            self.bar.update(self.rounds_task, completed=data["round"],
                            count=f"{data['round']}/{self.rounds}",
                            description=f"{self.prefix}training rounds{extra}")
        elif event == "matching":
            self.say(f"phase: matching {data.get('home', '')}")
        elif event == "curve":
            self.prefix = f"epsilon {data['epsilon']:g}: "
            self.say("starting")

    def say(self, text: str) -> None:
        """Show ``text`` on the phase line."""
        self.bar.update(self.phase, description=f"{self.prefix}{text}")

    def done(self) -> None:
        """The phase line ends as "done" with a full bar."""
        self.prefix = ""
        self.bar.update(self.phase, description="done", total=1, completed=1, count="")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command."""

    @app.command("simulate")
    def simulate(
        out: Annotated[Path | None, typer.Option(
            "--out", help="Run folder (default: a fresh runs/simulate-<time>).")] = None,
        data: Annotated[Path | None, typer.Option(
            "--data", help="Agency tables laid out as a province (agencies/education/*, "
            "agencies/departments/*) instead of a generated one.")] = None,
        schema: Annotated[Path | None, typer.Option(
            "--schema", help="Schema TOML for --data (default: DATA/schema.toml).")] = None,
        students: Annotated[int | None, typer.Option(
            "--students", help="Size of a generated province (default: 12,000).")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of a generated province.")
                        ] = 20261129,
        rounds: Annotated[int | None, typer.Option(
            "--rounds", help="Federated training rounds (default 5; with --distributed-noise "
            "20, one DP-FedSGD step each).")] = None,
        epsilon: Annotated[float, typer.Option(
            "--epsilon", help="Privacy budget (epsilon) per agency.")] = 1.0,
        delta: Annotated[float, typer.Option("--delta", help="Delta per agency.")] = 1e-5,
        min_nodes: Annotated[int, typer.Option("--min-nodes", help="Nodes needed to start.")] = 2,
        grouping: Annotated[str, typer.Option(
            "--grouping", help="Matching runs: province (one, education keyring shared "
            "among education nodes) or per_agency (one per education agency).")
            ] = "province",
        no_matching: Annotated[bool, typer.Option(
            "--no-matching", help="Skip matching (education-owned indicators only).")] = False,
        transcript: Annotated[bool, typer.Option(
            "--transcript", help="Record every message leaving a node (OUT/transcript).")] = False,
        workers: Annotated[int, typer.Option(
            "--workers", help="Simulation worker processes.")] = 2,
        secure_aggregation: Annotated[bool, typer.Option(
            "--secure-aggregation", help="Mask each node's update (pairwise-masking secure "
            "sum): the coordinator sees only the sum.")] = False,
        audit: Annotated[bool, typer.Option(
            "--audit", help="Then audit the same province at the same budget (fedid audit, "
            "into OUT/audit); its figures go into summary.json and the report.")] = False,
        recipe: Annotated[str | None, typer.Option(
            "--recipe", help="Every node's training recipe: fixed (batch 2,048, 8 local "
            "epochs, learning rate 0.2, clipping 5; tuned on synthetic provinces of the "
            "default schema) or rule (batch, epochs, clipping and learning rate from each "
            "agency's row count and the rounds, fedid/model/recipe.py). Default: fixed for "
            "the synthetic province, rule with --data.")] = None,
        distributed_noise: Annotated[bool, typer.Option(
            "--distributed-noise", help="With --secure-aggregation: each round one DP-FedSGD "
            "step, each agency adding only its share of the noise so that the sum carries the "
            "full noise; epsilon holds under a trust statement (THREAT_MODEL.md).")] = False,
        epsilon_curve: Annotated[bool, typer.Option(
            "--epsilon-curve", help="Then run the year again at epsilon 0.25, 0.5, 1, 2, 4 "
            "and 8 (all but --epsilon) on the same province and matched evidence (no second "
            "matching; OUT/epsilon_curve/eps_<e>/), and plot utility and review-queue "
            "outcomes against the budget in the report (OUT/epsilon_curve.json).")] = False,
        holdout: Annotated[float, typer.Option(
            "--holdout", help="Share of each agency's labelled rows held out of training "
            "for federated evaluation (0: train on all).")] = 0.2,
    ) -> None:
        """Simulate a school year end to end; write summary.json and report.html."""
        from simulations.simulate import SimulationConfig, run

        # Flower runs in its own processes (flwr run against a simulation SuperLink); their
        # log goes to DIR/flwr/run.log, the year's progress comes back as events.
        target = out or _fresh_out()
        if target.exists() and any(target.iterdir()) and out is not None and \
                (target / "summary.json").exists():
            _console.print(f"[yellow]note:[/] {target} holds an earlier run; it is overwritten.")
        if rounds is None:
            from simulations.noise_mode import DEFAULT_ROUNDS

            rounds = DEFAULT_ROUNDS if distributed_noise else 5
        cfg = SimulationConfig(
            out=target, data=data, schema=schema, students=students, seed=seed, rounds=rounds,
            epsilon=epsilon, delta=delta, min_nodes=min_nodes, matching=not no_matching,
            grouping=grouping,
            transcript=transcript, workers=workers, secure_aggregation=secure_aggregation,
            holdout=holdout, recipe=recipe or ("rule" if data is not None else "fixed"),
            distributed_noise=distributed_noise,
        )
        start = time.perf_counter()
        with YearProgress(_console, rounds) as progress:
            summary = run(cfg, progress)
            if epsilon_curve:
                from simulations.epsilon_curve import EPSILONS, add_budgets

                summary["epsilon_curve"] = add_budgets(
                    summary, epsilons=EPSILONS, cfg=cfg, progress=progress)
            if audit:
                summary = _audit(cfg, summary, lambda m: progress.say(f"audit: {m}"))
            progress.done()
        ident = summary.get("identification", {}).get("federated", {})
        _console.print(
            f"[green]done[/] in {time.perf_counter() - start:.0f} s: "
            f"{target / 'summary.json'}, {target / 'report.html'}"
        )
        if ident:
            _console.print(
                f"federated DP model: macro-F1 {ident.get('macro_f1', float('nan')):.3f}, "
                f"missed {ident.get('missed_rate', float('nan')):.3f}, "
                f"wrong aid {ident.get('wrong_aid_rate', float('nan')):.3f}"
            )
