"""This node's agency identity and the roster it verifies its peers against.

Both come from the node's own configuration (``identity``, default ``<out>/identity``,
and ``roster``), never from the coordinator: the identity key is made on the node
(``fedid keygen`` or ``fedid node``), the roster reaches the node out of band
(:mod:`privacy.identity`). Matching (:mod:`clients.matching`) needs them; secure
aggregation (:mod:`clients.masked_update`) signs and verifies masking keys with them
whenever the node has a roster.
"""

from __future__ import annotations

from clients.config import NodeSettings
from fedid.errors import ConfigError
from privacy.errors import CryptoError
from privacy.identity import AgencyIdentity, Roster

__all__ = ["load_agency_keys"]


def load_agency_keys(s: NodeSettings, *, purpose: str) -> tuple[AgencyIdentity, Roster]:
    """The node's identity and roster; ConfigError naming ``purpose`` if either is unusable
    or the roster does not list this node's own identity key."""
    if s.roster is None:
        raise ConfigError(f"{purpose} needs the roster of agency keys (node config 'roster').")
    folder = s.identity if s.identity is not None else s.out / "identity"
    try:
        identity = AgencyIdentity.load(folder)
        roster = Roster.load(s.roster)
    except CryptoError as exc:
        raise ConfigError(f"{purpose} identity or roster: {exc}") from exc
    mine = roster.agencies.get(s.agency_id)
    if mine is None or mine != identity.public:
        raise ConfigError(f"the roster does not list this node's identity key for "
                          f"{s.agency_id!r}.")
    return identity, roster
