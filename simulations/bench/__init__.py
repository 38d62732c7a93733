"""Benchmarks: each module runs with ``python -m simulations.bench.<name>`` and prints one JSON line."""

__all__: list[str] = []
