"""The synthetic province: people first, then each agency's view of them.

``generate_province(scenario, seed=..., schema_path=...)`` builds a :class:`Province` in
memory; ``write_province(province, out, fmt=...)`` writes it atomically in the team's
layout (see :mod:`simulations.province.io`). Modules: ``people`` (households, IDs),
``latent`` (circumstances), ``departments`` (evidence-side tables), ``education``
(education-owned indicators), ``truth`` (true level and flags), ``labels`` (self-report),
``calibration`` (realised rates), ``join`` (the plaintext join of agency tables), ``io``
(writing), ``tables`` (typed reading).
"""

from simulations.province.generate import GENERATOR_VERSION, Province, generate_province
from simulations.province.io import write_province
from simulations.province.tables import read_table

__all__ = ["GENERATOR_VERSION", "Province", "generate_province", "read_table", "write_province"]
