"""The synthetic province: people first, then each agency's view of them."""

__all__: list[str] = []
