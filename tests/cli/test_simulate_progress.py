"""fedid simulate's progress bar ends with readable counts, never "0/None"."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cli.simulate import YearProgress


def _events(progress: YearProgress, rounds: int) -> None:
    progress("phase", {"name": "synth"})
    progress("phase", {"name": "matching"})
    progress("matching", {"home": "12 department runs"})
    progress("phase", {"name": "training"})
    for rnd in range(1, rounds + 1):
        progress("round", {"round": rnd, "metrics": {"kept_on_node": 1.0}})
    progress("phase", {"name": "review"})
    progress("done", {"out": "x"})


def test_terminal_bar_ends_done_with_its_rounds() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with YearProgress(console, 3) as progress:
        _events(progress, 3)
        progress("curve", {"epsilon": 0.25})  # the epsilon curve's next year restarts rounds
        _events(progress, 3)
        progress.done()
    text = buffer.getvalue()
    assert "None" not in text  # every frame, the last one included
    assert "done" in text
    assert "3/3" in text
    assert "epsilon 0.25: training rounds" in text


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with YearProgress(console, 2) as progress:
        _events(progress, 2)
        progress("curve", {"epsilon": 4.0})
        progress.done()
    err = capsys.readouterr().err
    lines = [line.split("] ", 1)[1] for line in err.splitlines()]
    assert lines == ["phase synth", "phase matching", "matching 12 department runs",
                     "phase training", "round 1", "round 2", "phase review",
                     "epsilon curve: the year at epsilon 4"]
