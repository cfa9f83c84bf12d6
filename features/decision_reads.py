"""What the decision rows are built from, read from the platform database in one read-only snapshot
(:mod:`platform_db.bulk`, CSV text parsed by pyarrow): the offers and their campaigns, the players,
session starts and money flows as int64 microseconds, indexed for the interval queries of
:mod:`features.timeline`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import Engine

from core.errors import RekindleError
from features.timeline import Timeline, from_us, lookup, to_us, unique_sorted
from platform_db.bulk import BLOCK_BYTES, Columns, Snapshot, ts_literal
from platform_db.db import read_sql
from platform_db.filters import valid_rows

NO_OFFER = "none"
UNKNOWN_EVENT = "unknown"  # an offer whose promotion row is missing (or invalid)
SQLITE_CHUNK_ROWS = 1_000_000  # rowids per group_concat (SQLite caps a string at 1e9 bytes)
PARSE_BYTES = BLOCK_BYTES  # PostgreSQL COPY bytes parsed at a time

# what is read of each table: name -> (SQL expression, Arrow type of its CSV text)
_TS, _INT, _FLOAT = pa.timestamp("us"), pa.int64(), pa.float64()
_OFFERS = {
    "id": ("id", _INT),
    "promo": ('"promotionId"', _INT),
    "player": ('"playerId"', _INT),
    "reward": ("reward", _FLOAT),
    "sent": ('"createdAt"', _TS),
}
_PLAYERS = {
    "id": ("id", _INT),
    "created": ('"createdAt"', _TS),
    "active": ("CASE WHEN status = 'active' THEN 1 ELSE 0 END", _INT),
}
_PROMOS = {"id": ("id", _INT), "type": ("type", pa.string())}
_SESSIONS = {"player": ('"playerId"', _INT), "at": ('"startedAt"', _TS)}
_DEPOSITS = {"player": ('"playerId"', _INT), "amount": ("amount", _FLOAT), "at": ('"createdAt"', _TS)}
_OFFER_BONUS = "type = 'bonus' AND \"promotionPlayerId\" IS NOT NULL"
_BONUSES = {"offer": ('"promotionPlayerId"', _INT), "amount": ("amount", _FLOAT), "at": ('"createdAt"', _TS)}


class NoDecisionsError(RekindleError, ValueError):
    """The platform history holds no offer to learn from."""


# ------------------------------------------------------------------ reading --
def _read(
    db: Snapshot,
    table: str,
    schema: Columns,
    period: tuple[str, datetime, datetime],
    where: str = "1 = 1",
) -> dict[str, np.ndarray]:
    """The valid rows of ``table`` whose time column ``period[0]`` (a key of ``schema``) lies in
    ``[period[1], period[2])``, as numpy columns: times as int64 microseconds, ints as int64
    (NULL as -1), floats as float64. ``schema`` maps names to (SQL expression, Arrow type)."""
    name, since, until = period
    conditions = [where]
    if db.dialect != "sqlite":  # SQLite compares a DATETIME column with a text bound slowly: numpy does it
        column = schema[name][0]
        conditions += [f"{column} >= {ts_literal(since)}", f"{column} < {ts_literal(until)}"]
    frame = db.table(table, schema, conditions, chunk_rows=SQLITE_CHUNK_ROWS, block_bytes=PARSE_BYTES)
    out = {}
    for key, (_, t) in schema.items():
        col = frame.column(key)
        if pa.types.is_timestamp(t):
            out[key] = col.to_numpy().astype("datetime64[us]", copy=False).view(np.int64)
        elif pa.types.is_floating(t):
            out[key] = col.to_numpy().astype(np.float64, copy=False)
        else:
            out[key] = (col.fill_null(-1) if col.null_count else col).to_numpy().astype(np.int64, copy=False)
    del frame
    at = out[name]
    keep = (at >= to_us(since)) & (at < to_us(until))
    return out if keep.all() else {key: v[keep] for key, v in out.items()}


def _arms(offers: dict[str, np.ndarray], promos: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each offer's event type (its promotion's type) and arm code, and the arm names (``"none"`` last)."""
    pos, found = lookup(promos["id"].to_numpy(dtype=np.int64), offers["promo"])
    names, promo_event = np.unique(np.append(promos["type"].to_numpy(dtype=object), UNKNOWN_EVENT), return_inverse=True)
    event = np.where(found, promo_event[pos], promo_event[-1])
    reward = np.rint(offers["reward"]).astype(np.int64)
    rewards = unique_sorted(reward)
    key = event * len(rewards) + np.searchsorted(rewards, reward)
    arms = unique_sorted(key)
    arm_names = [f"{names[k // len(rewards)]}@{rewards[k % len(rewards)]}" for k in arms.tolist()]
    return names[event], np.searchsorted(arms, key), np.array([*arm_names, NO_OFFER], dtype=object)


