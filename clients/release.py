"""The node's release policy: every field that may leave, how often, and what protects it.

Every reply a node sends passes :mod:`clients.gate`, which refuses (fails closed) any reply
carrying a record or key this policy does not declare for the message kind. Protections:

- ``dp``          noised by a DP mechanism whose cost is charged to the node's own budget
                  (one accountant: DP-SGD steps and Gaussian count releases compose there);
                  the gate records the accountant's increment as the release's charge
- ``public``      a public constant or a value fixed by public configuration (the node's
                  name and kind, the schema-derived initial model, the FedAvg weight 1.0,
                  the node's stated budget); no record of the node's table is involved
- ``accounting``  the node's privacy declaration: spend, delta and budget. A function of
                  its configuration and its public size (``public-size``, else its row
                  count noised once and charged, clients.training.public_rows)
- ``protocol``    protocol messages whose contents are blinded points, ciphertexts, public
                  keys or signatures, and the set sizes the protocol reveals by design
- ``suppressed``  counts released under the min-cell rule only (cells below it become -1)
- ``kept``        nothing leaves: the value stays in the node's ``--out``

Frequency: ``per`` names the scope inside which at most one distinct release may leave
(``"round"``: per (session, round); ``"session"``; ``"message"``: no limit beyond the
protocol's own state machine). A repeat of the same release (a coordinator's retry) is
answered from what was stored and charged nothing.

Other modules that add a reply field must declare it here (one :class:`Field` line with its
protection and a reason); the contract test in ``tests/clients`` fails otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from flwr.app import RecordDict

__all__ = ["MESSAGE_KINDS", "POLICY", "PROTECTIONS", "Field", "KindPolicy", "protections",
           "undeclared"]

PROTECTIONS: Final = ("dp", "public", "accounting", "protocol", "suppressed", "kept")


@dataclass(frozen=True, slots=True)
class Field:
    """One thing that may leave: ``record`` name, ``key`` inside it (glob; ``*`` for a whole
    array record), its protection and why that protection suffices."""

    record: str
    key: str
    protection: str
    reason: str

    def __post_init__(self) -> None:
        if self.protection not in PROTECTIONS:
            raise ValueError(f"protection must be one of {PROTECTIONS}. Got {self.protection!r}.")

    def matches(self, record: str, key: str) -> bool:
        return self.record == record and fnmatchcase(key, self.key)


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """What one message kind may release and how often."""

    kind: str
    fields: tuple[Field, ...]
    per: str = "message"

    def field_for(self, record: str, key: str) -> Field | None:
        return next((f for f in self.fields if f.matches(record, key)), None)


def _f(record: str, key: str, protection: str, reason: str) -> Field:
    return Field(record=record, key=key, protection=protection, reason=reason)


_ACCOUNTING = tuple(
    _f("metrics", key, "accounting", why) for key, why in (
        ("epsilon_spent", "the accountant's cumulative epsilon (a function of the noise, "
                          "sample rate and steps)"),
        ("delta", "the node's configured delta (not derived from its size)"),
        ("epsilon_budget", "the node's configured budget"),
        ("delta_budget", "the node's configured delta"),
    ))

POLICY: Final[dict[str, KindPolicy]] = {p.kind: p for p in (
    KindPolicy("query.info", (
        _f("config", "", "public", "empty config record"),
        _f("info", "agency-id", "public", "the node's configured name"),
        _f("info", "kind", "public", "configured: education or department"),
        _f("info", "department", "public", "configured department name"),
        _f("info", "labelled", "public", "whether the agency trains (its role in the year)"),
    )),
    KindPolicy("query.init", (
        _f("config", "", "public", "empty config record"),
        _f("arrays", "*", "public", "initial weights from the public schema and the "
                                    "coordinator's seed; no record is read"),
    )),
    KindPolicy("train", (
        _f("config", "", "public", "empty config record"),
        _f("config", "refused", "public", "a refusal code (budget), no figure"),
        _f("config", "secure-aggregation", "public", "echo of the coordinator's mode"),
        _f("arrays", "*", "dp", "DP-SGD update (Opacus), charged to the node's accountant;"
                                " sample rate, steps and divisor from the public size;"
                                " with secure aggregation, one masked vector of it; in"
                                " distributed-noise mode one masked vector of the noisy sum"
                                " of clipped gradients (its share of the agreed noise, the"
                                " trusted entry charged) and the expected batch of its"
                                " public size"),
        _f("metrics", "weight", "public", "FedAvg weight: the constant 1.0 (size not sent)"),
        *_ACCOUNTING,
        _f("metrics", "epsilon_fallback", "accounting",
           "distributed-noise mode: the epsilon that holds with the node's own noise share "
           "only (a function of the noise, sample rate, steps and parties)"),
    ), per="round"),
    KindPolicy("evaluate", (
        _f("config", "", "public", "empty config record"),
        _f("metrics", "kept_on_node", "kept", "metrics are written to <out>/evaluation.jsonl;"
                                             " the reply carries only this constant 1"),
    ), per="round"),
    KindPolicy("query.secagg", (
        _f("config", "", "public", "empty config record"),
        _f("payload", "data", "protocol", "a fresh X25519 public key for this round"),
        _f("signature", "data", "protocol", "the node's Ed25519 identity signature over that "
                                            "key and the instance (run, session, round, "
                                            "attempt, participants, issue time)"),
        _f("signature", "issued", "public", "the signature's issue time (unix seconds): the "
                                            "reply's timing, which the coordinator sees"),
    )),
    KindPolicy("query.noise", (
        _f("config", "", "public", "empty config record"),
        _f("metrics", "noise_std", "accounting",
           "distributed-noise mode: the noise of the sum the node's budget requires, a "
           "function of its budget, spend, public size and settings; when the node "
           "declares no public-size, its first answer also carries the charged Gaussian "
           "release of its row count (clients.training.public_rows)"),
    ), per="session"),
    KindPolicy("query.identify", (
        _f("config", "", "public", "empty config record"),
        _f("metrics", "evidence_missing_departments", "public",
           "how many departments matching went without (known to the coordinator)"),
        _f("metrics", "*", "dp", "Gaussian-noised counts charged to the node's accountant, "
                                 "then cells below min-cell suppressed (-1)"),
    ), per="session"),
    KindPolicy("query.year", (
        _f("config", "", "public", "empty acknowledgement of the coordinator's notice"),
    )),
    KindPolicy("query.match", (
        _f("config", "", "public", "empty config record"),
        _f("payload", "data", "protocol", "blinded points, Paillier ciphertexts and public "
                                          "keys; the home's aggregates (last step) are "
                                          "Gaussian-noised counts charged to its budget, "
                                          "small cells suppressed"),
        _f("metrics", "key_count", "protocol", "the home's list size, revealed by the list"),
        _f("metrics", "records", "protocol", "the department's list size, revealed by it"),
        _f("sealed", "to", "public", "the roster names of the homes a sealed keyring is for"),
        _f("sealed", "data", "protocol", "the run keyring sealed to each other home's roster "
                                         "key (X25519 + AEAD, signed): unreadable by the "
                                         "coordinator"),
    )),
)}

MESSAGE_KINDS: Final = tuple(POLICY)


def _keys(content: RecordDict) -> Iterable[tuple[str, str]]:
    for name, record in content.items():
        if name in content.array_records:
            yield name, "*"
            continue
        keys = list(record.keys())
        if not keys:
            yield name, ""
        for key in keys:
            yield name, str(key)


def undeclared(kind: str, content: RecordDict) -> list[str]:
    """``record.key`` of every field in ``content`` the policy does not declare for ``kind``.

    An unknown kind: every field is undeclared (and an empty reply gives ``[kind]``).
    """
    policy = POLICY.get(kind)
    if policy is None:
        return [f"{r}.{k}" for r, k in _keys(content)] or [kind]
    return [f"{r}.{k}" for r, k in _keys(content) if policy.field_for(r, k) is None]


def protections(kind: str, content: RecordDict) -> dict[str, str]:
    """``record.key`` -> protection for every declared field in ``content``."""
    policy = POLICY[kind]
    out: dict[str, str] = {}
    for r, k in _keys(content):
        found = policy.field_for(r, k)
        if found is not None:
            out[f"{r}.{k}" if k else r] = found.protection
    return out
