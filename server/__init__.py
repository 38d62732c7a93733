"""The coordinator: a Flower ServerApp (training, matching orchestration, ledger, reports)."""

__all__: list[str] = []
