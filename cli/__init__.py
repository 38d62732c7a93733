"""The ``fedid`` command line, the shell on top of every layer.

One module per subcommand, each with ``register(app)``; :mod:`cli.main` is the entry point.
This package is the only code that may import every layer (``privacy``, ``fedid``,
``clients``, ``server``, ``simulations``) and nothing imports it (see ARCHITECTURE.md).
"""

__all__: list[str] = []
