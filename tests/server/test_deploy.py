"""Coordinator key registration without a SuperLink (the flwr CLI is faked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedid.errors import FederationError
from server.deploy import SuperLinkLauncher, node_agencies_arg


class _FakeFlwr:
    """Answers ``flwr supernode register`` like Flower: an id once per key, then a refusal."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}

    def __call__(self, args: list[str], **_: object) -> tuple[int, str]:
        key = args[2]
        if key in self.keys:
            return 0, '{"success": false, "error-message": "Public key already in use"}'
        self.keys[key] = 1000 + len(self.keys)
        return 0, f'{{"success": true, "node-id": {self.keys[key]}}}'


def test_register_returns_the_bound_node_id_and_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "university_a.pub"
    key.write_text("not a real key; the fake flwr does not read it")
    fake = _FakeFlwr()
    first = SuperLinkLauncher(out=tmp_path / "coord", certs=None)
    first.out.mkdir()
    monkeypatch.setattr(first, "_flwr", fake)
    assert first.register(key, "university_a") == 1000
    # a coordinator restarted on the same folder: the SuperLink refuses the known key
    again = SuperLinkLauncher(out=tmp_path / "coord", certs=None)
    monkeypatch.setattr(again, "_flwr", fake)
    assert again.register(key, "university_a") == 1000
    assert node_agencies_arg({1000: "university_a", 7: "tax"}) == "7=tax,1000=university_a"


def test_register_without_an_id_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "tax.pub"
    key.write_text("x")
    coord = SuperLinkLauncher(out=tmp_path, certs=None)
    monkeypatch.setattr(coord, "_flwr", lambda args, **_: (1, "connection refused"))
    with pytest.raises(FederationError, match="gave no node id"):
        coord.register(key, "tax")
