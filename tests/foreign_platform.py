"""A platform the simulator did not write: its own event types (one a 0-KRW reminder), reward ladders,
channels and games, written straight into the contract's tables.

Players play one main game among bingo, lottery and arcade, lapse, and come back by themselves or pulled
by an offer, whose pull depends on the event type and the player (the daily wheel works on arcade
players, the reload bonus on bingo players who deposit, the VIP cashback on high VIP levels, the SMS
reminder a little on everyone). Two histories:

- ``randomised``: one large offer test, every dormant player given a uniformly random arm (or nothing);
- ``confounded``: twelve weekly campaigns sent by rules (by VIP level and main game).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from platform_db.db import bulk_insert, connect, init_source_tables

START = datetime(2026, 1, 1)
DAYS = 180
GAMES = np.array(["bingo", "lottery", "arcade"], dtype=object)
CHANNELS = np.array(["tv", "partner", "street"], dtype=object)
# event type -> (rewards, payout ratio, min deposit)
EVENT_TYPES = {
    "reload_bonus": ([5_000, 15_000], 1.0, 10_000),
    "vip_cashback": ([20_000], 0.5, None),
    "sms_reminder": ([0], 0.0, None),
    "daily_wheel": ([1_000, 2_000], 1.0, None),
}
ARMS = [(t, r) for t, (rewards, _, _) in EVENT_TYPES.items() for r in rewards]
RULE_TYPE = {"bingo": "reload_bonus", "lottery": "sms_reminder", "arcade": "daily_wheel"}


def _weekly_pull(event: str, reward: float, game: np.ndarray, vip: np.ndarray, depositor: np.ndarray) -> np.ndarray:
    """The extra chance to come back within the week an offer gives, per player."""
    size = 1.0 + reward / 20_000
    if event == "daily_wheel":
        base = np.where(game == "arcade", 0.12, 0.02)
    elif event == "reload_bonus":
        base = np.where((game == "bingo") & depositor, 0.14, 0.03)
    elif event == "vip_cashback":
        base = np.where(vip >= 3, 0.16, 0.01)
    else:  # sms_reminder
        base = np.full(len(game), 0.03)
    return base * size


def build(variant: str, *, players: int = 5_000, seed: int = 3) -> dict[str, pd.DataFrame]:
    """The five source tables of a foreign platform (``variant``: randomised or confounded)."""
    rng = np.random.default_rng(seed)
    n = players
    created = rng.integers(0, 60, n)
    game = GAMES[rng.integers(0, 3, n)]
    vip = rng.integers(0, 6, n)
    depositor = rng.random(n) < 0.5
    status = np.where(rng.random(n) < 0.03, "blocked", "active")
    engaged = np.zeros(n, bool)
    last_session = np.full(n, -1_000)
    holding = np.full(n, -1)  # index of the open offer (-1: none)
    holding_until = np.full(n, -1)
    pull = np.zeros(n)
    sessions, deposits, offers, claims = [], [], [], []
    campaign_days = [150] if variant == "randomised" else list(range(70, 154, 7))
    promotions: list[dict] = []
    for d in range(DAYS):
        if d in campaign_days:
            cand = np.flatnonzero((created <= d - 14) & (last_session <= d - 15) & (status == "active"))
            if variant == "randomised":
                pick = rng.integers(0, len(ARMS) + 1, len(cand))  # the last one: no offer (not logged)
            else:
                send = rng.random(len(cand)) < 0.25 + 0.1 * vip[cand]
                ruled = np.array([ARMS.index((RULE_TYPE[g], EVENT_TYPES[RULE_TYPE[g]][0][0])) for g in game[cand]])
                ruled = np.where(vip[cand] >= 4, ARMS.index(("vip_cashback", 20_000)), ruled)
                pick = np.where(rng.random(len(cand)) < 0.7, ruled, rng.integers(0, len(ARMS), len(cand)))
                pick = np.where(send, pick, len(ARMS))
            promo_of = {}
            for t, (_, _, min_dep) in EVENT_TYPES.items():
                promo_of[t] = len(promotions) + 1
                promotions.append(
                    {"id": promo_of[t], "name": f"{t} day {d}", "type": t, "minDeposit": min_dep,
                     "startsAt": START + timedelta(days=d), "endsAt": START + timedelta(days=d + 7)}
                )  # fmt: skip
            for j, (event, reward) in enumerate(ARMS):
                who = cand[pick == j]
                if not len(who):
                    continue
                ids = np.arange(len(offers), len(offers) + len(who))
                offers.extend(
                    {"player": int(p), "promo": promo_of[event], "reward": reward, "day": d, "event": event}
                    for p in who
                )
                holding[who], holding_until[who] = ids, d + 6
                pull[who] = _weekly_pull(event, reward, game[who], vip[who], depositor[who])
        alive = status == "active"
        away = ~engaged & (created < d) & alive
        open_offer = (holding >= 0) & (holding_until >= d)
        p_back = 0.004 + np.where(open_offer, pull / 7, 0.0)
        back = away & (rng.random(n) < p_back)
        for p in np.flatnonzero(back & open_offer):
            o = offers[holding[p]]
            rewarded = o["reward"] > 0 and rng.random() < 0.8
            needs_deposit = EVENT_TYPES[o["event"]][2] is not None
            if rewarded and (not needs_deposit or depositor[p]):
                claims.append((int(holding[p]), d))
            holding[p] = -1
        engaged |= back | (created == d)
        plays = engaged & alive & ((created == d) | back | (rng.random(n) < 0.5))
        for p in np.flatnonzero(plays):
            sessions.append((int(p), d, game[p] if rng.random() < 0.8 else GAMES[rng.integers(0, 3)]))
        last_session[plays] = d
        pays = plays & (rng.random(n) < np.where(depositor, 0.35, 0.05))
        for p in np.flatnonzero(pays):
            deposits.append((int(p), d, float(max(1_000, round(rng.lognormal(10.2, 0.7) / 1_000) * 1_000))))
        engaged &= ~(rng.random(n) < 0.05)
    return _tables(n, created, game, vip, status, sessions, deposits, offers, claims, promotions, rng)


def _tables(n, created, game, vip, status, sessions, deposits, offers, claims, promotions, rng) -> dict:  # type: ignore[no-untyped-def]
    def at(day: np.ndarray, hour: np.ndarray) -> pd.Series:
        return pd.Series(pd.Timestamp(START) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour, unit="h"))

    players = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "createdAt": at(created, rng.uniform(0, 10, n)),
            "channel": CHANNELS[rng.integers(0, 3, n)],
            "vipLevel": vip,
            "status": status,
        }
    )
    s = pd.DataFrame(sessions, columns=["p", "day", "game"])
    start = at(s["day"].to_numpy(), rng.uniform(12, 22, len(s)))
    player_sessions = pd.DataFrame(
        {"id": np.arange(1, len(s) + 1), "playerId": s["p"] + 1, "startedAt": start,
         "endedAt": start + pd.Timedelta(minutes=30), "game": s["game"]}
    )  # fmt: skip
    o = pd.DataFrame(offers)
    claimed = dict(claims)
    sent = at(o["day"].to_numpy(), np.full(len(o), 10.0))
    applied = [
        sent.iloc[i] + pd.Timedelta(days=claimed[i] - o["day"].iloc[i], hours=13) if i in claimed else pd.NaT
        for i in range(len(o))
    ]
    promotion_players = pd.DataFrame(
        {"id": np.arange(1, len(o) + 1), "promotionId": o["promo"], "playerId": o["player"] + 1,
         "reward": o["reward"], "createdAt": sent, "appliedAt": pd.Series(applied, dtype="datetime64[ns]")}
    )  # fmt: skip
    dep = pd.DataFrame(deposits, columns=["p", "day", "amount"])
    flows = [
        pd.DataFrame({"playerId": dep["p"] + 1, "type": "deposit", "amount": dep["amount"],
                      "createdAt": at(dep["day"].to_numpy(), rng.uniform(12, 22, len(dep))),
                      "promotionPlayerId": pd.array([None] * len(dep), dtype="Int64")})
    ]  # fmt: skip
    paid = [(i, o["reward"].iloc[i] * EVENT_TYPES[o["event"].iloc[i]][1]) for i in claimed]
    paid = [(i, amount) for i, amount in paid if amount > 0]
    if paid:
        idx = np.array([i for i, _ in paid])
        flows.append(
            pd.DataFrame({"playerId": o["player"].to_numpy()[idx] + 1, "type": "bonus",
                          "amount": [a for _, a in paid],
                          "createdAt": pd.Series(applied)[idx].to_numpy() + np.timedelta64(1, "m"),
                          "promotionPlayerId": pd.array(idx + 1, dtype="Int64")})
        )  # fmt: skip
    money = pd.concat(flows, ignore_index=True)
    money.insert(0, "id", np.arange(1, len(money) + 1))
    return {
        "players": players,
        "player_sessions": player_sessions,
        "promotions": pd.DataFrame(promotions),
        "promotion_players": promotion_players,
        "money_flows": money,
    }


def write(url: str, variant: str, **kw: object) -> dict[str, pd.DataFrame]:
    """Create the contract's tables at ``url`` and fill them with a foreign platform's history."""
    tables = build(variant, **kw)  # type: ignore[arg-type]
    engine = connect(url, must_exist=False)
    init_source_tables(engine)
    with engine.begin() as conn:
        for name in ("players", "promotions", "player_sessions", "promotion_players", "money_flows"):
            bulk_insert(conn, name, tables[name])
    engine.dispose()
    return tables
