"""The policy: per-arm predictions -> one decision per player.

Pure functions over arrays (rows x arms, "none" in column 0), no I/O. The
learned policy takes each player's best arm for the objective, or no offer when
no arm's expected gain is positive:

- ``net_value``: incremental net value ``margin x delta deposits - reward cost``;
- ``reengagement``: incremental chance to re-engage.

Under a reward budget (total expected reward cost over the rows) the policy
maximises ``gain - lambda x cost`` with the smallest ``lambda >= 0`` that keeps
the expected cost within the budget (a Lagrangian relaxation of the knapsack;
exact up to one player's arm at the boundary).

The baselines the evaluation compares it with are in :mod:`training.baselines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Objective = Literal["net_value", "reengagement"]


@dataclass(frozen=True)
class Choice:
    arm: np.ndarray  # column of the chosen arm per row (0: no offer)
    gain: np.ndarray  # expected gain of the chosen arm for the objective
    cost: np.ndarray  # expected reward cost of the chosen arm
    lam: float  # the budget's shadow price (0 without a binding budget)


def gains(inc_net: np.ndarray, inc_reengage: np.ndarray, objective: Objective) -> np.ndarray:
    if objective == "net_value":
        return inc_net
    if objective == "reengagement":
        return inc_reengage
    raise ValueError(f"unknown objective {objective!r}; expected 'net_value' or 'reengagement'")


def _pick(gain: np.ndarray, cost: np.ndarray, lam: float, allowed: np.ndarray | None) -> np.ndarray:
    score = gain - lam * cost
    if allowed is not None:
        score = np.where(allowed, score, -np.inf)
    score[:, 0] = 0.0  # no offer: no gain, no cost
    return score.argmax(axis=1)


def choose(
    gain: np.ndarray,
    cost: np.ndarray,
    *,
    budget: float | None = None,
    allowed: np.ndarray | None = None,
    tol: float = 1e-6,
) -> Choice:
    """The best arm per row for ``gain`` (rows x arms), within ``budget`` of total expected ``cost``.

    ``allowed`` (rows x arms, or one row of arms, bool) masks arms a row may not get; no offer is always
    allowed.
    """
    if gain.shape != cost.shape or gain.ndim != 2:
        raise ValueError(f"gain and cost must be matching rows x arms arrays, got {gain.shape} and {cost.shape}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be >= 0 KRW, got {budget}")
    rows = np.arange(len(gain))
    if allowed is not None:
        allowed = np.broadcast_to(np.asarray(allowed, bool), gain.shape)

    def spend(lam: float) -> tuple[np.ndarray, float]:
        arm = _pick(gain, cost, lam, allowed)
        return arm, float(cost[rows, arm].sum())

    arm, total = spend(0.0)
    lam = 0.0
    if budget is not None and total > budget:
        lo, hi = 0.0, 1.0
        while spend(hi)[1] > budget:
            hi *= 2
            if hi > 1e12:
                break
        for _ in range(60):  # bisection on the shadow price
            mid = (lo + hi) / 2
            if spend(mid)[1] > budget:
                lo = mid
            else:
                hi = mid
            if hi - lo < tol * hi:  # relative: re-engagement per KRW prices are ~1e-5, net value's ~1
                break
        lam = hi
        arm, _ = spend(hi)
    return Choice(arm, gain[rows, arm], cost[rows, arm], lam)
