"""Turn the world's log into the platform's five tables (ids, timestamps, names).

Times: simulation day ``d`` starts at ``day0 + d days``; campaigns send at the
start of their day (plus a few seconds), and every session starts at least a
minute into its day, so a return on the sending day is after the offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from core.config import Simulator, SimulatorCatalog
from simulator.engine import Decisions, Log
from simulator.population import STATUS_CODES, Population

DAY = 86_400
SEND_JITTER = 60  # offers go out within the first minute of their day
FIRST_SECOND = 60  # sessions start no earlier than this into the day
LAST_SECOND = 84_000  # leaves room in the day for the deposit, claim and bonus that follow a session


@dataclass(frozen=True)
class IdStart:
    """First id to use in each table (forward mode appends after existing rows)."""

    player_sessions: int = 1
    promotions: int = 1
    promotion_players: int = 1
    money_flows: int = 1


def _ts(day0: np.datetime64, day: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return day0 + (day.astype(np.int64) * DAY + offset.astype(np.int64)).astype("timedelta64[s]")


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray, default: np.ndarray) -> np.ndarray:
    """``values`` at the (unique) ``keys`` equal to ``query``; ``default`` where none is."""
    if len(keys) == 0:
        return default
    order = np.argsort(keys, kind="stable")
    pos = np.clip(np.searchsorted(keys[order], query), 0, len(keys) - 1)
    return np.where(keys[order][pos] == query, values[order][pos], default)


def _cat(chunks: list[tuple[np.ndarray, ...]], n: int, dtypes: tuple[str, ...]) -> list[np.ndarray]:
    if not chunks:
        return [np.zeros(0, dtype=t) for t in dtypes[:n]]
    return [np.concatenate([c[i] for c in chunks]) for i in range(n)]


def status_on(pop: Population, idx: np.ndarray, day: int) -> np.ndarray:
    """Players' status at the start of ``day`` (a self-exclusion or block takes effect on its day)."""
    code = np.where(pop.status_day[idx] <= day, pop.status[idx], 0)
    return np.asarray(STATUS_CODES, dtype=object)[code]


def players_frame(
    pop: Population, day0: np.datetime64, channels: list[str], as_of_day: int, first: int = 0
) -> pd.DataFrame:
    idx = np.arange(first, len(pop))
    return pd.DataFrame(
        {
            "id": idx + 1,
            "createdAt": _ts(day0, pop.created_day[idx], pop.created_offset[idx]),
            "channel": np.asarray(channels, dtype=object)[pop.channel[idx]],
            "vipLevel": pop.vip[idx].astype(np.int64),
            "status": status_on(pop, idx, as_of_day),
        }
    )


@dataclass
class PlatformTables:
    players: pd.DataFrame
    player_sessions: pd.DataFrame
    promotions: pd.DataFrame
    promotion_players: pd.DataFrame
    money_flows: pd.DataFrame
    # forward mode: (id, status, vipLevel) of existing players whose status or VIP level changed
    player_updates: pd.DataFrame | None = None

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [
            ("players", self.players),
            ("player_sessions", self.player_sessions),
            ("promotions", self.promotions),
            ("promotion_players", self.promotion_players),
            ("money_flows", self.money_flows),
        ]


