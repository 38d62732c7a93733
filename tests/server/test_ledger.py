"""Checkpoint after every round and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedid.errors import FederationError
from server.ledger import Ledger, RoundRecord


def _record(rnd: int, eps: float) -> RoundRecord:
    return RoundRecord(round=rnd, used=("a",), excluded={}, spend={"a": eps},
                       metrics={"macro_f1": 0.5})


def test_resume_from_last_checkpoint(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, "s1")
    assert ledger.completed == 0
    ledger.record(_record(1, 0.3), [np.ones(3, np.float32)])
    ledger.record(_record(2, 0.5), [np.full(3, 2.0, np.float32)])
    again = Ledger.open(tmp_path, "s1")
    assert again.completed == 2
    assert again.last_spend() == {"a": 0.5}
    np.testing.assert_array_equal(again.load_arrays()[0], np.full(3, 2.0, np.float32))
    assert not list(tmp_path.glob("*.tmp*"))


def test_rounds_in_order_and_session_checked(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, "s1")
    with pytest.raises(FederationError, match="expected 1"):
        ledger.record(_record(2, 0.1), [np.ones(1, np.float32)])
    ledger.record(_record(1, 0.1), [np.ones(1, np.float32)])
    with pytest.raises(FederationError, match="another session"):
        Ledger.open(tmp_path, "other")
