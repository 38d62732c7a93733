"""Errors of the privacy primitives (layer 1, which imports nothing from fedid).

::

    PrivacyError
    ├── CryptoError            bad key, modulus, ciphertext, curve point or encoding
    ├── AccountingError        invalid accounting parameters (noise, sample rate, delta ...)
    └── BudgetExceededError    a request would take a party past its privacy budget

:mod:`fedid` wraps these at its boundary (``raise fedid.errors.X(...) from exc``).
Messages name the rule and the observed value, never a key, plaintext or ciphertext.
"""

from __future__ import annotations

__all__ = ["AccountingError", "BudgetExceededError", "CryptoError", "PrivacyError"]


class PrivacyError(Exception):
    """Root of every error raised by :mod:`privacy`."""


class CryptoError(PrivacyError):
    """A key, modulus, ciphertext, curve point or encoding is invalid."""


class AccountingError(PrivacyError):
    """Privacy accounting parameters break a rule."""


class BudgetExceededError(PrivacyError):
    """A request would take a party past its privacy budget; nothing was spent."""
