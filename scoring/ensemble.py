"""The registered model: a bootstrap ensemble of response models over one design and one arm table.

Member 0 is the point model (fitted on all rows); the others are refits on
player-clustered bootstrap weights, so their spread around the point model is
the sampling uncertainty of the fit. Scoring every arm uses the point model
only; the spread is computed for the arms that matter (the recommended one,
and the best offer when the recommendation is no offer), which keeps a batch's
cost at about ``1 + 2 (K - 1) / arms`` point-model scorings instead of ``K``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.design import NONE, Design
from scoring.heads import STACKED_ROWS, ArmPredictions, ResponseHeads, Stacked

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

    def boosters(self) -> int:
        return sum(len(m.boosters) for m in self.members)

    def compile(self, cache: Path, threads: int = 2, each: Callable[[str], None] | None = None) -> None:
        """Compile every member's boosters (:mod:`scoring.compiled`; cached under ``cache``): large
        predictions then run compiled, with the same numbers. ``each(name)`` after each booster."""
        from scoring.compiled import compile_all

        boosters = {f"m{i}:{h}": b for i, m in enumerate(self.members) for h, b in m.boosters.items()}
        done = compile_all(boosters, cache, threads, done=each)
        for i, m in enumerate(self.members):
            m.compiled.update({h: done[f"m{i}:{h}"] for h in m.boosters})

    def predict_arms(self, X: pd.DataFrame, num_iteration: int | None = None) -> ArmPredictions:
        """Every arm of every row, by the point model."""
        return self.point.predict_arms(self.design, X, self.arms, num_iteration=num_iteration)

    def predict_all_arms_with_spread(
        self, X: pd.DataFrame, margin: float, player: np.ndarray | None = None
    ) -> tuple[ArmPredictions, Spread]:
        """Every arm of every row by the point model, with the members' spread of every arm's incremental
        gains ((n, k) each): one stacked matrix per slice of rows, read by every member (the matrix, not the
        boosters, is what costs on a few rows: the online service's cold path)."""
        n, k = len(X), len(self.arms)
        step = max(1, STACKED_ROWS // k)
        point, net, re = [], [], []
        player = self.design.player_block(X) if player is None else player
        for start in range(0, max(n, 1), step):
            part = X.iloc[start : start + step]
            st = Stacked.build(self.design, part, self.arms, player[start : start + step])
            preds = [m.evaluate_stacked(st) for m in self.members]
            point.append(preds[0])
            if len(preds) > 1:
                net.append(np.std([p.incremental_net(margin) for p in preds], axis=0, ddof=1))
                re.append(np.std([p.incremental_reengage() for p in preds], axis=0, ddof=1))
            else:
                net.append(np.zeros((len(part), k)))
                re.append(np.zeros((len(part), k)))
        joined = ArmPredictions(
            self.arms, *(np.vstack([getattr(p, f) for p in point]) for f in ("p_reengage", "deposits", "cost"))
        )
        return joined, Spread(np.vstack(net), np.vstack(re))

    def uplift_contributions(
        self, player: np.ndarray, sources: Mapping[str, np.ndarray], column: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row, every model column's contribution to the point model's re-engagement log-odds of arm
        ``column[i]`` against no offer (:meth:`ResponseHeads.uplift_contributions`), and the offer's model
        rows; ``player``: the rows' player block, ``sources``: their per-event-type history columns."""
        event = self.arms["event_type"].to_numpy(object)[column]
        reward = self.arms["reward"].to_numpy(np.float64)[column]
        offer = self.design.matrix(sources, event, reward, player=player)
        none = self.design.matrix(sources, NONE, 0.0, player=player)
        return self.point.uplift_contributions(offer, none), offer

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
        player = self.design.player_block(X)  # the matrices once, read by every member
        mat = self.design.matrix(X, event, reward, player=player)
        mat0 = self.design.matrix(X, none_e, none_r, player=player)
        neutral = ResponseHeads.neutral(mat, self.design)
        for m in self.members[1:]:
            base = m._deposits(neutral) if m.deposit_factors is not None else None
            p, dep, cost = m.predict_rows(self.design, X, event, reward, mat=mat, base_size=base)
            p0, dep0, _ = m.predict_rows(self.design, X, none_e, none_r, mat=mat0, base_size=base)
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
