"""``fedid train``: one agency's local DP training run (a dry run of its federated part).

It composes with what was already spent on the same ``--out``: the accountant history in
``<out>/privacy_state.bin`` is resumed (same delta, same accountant, the noise multiplier
calibrated on the first run), ``--epsilon`` is the TOTAL budget over all runs, and the
guard refuses a run that would take the total past it (nothing is written then). The
output reports this run's and the total spend.

Delta is a public constant (``--delta``, default 1e-5), never derived from the row count;
it must stay below 1/n, checked here on the agency's machine. The model card written here
stays on the agency's machine: its counts and training-label metrics are exact, not DP.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``train`` command."""

    @app.command("train")
    def train(
        data: Annotated[Path, typer.Option("--data", help="Education table (CSV or Parquet).")],
        epsilon: Annotated[float, typer.Option(
            "--epsilon", help="Total privacy budget epsilon over every run on this --out.")],
        delta: Annotated[
            float, typer.Option("--delta", help="Delta: a public constant below 1/n.")
        ] = 1e-5,
        schema: Annotated[
            Path | None, typer.Option("--schema", help="Schema TOML (default: built-in).")
        ] = None,
        evidence: Annotated[
            Path | None,
            typer.Option("--evidence", help="Matched evidence: student_id + indicators."),
        ] = None,
        out: Annotated[Path, typer.Option("--out", help="Model directory to write.")] = Path(
            "model"
        ),
        epochs: Annotated[int | None, typer.Option(
            "--epochs", help="Epochs (one call; default: the recipe's rule).")] = None,
        accountant: Annotated[str, typer.Option("--accountant", help="prv or rdp.")] = "prv",
        seed: Annotated[int | None, typer.Option("--seed", help="Test runs only.")] = None,
    ) -> None:
        """Train the hardship model on one agency's table with DP-SGD; write model and card."""
        from cli._model_io import load_inputs
        from fedid.errors import ConfigError, DataValidationError
        from fedid.model import (
            DP_CAVEATS,
            HardshipModel,
            ModelCard,
            TrainConfig,
            evaluate,
            new_local_state,
            save_model,
            summary,
            train_local,
        )
        from fedid.model.train import LocalState
        from fedid.schema import load_schema
        from privacy.atomic import atomic_write_bytes
        from privacy.dp import PrivacyBudget

        sch = load_schema(schema)
        inputs = load_inputs(data, evidence, sch)
        if "label_level" not in inputs.columns:
            raise DataValidationError("training needs a 'label_level' column. Got none.")
        n = len(inputs)
        if not 0 < delta < 1 / n:
            raise ConfigError(f"delta must be in (0, 1/n) for n = {n} records. Got {delta}.")
        config = TrainConfig(rounds=1, accountant=accountant, recipe="rule").for_agency(n)
        if epochs is not None:
            config = replace(config, local_epochs=epochs, recipe="fixed")
        state_path = out / "privacy_state.bin"
        state = new_local_state(epsilon=epsilon, delta=delta, accountant=accountant)
        if state_path.exists():  # compose with what this --out already spent
            prior = LocalState.from_bytes(state_path.read_bytes())
            if prior.budget.delta != delta or prior.accountant.kind != accountant:
                raise ConfigError(
                    f"{state_path} was spent at delta {prior.budget.delta:g} with the"
                    f" {prior.accountant.kind} accountant; a later run must use the same."
                    f" Got delta {delta:g}, {accountant}.")
            state = replace(prior, budget=PrivacyBudget(epsilon=epsilon, delta=delta))
        before = state.accountant.epsilon(delta)
        result = train_local(inputs=inputs, schema=sch, state=state, config=config, seed=seed)
        weights = result.state.weights or {}
        model = HardshipModel(schema=sch, hidden=config.hidden, weights=weights)
        metrics = evaluate(model, inputs)
        card = ModelCard(
            name=f"fedid hardship model ({data.name})",
            data_counts={
                "students": n,
                "labelled_hardship": int((inputs["label_level"] != sch.levels.names[0]).sum()),
            },
            training=config.to_dict(),
            privacy_spend=result.state.spends,
            budget=result.state.budget.to_dict(),
            metrics={"held_out": "none: metrics on the training labels",
                     "release": "exact, not DP: this card stays on the agency's machine",
                     **metrics["overall"]},
            fairness={"groups": metrics["groups"], "gaps": metrics["gaps"]},
            caveats=tuple(k for k in DP_CAVEATS if k != "fedavg_weights"),  # no federation here
        )
        save_model(out, model, card)
        atomic_write_bytes(state_path, result.state.to_bytes(), mode=0o600)
        spend = result.spend
        typer.echo(
            json.dumps(
                {
                    "out": str(out),
                    "students": n,
                    "epsilon": spend.epsilon,
                    "epsilon_this_run": spend.epsilon - before,
                    "runs": len(result.state.spends),
                    "delta": spend.delta,
                    "noise_multiplier": spend.noise_multiplier,
                    "steps": spend.steps,
                    **summary(metrics),
                }
            )
        )
