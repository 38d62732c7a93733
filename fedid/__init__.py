"""fedid: privacy-preserving federated identification of students in hardship.

Layer 2 of the project: the domain (schema, national IDs, agency tables), the
hardship model, transport-free protocol roles, config, errors and the CLI.
Imports only from :mod:`privacy`; never imports ``flwr`` at module level.
"""

from fedid.errors import FedIdError

__all__ = ["FedIdError", "__version__"]
__version__ = "0.1.0"
