"""Synthetic province generator, scenarios, sweeps and review reports."""

__all__: list[str] = []
