"""Data files shipped with fedid (the default indicator schema)."""

__all__: list[str] = []
