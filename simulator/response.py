"""The response model: how a lapsed player answers an offer (or no offer).

One model serves both the day-by-day world (which samples from it) and the
ground truth (which takes its expectation exactly, by dynamic programming over
the attribution window), so the truth is what a perfect model would predict.

Per simulated day a lapsed player returns with probability
``1 - exp(-(natural(age) + pull))``: ``natural`` falls with the days since the
player lapsed; ``pull`` is the offer's extra intensity, fading over the window.
A return is a session; it may bring a deposit (more likely when the offer
requires one) and a claim of the reward. The offer is used up on the first
return. Back in play, the player has session days, deposits, and may lapse
again (and come back naturally) within the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from core.config import Activity, Drift, Money, Response, Simulator, SimulatorCatalog
from simulator.population import Population


@dataclass(frozen=True)
class EventTable:
    """Catalog attributes as arrays over event types (index = catalog order)."""

    names: tuple[str, ...]
    requires_deposit: np.ndarray
    min_deposit: np.ndarray
    payout_ratio: np.ndarray
    claim_rate: np.ndarray
    ref_reward: np.ndarray  # geometric mean of the ladder: the event's natural reward scale

    @classmethod
    def from_catalog(cls, catalog: SimulatorCatalog) -> EventTable:
        ets = catalog.event_types
        return cls(
            names=tuple(e.name for e in ets),
            requires_deposit=np.array([e.requires_deposit for e in ets]),
            min_deposit=np.array([float(e.min_deposit or 0) for e in ets]),
            payout_ratio=np.array([e.payout_ratio for e in ets]),
            claim_rate=np.array([e.claim_rate for e in ets]),
            ref_reward=np.array([reference_reward(e.rewards) for e in ets]),
        )

    def index(self, names: np.ndarray) -> np.ndarray:
        """Event-type indices of ``names``; -1 for "none"; error for unknown names."""
        lookup = {n: i for i, n in enumerate(self.names)}
        lookup["none"] = -1
        unknown = sorted(set(np.unique(names).tolist()) - set(lookup))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; the simulator knows {[*self.names, 'none']}")
        return np.array([lookup[n] for n in names], dtype=np.int16) if len(names) else np.zeros(0, np.int16)


def reference_reward(rewards: list[int]) -> float:
    """The geometric mean of a ladder's positive rewards (1 for a ladder of messages only, which never uses it)."""
    positive = [r for r in rewards if r > 0]
    return float(np.exp(np.mean(np.log(positive)))) if positive else 1.0


def natural_return(return_rate: np.ndarray, age: np.ndarray, act: Activity) -> np.ndarray:
    """Daily natural return intensity ``age`` days after lapsing."""
    return return_rate * (1.0 + age / act.return_decay_days) ** (-act.return_decay_power)


def offer_pull(
    pop: Population,
    idx: np.ndarray,
    event: np.ndarray,
    reward: np.ndarray,
    n_recent: np.ndarray,
    resp: Response,
    events: EventTable,
    drift: Drift,
) -> np.ndarray:
    """Day-one extra return intensity of offering ``(event, reward)`` to players ``idx``
    (0 where ``event`` is -1, no offer). Diminishing returns in the reward size,
    fatigue from offers received recently."""
    has = event >= 0
    e = np.where(has, event, 0)
    size = 1.0 - np.exp(-pop.size_sensitivity[idx] * reward / events.ref_reward[e])
    size = np.where(reward > 0, size, resp.message_pull)  # a 0-KRW message: a fixed nudge
    fatigue = drift.fatigue if drift.fatigue is not None else resp.fatigue
    mult = np.array([drift.event_multiplier.get(n, 1.0) for n in events.names])[e]
    pull = resp.base_pull * pop.sensitivity[idx] * pop.affinity[idx, e] * size * fatigue**n_recent * mult
    return np.where(has, pull, 0.0)


def pull_on_day(pull: np.ndarray, day_in_window: np.ndarray | int, resp: Response) -> np.ndarray:
    """The pull on window day ``k`` (1-based): it fades as the offer ages."""
    return pull * np.exp(-(np.asarray(day_in_window) - 1) / resp.pull_decay_days)


def mean_deposit(mu: np.ndarray, money: Money) -> np.ndarray:
    s = money.deposit_size.deposit_sigma
    return np.exp(mu + s * s / 2)


