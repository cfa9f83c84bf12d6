"""The registered model: a bootstrap ensemble of response models over one design and one arm table.

Member 0 is the point model (fitted on all rows); the others are refits on
player-clustered bootstrap weights, so their spread around the point model is
the sampling uncertainty of the fit. Scoring every arm uses the point model
only; the spread is computed for the arms that matter (the recommended one,
and the best offer when the recommendation is no offer), which keeps a batch's
cost at about ``1 + 2 (K - 1) / arms`` point-model scorings instead of ``K``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.design import NONE, Design
from scoring.heads import ArmPredictions, ResponseHeads

ARM_TABLE_COLUMNS = ("arm", "event_type", "reward", "support", "claims", "payout", "source", "supported")


@dataclass(frozen=True)
class Spread:
    """Standard deviation over the members of the incremental gains of one arm per row."""

    net: np.ndarray
    reengage: np.ndarray


@dataclass
class ResponseEnsemble:
    """What a registered model is: the design, the arms it can score, the members, and where it came from."""

    design: Design
    arms: pd.DataFrame  # ARM_TABLE_COLUMNS, "none" first
    members: list[ResponseHeads]
    meta: dict[str, Any] = field(default_factory=dict)  # training range, parameters, business definitions, ...

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a response ensemble needs at least one member")
        missing = [c for c in ARM_TABLE_COLUMNS if c not in self.arms]
        if missing:
            raise ValueError(f"the arm table lacks the columns {missing}")
        if len(self.arms) == 0 or self.arms["event_type"].iloc[0] != NONE:
            raise ValueError("the arm table must start with the arm 'none'")

    @property
    def point(self) -> ResponseHeads:
        return self.members[0]

    def input_columns(self) -> list[str]:
        return self.design.input_columns()

    def arm_column(self, arm: str) -> int:
        """The column of an arm named like ``cashback@10000`` (or ``none``)."""
        names = list(self.arms["arm"])
        if arm not in names:
            raise ValueError(f"unknown arm {arm!r}; this model's arms are {names}")
        return names.index(arm)

    def predict_arms(self, X: pd.DataFrame, num_iteration: int | None = None) -> ArmPredictions:
        """Every arm of every row, by the point model."""
        return self.point.predict_arms(self.design, X, self.arms, num_iteration=num_iteration)

    def spread(self, X: pd.DataFrame, column: np.ndarray, margin: float, point: ArmPredictions) -> Spread:
        """The members' spread of the incremental gains of arm ``column[i]`` (a column of the arm table) for
        row ``i``; ``point``: the point model's predictions of every arm (member 0 is not scored again)."""
        n = len(X)
        if len(self.members) < 2 or n == 0:
            return Spread(np.zeros(n), np.zeros(n))
        rows = np.arange(n)
        net = [point.incremental_net(margin)[rows, column]]
        re = [point.incremental_reengage()[rows, column]]
        event = self.arms["event_type"].to_numpy(object)[column]
        reward = self.arms["reward"].to_numpy(np.float64)[column]
        none_e, none_r = np.full(n, NONE, dtype=object), np.zeros(n)
        for m in self.members[1:]:
            p, dep, cost = m.predict_rows(self.design, X, event, reward)
            p0, dep0, _ = m.predict_rows(self.design, X, none_e, none_r)
            net.append(margin * (dep - dep0) - cost)
            re.append(p - p0)
        return Spread(np.std(net, axis=0, ddof=1), np.std(re, axis=0, ddof=1))


MONEY = ("expected_deposits", "expected_cost", "incremental_net_value")


def arm_frame(model: ResponseEnsemble, frame: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Every arm of every row of ``frame``, long format, money in whole KRW (the pyfunc's output)."""
    pred = model.predict_arms(frame)
    n, k = pred.p_reengage.shape
    out = pd.DataFrame(
        {
            "player_id": np.repeat(frame["player_id"].to_numpy(np.int64), k),
            "arm": np.tile(model.arms["arm"].to_numpy(object), n),
            "event_type": np.tile(model.arms["event_type"].to_numpy(object), n),
            "reward": np.tile(model.arms["reward"].to_numpy(np.int64), n),
            "p_reengage": pred.p_reengage.ravel(),
            "expected_deposits": pred.deposits.ravel(),
            "expected_cost": pred.cost.ravel(),
            "incremental_reengage": pred.incremental_reengage().ravel(),
            "incremental_net_value": pred.incremental_net(margin).ravel(),
        }
    )
    for col in MONEY:
        out[col] = out[col].round().astype(np.int64)
    return out
