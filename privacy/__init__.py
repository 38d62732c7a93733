"""Privacy primitives (layer 1, no Flower): DP training and accounting, privacy
budgets, Paillier encryption and packing, commutative blinding (ristretto255; X25519 with
an Elligator 2 hash), pairwise-masked secure sums (their masking keys signed with the
agencies' identity keys), agency identity keys (signing and sealed delivery).

Submodules are imported on use (``from privacy.paillier import ...``) so that importing
:mod:`privacy.errors` stays cheap.
"""

__all__: list[str] = [
    "blinding", "blinding_x25519", "dp", "errors", "identity", "packing", "paillier",
    "secure_sum", "secure_sum_keys",
]
