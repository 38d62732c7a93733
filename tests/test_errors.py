"""One error tree: every error class is defined once and derives from FedIdError."""

from __future__ import annotations

import inspect

import fedid.errors
import privacy.errors


def _classes(module: object) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if inspect.isclass(c) and issubclass(c, BaseException)}


def test_privacy_errors_are_the_same_classes_as_fedid_errors() -> None:
    for name, cls in _classes(privacy.errors).items():
        assert getattr(fedid.errors, name) is cls, name


def test_every_error_is_under_fedid_error_and_exported() -> None:
    classes = _classes(fedid.errors)
    assert set(classes) == set(fedid.errors.__all__)
    for name, cls in classes.items():
        assert issubclass(cls, fedid.errors.FedIdError), name
        assert name in (fedid.errors.__doc__ or ""), f"{name} is not drawn in the tree"


def test_privacy_failures_are_caught_by_the_domain_branches() -> None:
    assert issubclass(privacy.errors.AccountingError, fedid.errors.ConfigError)
    assert fedid.errors.CryptoError.exit_code == 4
    assert fedid.errors.BudgetExceededError.exit_code == 6
