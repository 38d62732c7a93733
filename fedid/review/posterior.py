"""P(true level | indicators, recorded recognition): the model's score corrected for label noise.

The model is trained on last year's recognition, so its ``P(level >= 1)`` estimates
``q(x) = P(recorded aided | x)``, not the probability of hardship. When the self-report process
errs independently of the indicators given the true status (class-conditional noise, the
assumption behind :mod:`fedid.label_noise`), Bayes' rule turns ``q`` and the student's own
record into the probability that the record is wrong:

1. the agency's rates, from the published figures and the agency's own counts (they stay on
   the node): with ``m`` the published missed rate, ``w`` the published wrong-aid rate and
   ``a`` the agency's share of recognised students, the share in hardship is
   ``pi = (1 - w) a / (1 - m)`` and ``rho = P(recognised | not in hardship) = w a / (1 - pi)``;
2. the clean probability ``h(x) = (q - rho) / (1 - m - rho)`` (clipped to (0, 1));
3. the record is one of three cells: recognised (``A``), applied and refused (``R``), never
   applied (``N``). Their likelihoods given hardship are ``1 - m``, ``m - hid`` and ``hid``
   (``hid``: the published share of hardship students who never apply); given no hardship
   ``rho``, ``r`` and ``1 - rho - r``, with the refusal rate ``r`` solved from the agency's
   share of refused applicants ``s_R = pi (m - hid) + (1 - pi) r``. Without an ``applied``
   column the cells ``R`` and ``N`` merge;
4. ``P(hardship | x, cell) = h L_hard / (h L_hard + (1 - h) L_not)``;
5. the level given hardship comes from the model's cumulative probabilities
   ``P(level = k | hardship) = (P(> k-1) - P(> k)) / P(> 0)``; a direct rule hit is certain
   hardship at the top level.

Nothing here reads the truth: published rates, the agency's own counts and the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedid.errors import ConfigError
from fedid.label_noise import PUBLISHED_SELF_REPORT, LabelNoise

__all__ = ["PUBLISHED_HIDDEN_RATE", "AgencyRates", "agency_rates", "recalibrate",
           "true_level_posterior"]

FloatArray = npt.NDArray[np.float64]

#: Published share of hardship students who never apply (隐性困难生, the plan's 12.7 %).
PUBLISHED_HIDDEN_RATE = 0.127
_EPS = 1e-4


@dataclass(frozen=True, slots=True)
class AgencyRates:
    """One agency's self-report rates: published figures plus the agency's own counts."""

    hardship_share: float  # pi
    missed: float  # m = P(not recognised | hardship)
    hidden: float  # hid = P(never applied | hardship)
    recognised_if_not: float  # rho = P(recognised | not in hardship)
    refused_if_not: float | None  # r = P(applied, refused | not in hardship); None: no column

    def likelihoods(self, cell: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
        """P(cell | hardship), P(cell | not): cell 0 recognised, 1 refused, 2 never applied."""
        m, hid, rho = self.missed, self.hidden, self.recognised_if_not
        if self.refused_if_not is None:
            hard = np.array([1.0 - m, m, m])
            other = np.array([rho, 1.0 - rho, 1.0 - rho])
        else:
            r = self.refused_if_not
            hard = np.array([1.0 - m, max(m - hid, _EPS), hid])
            other = np.array([rho, r, max(1.0 - rho - r, _EPS)])
        return hard[cell], other[cell]


def agency_rates(
    *, recorded: npt.NDArray[np.int64], applied: npt.NDArray[np.bool_] | None,
    noise: LabelNoise = PUBLISHED_SELF_REPORT, hidden: float = PUBLISHED_HIDDEN_RATE,
) -> AgencyRates:
    """The agency's rates from the published ``noise`` and its own recognition counts."""
    if not 0.0 <= hidden <= noise.missed_rate:
        raise ConfigError(
            f"hidden share must be in [0, missed rate {noise.missed_rate}]. Got {hidden}.")
    m, w = noise.missed_rate, noise.wrong_aid_rate
    n = max(int(recorded.size), 1)
    a = float(np.sum(recorded > 0)) / n
    pi = min(max((1.0 - w) * a / (1.0 - m), _EPS), 1.0 - _EPS)
    rho = min(max(w * a / (1.0 - pi), _EPS), 1.0 - m - _EPS)
    refused: float | None = None
    if applied is not None:
        s_r = float(np.sum(applied & (recorded == 0))) / n
        refused = min(max((s_r - pi * (m - hidden)) / (1.0 - pi), _EPS), 1.0 - rho - _EPS)
    return AgencyRates(hardship_share=pi, missed=m, hidden=hidden, recognised_if_not=rho,
                       refused_if_not=refused)


