"""One fitted response model: its LightGBM heads and what they predict for any arm.

The window's deposits are a hurdle: ``E[deposits] = P(re-engage) x E[deposits |
re-engaged]``, and the reward cost is ``P(claim) x payout per claim``. Heads,
by name (``<head>/<group>``):

- ``reengage/all`` (S-learner), or ``reengage/control`` and ``reengage/treated``
  (T-learner; the offset learner's treated head adds to the control head's log-odds);
- ``deposits/all``: E[deposits | re-engaged], times ``deposit_scale`` (the
  calibration that balances the training returners' deposits);
- ``claim``: P(bonus paid > 0) of an offer.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.design import NONE, Design

LEARNERS = ("s", "t", "offset")


@dataclass
class ArmPredictions:
    """Per row and arm (columns in the order of ``arms``): expected values in the attribution window."""

    arms: pd.DataFrame  # the arm table, "none" first
    p_reengage: np.ndarray  # (n, k)
    deposits: np.ndarray  # (n, k)
    cost: np.ndarray  # (n, k)

    def incremental_net(self, margin: float) -> np.ndarray:
        net = margin * self.deposits - self.cost
        return net - net[:, [0]]

    def incremental_reengage(self) -> np.ndarray:
        return self.p_reengage - self.p_reengage[:, [0]]


@dataclass
class ResponseHeads:
    """The boosters of one fitted response model and how to combine them."""

    learner: str
    boosters: dict[str, lgb.Booster]
    deposit_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; expected one of {list(LEARNERS)}")
        need = ["deposits/all", "claim"]
        need += ["reengage/all"] if self.learner == "s" else ["reengage/control", "reengage/treated"]
        missing = [h for h in need if h not in self.boosters]
        if missing:
            raise ValueError(f"a {self.learner}-learner needs the heads {missing} too (has {sorted(self.boosters)})")

    def _reengage(self, mat: np.ndarray, offer: bool, num_iteration: int | None = None) -> np.ndarray:
        """P(re-engage); the offset learner's offer head adds to the control head's log-odds."""
        if self.learner == "s":
            return np.asarray(self.boosters["reengage/all"].predict(mat, num_iteration=num_iteration))
        if self.learner == "offset" and offer:
            heads = (self.boosters["reengage/control"], self.boosters["reengage/treated"])
            raw = sum(np.asarray(h.predict(mat, num_iteration=num_iteration, raw_score=True)) for h in heads)
            return np.asarray(1.0 / (1.0 + np.exp(-raw)))
        head = self.boosters["reengage/treated" if offer else "reengage/control"]
        return np.asarray(head.predict(mat, num_iteration=num_iteration))

    def _deposits(self, mat: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        """E[deposits | re-engaged], balanced on the training returners."""
        return np.asarray(self.boosters["deposits/all"].predict(mat, num_iteration=num_iteration)) * self.deposit_scale

    def _claim(self, mat: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        return np.asarray(self.boosters["claim"].predict(mat, num_iteration=num_iteration))

    def predict_arms(
        self, design: Design, X: pd.DataFrame, arms: pd.DataFrame, num_iteration: int | None = None
    ) -> ArmPredictions:
        """Every arm of ``arms`` (the arm table, "none" first) for every row of ``X``."""
        player = design.player_block(X)
        n, k = len(X), len(arms)
        p, dep, cost = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
        for j, (event, reward, payout) in enumerate(
            zip(arms["event_type"], arms["reward"], arms["payout"], strict=True)
        ):
            mat = design.matrix(X, event, reward, player=player)
            offer = event != NONE
            p[:, j] = self._reengage(mat, offer, num_iteration)
            dep[:, j] = p[:, j] * self._deposits(mat, num_iteration)
            if offer:
                cost[:, j] = self._claim(mat, num_iteration) * payout
        return ArmPredictions(arms, p, dep, cost)

    def predict_rows(
        self, design: Design, X: pd.DataFrame, event_type: np.ndarray, reward: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected (re-engagement, deposits, cost) of arm ``(event_type[i], reward[i])`` for row ``i``."""
        event_type = np.asarray(event_type, dtype=object)
        reward = np.asarray(reward, dtype=np.float64)
        mat = design.matrix(X, event_type, reward)
        offer = event_type != NONE
        p, dep, cost = np.zeros(len(X)), np.zeros(len(X)), np.zeros(len(X))
        for flag in (False, True):
            m = offer == flag
            if m.any():
                p[m] = self._reengage(mat[m], flag)
                dep[m] = p[m] * self._deposits(mat[m])
        if offer.any():
            cost[offer] = self._claim(mat[offer]) * design.payout_of(event_type[offer], reward[offer])
        return p, dep, cost
