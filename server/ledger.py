"""The coordinator's round ledger: a checkpoint after every training round.

Layout under the coordinator's folder::

    ledger.json          completed rounds, per-round metrics and exclusions,
                         last declared privacy spend per agency
    checkpoint.npz       the global model after the last completed round

Both are written to a temporary file and renamed, so a crash leaves either the old or
the new checkpoint, never half of one. A restarted coordinator reads them and
continues with the next round. Budget is never spent twice: nodes keep their own
privacy ledger on their side and answer a repeated (session, round) request from
their stored reply instead of training again (see :mod:`clients.node`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedid.errors import FederationError
from privacy.atomic import atomic_file, atomic_write_bytes

__all__ = ["Ledger", "RoundRecord"]


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """What the coordinator records about one completed round (aggregates only)."""

    round: int
    used: tuple[str, ...]
    excluded: dict[str, str]
    spend: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "used": list(self.used),
            "excluded": self.excluded,
            "spend": self.spend,
            "metrics": self.metrics,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RoundRecord:
        return cls(
            round=int(raw["round"]),
            used=tuple(raw["used"]),
            excluded=dict(raw["excluded"]),
            spend={k: float(v) for k, v in raw["spend"].items()},
            metrics={k: float(v) for k, v in raw.get("metrics", {}).items()},
            seconds=float(raw.get("seconds", 0.0)),
        )


@dataclass(slots=True)
class Ledger:
    """Checkpoint store for one training session in ``folder``."""

    folder: Path
    session: str
    rounds: list[RoundRecord] = field(default_factory=list)

    @property
    def ledger_path(self) -> Path:
        return self.folder / "ledger.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.npz"

    @property
    def completed(self) -> int:
        return self.rounds[-1].round if self.rounds else 0

    def last_spend(self) -> dict[str, float]:
        spend: dict[str, float] = {}
        for record in self.rounds:
            spend.update(record.spend)
        return spend

    def record(self, record: RoundRecord, arrays: list[NDArray[np.float32]]) -> None:
        """Persist the global model and the round's record (checkpoint first)."""
        if record.round != self.completed + 1:
            raise FederationError(
                f"rounds are recorded in order: expected {self.completed + 1}, got {record.round}."
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.checkpoint_path) as tmp:
            np.savez(tmp, *arrays)
        self.rounds.append(record)
        payload = {
            "session": self.session,
            "completed": self.completed,
            "rounds": [r.to_json() for r in self.rounds],
        }
        atomic_write_bytes(self.ledger_path, json.dumps(payload, indent=1).encode())

    def load_arrays(self) -> list[NDArray[np.float32]]:
        with np.load(self.checkpoint_path) as data:
            return [np.asarray(data[f"arr_{i}"], dtype=np.float32) for i in range(len(data.files))]

    @classmethod
    def open(cls, folder: Path, session: str) -> Ledger:
        """Open the ledger in ``folder``; resume if it holds the same session."""
        path = folder / "ledger.json"
        if not path.exists():
            return cls(folder=folder, session=session)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise FederationError(f"ledger {path} is not valid JSON: {exc}") from exc
        if raw.get("session") != session:
            raise FederationError(
                f"ledger in {folder} belongs to another session; use a fresh folder or "
                "the same session name to resume."
            )
        rounds = [RoundRecord.from_json(r) for r in raw.get("rounds", [])]
        if rounds and not (folder / "checkpoint.npz").exists():
            raise FederationError(f"ledger in {folder} lists rounds but has no checkpoint.npz.")
        return cls(folder=folder, session=session, rounds=rounds)
