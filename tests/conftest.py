"""Shared fixtures: one synthetic province per test session, generated through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Agencies run the fedid release they installed: never let Flower reinstall dependencies.
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")

SMALL_PROVINCE_SEED = 20261129
SMALL_PROVINCE_STUDENTS = 3000


@pytest.fixture(scope="session")
def small_province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic province (about 3,000 students) written by ``fedid synth``."""
    out = tmp_path_factory.mktemp("province") / "small"
    subprocess.run(
        [
            sys.executable, "-m", "cli.main", "synth",
            "--out", str(out),
            "--seed", str(SMALL_PROVINCE_SEED),
            "--students", str(SMALL_PROVINCE_STUDENTS),
        ],
        check=True,
    )
    return out
