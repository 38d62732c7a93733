"""``fedid train``: one agency's local DP training run (a dry run of its federated part)."""

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
        epsilon: Annotated[float, typer.Option("--epsilon", help="Privacy budget epsilon.")],
        delta: Annotated[
            float | None, typer.Option("--delta", help="Delta (default 1/(10 n)).")
        ] = None,
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
        from fedid.cli._model_io import load_inputs
        from fedid.errors import DataValidationError
        from fedid.model import (
            DP_CAVEATS,
            HardshipModel,
            ModelCard,
            TrainConfig,
            default_delta,
            evaluate,
            new_local_state,
            save_model,
            summary,
            train_local,
        )
        from fedid.schema import load_schema

        sch = load_schema(schema)
        inputs = load_inputs(data, evidence, sch)
        if "label_level" not in inputs.columns:
            raise DataValidationError("training needs a 'label_level' column. Got none.")
        n = len(inputs)
        config = TrainConfig(rounds=1, accountant=accountant, recipe="rule").for_agency(n)
        if epochs is not None:
            config = replace(config, local_epochs=epochs, recipe="fixed")
        state = new_local_state(
            epsilon=epsilon,
            delta=delta if delta is not None else default_delta(n),
            accountant=accountant,
        )
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
            metrics={"held_out": "none: metrics on the training labels", **metrics["overall"]},
            fairness={"groups": metrics["groups"], "gaps": metrics["gaps"]},
            caveats=tuple(k for k in DP_CAVEATS if k != "fedavg_weights"),  # no federation here
        )
        save_model(out, model, card)
        (out / "privacy_state.bin").write_bytes(result.state.to_bytes())
        spend = result.spend
        typer.echo(
            json.dumps(
                {
                    "out": str(out),
                    "students": n,
                    "epsilon": spend.epsilon,
                    "delta": spend.delta,
                    "noise_multiplier": spend.noise_multiplier,
                    "steps": spend.steps,
                    **summary(metrics),
                }
            )
        )
