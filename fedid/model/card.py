"""Model card and model files: what the model is for, what it was trained on, what it cost.

A saved model directory holds ``weights.npz`` (no pickle), ``model.json`` (architecture),
``schema.toml`` (the schema it encodes), ``card.json`` and a readable ``card.md``. Files are
written to a temporary directory first and moved into place, so a failed save leaves nothing
half written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedid.errors import TrainingError
from fedid.model.model import HardshipModel
from fedid.schema import Schema, load_schema
from privacy.atomic import atomic_directory
from privacy.dp import PrivacySpend

__all__ = ["DP_CAVEATS", "ModelCard", "load_model", "model_from_arrays", "save_model"]

INTENDED_USE = (
    "Recommendations of a hardship level, dimension flags and reasons for every student, for"
    " people to review. The model recommends; people decide (PIPL art. 24: no decision by"
    " automated means alone). Lists are never published with sensitive details."
)
LIMITATIONS = (
    "Trained on last year's recognition outcomes, which miss students who never applied and"
    " include some wrongly aided ones; the rule layer only sees departmental evidence that"
    " was matched; a missing record is not evidence of no hardship. Group gaps are reported"
    " below and must be reviewed before use. Figures from synthetic data do not transfer to"
    " a real province without re-evaluation."
)
DP_CAVEATS: Mapping[str, str] = {
    "fedavg_weights": "Agency record counts sent as FedAvg weights are not covered by epsilon.",
    "hyperparameter_tuning": "Hyperparameters come from a fixed rule on public quantities (row"
    " count, rounds; fedid.model.recipe) or were fixed a priori; any tuning on private tables"
    " would not be covered by epsilon.",
    "evaluation_on_private_data": "Metrics computed on private tables (held-out labels) are"
    " released without DP and are not covered by epsilon.",
    "data_dependent_preprocessing": "Not applicable: scaling uses only the schema's declared"
    " ranges and transforms, categories its declared lists.",
    "accountant": "Epsilon is computed by the PRV (or RDP) accountant over the full history;"
    " the GDP approximation is never reported as a guarantee.",
    "rule_layer": "The rule layer is deterministic and uses no training; it releases nothing by"
    " itself.",
}


@dataclass(frozen=True)
class ModelCard:
    """What a reviewer reads before using a model."""

    name: str
    data_counts: Mapping[str, int]
    training: Mapping[str, Any]
    privacy_spend: Sequence[PrivacySpend] = ()
    budget: Mapping[str, float] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    fairness: Mapping[str, Any] = field(default_factory=dict)
    caveats: Sequence[str] = tuple(DP_CAVEATS)
    intended_use: str = INTENDED_USE
    limitations: str = LIMITATIONS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "intended_use": self.intended_use,
            "limitations": self.limitations,
            "data_counts": dict(self.data_counts),
            "training": dict(self.training),
            "budget": dict(self.budget) if self.budget is not None else None,
            "privacy_spend": [s.to_dict() for s in self.privacy_spend],
            "epsilon_spent": self.privacy_spend[-1].epsilon if self.privacy_spend else None,
            "metrics": dict(self.metrics),
            "fairness": dict(self.fairness),
            "dp_caveats": {k: DP_CAVEATS[k] for k in self.caveats if k in DP_CAVEATS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            data_counts={k: int(v) for k, v in data["data_counts"].items()},
            training=dict(data["training"]),
            privacy_spend=tuple(PrivacySpend.from_dict(s) for s in data["privacy_spend"]),
            budget=data.get("budget"),
            metrics=dict(data.get("metrics", {})),
            fairness=dict(data.get("fairness", {})),
            caveats=tuple(data.get("dp_caveats", {})),
            intended_use=str(data["intended_use"]),
            limitations=str(data["limitations"]),
        )

    def to_markdown(self) -> str:
        """A readable card."""
        d = self.to_dict()
        lines = [f"# Model card: {self.name}", "", "## Intended use", self.intended_use, ""]
        lines += ["## Limitations", self.limitations, "", "## Data"]
        lines += [f"- {k}: {v}" for k, v in d["data_counts"].items()]
        lines += ["", "## Training (hyperparameters fixed a priori)"]
        lines += [f"- {k}: {v}" for k, v in d["training"].items()]
        lines += ["", "## Privacy"]
        if self.privacy_spend:
            last = self.privacy_spend[-1]
            lines.append(
                f"- epsilon spent {last.epsilon:.4g} at delta {last.delta:.3g}"
                f" ({last.accountant} accountant, {sum(s.steps for s in self.privacy_spend)}"
                f" steps, noise multiplier {last.noise_multiplier:.4g},"
                f" sample rate {last.sample_rate:.4g}); budget {d['budget']}"
            )
        else:
            lines.append("- not trained with differential privacy")
        lines += [f"- {v}" for v in d["dp_caveats"].values()]
        lines += ["", "## Metrics", "```json", json.dumps(d["metrics"], indent=1), "```"]
        lines += ["", "## Fairness", "```json", json.dumps(d["fairness"], indent=1), "```", ""]
        return "\n".join(lines)


def save_model(directory: Path, model: HardshipModel, card: ModelCard) -> Path:
    """Write the model and its card to ``directory`` (replaced atomically if it exists)."""
    directory = Path(directory)
    try:
        with atomic_directory(directory) as tmp:
            _write_model(tmp, model, card)
    except OSError as exc:
        raise TrainingError(f"could not save the model: {exc!s}") from exc
    return directory


def _write_model(tmp: Path, model: HardshipModel, card: ModelCard) -> None:
    arrays = {k: np.asarray(v) for k, v in model.weights.items()}
    np.savez(tmp / "weights.npz", **arrays)  # type: ignore[arg-type]
    (tmp / "model.json").write_text(
        json.dumps(
            {
                "hidden": list(model.hidden),
                "hardship_threshold": model.threshold,
                "format": 1,
            }
        ),
        encoding="utf-8",
    )
    (tmp / "schema.toml").write_text(model.schema.to_toml(), encoding="utf-8")
    (tmp / "card.json").write_text(json.dumps(card.to_dict(), indent=1), encoding="utf-8")
    (tmp / "card.md").write_text(card.to_markdown(), encoding="utf-8")


def model_from_arrays(
    schema: Schema, arrays: Sequence[np.ndarray[Any, Any]], hidden: Sequence[int]
) -> HardshipModel:
    """A model from positional arrays in the network's state-dict order (the federation's
    wire format, ``coordinator/final_model.npz``)."""
    names = list(HardshipModel(schema=schema, hidden=tuple(hidden)).build_net().state_dict())
    if len(names) != len(arrays):
        raise TrainingError(f"expected {len(names)} model arrays. Got {len(arrays)}.")
    weights = {n: np.asarray(a, dtype=np.float32) for n, a in zip(names, arrays, strict=True)}
    model = HardshipModel(schema=schema, hidden=tuple(hidden), weights=weights)
    model.build_net()  # fails early on mismatched shapes
    return model


def load_model(directory: Path) -> tuple[HardshipModel, ModelCard]:
    """Read a directory written by :func:`save_model`."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        schema = load_schema(directory / "schema.toml")
        with np.load(directory / "weights.npz", allow_pickle=False) as npz:
            weights = {k: np.array(npz[k]) for k in npz.files}
        card = ModelCard.from_dict(json.loads((directory / "card.json").read_text("utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"could not load a model from the directory: {exc!s}") from exc
    model = HardshipModel(
        schema=schema,
        hidden=tuple(meta["hidden"]),
        weights=weights,
        hardship_threshold=meta.get("hardship_threshold"),
    )
    model.build_net()  # fails early on mismatched weights
    return model, card
