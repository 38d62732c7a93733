"""The fedid error tree.

Every error fedid raises on purpose derives from :class:`FedIdError`; the CLI maps
each branch to an exit code. Lower-layer errors (OSError, ValueError from a
library, flwr or opacus errors) are wrapped at the layer boundary with
``raise ... from exc``. Messages name the rule and the observed value, never an
ID, a key, a plaintext or a ciphertext.

::

    FedIdError
    ├── ConfigError               bad configuration, schema file or CLI flag
    │   └── SchemaError           a schema (TOML) that breaks a rule
    ├── DataValidationError       an agency table that fails validation (carries the report)
    │   └── IdNumberError         a national ID number that breaks GB 11643-1999
    ├── CryptoError               bad key, modulus, ciphertext, curve point or encoding
    ├── ProtocolError             a malformed, replayed, misrouted or out-of-order message
    ├── BudgetExceededError       a request that would take an agency past its privacy budget
    ├── TrainingError             a model could not be trained or loaded
    └── FederationError           the federation could not run (nodes missing, timeouts)
"""

from __future__ import annotations

__all__ = [
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


class FedIdError(Exception):
    """Root of every error fedid raises on purpose."""

    exit_code: int = 1


class ConfigError(FedIdError):
    """A configuration value, schema file or command-line flag breaks a rule."""

    exit_code = 2


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


class CryptoError(FedIdError):
    """A key, modulus, ciphertext, curve point or encoding is invalid."""

    exit_code = 4


class ProtocolError(FedIdError):
    """A protocol message is malformed, replayed, misrouted or out of order."""

    exit_code = 5


class BudgetExceededError(FedIdError):
    """A request would take an agency past its own privacy budget; nothing was spent."""

    exit_code = 6


class TrainingError(FedIdError):
    """A model could not be trained, evaluated or loaded."""

    exit_code = 7


class FederationError(FedIdError):
    """The federation could not run: too few nodes, timeouts, failed run."""

    exit_code = 8
