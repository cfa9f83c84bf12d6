"""Off-policy evaluation: the value of a policy estimated from logged decisions.

Logged rows give the arm the logging policy chose (``logged``, a column of the
arm table), its estimated propensity ``e(logged | x)``, and the realised outcome
``y``. A target policy is a rows x arms matrix of arm probabilities. Three
estimators of the mean outcome per row under the target policy:

- IPS: ``mean(pi(A|x) / e(A|x) * y)``;
- SNIPS: the same, normalised by the mean weight;
- DR (doubly robust): ``mean(sum_a pi(a|x) mu(x, a) + pi(A|x) / e(A|x) * (y - mu(x, A)))``
  with ``mu`` an outcome model fitted on other data;
- DR-switch: DR whose correction is dropped on rows whose weight ``1 / e(A|x)`` exceeds ``max_weight``
  (SWITCH-DR, Wang et al. 2017): the model answers alone where the logs hold almost no evidence,
  trading a little bias for much less variance.

Intervals come from a cluster bootstrap (Poisson weights per player, so a
player's decisions in several campaigns move together); every estimator and
policy shares the same resamples, so differences between policies are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class LoggedData:
    logged: np.ndarray  # column of the logged arm per row (-1: an arm outside the table)
    propensity: np.ndarray  # e(logged | x) per row: estimated, or logged where ``known``
    cluster: np.ndarray  # bootstrap unit per row (player id)
    known: np.ndarray | None = None  # rows whose propensity was logged with the decision, not estimated

    def __post_init__(self) -> None:
        if not (len(self.logged) == len(self.propensity) == len(self.cluster)):
            raise ValueError("logged, propensity and cluster must have one entry per row")
        if self.known is not None and len(self.known) != len(self.logged):
            raise ValueError("known must have one entry per row")
        if (self.propensity[self.logged >= 0] <= 0).any():
            raise ValueError("propensities of logged arms must be > 0")

    @property
    def in_table(self) -> np.ndarray:
        """Rows whose logged arm is a column of the arm table."""
        return self.logged >= 0

    @property
    def column(self) -> np.ndarray:
        """The logged arm's column per row (0, i.e. no offer, where it is outside the table: mask with in_table)."""
        return np.where(self.logged >= 0, self.logged, 0)

    def subset(self, rows: np.ndarray) -> LoggedData:
        known = None if self.known is None else self.known[rows]
        return LoggedData(self.logged[rows], self.propensity[rows], self.cluster[rows], known)

    @property
    def is_known(self) -> np.ndarray:
        """Rows whose propensity was logged (all False when none was)."""
        return np.zeros(len(self.logged), bool) if self.known is None else np.asarray(self.known, bool)


def bootstrap_weights(cluster: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, rows) Poisson(1) weights drawn per cluster; row 0 of the result is all ones (the estimate)."""
    _, inverse = np.unique(cluster, return_inverse=True)
    rng = np.random.default_rng(seed)
    w = rng.poisson(1.0, size=(n_boot, inverse.max() + 1)).astype(np.float64)
    return np.vstack([np.ones((1, len(cluster))), w[:, inverse]])


def row_terms(
    data: LoggedData, y: np.ndarray, mu: np.ndarray, target: np.ndarray, *, max_weight: float = np.inf
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per estimator, (numerator terms, denominator terms) per row: the estimate is sum(w num) / sum(w den)."""
    n = len(y)
    rows = np.arange(n)
    ok, col = data.in_table, data.column
    pi_logged = np.where(ok, target[rows, col], 0.0)
    ratio = np.where(ok, pi_logged / np.where(ok, data.propensity, 1.0), 0.0)
    inverse = np.where(ok, 1.0 / np.where(ok, data.propensity, 1.0), 0.0)
    mu_logged = mu[rows, col]
    direct = (target * mu).sum(axis=1)
    ones = np.ones(n)
    return {
        "ips": (ratio * y, ones),
        "snips": (ratio * y, ratio),
        "dr": (direct + ratio * (y - mu_logged), ones),
        "dr-switch": (direct + np.where(inverse <= max_weight, ratio, 0.0) * (y - mu_logged), ones),
        "dm": (direct, ones),
    }


def dr_pseudo_outcomes(data: LoggedData, mu: np.ndarray, y: np.ndarray, *, max_weight: float = np.inf) -> np.ndarray:
    """Per row and arm, the doubly robust score ``mu(x, a) + 1{A = a} / e(A | x) (y - mu(x, A))`` (no correction
    where ``1 / e(A | x)`` exceeds ``max_weight``, as DR-switch)."""
    rows = np.arange(len(y))
    ok, col = data.in_table, data.column
    ok = ok & (1.0 / np.where(ok, data.propensity, 1.0) <= max_weight)
    resid = np.where(ok, (y - mu[rows, col]) / np.where(ok, data.propensity, 1.0), 0.0)
    out = mu.copy()
    out[rows[ok], col[ok]] += resid[ok]
    return out
