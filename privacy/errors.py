"""The root of fedid's one error tree and its branches raised by the privacy primitives.

The tree lives in the lowest layer so that :mod:`privacy` (which imports nothing from
:mod:`fedid`) raises the same classes every other layer catches; :mod:`fedid.errors`
re-exports these and adds the domain branches. The whole tree is drawn there.

::

    FedIdError
    ├── ConfigError            (here) bad configuration value
    │   └── AccountingError    (here) invalid accounting parameters (noise, sample rate ...)
    ├── CryptoError            (here) bad key, modulus, ciphertext, curve point or encoding
    └── BudgetExceededError    (here) a request would take a party past its privacy budget

Messages name the rule and the observed value, never a key, plaintext or ciphertext.
"""

from __future__ import annotations

__all__ = ["AccountingError", "BudgetExceededError", "ConfigError", "CryptoError", "FedIdError"]


class FedIdError(Exception):
    """Root of every error fedid raises on purpose; ``exit_code`` is the CLI's exit status."""

    exit_code: int = 1


class ConfigError(FedIdError):
    """A configuration value, schema file or command-line flag breaks a rule."""

    exit_code = 2


class AccountingError(ConfigError):
    """Privacy accounting or DP training parameters break a rule."""


class CryptoError(FedIdError):
    """A key, modulus, ciphertext, curve point or encoding is invalid."""

    exit_code = 4


class BudgetExceededError(FedIdError):
    """A request would take a party past its own privacy budget; nothing was spent."""

    exit_code = 6
