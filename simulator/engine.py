"""The day-by-day world: sessions, deposits, withdrawals, returns, claims.

Vectorised over players: one pass per simulated day, no per-player Python.
Offers come from outside (the marketers' campaigns in history, the system's
decisions in forward mode) through :meth:`World.send`; the response to them is
sampled from :mod:`simulator.response`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.config import Drift, Simulator
from simulator.population import Population
from simulator.response import EventTable, natural_return, offer_pull, pull_on_day, return_day

RECENT_OFFERS = 8  # offer days remembered per player (for fatigue)


@dataclass
class Decisions:
    """Decisions taken at one time: who, which arm (event -1 = no offer)."""

    day: int
    player: np.ndarray  # player indices
    event: np.ndarray  # int16 event index, -1 for no offer
    reward: np.ndarray  # float KRW, 0 for no offer
    group: np.ndarray  # int8: 0 rule, 1 random, 2 holdout, 3 system
    propensity: np.ndarray  # float, probability the logging policy chose this arm


@dataclass
class Log:
    """Everything that happened, as columnar chunks (concatenated at the end)."""

    session_days: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # (player, day, n)
    deposits: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # (player, day, amount)
    withdrawals: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # (player, day, amount)
    claims: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # (decision id, day)
    decisions: list[Decisions] = field(default_factory=list)


@dataclass
class World:
    """The world's dynamic state; traits live in ``pop``."""

    cfg: Simulator
    events: EventTable
    pop: Population
    rng: np.random.Generator
    dormancy_days: int
    window: int
    drift: Drift = field(default_factory=lambda: Drift())
    day: int = 0  # the next day to simulate
    engaged: np.ndarray = field(init=False)
    lapse_day: np.ndarray = field(init=False)  # day the current spell away began (end of that day)
    last_session: np.ndarray = field(init=False)
    cum_deposits: np.ndarray = field(init=False)  # KRW deposited so far (what marketers see)
    recent_offers: np.ndarray = field(init=False)  # (n, RECENT_OFFERS) days of recent offers, -inf-like when none
    offer_decision: np.ndarray = field(init=False)  # id of the open offer's decision (-1: none)
    window_decision: np.ndarray = field(init=False)  # decision whose attribution window is open (-1: none)
    window_end: np.ndarray = field(init=False)
    n_decisions: int = 0
    decision_event: np.ndarray = field(init=False)  # per decision id
    decision_reward: np.ndarray = field(init=False)
    realised_return: np.ndarray = field(init=False)
    realised_deposits: np.ndarray = field(init=False)
    realised_cost: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.pop)
        self.engaged = np.zeros(n, dtype=bool)
        self.lapse_day = np.full(n, -1, dtype=np.int32)
        self.last_session = np.full(n, -(10**6), dtype=np.int32)
        self.cum_deposits = np.zeros(n, dtype=np.float64)
        self.recent_offers = np.full((n, RECENT_OFFERS), -(10**6), dtype=np.int32)
        self.offer_decision = np.full(n, -1, dtype=np.int64)
        self.window_decision = np.full(n, -1, dtype=np.int64)
        self.window_end = np.full(n, -1, dtype=np.int32)
        for name in ("decision_event", "decision_reward", "realised_return", "realised_deposits", "realised_cost"):
            setattr(self, name, np.zeros(0))

    # ------------------------------------------------------------ queries --
    def registered(self, day: int) -> np.ndarray:
        return self.pop.created_day < day

    def active(self, day: int) -> np.ndarray:
        return self.pop.status_day > day

    def dormant(self, day: int) -> np.ndarray:
        """Dormant at the start of ``day``: registered ``dormancy_days`` before and no session since."""
        d = self.dormancy_days
        return (self.pop.created_day <= day - d - 1) & (self.last_session <= day - d - 1)

    def candidates(self, day: int) -> np.ndarray:
        return np.flatnonzero(self.dormant(day) & self.active(day))

    def n_recent(self, idx: np.ndarray, day: int | np.ndarray) -> np.ndarray:
        """Offers each player received in the ``fatigue_days`` up to ``day`` (inclusive)."""
        since = np.asarray(day) - self.cfg.response.fatigue_days
        if since.ndim:
            since = since[:, None]
        return (self.recent_offers[idx] >= since).sum(axis=1)

    def age(self, idx: np.ndarray, day: int) -> np.ndarray:
        """Days since the player lapsed, counted on ``day`` (1 the day after lapsing)."""
        return (day - self.lapse_day[idx]).astype(float)

    # ------------------------------------------------------------ actions --
    def grow(self, newcomers: Population) -> None:
        """Add players (forward mode arrivals)."""
        k = len(newcomers)
        self.pop = self.pop.concat(newcomers)
        self.engaged = np.concatenate([self.engaged, np.zeros(k, bool)])
        self.lapse_day = np.concatenate([self.lapse_day, np.full(k, -1, np.int32)])
        self.last_session = np.concatenate([self.last_session, np.full(k, -(10**6), np.int32)])
        self.cum_deposits = np.concatenate([self.cum_deposits, np.zeros(k)])
        self.recent_offers = np.concatenate([self.recent_offers, np.full((k, RECENT_OFFERS), -(10**6), np.int32)])
        for name in ("offer_decision", "window_decision"):
            setattr(self, name, np.concatenate([getattr(self, name), np.full(k, -1, np.int64)]))
        self.window_end = np.concatenate([self.window_end, np.full(k, -1, np.int32)])

    def _move_vip(self, d: int) -> None:
        vip = self.cfg.vip
        if not vip.dynamic:
            return
        pop = self.pop
        earned = np.digitize(self.cum_deposits, vip.deposit_steps).astype(np.int8)
        np.maximum(pop.vip, earned, out=pop.vip)
        idle = d - self.last_session
        down = (idle > 0) & (idle % vip.idle_downgrade_days == 0) & (pop.vip > 0) & (pop.created_day < d)
        pop.vip[down] -= 1

    def send(self, decisions: Decisions, log: Log) -> np.ndarray:
        """Record decisions taken at the start of ``decisions.day``; open their
        attribution windows and give offers to their players. Returns decision ids."""
        k = len(decisions.player)
        ids = np.arange(self.n_decisions, self.n_decisions + k)
        self.n_decisions += k
        self.decision_event = np.concatenate([self.decision_event, decisions.event])
        self.decision_reward = np.concatenate([self.decision_reward, decisions.reward])
        for name in ("realised_return", "realised_deposits", "realised_cost"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(k)]))
        p = decisions.player
        self.window_decision[p] = ids
        self.window_end[p] = decisions.day + self.window - 1
        has = decisions.event >= 0
        self.offer_decision[p] = np.where(has, ids, -1)
        sent = p[has]
        self.recent_offers[sent, 1:] = self.recent_offers[sent, :-1]
        self.recent_offers[sent, 0] = decisions.day
        log.decisions.append(decisions)
        return ids

    # --------------------------------------------------------------- step --
    def step(self, log: Log) -> None:
        """Simulate one day."""
        d, rng, pop, cfg = self.day, self.rng, self.pop, self.cfg
        act, money = cfg.activity, cfg.money
        n = len(pop)
        alive = self.active(d)
        newcomers = np.flatnonzero(pop.created_day == d)
        was_engaged = self.engaged & alive
        self.engaged &= alive

        # 1. lapsed players may come back (naturally, or pulled by an open offer)
        away = np.flatnonzero(~self.engaged & self.registered(d) & alive)
        intensity = natural_return(pop.return_rate[away], self.age(away, d), act)
        dec = self.offer_decision[away]
        holding = dec >= 0
        pull = np.zeros(len(away))
        if holding.any():
            h_idx, h_dec = away[holding], dec[holding]
            sent_day = self.window_end[h_idx] - self.window + 1
            base = offer_pull(
                pop,
                h_idx,
                self.decision_event[h_dec].astype(int),
                self.decision_reward[h_dec],
                self.n_recent(h_idx, sent_day) - 1,  # the offer itself is not its own fatigue
                cfg.response,
                self.events,
                self.drift,
            )
            pull[holding] = pull_on_day(base, d - sent_day + 1, cfg.response)
        back = rng.random(len(away)) < 1.0 - np.exp(-(intensity + pull))
        returners = away[back]
        ret_dec = dec[back]

        # 2. who plays today: returners, newcomers, and engaged players' session days
        plays_engaged = np.flatnonzero(was_engaged)[rng.random(int(was_engaged.sum())) < pop.session_prob[was_engaged]]
        players = np.concatenate([returners, newcomers, plays_engaged])
        if len(players):
            n_sessions = 1 + rng.poisson(act.extra_sessions, len(players))
            log.session_days.append(
                (players.astype(np.int32), np.full(len(players), d, np.int32), n_sessions.astype(np.int16))
            )
        self.last_session[players] = d

        # 3. deposits: returners holding an offer follow the offer's return-day rules
        dep_prob = pop.deposit_prob[players].astype(float)
        floor = np.zeros(len(players))
        holding_ret = ret_dec >= 0
        if holding_ret.any():
            r_idx = returners[holding_ret]
            rd = return_day(
                pop,
                r_idx,
                self.decision_event[ret_dec[holding_ret]].astype(int),
                self.decision_reward[ret_dec[holding_ret]],
                cfg,
                self.events,
            )
            where = np.flatnonzero(holding_ret)
            dep_prob[where] = rd.deposit_prob
            floor[where] = rd.floor
        deposits = rng.random(len(players)) < dep_prob
        amount = np.exp(pop.deposit_mu[players] + money.deposit_size.deposit_sigma * rng.standard_normal(len(players)))
        amount = np.maximum(amount, floor)
        amount = np.maximum(np.round(amount / 1000.0) * 1000.0, 1000.0)
        dep_players, dep_amount = players[deposits], amount[deposits]
        if len(dep_players):
            log.deposits.append((dep_players.astype(np.int32), np.full(len(dep_players), d, np.int32), dep_amount))
            self.cum_deposits[dep_players] += dep_amount

        # 4. claims: on the return day only, deposit first when the offer requires one
        if holding_ret.any():
            r_pos = np.flatnonzero(holding_ret)
            r_dec = ret_dec[holding_ret]
            r_idx = returners[holding_ret]
            ev = self.decision_event[r_dec].astype(int)
            needs = self.events.requires_deposit[ev]
            claim_rate = np.where(pop.bonus_hunter[r_idx], cfg.response.bonus_hunter_claim, self.events.claim_rate[ev])
            claimed = (rng.random(len(r_idx)) < claim_rate) & (~needs | deposits[r_pos])
            payout = np.round(self.decision_reward[r_dec] * self.events.payout_ratio[ev])
            log.claims.append((r_dec[claimed], np.full(int(claimed.sum()), d, np.int32), payout[claimed]))
            self.realised_cost[r_dec[claimed]] += payout[claimed]
        self.offer_decision[returners] = -1  # an offer is used up on the first return

        # 5. withdrawals
        wd = rng.random(len(players)) < money.withdrawal_prob * np.where(pop.bonus_hunter[players], 3.0, 1.0)
        if wd.any():
            w_players = players[wd]
            w_amount = money.withdrawal_fraction * np.exp(
                pop.deposit_mu[w_players] + money.deposit_size.deposit_sigma * rng.standard_normal(len(w_players))
            )
            log.withdrawals.append(
                (
                    w_players.astype(np.int32),
                    np.full(len(w_players), d, np.int32),
                    np.maximum(np.round(w_amount / 1000) * 1000, 1000.0),
                )
            )

        # 6. attribution windows: record what the decisions' players did
        open_w = self.window_decision[players]
        in_window = (open_w >= 0) & (self.window_end[players] >= d)
        self.realised_return[open_w[in_window]] = 1.0
        dwin = self.window_decision[dep_players]
        dwin_ok = (dwin >= 0) & (self.window_end[dep_players] >= d)
        np.add.at(self.realised_deposits, dwin[dwin_ok], dep_amount[dwin_ok])

        # 7. VIP levels: up to what the deposits so far earn, down one level per long idle spell
        self._move_vip(d)

        # 8. state: who came back, who lapses tonight
        self.engaged[returners] = True
        self.engaged[newcomers] = True
        lapses = was_engaged & (rng.random(n) < pop.lapse)
        lapses |= was_engaged & (self.last_session <= d - (self.dormancy_days - 1))  # 13 idle days: gone
        self.engaged[lapses] = False
        self.lapse_day[lapses] = d
        expired = self.offer_decision >= 0
        expired &= self.window_end < d + 1
        self.offer_decision[expired] = -1
        self.day = d + 1
