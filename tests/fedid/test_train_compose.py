"""``fedid train`` twice on one ``--out``: the spend composes (or the run is refused).

The composed epsilon is checked against Google's dp-accounting PLD accountant, an
implementation independent of Opacus's PRV accountant that fedid uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from fedid.errors import FedIdError
from fedid.model.train import LocalState


def _pld_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    accountant = pld_privacy_accountant.PLDAccountant()
    for sigma, rate, steps in history:
        event = dp_accounting.GaussianDpEvent(sigma)
        if rate < 1:
            event = dp_accounting.PoissonSampledDpEvent(rate, event)
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return float(accountant.get_epsilon(delta))


def _train(table: Path, out: Path, epsilon: float) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", "--data", str(table), "--epsilon", str(epsilon),
                                      "--out", str(out), "--epochs", "20"])
    if isinstance(result.exception, FedIdError):  # main() maps these to exit codes
        return result.exception.exit_code, str(result.exception)
    return result.exit_code, result.output


def test_second_run_composes_or_is_refused(small_province: Path, tmp_path: Path) -> None:
    table = sorted((small_province / "agencies" / "education").glob("*.parquet"))[0]
    out = tmp_path / "model"
    code, output = _train(table, out, 1.0)
    assert code == 0, output
    first = json.loads(output.strip().splitlines()[-1])
    assert first["runs"] == 1
    assert 0.9 < first["epsilon"] <= 1.0
    state_bytes = (out / "privacy_state.bin").read_bytes()
    # The same total budget again: the guard refuses, nothing is overwritten.
    code, output = _train(table, out, 1.0)
    assert code == 6, output
    assert "training refused" in output
    assert (out / "privacy_state.bin").read_bytes() == state_bytes
    # A larger total budget: the second run composes on the first.
    code, output = _train(table, out, 2.0)
    assert code == 0, output
    second = json.loads(output.strip().splitlines()[-1])
    assert second["runs"] == 2
    state = LocalState.from_bytes((out / "privacy_state.bin").read_bytes())
    assert state.accountant.steps == 2 * first["steps"]  # the same planned run, twice
    assert second["epsilon"] == pytest.approx(state.accountant.epsilon(1e-5), rel=1e-9)
    assert second["epsilon"] > first["epsilon"] * 1.2
    assert second["epsilon_this_run"] == pytest.approx(second["epsilon"] - first["epsilon"])
    independent = _pld_epsilon(state.accountant.history, 1e-5)
    assert second["epsilon"] == pytest.approx(independent, rel=0.01)
    card = json.loads((out / "card.json").read_text())
    assert card["epsilon_spent"] == pytest.approx(second["epsilon"])
