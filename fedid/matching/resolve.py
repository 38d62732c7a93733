"""Node-side home resolution: a home agency's students with the decrypted evidence merged.

Used by the in-process driver (:mod:`fedid.matching.run`), the green channel
(:mod:`fedid.matching.incremental`) and the home agency's node (:mod:`clients.matching`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from fedid.matching.home import HomeAgency, canonical_keys
from fedid.matching.merge import decode_positions, merge_evidence
from fedid.matching.policy import DepartmentLayout
from fedid.schema import Schema

__all__ = ["resolve_home", "resolve_students"]


def resolve_students(
    *, schema: Schema, layouts: Mapping[str, DepartmentLayout], students: pd.DataFrame,
    results: Mapping[str, tuple[np.ndarray, list[int]]], position: Mapping[str, int],
    key_count: int,
) -> pd.DataFrame:
    """Students with the decrypted evidence merged; ``position``: canonical ID -> key slot."""
    sids = canonical_keys(students, "student_id", required=True)
    gids = [canonical_keys(students, c, required=False) for c in ("guardian1_id", "guardian2_id")]

    def pos(ids: np.ndarray) -> np.ndarray:
        return np.asarray([-1 if k is None else position[k] for k in ids.tolist()],
                          dtype=np.int64)

    fields = {dep: decode_positions(layouts[dep], p, payloads, key_count)
              for dep, (p, payloads) in results.items()}
    s_pos = pos(sids)
    g_pos = [pos(g) for g in gids]
    matched: dict[str, np.ndarray] = {}
    for dep in layouts:
        hit = np.zeros(key_count + 1, dtype=bool)  # last entry: "no key" (-1)
        if dep in results:
            hit[results[dep][0]] = True
        m = hit[s_pos]
        for g in g_pos:
            m = m | hit[g]
        matched[dep] = m
    return merge_evidence(schema=schema, students=students.reset_index(drop=True),
                          layouts=layouts, fields_by_department=fields,
                          student_pos=s_pos, guardian_pos=g_pos, matched_by_department=matched)


def resolve_home(home: HomeAgency, *, schema: Schema, students: pd.DataFrame) -> pd.DataFrame:
    """The home agency's students with the evidence of the full run merged (schema rules)."""
    return resolve_students(schema=schema, layouts=home.layouts, students=students,
                            results=home.results, position=home.position,
                            key_count=home.key_count)
