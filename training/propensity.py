"""Historical assignment propensities: the chance that the marketers' logging
policy gave a decision row each arm, given the player's features at that time.

Offers were not random: rules favoured valuable players and matched event types
to main games. A multiclass LightGBM over the player block (no arm columns)
estimates ``e(a | x)`` for every arm, cross-fitted (each row scored by a model
that did not see it) so the weights and doubly robust corrections built on it
are not overfitted. Estimates are floored at ``clip`` and renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.design import Design
from training.arms import arm_name
from training.data import player_folds


@dataclass
class PropensityModel:
    """A fitted multiclass propensity model over the arms of ``arms`` (columns in that order)."""

    design: Design
    arms: pd.DataFrame
    booster: lgb.Booster
    clip: float

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """``e(a | x)``, shape (n, number of arms)."""
        return _clip(np.asarray(self.booster.predict(self.design.player_block(X))), self.clip)


def _clip(p: np.ndarray, clip: float) -> np.ndarray:
    p = np.maximum(p, clip)
    return p / p.sum(axis=1, keepdims=True)


def logged_arm_index(X: pd.DataFrame, arms: pd.DataFrame) -> np.ndarray:
    """Column of each row's logged arm in ``arms``; -1 for an arm the table lacks (too little support)."""
    names = pd.Index(arms["arm"])
    logged = [arm_name(e, r) for e, r in zip(X["event_type"].astype(str), X["reward"].astype(np.int64), strict=True)]
    return names.get_indexer(pd.Index(logged))


def _params(n_classes: int, seed: int, n_jobs: int) -> dict:
    return {
        "objective": "multiclass",
        "num_class": n_classes,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_child_samples": 200,
        "feature_fraction": 0.8,
        "lambda_l2": 1.0,
        "seed": seed,
        "num_threads": n_jobs,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def fit_propensity(
    design: Design,
    X: pd.DataFrame,
    arms: pd.DataFrame,
    *,
    rounds: int = 80,
    clip: float = 0.002,
    seed: int = 0,
    n_jobs: int = 2,
) -> PropensityModel:
    """Fit on every row whose logged arm is in ``arms``."""
    y = logged_arm_index(X, arms)
    keep = y >= 0
    data = lgb.Dataset(design.player_block(X.loc[keep]), label=y[keep], free_raw_data=True)
    booster = lgb.train(_params(len(arms), seed, n_jobs), data, num_boost_round=rounds)
    return PropensityModel(design, arms, booster, clip)


def cross_fitted(
    design: Design,
    X: pd.DataFrame,
    arms: pd.DataFrame,
    *,
    folds: int = 2,
    group: np.ndarray | None = None,
    rounds: int = 80,
    clip: float = 0.002,
    seed: int = 0,
    n_jobs: int = 2,
) -> np.ndarray:
    """Out-of-fold ``e(a | x)`` for every row of ``X``; folds split by ``group`` (e.g. player id) when given."""
    fold = player_folds(np.asarray(group) if group is not None else np.arange(len(X)), folds, seed)
    out = np.zeros((len(X), len(arms)))
    for f in range(folds):
        model = fit_propensity(design, X.loc[fold != f], arms, rounds=rounds, clip=clip, seed=seed, n_jobs=n_jobs)
        out[fold == f] = model.predict(X.loc[fold == f])
    return out