def build_tables(
    log: Log,
    pop: Population,
    cfg: Simulator,
    catalog: SimulatorCatalog,
    day0: datetime,
    as_of_day: int,
    rng: np.random.Generator,
    *,
    window: int,
    ids: IdStart | None = None,
    first_player: int = 0,
    send_jitter: bool = True,
) -> PlatformTables:
    """The rows to write for ``log`` (players from index ``first_player`` on). Offers go out within the
    first minute of their day, or exactly at its start without ``send_jitter`` (the forward mode: the
    platform decided them for that moment)."""
    ids = ids or IdStart()
    d0 = np.datetime64(day0.replace(tzinfo=None), "s")
    as_of = d0 + np.timedelta64(as_of_day * DAY, "s")
    games = np.asarray(list(cfg.population.games), dtype=object)

    # ---- sessions: expand session days, draw times, games and durations
    sp, sd, sn = _cat(log.session_days, 3, ("int32", "int32", "int16"))
    order = np.lexsort((sp, sd))
    sp, sd, sn = sp[order], sd[order], sn[order]
    lo = np.where(pop.created_day[sp] == sd, pop.created_offset[sp] + 1, FIRST_SECOND)
    rows = np.repeat(np.arange(len(sp)), sn.astype(np.int64))
    offsets = (lo[rows] + rng.random(len(rows)) * (LAST_SECOND - lo[rows])).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sn.astype(np.int64))[:-1]]) if len(sn) else np.zeros(0, np.int64)
    first_offset = np.minimum.reduceat(offsets, starts) if len(offsets) else np.zeros(0, np.int64)
    s_player = sp[rows]
    game_idx = np.empty(len(rows), dtype=np.int8)
    step = 4_000_000
    for a in range(0, len(rows), step):
        u = rng.random(min(step, len(rows) - a))
        game_idx[a : a + step] = (
            (pop.game_cum[s_player[a : a + step]] < u[:, None]).sum(axis=1).clip(max=len(games) - 1)
        )
    started = _ts(d0, sd[rows], offsets)
    minutes = cfg.activity.session_minutes
    duration = np.exp(np.log(minutes.median * 60) + minutes.sigma * rng.standard_normal(len(rows))).astype(np.int64)
    ended = started + duration.astype("timedelta64[s]")
    ended_nat = (rng.random(len(rows)) < cfg.activity.open_session_share) | (ended > as_of)
    ended = np.where(ended_nat, np.datetime64("NaT"), ended)
    t_order = np.argsort(started, kind="stable")
    sessions = pd.DataFrame(
        {
            "id": np.arange(ids.player_sessions, ids.player_sessions + len(rows)),
            "playerId": s_player[t_order].astype(np.int64) + 1,
            "startedAt": started[t_order],
            "endedAt": ended[t_order],
            "game": games[game_idx[t_order]],
        }
    )

    # lookup: (player, day) -> first session offset that day
    key_sd = sd.astype(np.int64) * (len(pop) + 1) + sp

    def first_session(players: np.ndarray, days: np.ndarray) -> np.ndarray:
        query = days.astype(np.int64) * (len(pop) + 1) + players
        return _lookup(key_sd, first_offset, query, np.full(len(query), FIRST_SECOND, np.int64))

    # ---- deposits and withdrawals happen during the day's play
    dp, dd, da = _cat(log.deposits, 3, ("int32", "int32", "float64"))
    dep_off = first_session(dp, dd) + rng.integers(30, 600, len(dp))
    wp, wdd, wa = _cat(log.withdrawals, 3, ("int32", "int32", "float64"))
    wd_off = np.minimum(first_session(wp, wdd) + rng.integers(600, 3_600, len(wp)), 86_399)

    # ---- promotions and offers
    names = [e.name for e in catalog.event_types]
    promo_rows: list[dict] = []
    offer_parts: list[pd.DataFrame] = []
    next_promo, next_offer = ids.promotions, ids.promotion_players
    decision_to_offer: list[np.ndarray] = []
    for dec in log.decisions:
        decision_to_offer.append(
            _promotion_rows(
                dec, names, catalog, d0, window, next_promo, next_offer, promo_rows, offer_parts, rng, send_jitter
            )
        )
        sent = int((dec.event >= 0).sum())
        next_offer += sent
        next_promo = ids.promotions + len(promo_rows)
    promotions = pd.DataFrame(promo_rows, columns=["id", "name", "type", "startsAt", "endsAt", "minDeposit"])
    offers = (
        pd.concat(offer_parts, ignore_index=True)
        if offer_parts
        else pd.DataFrame(columns=["id", "promotionId", "playerId", "reward", "createdAt", "appliedAt", "_day"])
    )
    dec_offer = np.concatenate(decision_to_offer) if decision_to_offer else np.zeros(0, np.int64)

    # ---- claims: appliedAt after the return-day deposit (or first session), bonus paid then
    cd, cday, cpay = _cat(log.claims, 3, ("int64", "int32", "float64"))
    offer_id = dec_offer[cd] if len(cd) else np.zeros(0, np.int64)
    offer_pos = offer_id - ids.promotion_players
    c_player = offers["playerId"].to_numpy()[offer_pos].astype(np.int64) - 1 if len(cd) else np.zeros(0, np.int64)
    # a claim follows that day's deposit when there is one, else the first session
    after_deposit = _lookup(
        dd.astype(np.int64) * (len(pop) + 1) + dp,
        dep_off,
        cday.astype(np.int64) * (len(pop) + 1) + c_player,
        first_session(c_player.astype(np.int32), cday),
    )
    claim_off = after_deposit + rng.integers(20, 300, len(cd))
    applied = _ts(d0, cday, claim_off)
    if len(offers):
        applied_col = np.full(len(offers), np.datetime64("NaT"), dtype="datetime64[s]")
        applied_col[offer_pos] = applied
        offers["appliedAt"] = applied_col
    offers = offers.drop(columns=["_day"], errors="ignore")

    flows = pd.DataFrame(
        {
            "playerId": np.concatenate([dp, wp, c_player]).astype(np.int64) + 1,
            "type": np.concatenate(
                [
                    np.full(len(dp), "deposit", object),
                    np.full(len(wp), "withdrawal", object),
                    np.full(len(cd), "bonus", object),
                ]
            ),
            "amount": np.concatenate([da, wa, cpay]).astype(np.int64),
            "createdAt": np.concatenate([_ts(d0, dd, dep_off), _ts(d0, wdd, wd_off), _ts(d0, cday, claim_off + 5)]),
            "promotionPlayerId": pd.array(np.concatenate([np.full(len(dp) + len(wp), -1), offer_id]), dtype="Int64"),
        }
    )
    flows["promotionPlayerId"] = flows["promotionPlayerId"].mask(flows["promotionPlayerId"] < 0)
    flows = flows.sort_values("createdAt", kind="stable").reset_index(drop=True)
    flows.insert(0, "id", np.arange(ids.money_flows, ids.money_flows + len(flows)))
    flows = flows[flows["amount"] > 0].reset_index(drop=True)

    return PlatformTables(
        players=players_frame(pop, d0, list(cfg.population.channels), as_of_day, first_player),
        player_sessions=sessions,
        promotions=promotions,
        promotion_players=offers,
        money_flows=flows,
    )


