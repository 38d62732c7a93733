"""A coordinator that submits app bundles the nodes must refuse (run inside its namespace).

``python -m tests.server.lying_coordinator OUT CERTS BIND SIGNATURE MODIFIED_APP`` starts
the SuperLink on OUT, registers every ``CERTS/nodes/*.pub``, then submits two runs, each
must end ``finished:failed`` because every node refuses its bundle: the fedid app with no
signature, and a modified copy of it carrying the signature of the original. Prints one
JSON line with both statuses; exits 0 when both runs failed as they should.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fedid.app_trust import AppSignature
from fedid.proc import exit_on_sigterm
from server.app_bundle import attach_signature, fab_sha256
from server.deploy import SuperLinkLauncher

CONFIG = {"rounds": 1, "min-nodes": 1, "expected-nodes": 1, "wait-nodes": 120.0,
          "timeout": 20.0, "matching": False, "session": "lying"}


def main() -> int:
    exit_on_sigterm()
    out, certs, bind, signature, modified = (Path(a) for a in sys.argv[1:6])
    coord = SuperLinkLauncher(out=out, certs=certs, bind=str(bind), port=9093)
    coord.start()
    statuses: dict[str, str] = {}
    try:
        for pub in sorted((certs / "nodes").glob("*.pub")):
            coord.register(pub, pub.stem)
        run = coord.submit({**CONFIG, "out": str(coord.out / "lying-unsigned")})
        statuses["unsigned"] = str(coord.status_after(run))
        liar = SuperLinkLauncher(out=out, certs=certs, bind=str(bind), port=9093, app_dir=modified)
        run = liar.submit({**CONFIG, "out": str(coord.out / "lying-modified")})
        attach_signature(coord.database, AppSignature.load(signature),
                         fab_hash=fab_sha256(modified))
        statuses["modified"] = str(coord.status_after(run))
    finally:
        coord.stop()
    print(json.dumps(statuses))
    return 0 if all(s == "finished:failed" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
