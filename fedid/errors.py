"""The fedid error tree, the one tree every layer raises and catches.

Every error fedid raises on purpose derives from :class:`FedIdError`; the CLI maps each
branch to an exit code (``exit_code``). The root and the branches the privacy primitives
raise live in :mod:`privacy.errors` (layer 1 imports nothing above it) and are re-exported
here; the domain branches are defined here. Import every error from this module (or, in
:mod:`privacy`, from :mod:`privacy.errors`): there is one class per concept.

Lower-layer errors (OSError, ValueError from a library, flwr or opacus errors) are wrapped
at the layer boundary with ``raise ... from exc``. Messages name the rule and the observed
value, never an ID, a key, a plaintext or a ciphertext.

::

    FedIdError                    (privacy.errors)  exit 1
    ├── ConfigError               (privacy.errors)  exit 2  bad configuration or CLI flag
    │   ├── AccountingError       (privacy.errors)  invalid DP accounting/training parameters
    │   └── SchemaError                             a schema (TOML) that breaks a rule
    ├── DataValidationError                         exit 3  an agency table fails validation
    │   └── IdNumberError                           an ID number that breaks GB 11643-1999
    ├── CryptoError               (privacy.errors)  exit 4  bad key, modulus, ciphertext,
    │                                                       curve point or encoding
    ├── ProtocolError                               exit 5  malformed, replayed, misrouted or
    │                                                       out-of-order message
    ├── BudgetExceededError       (privacy.errors)  exit 6  a request past a privacy budget
    ├── TrainingError                               exit 7  a model not trained or loaded
    └── FederationError                             exit 8  the federation could not run
"""

from __future__ import annotations

from privacy.errors import (
    AccountingError,
    BudgetExceededError,
    ConfigError,
    CryptoError,
    FedIdError,
)

__all__ = [
    "AccountingError",
    "BudgetExceededError",
    "ConfigError",
    "CryptoError",
    "DataValidationError",
    "FedIdError",
    "FederationError",
    "IdNumberError",
    "ProtocolError",
    "SchemaError",
    "TrainingError",
]


class SchemaError(ConfigError):
    """A schema definition (default or province-supplied TOML) breaks a rule."""


class DataValidationError(FedIdError):
    """An agency table failed validation; ``report`` holds every problem found."""

    exit_code = 3

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class IdNumberError(DataValidationError):
    """A national ID number breaks a rule of GB 11643-1999."""


class ProtocolError(FedIdError):
    """A protocol message is malformed, replayed, misrouted or out of order."""

    exit_code = 5


class TrainingError(FedIdError):
    """A model could not be trained, evaluated or loaded."""

    exit_code = 7


class FederationError(FedIdError):
    """The federation could not run: too few nodes, timeouts, failed run."""

    exit_code = 8
