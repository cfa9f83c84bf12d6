"""The platform's historical campaigns: who got which offer, and why.

Weekly, every dormant eligible player falls into one of three groups:
- holdout (a fixed share of players): never gets an offer;
- random slice (a share of each campaign): a uniformly random arm, no offer included;
- marketers' rules (the rest): send more often to higher value tiers, pick the
  event type that goes with the player's main game (or another at random), and
  a bigger reward for higher VIP levels. This confounds offers with value and taste.
The probability of the arm each player got under this mixture is recorded (the
propensity), so off-policy estimators can be checked later.
"""

from __future__ import annotations

import numpy as np

from core.config import Segmentation, Simulator, SimulatorCatalog
from simulator.engine import Decisions, World

RULE, RANDOM, HOLDOUT, SYSTEM = 0, 1, 2, 3
GROUP_NAMES = ("rule", "random", "holdout", "system")


def arm_table(catalog: SimulatorCatalog) -> tuple[np.ndarray, np.ndarray]:
    """(event index, reward) of every catalog arm, "no offer" excluded."""
    arms = catalog.arms()
    names = [e.name for e in catalog.event_types]
    return np.array([names.index(e) for e, _ in arms], dtype=np.int16), np.array([r for _, r in arms], dtype=float)


def value_tier_index(cum_deposits: np.ndarray, rules: Segmentation) -> np.ndarray:
    bounds = [t.min_deposits for t in rules.value_tiers][1:]
    return np.digitize(cum_deposits, bounds)


def rule_probabilities(
    world: World, idx: np.ndarray, cfg: Simulator, catalog: SimulatorCatalog, rules: Segmentation
) -> np.ndarray:
    """(len(idx), n_arms + 1) probabilities of each arm under the marketers' rules; last column = no offer."""
    camp = cfg.campaigns
    arm_event, _ = arm_table(catalog)
    names = [e.name for e in catalog.event_types]
    games = list(cfg.population.games)
    tiers = [t.name for t in rules.value_tiers]
    send_by_tier = np.array([camp.send_prob_by_tier.get(t, 0.5) for t in tiers])
    send = send_by_tier[value_tier_index(world.cum_deposits[idx], rules)]
    rule_event = np.array(
        [names.index(camp.rule_event_by_game[g]) if g in camp.rule_event_by_game else -1 for g in games]
    )
    preferred = rule_event[world.pop.main_game[idx]]

    n_events = len(names)
    p_event = np.full((len(idx), n_events), (1.0 - camp.rule_follow_prob) / n_events)
    has_pref = preferred >= 0
    p_event[has_pref, preferred[has_pref]] += camp.rule_follow_prob
    p_event[~has_pref] = 1.0 / n_events

    # reward rung by VIP level: 0-1 smallest ... 4-5 largest (scaled to each ladder's length)
    vip = world.pop.vip[idx].astype(float)
    out = np.zeros((len(idx), len(arm_event) + 1))
    for j, event in enumerate(catalog.event_types):
        rungs = len(event.rewards)
        rung = np.minimum((vip / 6.0 * rungs).astype(int), rungs - 1)
        cols = np.flatnonzero(arm_event == j)
        chosen_col = cols[rung]
        out[np.arange(len(idx)), chosen_col] = send * p_event[:, j]
    out[:, -1] = 1.0 - send
    return out


def run_campaign(world: World, day: int, cfg: Simulator, catalog: SimulatorCatalog, rules: Segmentation) -> Decisions:
    """Choose an arm (or none) for every dormant eligible player at the start of ``day``."""
    rng = world.rng
    arm_event, arm_reward = arm_table(catalog)
    n_arms = len(arm_event)
    idx = world.candidates(day)
    holdout = world.pop.holdout[idx]
    rand = ~holdout & (rng.random(len(idx)) < cfg.campaigns.random_share)

    probs = rule_probabilities(world, idx, cfg, catalog, rules)
    cum = probs.cumsum(axis=1)
    choice = (cum < rng.random(len(idx))[:, None]).sum(axis=1).clip(max=n_arms)
    random_choice = rng.integers(0, n_arms + 1, len(idx))
    choice = np.where(rand, random_choice, choice)
    choice = np.where(holdout, n_arms, choice)

    rs = cfg.campaigns.random_share
    propensity = rs / (n_arms + 1) + (1.0 - rs) * probs[np.arange(len(idx)), choice]
    propensity = np.where(holdout, 1.0, propensity)
    none = choice == n_arms
    safe = np.where(none, 0, choice)
    group = np.where(holdout, HOLDOUT, np.where(rand, RANDOM, RULE)).astype(np.int8)
    return Decisions(
        day=day,
        player=idx,
        event=np.where(none, -1, arm_event[safe]).astype(np.int16),
        reward=np.where(none, 0.0, arm_reward[safe]),
        group=group,
        propensity=propensity,
    )
