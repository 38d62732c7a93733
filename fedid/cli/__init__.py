"""The ``fedid`` command line: one module per subcommand, each with ``register(app)``."""

__all__: list[str] = []
