"""The agency node: a Flower ClientApp around the roles in :mod:`fedid`."""

__all__: list[str] = []