@dataclass(frozen=True)
class Offers:
    """Every offer sent before the as-of time, sorted by send time (ties by id), with its campaign."""

    columns: dict[str, np.ndarray]  # id, promo, player, reward, sent (int64 microseconds)
    campaign: np.ndarray  # campaign index of each offer
    first: np.ndarray  # index of each campaign's first offer
    event: np.ndarray  # event type of each offer
    arm: np.ndarray  # arm code of each offer
    arm_names: np.ndarray  # arm names by code, "none" last

    @property
    def sent(self) -> np.ndarray:
        return self.columns["sent"]

    @property
    def campaign_at(self) -> np.ndarray:
        return self.sent[self.first]


@dataclass(frozen=True)
class Players:
    """A dense index over the players of the players table and of the offers."""

    ids: np.ndarray
    created: np.ndarray  # registration time (int64 microseconds; max int64 if unknown)
    active: np.ndarray  # status active (the current status: the platform keeps no history)
    of_offer: np.ndarray  # player index of each offer


def read_offers(db: Snapshot, until: datetime, gap_minutes: int, database: str, before: str) -> Offers:
    """The offers and their campaigns: a send more than ``gap_minutes`` after the previous starts the next."""
    offers = _read(db, "promotion_players", _OFFERS, ("sent", datetime.min, until))
    if len(offers["id"]) == 0:
        raise NoDecisionsError(
            f"{database} has no offers in promotion_players{before}: there is no decision to learn from"
        )
    order = np.lexsort((offers["id"], offers["sent"]))
    offers = {k: v[order] for k, v in offers.items()}
    campaign = np.concatenate([[0], np.cumsum(np.diff(offers["sent"]) > gap_minutes * 60_000_000)])
    first = np.flatnonzero(np.diff(campaign, prepend=-1))
    event, arm, arm_names = _arms(offers, db.table("promotions", _PROMOS).to_pandas())
    return Offers(offers, campaign, first, event, arm, arm_names)


def read_players(db: Snapshot, offers: Offers, until: datetime) -> tuple[Players, int]:
    """The player index, and the latest registration (int64 microseconds)."""
    players = _read(db, "players", _PLAYERS, ("created", datetime.min, until))
    ids = unique_sorted(np.concatenate([players["id"], offers.columns["player"]]))  # dense player index over both
    at, _ = lookup(ids, players["id"])
    created = np.full(len(ids), np.iinfo(np.int64).max)
    created[at] = players["created"]
    active = np.zeros(len(ids), dtype=bool)
    active[at] = players["active"] == 1
    of_offer, _ = lookup(ids, offers.columns["player"])
    return Players(ids, created, active, of_offer), int(players["created"].max(initial=offers.sent[-1]))


def decision_bounds(offers: Offers, dormancy: int, window: int) -> np.ndarray:
    """Every time a decision asks about: its dormancy start, its time and its window's end."""
    sent, at = offers.sent, offers.campaign_at
    return np.concatenate([at - dormancy, at, at + window, sent - dormancy, sent, sent + window])


