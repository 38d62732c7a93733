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

The ledger also binds the node's answers to the round sequence (THREAT_MODEL.md,
"Oracles"): the digest of the arrays each trained round started from (``given``), of the
aggregate the node evaluated after each round (``evaluated``), and the identification
release made per session (``identified``: digest and the noised counts, replayed to a
retry). ``epsilon_total`` is the accountant's epsilon over everything charged (DP-SGD
steps and Gaussian count releases), read by :mod:`clients.gate`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context
from numpy.typing import NDArray

from fedid.errors import ConfigError
from fedid.model.train_state import LocalState
from privacy.atomic import atomic_file, atomic_write_bytes
from privacy.dp import shared_noise_spend

__all__ = ["NodePrivacyLedger", "arrays_digest"]

_STATE_KEY = "fedid_privacy"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def arrays_digest(arrays: Sequence[NDArray[np.floating]]) -> str:
    """SHA-256 over the arrays' shapes, dtypes and bytes (float32)."""
    h = hashlib.sha256()
    for a in arrays:
        b = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
        h.update(repr(b.shape).encode())
        h.update(b.tobytes())
    return h.hexdigest()


@dataclass(slots=True)
class NodePrivacyLedger:
    """Training state bytes plus epsilon after every trained (session, round)."""

    out: Path
    state: bytes | None = None
    epsilon_after: dict[str, float] = field(default_factory=dict)
    epsilon_total: float = 0.0
    delta: float = 0.0
    given: dict[str, str] = field(default_factory=dict)
    evaluated: dict[str, str] = field(default_factory=dict)
    #: how each trained round first left: "masked" (secure aggregation) or "plain"; a masked
    #: round is never replayed in plain (that would hand the coordinator the bare update)
    released_as: dict[str, str] = field(default_factory=dict)
    identified: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: distributed-noise mode only (clients.noise_share): per session its calibration, the
    #: shared rounds, each round's participants and both epsilons (trusted, fallback)
    distributed_noise: dict[str, Any] = field(default_factory=dict)

    def _fill(self, raw: dict[str, Any]) -> None:
        self.epsilon_after = {k: float(v) for k, v in raw.get("epsilon_after", {}).items()}
        self.epsilon_total = float(raw.get("epsilon_total", 0.0))
        self.delta = float(raw.get("delta", 0.0))
        self.given = dict(raw.get("given", {}))
        self.evaluated = dict(raw.get("evaluated", {}))
        self.released_as = dict(raw.get("released_as", {}))
        self.identified = dict(raw.get("identified", {}))
        self.distributed_noise = dict(raw.get("distributed_noise", {}))

    def _json(self) -> str:
        return json.dumps({"epsilon_after": self.epsilon_after,
                           "epsilon_total": self.epsilon_total, "delta": self.delta,
                           "given": self.given, "evaluated": self.evaluated,
                           "released_as": self.released_as, "identified": self.identified,
                           **({"distributed_noise": self.distributed_noise}
                              if self.distributed_noise else {})})

    @classmethod
    def load(cls, context: Context, out: Path) -> NodePrivacyLedger:
        """From the node's disk if it has a ledger there, else from its context, else empty.

        The disk is the one source of truth: Flower keeps one context per run, so a
        coordinator that opens several runs would otherwise give each its own copy of the
        accountant, and each copy could spend the whole budget (the handlers also run one
        at a time per node, under :func:`clients.gate.release_gate`'s lock).
        """
        ledger = cls(out=out)
        if (out / "privacy_ledger.json").exists():
            if (out / "local_state.bin").exists():
                ledger.state = (out / "local_state.bin").read_bytes()
            ledger._fill(json.loads((out / "privacy_ledger.json").read_text(encoding="utf-8")))
            return ledger
        record = context.state.config_records.get(_STATE_KEY)
        if record is not None:
            state = record.get("state")
            ledger.state = state if isinstance(state, bytes) and state else None
            ledger._fill(json.loads(str(record["ledger"])))
        return ledger

    def save(self, context: Context) -> None:
        """Write to the node's context and to disk (atomically)."""
        body = self._json()
        context.state.config_records[_STATE_KEY] = ConfigRecord(
            {"state": self.state or b"", "ledger": body})
        self.out.mkdir(parents=True, exist_ok=True)
        if self.state is not None:
            atomic_write_bytes(self.out / "local_state.bin", self.state, mode=0o600)
        atomic_write_bytes(self.out / "privacy_ledger.json", body.encode(), mode=0o600)

    def charge(self, *, state: bytes, epsilon_total: float, delta: float) -> None:
        """A new training state whose accountant now stands at ``epsilon_total``.

        In distributed-noise mode the record's spend (trusted and fallback epsilon over the
        whole history, :func:`privacy.dp.shared_noise_spend`) is recomputed too, so it stays
        current after any later charge (the identification counts)."""
        self.state = state
        self.epsilon_total = float(epsilon_total)
        self.delta = float(delta)
        shared = self.distributed_noise.get("shared")
        if shared:
            entries = [(float(e[0]), float(e[1]), int(e[2]), int(e[3])) for e in shared]
            spend = shared_noise_spend(LocalState.from_bytes(state).accountant,
                                       shared=entries, delta=delta)
            self.distributed_noise["spend"] = spend.to_dict()

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
        with atomic_file(folder / f"{key}.npz", mode=0o600) as tmp:
            np.savez(tmp, **blobs)
        self.state = state
        self.epsilon_after[key] = epsilon
