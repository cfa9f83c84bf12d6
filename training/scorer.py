"""The scorer: a registered response model (:class:`scoring.ensemble.ResponseEnsemble`) with the
policy applied to it.

Given decision rows (a player's features at a time, with the match-score
columns of the training set), it scores every arm with the point model of the
ensemble and turns the scores into one decision per row with the pure policy
of :mod:`training.policy`; the ensemble's spread gives each decision its
interval and confidence. The margin, objective and budget come from the
configuration of whoever applies the model (training's evaluation, the batch
job), not from the model: the models predict deposits and cost, not net value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scoring.design import Design
from scoring.ensemble import ResponseEnsemble, Spread
from scoring.heads import ArmPredictions
from training.arms import greedy_mask
from training.baselines import rule_arms
from training.ensemble import confidence, interval
from training.policy import Choice, Objective, choose, gains

DECISION_COLUMNS = (
    "player_id",
    "event_type",
    "reward",
    "p_reengage",
    "p_reengage_none",
    "incremental_reengage",
    "expected_deposits",
    "expected_cost",
    "incremental_net_value",
    "incremental_net_low",
    "incremental_net_high",
    "roi",
    "confidence",
)
ArmRule = str | dict[str, str]  # one arm for everyone, or an arm per segment (the fallbacks)
MONEY = ("expected_deposits", "expected_cost", "incremental_net_value", "incremental_net_low", "incremental_net_high")


@dataclass
class Scores:
    """Every arm of every row (point model), with the incremental gains for both objectives."""

    arms: pd.DataFrame
    point: ArmPredictions
    margin: float

    @property
    def inc_net(self) -> np.ndarray:
        return self.point.incremental_net(self.margin)

    @property
    def inc_reengage(self) -> np.ndarray:
        return self.point.incremental_reengage()

    @property
    def cost(self) -> np.ndarray:
        return self.point.cost

    def gain(self, objective: Objective) -> np.ndarray:
        return gains(self.inc_net, self.inc_reengage, objective)

    @property
    def allowed(self) -> np.ndarray:
        """Per arm, whether the greedy policy may pick it (:func:`training.arms.greedy_mask`)."""
        return greedy_mask(self.arms)

    def subset(self, keep: np.ndarray) -> Scores:
        p = self.point
        return Scores(
            self.arms, ArmPredictions(p.arms, p.p_reengage[keep], p.deposits[keep], p.cost[keep]), self.margin
        )


@dataclass
class Judgement:
    """A policy's choice with its confidence and the spread of the chosen (or declined best) arm."""

    choice: Choice
    judged_arm: np.ndarray  # the arm the confidence is about: the chosen one, or the best offer for no offer
    spread: Spread
    confidence: np.ndarray


