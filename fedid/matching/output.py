"""File output of an in-process matching run: resolved tables, aggregates, leakage.

:func:`write_outputs` writes them all or nothing (a temporary directory renamed into place).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from fedid.matching.run import MatchingResult
from privacy.atomic import atomic_directory

__all__ = ["province_totals", "write_outputs"]


def province_totals(released: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Per count: the sum over home agencies of released cells and how many were suppressed
    (a total with suppressed cells is a lower bound)."""
    out: dict[str, dict[str, int]] = {}
    for counts in released.values():
        for name, value in counts.items():
            cell = out.setdefault(name, {"total": 0, "suppressed_cells": 0})
            if value < 0:
                cell["suppressed_cells"] += 1
            else:
                cell["total"] += value
    return out


def write_outputs(result: MatchingResult, out: Path) -> None:
    """Write resolved tables, released aggregates, leakage and timings; all or nothing."""
    with atomic_directory(Path(out)) as tmp:
        (tmp / "resolved").mkdir()
        for agency, frame in result.resolved.items():
            frame.to_parquet(tmp / "resolved" / f"{agency}.parquet", index=False)
        summary = {"released": result.released, "released_epsilon": result.released_epsilon,
                   "province_totals": province_totals(result.released),
                   "timings_s": result.timings, "bytes_received": result.bytes_received}
        (tmp / "aggregates.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        (tmp / "leakage.json").write_text(
            json.dumps([p.to_dict() for p in result.leakage], indent=2, ensure_ascii=False))
