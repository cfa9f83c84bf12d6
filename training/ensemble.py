"""Uncertainty: a bootstrap ensemble of response models.

Member 0 is the point model, fitted on all rows; members 1.. are refits with
Poisson(1) bootstrap weights drawn per player (a player's decisions in several
campaigns move together), so their spread around the point model is the
sampling uncertainty of the fit. Scoring every arm uses the point model only;
the spread is computed for the arms that matter (the recommended one, and the
best offer when the recommendation is no offer), which keeps a batch's cost
at about ``1 + 2 (K - 1) / arms`` point-model scorings instead of ``K``.

The confidence of a recommendation is the estimated probability that it is
right: for an offer, that its incremental gain is positive; for no offer, that
the best offer's gain is not (a normal approximation with the members' spread).
The evaluation's reliability table checks that higher confidence means right
more often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.base import BaseEstimator, clone

from training.response import ArmPredictions, ResponseModel

Z90 = 1.6448536269514722


@dataclass(frozen=True)
class Spread:
    """Standard deviation over the members of the incremental gains of one arm per row."""

    net: np.ndarray
    reengage: np.ndarray


def confidence(gain: np.ndarray, sd: np.ndarray, offer: np.ndarray) -> np.ndarray:
    """P(the recommendation is right): ``gain``, ``sd`` of the recommended arm (or, where ``offer`` is False,
    of the best offer, which the recommendation declines)."""
    z = gain / np.maximum(sd, 1e-9)
    return np.where(offer, ndtr(z), ndtr(-z))


def interval(gain: np.ndarray, sd: np.ndarray, z: float = Z90) -> tuple[np.ndarray, np.ndarray]:
    return gain - z * sd, gain + z * sd


class BootstrapEnsemble(BaseEstimator):
    """The point model plus ``n_members - 1`` refits of ``base`` on player-clustered bootstrap weights."""

    def __init__(self, base: ResponseModel | None = None, n_members: int = 5, seed: int = 0) -> None:
        self.base = base
        self.n_members = n_members
        self.seed = seed

    def fit(
        self, X: pd.DataFrame, y: pd.DataFrame, sample_weight: np.ndarray | None = None, *, on_member=None
    ) -> BootstrapEnsemble:
        if self.base is None:
            raise ValueError("BootstrapEnsemble needs a base ResponseModel")
        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {self.n_members}")
        rng = np.random.default_rng(self.seed)
        _, inverse = np.unique(X["player_id"].to_numpy(), return_inverse=True)
        base_w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
        self.members_: list[ResponseModel] = []
        for i in range(self.n_members):
            w = base_w if i == 0 else base_w * rng.poisson(1.0, inverse.max() + 1)[inverse]
            keep = w > 0
            member = clone(self.base).set_params(seed=self.seed * 1000 + i)
            member.fit(X.loc[keep], y.loc[keep], sample_weight=w[keep])
            self.members_.append(member)
            if on_member is not None:
                on_member(i)
        return self

    @property
    def point(self) -> ResponseModel:
        return self.members_[0]

    def predict_arms(self, X: pd.DataFrame, arms: pd.DataFrame, num_iteration: int | None = None) -> ArmPredictions:
        """Every arm of every row, by the point model."""
        return self.point.predict_arms(X, arms, num_iteration=num_iteration)

    def spread(
        self, X: pd.DataFrame, arms: pd.DataFrame, column: np.ndarray, margin: float, point: ArmPredictions
    ) -> Spread:
        """The members' spread of the incremental gains of arm ``column[i]`` (a column of ``arms``) for row ``i``;
        ``point``: the point model's predictions of every arm (member 0 is not scored again)."""
        n = len(X)
        if self.n_members < 2 or n == 0:
            return Spread(np.zeros(n), np.zeros(n))
        rows = np.arange(n)
        net = [point.incremental_net(margin)[rows, column]]
        re = [point.incremental_reengage()[rows, column]]
        event = arms["event_type"].to_numpy(object)[column]
        reward = arms["reward"].to_numpy(np.float64)[column]
        none_e, none_r = np.full(n, "none", dtype=object), np.zeros(n)
        for m in self.members_[1:]:
            p, dep, cost = m.predict_rows(X, event, reward)
            p0, dep0, _ = m.predict_rows(X, none_e, none_r)
            net.append(margin * (dep - dep0) - cost)
            re.append(p - p0)
        return Spread(np.std(net, axis=0, ddof=1), np.std(re, axis=0, ddof=1))

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.point.predict(X)
