"""Privacy primitives (layer 1, no Flower): DP training and accounting, privacy
budgets, Paillier encryption and packing, ristretto255 commutative blinding, audits.

Submodules are imported on use (``from privacy.paillier import ...``) so that importing
:mod:`privacy.errors` stays cheap.
"""

__all__: list[str] = ["blinding", "dp", "errors", "packing", "paillier"]
