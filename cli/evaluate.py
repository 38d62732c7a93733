"""``fedid evaluate``: score a table with a saved model and report the metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command."""

    @app.command("evaluate")
    def evaluate_cmd(
        model: Annotated[Path, typer.Option("--model", help="Model directory (fedid train).")],
        data: Annotated[Path, typer.Option("--data", help="Education table (CSV or Parquet).")],
        truth: Annotated[
            Path | None,
            typer.Option("--truth", help="Ground truth (simulations); default: the labels."),
        ] = None,
        evidence: Annotated[
            Path | None,
            typer.Option("--evidence", help="Matched evidence: student_id + indicators."),
        ] = None,
        recommendations: Annotated[
            Path | None,
            typer.Option("--recommendations", help="Write per-student recommendations (CSV)."),
        ] = None,
        full: Annotated[bool, typer.Option("--full", help="Print per-group metrics too.")] = False,
    ) -> None:
        """Print the evaluation as one JSON line (summary, or everything with --full)."""
        from cli._model_io import load_inputs, read_frame
        from fedid.model import evaluate_recommendations, load_model, summary

        hardship, _card = load_model(model)
        inputs = load_inputs(data, evidence, hardship.schema)
        recs = hardship.recommend(inputs)
        if recommendations is not None:
            from privacy.atomic import atomic_file

            with atomic_file(recommendations) as tmp:
                recs.to_csv(tmp, index=False)
        if truth is not None:
            metrics = evaluate_recommendations(recs, read_frame(truth), hardship.schema)
        else:
            metrics = evaluate_recommendations(
                recs, inputs, hardship.schema, level_column="label_level"
            )
        typer.echo(json.dumps(metrics if full else summary(metrics), default=float))
