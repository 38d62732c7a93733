"""A node's own privacy ledger: accountant history, kept in the node's context and on disk.

Flower keeps ``context.state`` for a node across the rounds of one run; the ledger
lives there (a ConfigRecord holding JSON) so the accountant composes every round on
top of the previous ones. It is mirrored to ``<out>/privacy_ledger.json`` after every
change so that a new run, a restarted node or a restarted coordinator starts from
what was really spent, never from zero.

Each completed training round is recorded under its ``(session, round)`` key with the
reply it produced (``<out>/rounds/<session>-<round>.npz``); a coordinator that
restarts and asks for the same round again gets the stored reply, and no new budget
is spent.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context
from numpy.typing import NDArray

from fedid.errors import ConfigError

__all__ = ["NodePrivacyLedger"]

_STATE_KEY = "fedid_privacy"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


@dataclass(slots=True)
class NodePrivacyLedger:
    """Accountant history plus the per-round replies already produced."""

    out: Path
    history: list[tuple[float, float, int]] = field(default_factory=list)
    epsilon_after: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.out / "privacy_ledger.json"

    def _payload(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history], "epsilon_after": self.epsilon_after}

    @classmethod
    def load(cls, context: Context, out: Path) -> NodePrivacyLedger:
        """From the node's context if present, else from its disk mirror, else empty."""
        raw: dict[str, Any] | None = None
        record = context.state.config_records.get(_STATE_KEY)
        if record is not None:
            raw = json.loads(str(record["json"]))
        else:
            disk = out / "privacy_ledger.json"
            if disk.exists():
                raw = json.loads(disk.read_text(encoding="utf-8"))
        ledger = cls(out=out)
        if raw:
            ledger.history = [(float(a), float(b), int(c)) for a, b, c in raw["history"]]
            ledger.epsilon_after = {k: float(v) for k, v in raw["epsilon_after"].items()}
        return ledger

    def save(self, context: Context) -> None:
        """Write to the node's context and to disk (atomically)."""
        text = json.dumps(self._payload())
        context.state.config_records[_STATE_KEY] = ConfigRecord({"json": text})
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)

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
        history: list[tuple[float, float, int]],
        epsilon: float,
    ) -> None:
        """Keep the reply of a trained round and the accountant history after it."""
        folder = self.out / "rounds"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.tmp.npz"
        blobs: dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
        blobs["n_arrays"] = np.array(len(arrays))
        blobs["metrics"] = np.array(json.dumps(metrics))
        np.savez(tmp, **blobs)
        os.replace(tmp, folder / f"{key}.npz")
        self.history = list(history)
        self.epsilon_after[key] = epsilon