@dataclass
class Scorer:
    model: ResponseEnsemble
    margin: float
    objective: Objective = "net_value"

    @property
    def design(self) -> Design:
        return self.model.design

    @property
    def arms(self) -> pd.DataFrame:
        return self.model.arms

    @property
    def meta(self) -> dict[str, Any]:
        return self.model.meta

    def score(self, frame: pd.DataFrame, *, margin: float | None = None) -> Scores:
        return Scores(self.arms, self.model.predict_arms(frame), self.margin if margin is None else margin)

    def arm_column(self, arm: str) -> int:
        """The column of an arm named like ``cashback@10000`` (or ``none``)."""
        return self.model.arm_column(arm)

    def rule_columns(self, frame: pd.DataFrame, rule: ArmRule) -> np.ndarray:
        """The arm column per row of a fixed rule: one arm for everyone, or a segment -> arm mapping (a
        segment it does not name gets its ``"all"`` entry, else no offer): :func:`training.baselines.rule_arms`."""
        segment = frame["segment"].to_numpy() if "segment" in frame else np.full(len(frame), "")
        return rule_arms(rule, segment, list(self.arms["arm"]))

    def judge(
        self,
        frame: pd.DataFrame,
        scores: Scores,
        *,
        objective: Objective | None = None,
        budget: float | None = None,
        arm: ArmRule | None = None,
    ) -> Judgement:
        """The policy's choice per row, and how sure the ensemble is of it; ``arm``: that one arm for every
        row instead (the fallback when no learned policy is trusted), with the model's expected values."""
        objective = objective or self.objective
        gain = scores.gain(objective)
        if arm is not None:
            col = self.rule_columns(frame, arm)
            rows = np.arange(len(gain))
            pick = Choice(col, gain[rows, col], scores.cost[rows, col], 0.0)
        else:
            pick = choose(gain, scores.cost, budget=budget, allowed=scores.allowed)
        return self.judge_arms(frame, scores, pick, objective)

    def judge_arms(self, frame: pd.DataFrame, scores: Scores, pick: Choice, objective: Objective) -> Judgement:
        """The confidence and spread of a given choice per row (a policy's, or the serving policy's)."""
        gain = scores.gain(objective)
        best_offer = np.where(scores.allowed[1:], gain[:, 1:], -np.inf).argmax(axis=1) + 1
        judged = np.where(pick.arm == 0, best_offer, pick.arm)
        spread = self.model.spread(frame, judged, scores.margin, scores.point)
        rows = np.arange(len(judged))
        sd = spread.net if objective == "net_value" else spread.reengage
        return Judgement(pick, judged, spread, confidence(gain[rows, judged], sd, pick.arm > 0))

    def decide(
        self,
        frame: pd.DataFrame,
        *,
        objective: Objective | None = None,
        budget: float | None = None,
        margin: float | None = None,
        scores: Scores | None = None,
        arm: ArmRule | None = None,
    ) -> pd.DataFrame:
        """One decision per row of ``frame`` (columns ``DECISION_COLUMNS``; no offer: event_type "none", reward 0);
        ``arm``: that arm for everyone (:meth:`judge`)."""
        s = scores or self.score(frame, margin=margin)
        return self.describe(frame, s, self.judge(frame, s, objective=objective, budget=budget, arm=arm))

    def describe(self, frame: pd.DataFrame, s: Scores, j: Judgement) -> pd.DataFrame:
        """The decision rows (``DECISION_COLUMNS``) of a judged choice."""
        chosen = j.choice.arm
        rows = np.arange(len(chosen))
        low, high = interval(s.inc_net[rows, chosen], j.spread.net)
        mean = s.point
        out = pd.DataFrame(
            {
                "player_id": frame["player_id"].to_numpy(np.int64),
                "event_type": self.arms["event_type"].to_numpy(object)[chosen],
                "reward": self.arms["reward"].to_numpy(np.int64)[chosen],
                "p_reengage": mean.p_reengage[rows, chosen],
                "p_reengage_none": mean.p_reengage[:, 0],
                "incremental_reengage": s.inc_reengage[rows, chosen],
                "expected_deposits": mean.deposits[rows, chosen],
                "expected_cost": mean.cost[rows, chosen],
                "incremental_net_value": s.inc_net[rows, chosen],
                "incremental_net_low": np.where(chosen > 0, low, 0.0),
                "incremental_net_high": np.where(chosen > 0, high, 0.0),
                "confidence": j.confidence,
            }
        )
        cost = out["expected_cost"].to_numpy()
        out["roi"] = np.divide(out["incremental_net_value"], cost, out=np.full(len(out), np.nan), where=cost > 0)
        return out[list(DECISION_COLUMNS)]

    def arm_table(self, frame: pd.DataFrame, *, margin: float | None = None) -> pd.DataFrame:
        """Long format: one row per (input row, arm) with the expected values and their 90% intervals."""
        s = self.score(frame, margin=margin)
        n, k = s.inc_net.shape
        sd = np.column_stack(
            [np.zeros(n)] + [self.model.spread(frame, np.full(n, j), s.margin, s.point).net for j in range(1, k)]
        )
        low, high = interval(s.inc_net, sd)
        mean = s.point
        return pd.DataFrame(
            {
                "player_id": np.repeat(frame["player_id"].to_numpy(np.int64), k),
                "event_type": np.tile(self.arms["event_type"].to_numpy(object), n),
                "reward": np.tile(self.arms["reward"].to_numpy(np.int64), n),
                "p_reengage": mean.p_reengage.ravel(),
                "expected_deposits": mean.deposits.ravel(),
                "expected_cost": mean.cost.ravel(),
                "incremental_net_value": s.inc_net.ravel(),
                "incremental_net_low": low.ravel(),
                "incremental_net_high": high.ravel(),
                "incremental_reengage": s.inc_reengage.ravel(),
            }
        )


def round_money(frame: pd.DataFrame) -> pd.DataFrame:
    """Money columns to whole KRW (rounded to the nearest won), as exported and shown."""
    out = frame.copy()
    for col in MONEY:
        if col in out:
            out[col] = out[col].round().astype(np.int64)
    return out