def _promotion_rows(
    dec: Decisions,
    names: list[str],
    catalog: SimulatorCatalog,
    d0: np.datetime64,
    window: int,
    next_promo: int,
    next_offer: int,
    promo_rows: list[dict],
    offer_parts: list[pd.DataFrame],
    rng: np.random.Generator,
    send_jitter: bool,
) -> np.ndarray:
    """Promotions (one per event type sent that day) and offer rows of one decision batch.
    Returns, per decision, the id of its offer row (-1 for no offer)."""
    sent = np.flatnonzero(dec.event >= 0)
    start = d0 + np.timedelta64(dec.day * DAY, "s")
    promo_of_event: dict[int, int] = {}
    for e in np.unique(dec.event[sent]):
        event = catalog.get(names[int(e)])
        pid = next_promo + len(promo_of_event)
        promo_of_event[int(e)] = pid
        promo_rows.append(
            {
                "id": pid,
                "name": f"Win-back {str(start)[:10]} {event.name.replace('_', ' ')}",
                "type": event.name,
                "startsAt": start,
                "endsAt": start + np.timedelta64(window * DAY, "s"),
                "minDeposit": event.min_deposit,
            }
        )
    offer_ids = np.arange(next_offer, next_offer + len(sent))
    if len(sent):
        jitter = np.sort(rng.integers(0, SEND_JITTER, len(sent)))  # drawn in any case: the random stream stays
        offer_parts.append(
            pd.DataFrame(
                {
                    "id": offer_ids,
                    "promotionId": np.array([promo_of_event[int(e)] for e in dec.event[sent]], dtype=np.int64),
                    "playerId": dec.player[sent].astype(np.int64) + 1,
                    "reward": dec.reward[sent].astype(np.int64),
                    "createdAt": start + (jitter * send_jitter).astype("timedelta64[s]"),
                    "appliedAt": np.full(len(sent), np.datetime64("NaT"), dtype="datetime64[s]"),
                }
            )
        )
    out = np.full(len(dec.event), -1, dtype=np.int64)
    out[sent] = offer_ids
    return out
