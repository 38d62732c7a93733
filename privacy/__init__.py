"""Privacy primitives (layer 1, no Flower): DP training and accounting, privacy
budgets, Paillier encryption and packing, ristretto255 commutative blinding, audits."""

__all__: list[str] = []
