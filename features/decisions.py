"""Decision rows for training sets: every logged offer, plus the no-offer arm rebuilt from the eligible players.

A campaign is a burst of offers: sorted by send time, a gap longer than
``features.campaign_gap_minutes`` starts the next one; the campaign's time is its
first send. Its rows are every offer sent in it (arm ``"<event type>@<reward>"``, the
event type being ``promotions.type``, ``"unknown"`` without a valid promotion row) and
every player eligible at the campaign time who got none (arm ``"none"``; the platform
logs no holdout, so it is rebuilt). Eligible at ``T``: status active, registered at or
before ``T - dormancy_days`` and no session in ``[T - dormancy_days, T)``; an offer's own
``dormant`` and ``eligible`` are taken at its send time. The platform keeps only the
*current* status, so a player blocked or self-excluded after a campaign drops out of
its no-offer arm and their offers in it read ``eligible=False``.

Labels come from platform rows in the attribution window ``(t, t + attribution_days]``
after the decision time ``t`` (the send time; the campaign time for no offer): a
session (``reengaged``), deposits (``converted``; ``deposits`` in KRW), the bonus
paid in the window for the offer itself, ``money_flows.promotionPlayerId`` = the offer
(``reward_cost``; a payout after the window is not counted), and
``net_value = margin x deposits - reward_cost``. A row whose window has not closed
before the as-of time (``window_end >= as_of``; rows at or after ``as_of`` are unseen)
is left out and counted in :attr:`DecisionSet.open_windows`.

The assignment probability of a row's arm is not in the data; each row carries what
estimating it needs: its campaign, ``eligible``, and ``n_eligible``, the size of the
campaign's eligible set (its eligible offers plus its no-offer rows). Rows are ordered
by campaign, player id and offer id; ``row_id`` numbers them over every campaign
*before* open windows are dropped, so a row keeps its id when the as-of time moves later.

Offers, promotions, players, sessions and money flows are read in one read-only snapshot by
:mod:`platform_db.bulk` (CSV text parsed by pyarrow); the rest is vectorised numpy on int64
microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import Engine

from core.config import Config
from core.errors import RekindleError
from core.timeutil import naive_utc
from platform_db.bulk import BLOCK_BYTES, Columns, Snapshot, snapshot, ts_literal
from platform_db.db import read_sql, require_tables, safe_url
from platform_db.filters import valid_rows
from platform_db.schema import SOURCE_TABLES

STEPS = ("read offers", "read players", "read sessions", "read money flows", "find eligible players", "label rows")
"""The steps :func:`build_decisions` reports to ``on_step``, in order (for a progress bar's total)."""

ROW_COLUMNS = (
    "row_id", "campaign_id", "campaign_at", "player_id", "decision_at", "offer_id", "promotion_id", "event_type",
    "reward", "arm", "is_offer", "dormant", "eligible", "n_eligible", "reengaged", "converted", "deposits",
    "reward_cost", "net_value", "window_end",
)  # fmt: skip
CAMPAIGN_COLUMNS = (
    "campaign_id", "campaign_at", "last_sent_at", "n_offers", "n_offers_eligible", "n_no_offer", "n_eligible",
    "event_types", "n_open", "window_closed",
)  # fmt: skip
NO_OFFER = "none"
UNKNOWN_EVENT = "unknown"  # an offer whose promotion row is missing (or invalid)
US_PER_DAY = 86_400_000_000
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
_BONUSES = {"offer": ('"promotionPlayerId"', _INT), "amount": ("amount", _FLOAT), "at": ('"createdAt"', _TS)}


class NoDecisionsError(RekindleError, ValueError):
    """The platform history holds no offer to learn from."""


@dataclass(frozen=True)
class DecisionSet:
    """Decision rows with labels (:data:`ROW_COLUMNS`), the number of rows left out because their
    window was still open at ``as_of``, and one row per campaign (:data:`CAMPAIGN_COLUMNS`)."""

    as_of: datetime
    rows: pd.DataFrame
    open_windows: int
    campaigns: pd.DataFrame


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
    keep = (at >= _us(since)) & (at < _us(until))
    return out if keep.all() else {key: v[keep] for key, v in out.items()}


# ------------------------------------------------------------------- logic --
def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position in ``keys`` (unique, any order) of each query value, and whether it is there."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    increasing = bool((keys[1:] > keys[:-1]).all())
    if increasing and keys[-1] - keys[0] + 1 == len(keys):  # contiguous ids, the usual case: no search
        pos = np.clip(query - keys[0], 0, len(keys) - 1)
    else:
        order = None if increasing else np.argsort(keys, kind="stable")
        pos = np.minimum(np.searchsorted(keys, query, sorter=order), len(keys) - 1)
        pos = pos if order is None else order[pos]
    return pos, keys[pos] == query


class _Timeline:
    """Events (player index, time[, amount]) indexed for exact counts and sums over intervals
    whose ends are among ``bounds``. Each event gets a code: twice the number of bounds before
    it, plus one if it falls on a bound; ``player x stride + code`` then sorts events per player
    by time, and a query is two binary searches. Built without amounts, events with the same
    key are kept once: counts then only tell whether there is any."""

    def __init__(self, bounds: np.ndarray, player: np.ndarray, time: np.ndarray, amount: np.ndarray | None = None):
        self.bounds = _unique(bounds)
        self.stride = 2 * len(self.bounds) + 2
        if (int(player.max(initial=0)) + 1) * self.stride >= 2**62:
            raise OverflowError(f"cannot index {player.max()} players x {len(self.bounds)} decision times")
        j = np.searchsorted(self.bounds, time)
        on_bound = self.bounds[np.minimum(j, len(self.bounds) - 1)] == time
        key = player * self.stride + 2 * j + on_bound
        self.cum: np.ndarray | None = None
        if amount is None:
            self.keys = _unique(key)  # only existence is asked: one key per run of events
        else:
            order = np.argsort(key, kind="stable")
            self.keys, self.cum = key[order], np.concatenate([[0], np.cumsum(amount[order])])

    def _rank(self, player: np.ndarray, at: np.ndarray, through: bool) -> np.ndarray:
        """Index of the first event of ``player`` later than ``at`` (``through``) or at ``at`` or later."""
        k = np.searchsorted(self.bounds, at)
        return np.searchsorted(self.keys, player * self.stride + 2 * k + (2 if through else 1))

    def span(self, player: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_open: bool) -> tuple:
        """Index ranges of each player's events in ``(lo, hi]`` if ``left_open``, else in ``[lo, hi)``."""
        return self._rank(player, lo, left_open), self._rank(player, hi, left_open)

    def count(self, player: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_open: bool) -> np.ndarray:
        a, b = self.span(player, lo, hi, left_open=left_open)
        return b - a

    def total(self, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Sum of the amounts of the events in index ranges from :meth:`span`."""
        if self.cum is None:
            raise TypeError("this timeline has no amounts")
        return self.cum[stop] - self.cum[start]


def _arms(offers: dict[str, np.ndarray], promos: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each offer's event type (its promotion's type) and arm code, and the arm names (``"none"`` last)."""
    pos, found = _lookup(promos["id"].to_numpy(dtype=np.int64), offers["promo"])
    names, promo_event = np.unique(np.append(promos["type"].to_numpy(dtype=object), UNKNOWN_EVENT), return_inverse=True)
    event = np.where(found, promo_event[pos], promo_event[-1])
    reward = np.rint(offers["reward"]).astype(np.int64)
    rewards = _unique(reward)
    key = event * len(rewards) + np.searchsorted(rewards, reward)
    arms = _unique(key)
    arm_names = [f"{names[k // len(rewards)]}@{rewards[k % len(rewards)]}" for k in arms.tolist()]
    return names[event], np.searchsorted(arms, key), np.array([*arm_names, NO_OFFER], dtype=object)


def _no_offer(
    campaign_at: np.ndarray, campaign: np.ndarray, o_player: np.ndarray, active: np.ndarray, created: np.ndarray,
    sessions: _Timeline, dormancy: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(player index, campaign) of every player eligible at a campaign's time who got no offer in it."""
    offered = np.zeros(len(active), dtype=bool)
    players, campaigns = [], []
    for c, at in enumerate(campaign_at.tolist()):  # a few dozen campaigns, each vectorised over players
        cand = np.flatnonzero(active & (created <= at - dormancy))
        idle = sessions.count(cand, np.full(len(cand), at - dormancy), np.full(len(cand), at), left_open=False) == 0
        cand = cand[idle]
        sent_to = o_player[campaign == c]
        offered[sent_to] = True
        players.append(cand[~offered[cand]])
        offered[sent_to] = False
        campaigns.append(np.full(len(players[-1]), c, dtype=np.int64))
    return np.concatenate(players), np.concatenate(campaigns)


def _campaign_frame(
    campaign: np.ndarray, sent: np.ndarray, event: np.ndarray, first: np.ndarray, o_eligible: np.ndarray,
    n_none: np.ndarray, n_open: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    n = len(first)
    sent_types = pd.DataFrame({"c": campaign, "e": event}).drop_duplicates().sort_values(["c", "e"])
    types = sent_types.groupby("c")["e"].agg(tuple).reindex(range(n))
    n_offers_eligible = np.bincount(campaign[o_eligible], minlength=n)
    return pd.DataFrame(
        {
            "campaign_id": np.arange(1, n + 1, dtype=np.int64),
            "campaign_at": _ts(sent[first]),
            "last_sent_at": _ts(np.maximum.reduceat(sent, first)),
            "n_offers": np.bincount(campaign, minlength=n).astype(np.int64),
            "n_offers_eligible": n_offers_eligible.astype(np.int64),
            "n_no_offer": n_none.astype(np.int64),
            "n_eligible": (n_offers_eligible + n_none).astype(np.int64),
            "event_types": types.to_numpy(dtype=object),
            "n_open": n_open.astype(np.int64),
            "window_closed": n_open == 0,
        }
    )


def _ts(us: np.ndarray) -> np.ndarray:
    return np.asarray(us).astype("datetime64[us]")


def _us(moment: datetime) -> int:
    return int(np.datetime64(moment, "us").astype(np.int64))


def _moment(us: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(microseconds=us)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is far slower on tens of millions of int64)."""
    out = np.sort(values)
    return out[np.concatenate([[True], out[1:] != out[:-1]])] if len(out) else out


def _nullable(values: np.ndarray, present: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(present, values, 0).astype(np.int64), ~present)


def build_decisions(
    engine: Engine,
    cfg: Config,
    as_of: datetime | None = None,
    *,
    filters: dict[str, str] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> DecisionSet:
    """One labelled row per decision (offer or rebuilt no-offer) whose window closed before ``as_of``.

    Parameters
    ----------
    engine : Engine
        The platform database (SQLite or PostgreSQL); only read.
    cfg : Config
        Uses ``business`` (dormancy_days, attribution_days, margin) and ``features.campaign_gap_minutes``.
    as_of : datetime, optional
        Only platform rows strictly before it are read (naive values are UTC). Default: one second
        after the latest valid registration, session, offer or money flow (microseconds dropped),
        as ``rekindle segment`` takes it.
    filters : dict of str to str, optional
        Valid-row conditions per source table, as in :func:`platform_db.filters.valid_rows`.
    on_step : callable, optional
        Called with each name of :data:`STEPS` as that step starts (for progress bars).

    Returns
    -------
    DecisionSet
        ``rows`` (columns :data:`ROW_COLUMNS`, see the module docstring), ``open_windows`` (rows left
        out because ``window_end >= as_of``) and ``campaigns`` (columns :data:`CAMPAIGN_COLUMNS`, every
        campaign before ``as_of``, open ones included; ``event_types`` is a sorted tuple).

    Raises
    ------
    ValueError
        If ``filters`` names a table that is not a source table.
    platform_db.db.DatabaseError
        If a source table is missing.
    NoDecisionsError
        If no offer was sent before ``as_of``.
    """
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(SOURCE_TABLES))
    if unknown:
        raise ValueError(f"filters name unknown tables {unknown}; expected some of {list(SOURCE_TABLES)}")
    require_tables(engine)
    step = on_step or (lambda _: None)
    biz = cfg.business
    until = datetime.max if as_of is None else naive_utc(as_of)  # the default is found in the rows read
    dormancy, window = biz.dormancy_days * US_PER_DAY, biz.attribution_days * US_PER_DAY

    with snapshot(engine, filters) as db:  # every table as of one moment
        step(STEPS[0])
        offers = _read(db, "promotion_players", _OFFERS, ("sent", datetime.min, until))
        if len(offers["id"]) == 0:
            before = "" if as_of is None else f" before {until:%Y-%m-%dT%H:%M:%S}"
            raise NoDecisionsError(
                f"{safe_url(str(engine.url))} has no offers in promotion_players{before}: "
                "there is no decision to learn from"
            )
        order = np.lexsort((offers["id"], offers["sent"]))
        offers = {k: v[order] for k, v in offers.items()}
        sent = offers["sent"]
        campaign = np.concatenate([[0], np.cumsum(np.diff(sent) > cfg.features.campaign_gap_minutes * 60_000_000)])
        first = np.flatnonzero(np.diff(campaign, prepend=-1))
        campaign_at = sent[first]
        promos = db.table("promotions", _PROMOS).to_pandas()
        event, o_arm, arm_names = _arms(offers, promos)

        step(STEPS[1])
        players = _read(db, "players", _PLAYERS, ("created", datetime.min, until))
        ids = _unique(np.concatenate([players["id"], offers["player"]]))  # dense player index over both
        at, _ = _lookup(ids, players["id"])
        created = np.full(len(ids), np.iinfo(np.int64).max)
        created[at] = players["created"]
        active = np.zeros(len(ids), dtype=bool)
        active[at] = players["active"] == 1
        o_player, _ = _lookup(ids, offers["player"])
        latest = [sent[-1], players["created"].max(initial=sent[-1])]
        del players, at

        step(STEPS[2])
        bounds = np.concatenate(
            [campaign_at - dormancy, campaign_at, campaign_at + window, sent - dormancy, sent, sent + window]
        )
        since = _moment(int(campaign_at[0]) - dormancy)
        s = _read(db, "player_sessions", _SESSIONS, ("at", since, until))
        latest.append(s["at"].max(initial=sent[-1]))
        pos, known = _lookup(ids, s["player"])
        sessions = _Timeline(bounds, pos[known], s["at"][known])
        del s, pos, known

        step(STEPS[3])
        period = ("at", _moment(int(sent[0])), until)  # nothing earlier falls in a window
        d = _read(db, "money_flows", _DEPOSITS, period, "type = 'deposit'")
        pos, known = _lookup(ids, d["player"])
        deposits = _Timeline(bounds, pos[known], d["at"][known], np.rint(d["amount"][known]).astype(np.int64))
        latest.append(d["at"].max(initial=sent[-1]))
        del d, pos, known
        b = _read(db, "money_flows", _BONUSES, period, "type = 'bonus' AND \"promotionPlayerId\" IS NOT NULL")
        latest.append(b["at"].max(initial=sent[-1]))
        # the reward cost of an offer: bonus paid for it (promotionPlayerId) inside its own window
        pos, known = _lookup(offers["id"], b["offer"])
        paid = known & (b["at"] > sent[pos]) & (b["at"] <= sent[pos] + window)
        offer_cost = np.bincount(pos[paid], weights=np.rint(b["amount"][paid]), minlength=len(sent)).astype(np.int64)
        del b, pos, known, paid
    if as_of is None:  # just after the latest event, as `rekindle segment` takes it; withdrawals count too
        flows = valid_rows("money_flows", "t", filters)
        sql = f"SELECT MAX(t.\"createdAt\") AS m FROM {flows} WHERE t.type = 'withdrawal'"
        withdrawn = read_sql(engine, sql)["m"].iloc[0]
        last = _moment(int(max(latest)))
        if withdrawn is not None and not pd.isna(withdrawn):
            last = max(last, pd.Timestamp(withdrawn).to_pydatetime())
        as_of = last.replace(microsecond=0) + timedelta(seconds=1)
    as_of = naive_utc(as_of)
    now = _us(as_of)

    step(STEPS[4])
    idle = sessions.count(o_player, sent - dormancy, sent, left_open=False) == 0
    o_dormant = idle & (created[o_player] <= sent - dormancy)
    o_eligible = o_dormant & active[o_player]
    none_player, none_campaign = _no_offer(campaign_at, campaign, o_player, active, created, sessions, dormancy)
    n_none = np.bincount(none_campaign, minlength=len(first))

    step(STEPS[5])
    player = np.concatenate([o_player, none_player])
    camp = np.concatenate([campaign, none_campaign])
    offer = np.concatenate([np.arange(len(sent)), np.full(len(none_player), -1)])
    del none_player, none_campaign
    tie = np.where(offer >= 0, offers["id"][np.maximum(offer, 0)], np.iinfo(np.int64).max)
    order = np.lexsort((tie, ids[player], camp))
    del tie
    decision_at = np.where(offer[order] >= 0, sent[np.maximum(offer[order], 0)], campaign_at[camp[order]])
    closed = decision_at + window < now
    n_open = np.bincount(camp[order][~closed], minlength=len(first))
    keep = order[closed]
    row_id = np.flatnonzero(closed).astype(np.int64)
    p, c, o, t = player[keep], camp[keep], offer[keep], decision_at[closed]
    del player, camp, offer, order, decision_at, keep
    has, o = o >= 0, np.maximum(o, 0)

    first_deposit, after_deposits = deposits.span(p, t, t + window, left_open=True)
    deposited = deposits.total(first_deposit, after_deposits)
    cost = np.where(has, offer_cost[o], 0).astype(np.int64)
    n_eligible = np.bincount(campaign[o_eligible], minlength=len(first)) + n_none
    rows = pd.DataFrame(
        {
            "row_id": row_id,
            "campaign_id": c.astype(np.int64) + 1,
            "campaign_at": _ts(campaign_at[c]),
            "player_id": ids[p],
            "decision_at": _ts(t),
            "offer_id": _nullable(offers["id"][o], has),
            "promotion_id": _nullable(offers["promo"][o], has),
            "event_type": np.where(has, event[o], NO_OFFER),
            "reward": np.where(has, np.rint(offers["reward"][o]), 0).astype(np.int64),
            "arm": arm_names[np.where(has, o_arm[o], len(arm_names) - 1)],
            "is_offer": has,
            "dormant": np.where(has, o_dormant[o], True),
            "eligible": np.where(has, o_eligible[o], True),
            "n_eligible": n_eligible[c].astype(np.int64),
            "reengaged": sessions.count(p, t, t + window, left_open=True) > 0,
            "converted": after_deposits > first_deposit,
            "deposits": deposited,
            "reward_cost": cost,
            "net_value": biz.margin * deposited - cost,
            "window_end": _ts(t + window),
        }
    )
    campaigns = _campaign_frame(campaign, sent, event, first, o_eligible, n_none, n_open)
    return DecisionSet(as_of=as_of, rows=rows, open_windows=int(n_open.sum()), campaigns=campaigns)
