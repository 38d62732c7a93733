"""The node's SuperNode: Flower's own, with fedid's app-bundle replay check added.

``fedid node`` starts ``python -m clients.supernode [--bundle-state FILE
[--bundle-max-age SECONDS]] <flower-supernode arguments>``. Flower 1.42 checks a run's
app bundle (FAB) once, when the run's first message arrives and before anything of the
run reaches the ClientApp, in ``flwr.supernode.start_client_internal._verify_fab`` (the
signature by a trusted entity). :func:`install` wraps that function: a FAB Flower accepts
must also pass :func:`fedid.app_trust.check_bundle` (the signer's signed serial not below
the highest this node accepted, recorded in FILE; with a maximum age, not signed longer
ago). A refusal is then Flower's own refusal: an error reply to the message, the run is
not stored, so every later message of the run is checked again and refused again.

Flower offers no hook for this; the wrapped function is private, so the fedid release
pins Flower to 1.42 (pyproject) and a test checks the hook against the installed Flower.
Without ``--trusted-entities`` Flower checks nothing, and neither does fedid
(``fedid node --insecure``: local experiments only).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from logging import ERROR, INFO
from pathlib import Path
from typing import Any

from fedid.app_trust import check_bundle
from fedid.errors import FedIdError

__all__ = ["REFUSED", "install", "main"]

#: the start of the log line for a refused bundle (``clients.deploy`` watches for it)
REFUSED = "fedid refused the app bundle:"


def install(*, state: Path, max_age: float | None,
            clock: Callable[[], float] = time.time) -> None:
    """Make the SuperNode accept a FAB only when fedid's bundle check passes too."""
    from flwr.common.logger import log
    from flwr.supernode import start_client_internal as flower

    original: Callable[[Any, dict[str, str]], bool] = flower._verify_fab
    if getattr(original, "fedid_bundle_check", False):
        original = original.__wrapped__  # type: ignore[attr-defined]

    def verify(fab: Any, trusted_entities: dict[str, str]) -> bool:
        if not original(fab, trusted_entities):
            return False
        verifications: Mapping[str, str] = fab.verifications
        try:
            accepted = check_bundle(fab.content, verifications, trusted_entities,
                                    state=state, max_age=max_age, now=clock())
        except FedIdError as exc:
            log(ERROR, "%s %s", REFUSED, exc)
            return False
        log(INFO, "fedid accepted the app bundle: serial %d", accepted.serial)
        return True

    verify.fedid_bundle_check = True  # type: ignore[attr-defined]
    verify.__wrapped__ = original  # type: ignore[attr-defined]
    flower._verify_fab = verify


def _own_args(argv: list[str]) -> tuple[Path | None, float | None, list[str]]:
    """fedid's options (``--bundle-state``, ``--bundle-max-age``) and Flower's arguments."""
    state: Path | None = None
    max_age: float | None = None
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--bundle-state":
            state = Path(next(args))
        elif arg == "--bundle-max-age":
            max_age = float(next(args))
        else:
            rest.append(arg)
    return state, max_age, rest


def main() -> None:
    """Run Flower's SuperNode, with the bundle check when ``--bundle-state`` is given."""
    state, max_age, rest = _own_args(sys.argv[1:])
    if state is not None:
        install(state=state, max_age=max_age)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
