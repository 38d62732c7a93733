"""The review queue: which students' recognition the agency's reviewers should re-check first."""

from __future__ import annotations

from fedid.review.posterior import AgencyRates, agency_rates, true_level_posterior
from fedid.review.queue import (
    KINDS,
    QUEUE_FILE,
    Capacity,
    build_queue,
    node_queue,
    queue_counts,
    rank_students,
    write_queue,
)

__all__ = [
    "KINDS", "QUEUE_FILE", "AgencyRates", "Capacity", "agency_rates", "build_queue", "node_queue",
    "queue_counts", "rank_students", "true_level_posterior", "write_queue",
]
