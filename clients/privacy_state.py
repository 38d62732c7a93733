"""A node's own privacy ledger, kept in the node's context and mirrored on its disk.

Flower keeps ``context.state`` for a node across the rounds of a run; the node's
training state lives there (``fedid.model.train.LocalState`` bytes: budget,
accountant history, spend records, calibrated noise), so every round composes on
top of the previous ones. It is mirrored to ``<out>/local_state.bin`` and
``<out>/privacy_ledger.json`` after every change, so a new run, a restarted node or a
restarted coordinator starts from what was really spent, never from zero.

Each trained round is recorded under its ``(session, round)`` key with the reply it
produced (``<out>/rounds/<session>-<round>.npz``); a coordinator that restarts and
asks for the same round again gets the stored reply, and no new budget is spent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context
from numpy.typing import NDArray

from fedid.atomic import atomic_file, atomic_write_bytes
from fedid.errors import ConfigError

__all__ = ["NodePrivacyLedger"]

_STATE_KEY = "fedid_privacy"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


@dataclass(slots=True)
class NodePrivacyLedger:
    """Training state bytes plus epsilon after every trained (session, round)."""

    out: Path
    state: bytes | None = None
    epsilon_after: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, context: Context, out: Path) -> NodePrivacyLedger:
        """From the node's context if present, else from its disk mirror, else empty."""
        ledger = cls(out=out)
        record = context.state.config_records.get(_STATE_KEY)
        if record is not None:
            state = record.get("state")
            ledger.state = state if isinstance(state, bytes) and state else None
            ledger.epsilon_after = json.loads(str(record["epsilon_after"]))
            return ledger
        if (out / "local_state.bin").exists():
            ledger.state = (out / "local_state.bin").read_bytes()
        if (out / "privacy_ledger.json").exists():
            raw = json.loads((out / "privacy_ledger.json").read_text(encoding="utf-8"))
            ledger.epsilon_after = {k: float(v) for k, v in raw["epsilon_after"].items()}
        return ledger

    def save(self, context: Context) -> None:
        """Write to the node's context and to disk (atomically)."""
        after = json.dumps(self.epsilon_after)
        context.state.config_records[_STATE_KEY] = ConfigRecord(
            {"state": self.state or b"", "epsilon_after": after})
        self.out.mkdir(parents=True, exist_ok=True)
        if self.state is not None:
            atomic_write_bytes(self.out / "local_state.bin", self.state)
        atomic_write_bytes(self.out / "privacy_ledger.json",
                json.dumps({"epsilon_after": self.epsilon_after}).encode())

    @staticmethod
    def round_key(session: str, rnd: int) -> str:
        if not _SAFE.match(session):
            raise ConfigError(f"session name must match {_SAFE.pattern}. Got {session!r}.")
        return f"{session}-{rnd}"

    def stored_reply(self, key: str) -> tuple[list[NDArray[np.float32]], dict[str, float]] | None:
        """The reply already produced for ``key``, if this node trained that round."""
        if key not in self.epsilon_after:
            return None
        path = self.out / "rounds" / f"{key}.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            n = int(data["n_arrays"])
            arrays = [np.asarray(data[f"a{i}"], dtype=np.float32) for i in range(n)]
            metrics = json.loads(str(data["metrics"]))
        return arrays, {k: float(v) for k, v in metrics.items()}

    def record_round(
        self,
        *,
        key: str,
        arrays: list[NDArray[np.float32]],
        metrics: dict[str, float],
        state: bytes,
        epsilon: float,
    ) -> None:
        """Keep the reply of a trained round and the training state after it."""
        folder = self.out / "rounds"
        folder.mkdir(parents=True, exist_ok=True)
        blobs: dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
        blobs["n_arrays"] = np.array(len(arrays))
        blobs["metrics"] = np.array(json.dumps(metrics))
        with atomic_file(folder / f"{key}.npz") as tmp:
            np.savez(tmp, **blobs)
        self.state = state
        self.epsilon_after[key] = epsilon
