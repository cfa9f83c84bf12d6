"""Simulate a platform's history: arrivals, play, weekly campaigns, responses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from simulator.campaigns import GROUP_NAMES, run_campaign
from simulator.engine import Decisions, Log, World
from simulator.population import draw_population
from simulator.response import EventTable, window_truth


@dataclass
class History:
    world: World
    log: Log
    day0: datetime  # start of simulation day 0
    as_of: datetime
    decisions: pd.DataFrame  # every campaign decision with its truth and realised outcome
    decision_arms: pd.DataFrame  # every campaign decision x every catalog arm and no offer: the exact truth


def new_world(config: Config, rng: np.random.Generator) -> World:
    sim = config.simulator
    created = np.sort(rng.integers(0, sim.days - 1, sim.players)).astype(np.int32)
    pop = draw_population(rng, created, sim, config.simulator.catalog, last_day=sim.days - 1)
    return World(
        cfg=sim,
        events=EventTable.from_catalog(config.simulator.catalog),
        pop=pop,
        rng=rng,
        dormancy_days=config.business.dormancy_days,
        window=config.business.attribution_days,
    )


def send_with_truth(world: World, dec: Decisions, log: Log) -> pd.DataFrame:
    """Send ``dec`` and return, per decision, the truth of its arm and of no offer
    (computed from the state at the decision time), for later checks."""
    window = world.window
    age = world.age(dec.player, dec.day)
    n_recent = world.n_recent(dec.player, dec.day)
    args = (world.cfg, world.events, window, world.drift)
    logged = window_truth(world.pop, dec.player, age, dec.event.astype(int), dec.reward, n_recent, *args, day=dec.day)
    no_event, no_reward = np.full(len(dec.player), -1), np.zeros(len(dec.player))
    none = window_truth(world.pop, dec.player, age, no_event, no_reward, n_recent, *args, day=dec.day)
    ids = world.send(dec, log)
    return pd.DataFrame(
        {
            "decision_id": ids,
            "player_id": dec.player.astype(np.int64) + 1,
            "day": dec.day,
            "group": np.asarray(GROUP_NAMES, dtype=object)[dec.group],
            "event_type": np.asarray([*world.events.names, "none"], dtype=object)[dec.event],
            "reward": dec.reward.astype(np.int64),
            "propensity": dec.propensity,
            "p_reengage": logged.p_reengage,
            "expected_deposits": logged.expected_deposits,
            "expected_cost": logged.expected_cost,
            "p_reengage_none": none.p_reengage,
            "expected_deposits_none": none.expected_deposits,
        }
    )


def arms_truth(world: World, dec: Decisions, ids: np.ndarray, arms: list[tuple[str, int]]) -> pd.DataFrame:
    """The truth of every arm (and no offer) for the decisions ``dec`` (state at
    the decision time, computed before sending). Long format, float32, so that
    any policy can be scored exactly on past campaigns. Consumes no randomness."""
    age = world.age(dec.player, dec.day)
    n_recent = world.n_recent(dec.player, dec.day)
    names = list(world.events.names)
    parts = []
    for event, reward in [("none", 0), *arms]:
        e = -1 if event == "none" else names.index(event)
        t = window_truth(
            world.pop,
            dec.player,
            age,
            np.full(len(dec.player), e),
            np.full(len(dec.player), float(reward)),
            n_recent,
            world.cfg,
            world.events,
            world.window,
            world.drift,
            day=dec.day,
        )
        parts.append(
            pd.DataFrame(
                {
                    "decision_id": ids,
                    "event_type": event,
                    "reward": np.int64(reward),
                    "p_reengage": t.p_reengage.astype(np.float32),
                    "expected_deposits": t.expected_deposits.astype(np.float32),
                    "expected_cost": t.expected_cost.astype(np.float32),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def finish_decisions(parts: list[pd.DataFrame], world: World, day0: datetime) -> pd.DataFrame:
    """Stack the decisions' truth and add their send time and realised outcome."""
    if not parts:
        return pd.DataFrame()
    decisions = pd.concat(parts, ignore_index=True)
    decisions["sent_at"] = pd.Timestamp(day0) + pd.to_timedelta(decisions["day"], unit="D")
    decisions["realised_reengaged"] = world.realised_return[decisions["decision_id"]].astype(bool)
    decisions["realised_deposits"] = world.realised_deposits[decisions["decision_id"]]
    decisions["realised_cost"] = world.realised_cost[decisions["decision_id"]]
    return decisions


def simulate_history(config: Config, *, progress: Progress = SILENT) -> History:
    """Run ``simulator.days`` days; campaigns every ``campaigns.every_days``, the
    last one early enough that its attribution window closes by the as-of time."""
    sim = config.simulator
    rng = np.random.default_rng(sim.seed)
    world = new_world(config, rng)
    log = Log()
    last_campaign = sim.days - config.business.attribution_days
    truth_parts: list[pd.DataFrame] = []
    arm_parts: list[pd.DataFrame] = []
    arms = config.simulator.catalog.arms()
    task = f"simulate {sim.players:,} players"
    progress.start(task, sim.days)
    for d in range(sim.days):
        if (
            d <= last_campaign
            and (last_campaign - d) % sim.campaigns.every_days == 0
            and d >= config.business.dormancy_days + 1
        ):
            dec = run_campaign(world, d, sim, config.simulator.catalog, config.segmentation)
            first_id = world.n_decisions
            arm_parts.append(arms_truth(world, dec, np.arange(first_id, first_id + len(dec.player)), arms))
            truth_parts.append(send_with_truth(world, dec, log))
        world.step(log)
        progress.advance(task)
    day0 = sim.end - timedelta(days=sim.days)
    decisions = finish_decisions(truth_parts, world, day0)
    decision_arms = pd.concat(arm_parts, ignore_index=True) if arm_parts else pd.DataFrame()
    if len(decision_arms):
        decision_arms["event_type"] = decision_arms["event_type"].astype("category")
    return History(world=world, log=log, day0=day0, as_of=sim.end, decisions=decisions, decision_arms=decision_arms)
