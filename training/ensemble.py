"""Uncertainty: fitting a bootstrap ensemble of response models.

Member 0 is the point model, fitted on all rows; members 1.. are refits with
Poisson(1) bootstrap weights drawn per player (a player's decisions in several
campaigns move together), so their spread around the point model is the
sampling uncertainty of the fit. The fitted ensemble becomes the registered
model, :class:`scoring.ensemble.ResponseEnsemble` (:meth:`BootstrapEnsemble.to_model`).

The confidence of a recommendation is the estimated probability that it is
right: for an offer, that its incremental gain is positive; for no offer, that
the best offer's gain is not (a normal approximation with the members' spread).
The evaluation's reliability table checks that higher confidence means right
more often.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from core.progress import SILENT, Progress
from scoring.ensemble import ResponseEnsemble, Spread
from training.response import ResponseModel

Z90 = 1.6448536269514722
__all__ = ["Z90", "BootstrapEnsemble", "Spread", "confidence", "interval"]


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
        self,
        X: pd.DataFrame,
        y: pd.DataFrame,
        sample_weight: np.ndarray | None = None,
        *,
        progress: Progress = SILENT,
    ) -> BootstrapEnsemble:
        if self.base is None:
            raise ValueError("BootstrapEnsemble needs a base ResponseModel")
        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {self.n_members}")
        rng = np.random.default_rng(self.seed)
        _, inverse = np.unique(X["player_id"].to_numpy(), return_inverse=True)
        base_w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
        self.members_: list[ResponseModel] = []
        progress.start("bootstrap members", self.n_members)
        for i in range(self.n_members):
            w = base_w if i == 0 else base_w * rng.poisson(1.0, inverse.max() + 1)[inverse]
            keep = w > 0
            member = clone(self.base).set_params(seed=self.seed * 1000 + i)
            member.fit(X.loc[keep], y.loc[keep], sample_weight=w[keep])
            self.members_.append(member)
            progress.advance("bootstrap members")
        return self

    def to_model(self, arms: pd.DataFrame, meta: dict[str, Any] | None = None) -> ResponseEnsemble:
        """The fitted members as the registered model's runtime form (the same predictions, no estimator)."""
        check_is_fitted(self, "members_")
        if self.base is None or self.base.design is None:
            raise ValueError("BootstrapEnsemble needs a base ResponseModel with a Design")
        design = self.base.design
        return ResponseEnsemble(design, arms.reset_index(drop=True), [m.heads_ for m in self.members_], meta or {})