def recalibrate(
    q: FloatArray, recognised: npt.NDArray[np.bool_], *, fit: npt.NDArray[np.bool_] | None = None,
    iterations: int = 25,
) -> FloatArray:
    """``q`` mapped through ``sigmoid(a + b logit(q))`` fitted to the agency's own records.

    Platt scaling by Newton's method on the rows in ``fit`` (default: all): the federated DP
    model's ``P(recorded aided)`` is fitted to the whole federation and shrunk by DP noise,
    so its scale is off for a given agency. The fit reads the agency's own recognition
    records only (they stay on the node), never the truth.
    """
    z = np.log(np.clip(q, _EPS, 1 - _EPS) / (1 - np.clip(q, _EPS, 1 - _EPS)))
    rows = np.ones(z.size, dtype=bool) if fit is None else np.asarray(fit, dtype=bool)
    y = np.asarray(recognised, dtype=np.float64)[rows]
    if rows.sum() < 20 or y.min() == y.max():
        return np.asarray(q, dtype=np.float64)
    x = np.stack([np.ones(int(rows.sum())), z[rows]], axis=1)
    coef = np.array([0.0, 1.0])
    for _ in range(iterations):
        p = _sigmoid(x @ coef)
        grad = x.T @ (y - p)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        coef = coef + step
        if np.abs(step).max() < 1e-8:
            break
    return _sigmoid(coef[0] + coef[1] * z)


def _sigmoid(t: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * t))  # no overflow for large |t|
    return out


def true_level_posterior(
    p_greater: FloatArray, *, recorded: npt.NDArray[np.int64],
    applied: npt.NDArray[np.bool_] | None, rule_level: npt.NDArray[np.int64],
    rates: AgencyRates,
) -> FloatArray:
    """Rows x levels: P(true level = k | indicators, record) (see the module docstring)."""
    p_greater = np.asarray(p_greater, dtype=np.float64)
    n, k_minus_1 = p_greater.shape
    q = p_greater[:, 0]
    rho, m = rates.recognised_if_not, rates.missed
    h = np.clip((q - rho) / (1.0 - m - rho), _EPS, 1.0 - _EPS)
    cell = np.where(recorded > 0, 0, np.where(applied if applied is not None else False, 1, 2))
    l_hard, l_not = rates.likelihoods(cell.astype(np.int64))
    p_hard = h * l_hard / (h * l_hard + (1.0 - h) * l_not)
    # the level given hardship, from the CORAL cumulative probabilities (monotone-repaired)
    cum = np.minimum.accumulate(np.clip(p_greater, _EPS, 1.0), axis=1)
    upper = np.concatenate([cum, np.zeros((n, 1))], axis=1)
    given = np.clip(upper[:, :-1] - upper[:, 1:], 0.0, None)
    given = given / np.maximum(given.sum(axis=1, keepdims=True), _EPS)
    post = np.concatenate([(1.0 - p_hard)[:, None], p_hard[:, None] * given], axis=1)
    ruled = rule_level > 0
    if ruled.any():
        post[ruled] = 0.0
        post[ruled, np.clip(rule_level[ruled], 1, k_minus_1)] = 1.0
    return post
