"""Ground truth at the as-of time, and the calibration figures derived from it.

For every dormant candidate at the as-of time and every arm (catalog arms and
no offer): the exact probability of re-engaging, expected deposits and expected
reward cost in the attribution window, from the same response model that wrote
the history.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from simulator.engine import World
from simulator.response import window_truth


class EmptyWorldError(RekindleError, ValueError):
    """A simulated world too small to have dormant candidates."""


def asof_truth(world: World, config: Config) -> pd.DataFrame:
    """One row per (dormant candidate, arm) at the world's current day."""
    day = world.day
    idx = world.candidates(day)
    if world.engaged[idx].any():  # the truth's model starts every candidate away
        raise RuntimeError("a dormant candidate is still marked engaged; the simulator's state is inconsistent")
    age = world.age(idx, day)
    n_recent = world.n_recent(idx, day)
    margin = config.business.margin
    arms = [("none", 0), *config.simulator.catalog.arms()]
    names = list(world.events.names)
    parts = []
    for event, reward in arms:
        e = -1 if event == "none" else names.index(event)
        t = window_truth(
            world.pop,
            idx,
            age,
            np.full(len(idx), e),
            np.full(len(idx), float(reward)),
            n_recent,
            world.cfg,
            world.events,
            config.business.attribution_days,
            world.drift,
            day=day,
        )
        parts.append(
            pd.DataFrame(
                {
                    "player_id": idx.astype(np.int64) + 1,
                    "event_type": event,
                    "reward": reward,
                    "p_reengage": t.p_reengage,
                    "expected_deposits": t.expected_deposits,
                    "expected_cost": t.expected_cost,
                    "net_value": margin * t.expected_deposits - t.expected_cost,
                }
            )
        )
    truth = pd.concat(parts, ignore_index=True)
    none = truth[truth["event_type"] == "none"].set_index("player_id")
    truth["incremental_net_value"] = truth["net_value"] - truth["player_id"].map(none["net_value"]).to_numpy()
    truth["incremental_reengage"] = truth["p_reengage"] - truth["player_id"].map(none["p_reengage"]).to_numpy()
    return truth.sort_values(["player_id", "event_type", "reward"], kind="stable").reset_index(drop=True)


def calibration(truth: pd.DataFrame, decisions: pd.DataFrame, world: World, config: Config) -> dict[str, Any]:
    """The figures the calibration targets are about (docs/simulator.md)."""
    registered = world.registered(world.day)
    n_players = int(registered.sum())
    n_dormant = int(world.dormant(world.day)[registered].sum())
    offers = truth[truth["event_type"] != "none"]
    if offers.empty:
        raise EmptyWorldError(
            "the simulated world has no dormant candidates at its as-of time: simulate more players or more days"
        )
    per_arm = offers.groupby(["event_type", "reward"]).agg(
        mean_incremental_net=("incremental_net_value", "mean"),
        share_losing=("incremental_net_value", lambda x: float((x < 0).mean())),
        mean_incremental_reengage=("incremental_reengage", "mean"),
    )
    best_arm = per_arm["mean_incremental_net"].idxmax()
    best_single = float(per_arm["mean_incremental_net"].max())
    oracle_each = truth.groupby("player_id")["incremental_net_value"].max()  # "none" gives 0
    oracle = float(oracle_each.mean())
    out: dict[str, Any] = {
        "as_of": None,
        "players": n_players,
        "dormant_share": n_dormant / max(n_players, 1),
        "candidates": int(truth["player_id"].nunique()),
        "arms": len(per_arm),
        "share_of_arms_losing_money_on_most_players": float((per_arm["share_losing"] > 0.5).mean()),
        "median_share_of_players_an_offer_loses_money_on": float(per_arm["share_losing"].median()),
        "best_single_arm": "{}@{}".format(*best_arm),  # type: ignore[misc]
        "best_single_arm_incremental_net_per_candidate": best_single,
        "oracle_incremental_net_per_candidate": oracle,
        "oracle_share_no_offer": float((oracle_each <= 0).mean()),
        "oracle_over_best_single": oracle / best_single if best_single > 0 else float("inf"),
    }
    if len(decisions):
        rnd = decisions[decisions["group"] == "random"]
        effect = (
            (rnd["expected_deposits"] - rnd["expected_deposits_none"])
            .groupby([rnd["event_type"], rnd["reward"]])
            .mean()
        )
        out["sd_7day_deposits_random_slice"] = float(rnd["realised_deposits"].std())
        out["max_mean_deposit_effect_of_an_arm"] = float(effect.abs().max())
        out["share_zero_7day_deposits"] = float((rnd["realised_deposits"] == 0).mean())
        out["decisions"] = len(decisions)
        out["offers_sent"] = int((decisions["event_type"] != "none").sum())
    out["per_arm"] = per_arm.reset_index().to_dict(orient="records")
    return out