def mean_floored_deposit(mu: np.ndarray, floor: np.ndarray, money: Money) -> np.ndarray:
    """E[max(X, floor)] for X ~ LogNormal(mu, deposit_sigma): the deposit made to unlock a bonus."""
    s = money.deposit_size.deposit_sigma
    safe = np.maximum(floor, 1.0)
    z = (np.log(safe) - mu) / s
    floored = safe * ndtr(z) + np.exp(mu + s * s / 2) * ndtr(s - z)
    return np.where(floor > 0, floored, mean_deposit(mu, money))


@dataclass(frozen=True)
class ReturnDay:
    """What happens on the day a lapsed player holding an offer comes back."""

    deposit_prob: np.ndarray
    deposit_mean: np.ndarray
    floor: np.ndarray  # minimum deposit that unlocks the bonus (0: none)
    claim_prob: np.ndarray  # chance of claiming, given a return
    payout: np.ndarray  # KRW paid on a claim


def return_day(
    pop: Population, idx: np.ndarray, event: np.ndarray, reward: np.ndarray, cfg: Simulator, events: EventTable
) -> ReturnDay:
    has = event >= 0
    e = np.where(has, event, 0)
    dep = pop.deposit_prob[idx].astype(float)
    needs = has & events.requires_deposit[e]
    dep_ret = np.where(needs, 1.0 - (1.0 - dep) * (1.0 - cfg.response.deposit_pull), dep)
    floor = np.where(needs, events.min_deposit[e], 0.0)
    claim = np.where(pop.bonus_hunter[idx], cfg.response.bonus_hunter_claim, events.claim_rate[e])
    claim_prob = np.where(has, claim * np.where(needs, dep_ret, 1.0), 0.0)
    payout = np.where(has, np.round(reward * events.payout_ratio[e]), 0.0)
    return ReturnDay(dep_ret, mean_floored_deposit(pop.deposit_mu[idx], floor, cfg.money), floor, claim_prob, payout)


@dataclass(frozen=True)
class WindowTruth:
    p_reengage: np.ndarray
    expected_deposits: np.ndarray
    expected_cost: np.ndarray


def window_truth(
    pop: Population,
    idx: np.ndarray,
    age0: np.ndarray,
    event: np.ndarray,
    reward: np.ndarray,
    n_recent: np.ndarray,
    cfg: Simulator,
    events: EventTable,
    window: int,
    drift: Drift | None = None,
    *,
    day: int | np.ndarray,
) -> WindowTruth:
    """Exact expectations over the attribution window for lapsed players ``idx``
    (``age0`` days since they lapsed, counted on the decision ``day``) offered
    ``(event, reward)``. From a player's status day on (self-exclusion, block)
    nothing happens any more.

    States: still away in the original spell (``away``), back in play
    (``engaged``), and lapsed again on window day j (``relapsed[j]``).
    """
    drift = drift or Drift()
    act, money = cfg.activity, cfg.money
    pull = offer_pull(pop, idx, event, reward, n_recent, cfg.response, events, drift)
    rd = return_day(pop, idx, event, reward, cfg, events)
    rate, s, h = pop.return_rate[idx], pop.session_prob[idx], pop.lapse[idx]
    dep_p = pop.deposit_prob[idx]
    amount = mean_deposit(pop.deposit_mu[idx], money)

    m = len(idx)
    away = np.ones(m)
    engaged = np.zeros(m)
    relapsed = np.zeros((window + 1, m))
    deposits = np.zeros(m)
    cost = np.zeros(m)
    first_return = np.zeros(m)
    for k in range(1, window + 1):
        alive = np.asarray(day) + (k - 1) < pop.status_day[idx]
        away, engaged, relapsed = away * alive, engaged * alive, relapsed * alive
        r = 1.0 - np.exp(-(natural_return(rate, age0 + (k - 1), act) + pull_on_day(pull, k, cfg.response)))
        first = away * r
        deposits += first * rd.deposit_prob * rd.deposit_mean
        cost += first * rd.claim_prob * rd.payout
        back = first.copy()
        for j in range(1, k):
            rj = 1.0 - np.exp(-natural_return(rate, np.full(m, k - j, dtype=float), act))
            again = relapsed[j] * rj
            relapsed[j] -= again
            back += again
            deposits += again * dep_p * amount
        deposits += engaged * s * dep_p * amount
        lapsing = engaged * h
        relapsed[k] = lapsing
        engaged = engaged - lapsing + back
        away -= first
        first_return += first
    return WindowTruth(first_return, deposits, cost)
