"""The transcript scanner: framing is not data, data is found wherever it stands."""

from __future__ import annotations

from pathlib import Path

from simulations.leakscan import Needles, scan


def _scan(tmp_path: Path, blob: bytes) -> dict[str, int]:
    path = tmp_path / "reply.bin"
    path.write_bytes(blob)
    return scan([path], Needles(ints={240665})).value_hits


def test_flower_body_length_is_framing_not_a_value(tmp_path: Path) -> None:
    # The header Flower puts before each serialised object ends in the body's length.
    assert _scan(tmp_path, b"payload\x00ConfigRecord  240665\x00\n\x95data") == {}


def test_the_same_number_as_data_is_found(tmp_path: Path) -> None:
    assert _scan(tmp_path, b"payload\x00ConfigRecord  12\x00income=240665;") == {"reply.bin": 1}
