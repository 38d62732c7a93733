"""Benchmarks: each runs as ``python -m simulations.bench.<name>`` and prints one JSON line."""

__all__: list[str] = []