def read_sessions(
    db: Snapshot, offers: Offers, players: Players, until: datetime, bounds: np.ndarray, dormancy: int
) -> tuple[Timeline, int]:
    """Session starts indexed at ``bounds``, and the latest one (int64 microseconds)."""
    s = _read(db, "player_sessions", _SESSIONS, ("at", from_us(int(offers.campaign_at[0]) - dormancy), until))
    pos, known = lookup(players.ids, s["player"])
    return Timeline(bounds, pos[known], s["at"][known]), int(s["at"].max(initial=offers.sent[-1]))


def read_money(
    db: Snapshot, offers: Offers, players: Players, until: datetime, bounds: np.ndarray, window: int
) -> tuple[Timeline, np.ndarray, int]:
    """Deposits indexed at ``bounds``, each offer's bonus cost in its window, and the latest flow read."""
    sent = offers.sent
    period = ("at", from_us(int(sent[0])), until)  # nothing earlier falls in a window
    d = _read(db, "money_flows", _DEPOSITS, period, "type = 'deposit'")
    pos, known = lookup(players.ids, d["player"])
    deposits = Timeline(bounds, pos[known], d["at"][known], np.rint(d["amount"][known]).astype(np.int64))
    latest = int(d["at"].max(initial=sent[-1]))
    del d, pos, known
    b = _read(db, "money_flows", _BONUSES, period, _OFFER_BONUS)
    latest = max(latest, int(b["at"].max(initial=sent[-1])))
    # the reward cost of an offer: bonus paid for it (promotionPlayerId) inside its own window
    pos, known = lookup(offers.columns["id"], b["offer"])
    paid = known & (b["at"] > sent[pos]) & (b["at"] <= sent[pos] + window)
    offer_cost = np.bincount(pos[paid], weights=np.rint(b["amount"][paid]), minlength=len(sent)).astype(np.int64)
    return deposits, offer_cost, latest


def default_as_of(engine: Engine, filters: dict[str, str], latest: int) -> datetime:
    """One second after the latest event (withdrawals count too), microseconds dropped, as
    ``rekindle segment`` takes it."""
    flows = valid_rows("money_flows", "t", filters)
    sql = f"SELECT MAX(t.\"createdAt\") AS m FROM {flows} WHERE t.type = 'withdrawal'"
    withdrawn = read_sql(engine, sql)["m"].iloc[0]
    last = from_us(latest)
    if withdrawn is not None and not pd.isna(withdrawn):
        last = max(last, pd.Timestamp(withdrawn).to_pydatetime())
    return last.replace(microsecond=0) + timedelta(seconds=1)


@dataclass(frozen=True)
class Activity:
    """The platform's rows in a period, as numpy columns (times int64 microseconds): offers with their event
    type, session starts, deposits and bonus payouts of offers. What the feedback of decisions reads."""

    offers: dict[str, np.ndarray]  # id, promo, player, reward, sent, event (object)
    sessions: dict[str, np.ndarray]  # player, at
    deposits: dict[str, np.ndarray]  # player, amount, at
    bonuses: dict[str, np.ndarray]  # offer, amount, at


def read_activity(db: Snapshot, since: datetime, until: datetime) -> Activity:
    """Every offer, session start, deposit and offer bonus with its time in ``[since, until)``."""
    period = (since, until)
    offers = _read(db, "promotion_players", _OFFERS, ("sent", *period))
    promos = db.table("promotions", _PROMOS).to_pandas()
    pos, found = lookup(promos["id"].to_numpy(dtype=np.int64), offers["promo"])
    types = promos["type"].to_numpy(dtype=object)
    offers["event"] = np.where(found, types[pos] if len(types) else UNKNOWN_EVENT, UNKNOWN_EVENT)
    return Activity(
        offers=offers,
        sessions=_read(db, "player_sessions", _SESSIONS, ("at", *period)),
        deposits=_read(db, "money_flows", _DEPOSITS, ("at", *period), "type = 'deposit'"),
        bonuses=_read(db, "money_flows", _BONUSES, ("at", *period), _OFFER_BONUS),
    )
