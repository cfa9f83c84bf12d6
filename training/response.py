"""Response models: for a player and any arm, the chance to re-engage, the expected
deposits and the expected reward cost in the attribution window (and the same
with no offer), from which the incremental net value and ROI of every arm follow.

The window's deposits are modelled as a hurdle: ``E[deposits] = P(re-engage) x
E[deposits | re-engaged]``. Re-engagement is a binary outcome with far less
noise than 7-day deposits (96% zeros, a heavy tail), and what a returning
player deposits is mostly the player's own habit, learnt from every returner,
offer or not. The reward cost is ``P(claim) x payout per claim`` of the arm.
Three LightGBM heads, each monotone in the reward where asked:

- ``reengage``: binary, every row;
- ``deposits``: Tweedie regression of the window's deposits, re-engaged rows only;
- ``claim``: binary (bonus paid > 0), offer rows only.

Meta-learners (``learner``):

- ``s`` (S-learner): one model per head with the arm as input, "none" included;
- ``t`` (T-learner): separate ``reengage`` heads for no-offer rows (control)
  and offer rows (treated, the arm still an input);
- ``offset``: a ``reengage`` head for no-offer rows (control), and one for offer
  rows that starts from the control head's log-odds (LightGBM ``init_score``),
  so that its trees fit only the arm's effect on the log-odds of re-engaging
  and its regularisation shrinks that effect, not the baseline, towards zero.

Every learner shares one ``deposits`` head (what a returner deposits is mostly
the player's habit, learnt from every returner; separate control and treated
heads cost the tuned T-learner 7 KRW per candidate of policy value and 0.06 of
ROI accuracy on the 100,000-player world: 887 vs 895, 0.756 vs 0.816).
``deposit_model``: ``factor`` (default) fits that head on the player's columns
only and each arm's effect on the size as one factor shrunk by empirical Bayes
(:mod:`training.deposit_factors`); ``tree`` lets the head read the arm's columns.

The estimator follows the scikit-learn contract (``get_params``/``set_params``,
``fit(X, y, sample_weight)``); :meth:`ResponseModel.predict_arms` scores every
arm of every row at once.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from scoring.design import NONE, Design
from scoring.heads import LEARNERS, ArmPredictions, ResponseHeads, arm_factors
from training.deposit_factors import deposit_factors

LABELS = ("reengaged", "deposits", "reward_cost")
DEPOSIT_MODELS = ("factor", "tree")
FACTOR_ROUNDS = 3  # backfitting rounds of the habit and the arm factors
MAX_LEAF_SHARE = 0.05  # a leaf needs at most this share of its head's rows (small platforms)
__all__ = ["LABELS", "LEARNERS", "ArmPredictions", "ResponseModel"]


class ResponseModel(BaseEstimator):
    """The per-arm response model (module docstring)."""

    def __init__(
        self,
        design: Design | None = None,
        *,
        learner: str = "s",
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 200,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        lambda_l2: float = 1.0,
        tweedie_power: float = 1.5,
        monotone: bool = True,
        deposit_model: str = "factor",
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.design = design
        self.learner = learner
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.tweedie_power = tweedie_power
        self.monotone = monotone
        self.deposit_model = deposit_model
        self.seed = seed
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting --
    def _require_design(self) -> Design:
        if self.design is None:
            raise ValueError("ResponseModel needs a fitted Design (training.design.fit_design)")
        return self.design

    def _params(self, objective: str, monotone: bool, share: float = 1.0, rows: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.leaf_rows(share, rows),
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": self.n_jobs,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if objective == "tweedie":
            params["tweedie_variance_power"] = self.tweedie_power
        if monotone and self.monotone:
            params["monotone_constraints"] = self._require_design().monotone(True)
            # "advanced" broke monotonicity with bagging and feature_fraction in LightGBM 4.7 (a unit test
            # caught it: more reward, lower chance); "intermediate" keeps it and splits almost as freely
            params["monotone_constraints_method"] = "intermediate"
        return params

    def leaf_rows(self, share: float, rows: int | None = None) -> int:
        """Minimum rows per leaf of a head fitted on ``share`` of the training rows: ``min_child_samples``
        is set for a head on every row and scales down with the head's rows (the deposits head sees only
        the returners, a tenth of the rows or less), with a floor of 20. With ``rows`` (the head's), a leaf
        never needs more than :data:`MAX_LEAF_SHARE` of them, so a small platform's history still splits."""
        leaf = round(self.min_child_samples * share)
        if rows is not None:
            leaf = min(leaf, round(rows * MAX_LEAF_SHARE))
        return max(20, leaf)

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        objective: str,
        monotone: bool,
        n_all: int,
        init_score: np.ndarray | None = None,
    ) -> lgb.Booster:
        design = self._require_design()
        data = lgb.Dataset(
            x,
            label=y,
            weight=w,
            init_score=init_score,
            feature_name=design.columns,
            categorical_feature=design.categorical_indices,
            free_raw_data=True,
        )
        params = self._params(objective, monotone, len(x) / max(n_all, 1), len(x))
        return lgb.train(params, data, num_boost_round=self.n_estimators)

    def fit(self, X: pd.DataFrame, y: pd.DataFrame, sample_weight: np.ndarray | None = None) -> ResponseModel:
        """``X``: decision rows with player features, ``event_type`` and ``reward`` of the logged arm;
        ``y``: ``reengaged``, ``deposits``, ``reward_cost`` (``training.response.LABELS``)."""
        design = self._require_design()
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; expected one of {list(LEARNERS)}")
        missing = [c for c in LABELS if c not in y]
        if missing:
            raise ValueError(f"y lacks the labels {missing}; expected {list(LABELS)}")
        mat = design.matrix(X, X["event_type"].astype(str).to_numpy(), X["reward"].to_numpy())
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        back = y["reengaged"].to_numpy(bool)
        deposits = y["deposits"].to_numpy(np.float64)
        claimed = y["reward_cost"].to_numpy(np.float64) > 0
        offer = X["event_type"].astype(str).to_numpy() != NONE
        groups = {"all": np.ones(len(X), bool)} if self.learner == "s" else {"control": ~offer, "treated": offer}
        heads: dict[str, lgb.Booster] = {}
        for g, rows in groups.items():
            init = None
            if self.learner == "offset" and g == "treated":  # start from the control head's log-odds
                init = np.asarray(heads["reengage/control"].predict(mat[rows], raw_score=True))
            heads[f"reengage/{g}"] = self._train(mat[rows], back[rows], w[rows], "binary", True, len(X), init)
        # E[deposits | re-engaged]: one head on every returner, whatever the learner; with "factor", it reads
        # the player's columns only and each arm's factor is estimated after (training.deposit_factors)
        if self.deposit_model not in DEPOSIT_MODELS:
            raise ValueError(f"unknown deposit_model {self.deposit_model!r}; expected one of {list(DEPOSIT_MODELS)}")
        size_mat = ResponseHeads.neutral(mat[back], design) if self.deposit_model == "factor" else mat[back]
        d, wb = deposits[back], w[back]
        event, reward = X["event_type"].astype(str).to_numpy()[back], X["reward"].to_numpy()[back]
        factors, per_row = None, np.ones(len(d))
        # with factors, backfit: the habit is learnt from deposits divided by each row's arm factor, and the
        # factors again from the habit, so an offer's effect is not taken for the habit of the players it goes to
        for _ in range(FACTOR_ROUNDS if self.deposit_model == "factor" else 1):
            # an arm whose returners all deposited nothing has factor 0: its rows say nothing of the habit (0)
            habit_target = np.divide(d, per_row, out=np.zeros_like(d), where=per_row > 0)
            head = self._train(size_mat, habit_target, wb, "tweedie", False, len(X))
            # a Tweedie fit with power > 1 does not keep the mean: rescale so returners' deposits balance
            habit = np.asarray(head.predict(size_mat))
            fitted = float((wb * habit * per_row).sum())
            scale = float((wb * d).sum()) / fitted if fitted > 0 else 1.0
            if self.deposit_model == "factor":
                factors = deposit_factors(event, reward, d, habit * scale, wb)
                per_row = arm_factors(factors, event, reward)
        if factors is not None:  # balance again with the last factors
            fitted = float((wb * habit * per_row).sum())
            scale = float((wb * d).sum()) / fitted if fitted > 0 else 1.0
        heads["deposits/all"] = head
        heads["claim"] = self._train(mat[offer], claimed[offer], w[offer], "binary", True, len(X))
        self.heads_ = ResponseHeads(self.learner, heads, scale, factors)
        self.n_features_in_ = mat.shape[1]
        return self

    # --------------------------------------------------------------- predicting --
    def _fitted(self) -> tuple[Design, ResponseHeads]:
        check_is_fitted(self, "heads_")
        return self._require_design(), self.heads_

    def predict_arms(self, X: pd.DataFrame, arms: pd.DataFrame, num_iteration: int | None = None) -> ArmPredictions:
        """Every arm of ``arms`` (the arm table, "none" first) for every row of ``X``."""
        design, heads = self._fitted()
        return heads.predict_arms(design, X, arms, num_iteration=num_iteration)

    def predict_rows(
        self, X: pd.DataFrame, event_type: np.ndarray, reward: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected (re-engagement, deposits, cost) of arm ``(event_type[i], reward[i])`` for row ``i``."""
        design, heads = self._fitted()
        return heads.predict_rows(design, X, event_type, reward)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Expected values of each row's own (logged) arm: ``p_reengage``, ``deposits``, ``cost``."""
        p, dep, cost = self.predict_rows(X, X["event_type"].astype(str).to_numpy(), X["reward"].to_numpy())
        return pd.DataFrame({"p_reengage": p, "deposits": dep, "cost": cost}, index=X.index)
