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
by the as-of time (``window_end > as_of``) is left out, with every other row of its
campaign (a campaign is labelled whole, unless its sends chain over more than a window: a stream's
rows close one by one), and counted in :attr:`DecisionSet.open_windows`.
Offers and players at or after ``as_of`` are unseen; sessions and money flows are read
up to ``as_of`` inclusive, so a window that ends exactly at the as-of time (a week's
campaign read at the end of that week) is whole and labelled.

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

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from core.config import Config
from core.progress import SILENT, Progress
from core.timeutil import naive_utc
from features.decision_reads import (
    NO_OFFER,
    NoDecisionsError,
    Offers,
    Players,
    decision_bounds,
    default_as_of,
    read_money,
    read_offers,
    read_players,
    read_sessions,
)
from features.timeline import US_PER_DAY, Timeline, as_datetime64, to_us
from platform_db.bulk import snapshot
from platform_db.db import require_tables, safe_url
from platform_db.schema import SOURCE_TABLES

__all__ = ["CAMPAIGN_COLUMNS", "ROW_COLUMNS", "STEPS", "DecisionSet", "NoDecisionsError", "build_decisions"]

STEPS = ("read offers", "read players", "read sessions", "read money flows", "find eligible players", "label rows")
"""The steps of :func:`build_decisions`, in order (one progress unit each)."""

ROW_COLUMNS = (
    "row_id", "campaign_id", "campaign_at", "player_id", "decision_at", "offer_id", "promotion_id", "event_type",
    "reward", "arm", "is_offer", "dormant", "eligible", "n_eligible", "reengaged", "converted", "deposits",
    "reward_cost", "net_value", "window_end",
)  # fmt: skip
CAMPAIGN_COLUMNS = (
    "campaign_id", "campaign_at", "last_sent_at", "n_offers", "n_offers_eligible", "n_no_offer", "n_eligible",
    "event_types", "n_open", "window_closed",
)  # fmt: skip


@dataclass(frozen=True)
class DecisionSet:
    """Decision rows with labels (:data:`ROW_COLUMNS`), the number of rows left out because their
    window was still open at ``as_of``, and one row per campaign (:data:`CAMPAIGN_COLUMNS`)."""

    as_of: datetime
    rows: pd.DataFrame
    open_windows: int
    campaigns: pd.DataFrame


# ------------------------------------------------------------------- logic --
def _no_offer(
    campaign_at: np.ndarray, campaign: np.ndarray, o_player: np.ndarray, active: np.ndarray, created: np.ndarray,
    sessions: Timeline, dormancy: int,
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
            "campaign_at": as_datetime64(sent[first]),
            "last_sent_at": as_datetime64(np.maximum.reduceat(sent, first)),
            "n_offers": np.bincount(campaign, minlength=n).astype(np.int64),
            "n_offers_eligible": n_offers_eligible.astype(np.int64),
            "n_no_offer": n_none.astype(np.int64),
            "n_eligible": (n_offers_eligible + n_none).astype(np.int64),
            "event_types": types.to_numpy(dtype=object),
            "n_open": n_open.astype(np.int64),
            "window_closed": n_open == 0,
        }
    )


def _nullable(values: np.ndarray, present: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(present, values, 0).astype(np.int64), ~present)


@dataclass(frozen=True)
class _Activity:
    """The players' sessions and deposits indexed for interval queries, and the bonus cost of each offer."""

    sessions: Timeline
    deposits: Timeline
    offer_cost: np.ndarray


@dataclass(frozen=True)
class _Eligibility:
    dormant: np.ndarray  # per offer: dormant at its send time
    eligible: np.ndarray  # per offer: dormant and active
    none_player: np.ndarray  # the rebuilt no-offer rows: player index ...
    none_campaign: np.ndarray  # ... and campaign


def _eligibility(offers: Offers, players: Players, sessions: Timeline, dormancy: int) -> _Eligibility:
    sent, o_player = offers.sent, players.of_offer
    idle = sessions.count(o_player, sent - dormancy, sent, left_open=False) == 0
    dormant = idle & (players.created[o_player] <= sent - dormancy)
    none_player, none_campaign = _no_offer(
        offers.campaign_at, offers.campaign, o_player, players.active, players.created, sessions, dormancy
    )
    return _Eligibility(dormant, dormant & players.active[o_player], none_player, none_campaign)


def _label_rows(
    offers: Offers, players: Players, activity: _Activity, elig: _Eligibility, now: int, cfg: Config
) -> tuple[pd.DataFrame, np.ndarray]:
    """The decision rows of the campaigns whose every window closed by ``now`` (its last instant included),
    labelled; and the open rows per campaign."""
    biz = cfg.business
    window = biz.attribution_days * US_PER_DAY
    o_cols, sent, campaign, n_campaigns = offers.columns, offers.sent, offers.campaign, len(offers.first)
    player = np.concatenate([players.of_offer, elig.none_player])
    camp = np.concatenate([campaign, elig.none_campaign])
    offer = np.concatenate([np.arange(len(sent)), np.full(len(elig.none_player), -1)])
    tie = np.where(offer >= 0, o_cols["id"][np.maximum(offer, 0)], np.iinfo(np.int64).max)
    order = np.lexsort((tie, players.ids[player], camp))
    del tie
    decision_at = np.where(offer[order] >= 0, sent[np.maximum(offer[order], 0)], offers.campaign_at[camp[order]])
    # a campaign is labelled whole or not at all (its no-offer rows, at the campaign's time, close before
    # its later sends): its rows wait for the window of its last decision. A "campaign" of sends chained over
    # more than a window (a platform that sends all the time) is a stream: its rows close one by one
    sorted_camp = camp[order]  # ascending: the campaign is the sort's first key
    starts = np.flatnonzero(np.r_[True, sorted_camp[1:] != sorted_camp[:-1]])
    last = np.maximum.reduceat(decision_at, starts)
    whole = (last + window <= now) | (last - offers.campaign_at[sorted_camp[starts]] > window)
    closed = np.repeat(whole, np.diff(np.r_[starts, len(sorted_camp)])) & (decision_at + window <= now)
    n_open = np.bincount(sorted_camp[~closed], minlength=n_campaigns)
    del sorted_camp
    keep = order[closed]
    row_id = np.flatnonzero(closed).astype(np.int64)
    p, c, o, t = player[keep], camp[keep], offer[keep], decision_at[closed]
    del player, camp, offer, order, decision_at, keep
    has, o = o >= 0, np.maximum(o, 0)

    first_deposit, after_deposits = activity.deposits.span(p, t, t + window, left_open=True)
    deposited = activity.deposits.total(first_deposit, after_deposits)
    cost = np.where(has, activity.offer_cost[o], 0).astype(np.int64)
    n_none = np.bincount(elig.none_campaign, minlength=n_campaigns)
    n_eligible = np.bincount(campaign[elig.eligible], minlength=n_campaigns) + n_none
    rows = pd.DataFrame(
        {
            "row_id": row_id,
            "campaign_id": c.astype(np.int64) + 1,
            "campaign_at": as_datetime64(offers.campaign_at[c]),
            "player_id": players.ids[p],
            "decision_at": as_datetime64(t),
            "offer_id": _nullable(o_cols["id"][o], has),
            "promotion_id": _nullable(o_cols["promo"][o], has),
            "event_type": np.where(has, offers.event[o], NO_OFFER),
            "reward": np.where(has, np.rint(o_cols["reward"][o]), 0).astype(np.int64),
            "arm": offers.arm_names[np.where(has, offers.arm[o], len(offers.arm_names) - 1)],
            "is_offer": has,
            "dormant": np.where(has, elig.dormant[o], True),
            "eligible": np.where(has, elig.eligible[o], True),
            "n_eligible": n_eligible[c].astype(np.int64),
            "reengaged": activity.sessions.count(p, t, t + window, left_open=True) > 0,
            "converted": after_deposits > first_deposit,
            "deposits": deposited,
            "reward_cost": cost,
            "net_value": biz.margin * deposited - cost,
            "window_end": as_datetime64(t + window),
        }
    )
    return rows, n_open


def build_decisions(
    engine: Engine,
    cfg: Config,
    as_of: datetime | None = None,
    *,
    filters: dict[str, str] | None = None,
    progress: Progress = SILENT,
) -> DecisionSet:
    """One labelled row per decision (offer or rebuilt no-offer) whose window closed by ``as_of``.

    Read (offers and their campaigns, players, sessions, money) -> eligibility -> labels.

    Parameters
    ----------
    engine : Engine
        The platform database (SQLite or PostgreSQL); only read.
    cfg : Config
        Uses ``business`` (dormancy_days, attribution_days, margin) and ``features.campaign_gap_minutes``.
    as_of : datetime, optional
        Offers and players strictly before it are read, sessions and money flows up to it inclusive
        (naive values are UTC). Default: one second
        after the latest valid registration, session, offer or money flow (microseconds dropped),
        as ``rekindle segment`` takes it.
    filters : dict of str to str, optional
        Valid-row conditions per source table, as in :func:`platform_db.filters.valid_rows`.
    progress : core.progress.Progress, optional
        Task "decisions": one unit per name of :data:`STEPS`, as that step ends.

    Returns
    -------
    DecisionSet
        ``rows`` (columns :data:`ROW_COLUMNS`, see the module docstring), ``open_windows`` (rows left
        out because ``window_end > as_of``) and ``campaigns`` (columns :data:`CAMPAIGN_COLUMNS`, every
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
    progress.start("decisions", len(STEPS))

    def step(name: str) -> None:
        progress.advance("decisions", 1, detail=name)

    biz = cfg.business
    until = datetime.max if as_of is None else naive_utc(as_of)  # the default is found in the rows read
    dormancy, window = biz.dormancy_days * US_PER_DAY, biz.attribution_days * US_PER_DAY
    before = "" if as_of is None else f" before {until:%Y-%m-%dT%H:%M:%S}"

    with snapshot(engine, filters) as db:  # every table as of one moment
        offers = read_offers(db, until, cfg.features.campaign_gap_minutes, safe_url(str(engine.url)), before)
        step(STEPS[0])
        players, registered = read_players(db, offers, until)
        step(STEPS[1])
        bounds = decision_bounds(offers, dormancy, window)
        # activity at the as-of instant itself belongs to the windows that end there: read it too
        through = until if as_of is None else until + timedelta(microseconds=1)
        sessions, last_session = read_sessions(db, offers, players, through, bounds, dormancy)
        step(STEPS[2])
        deposits, offer_cost, last_flow = read_money(db, offers, players, through, bounds, window)
        step(STEPS[3])
    activity = _Activity(sessions, deposits, offer_cost)
    latest = max(int(offers.sent[-1]), registered, last_session, last_flow)
    as_of = naive_utc(as_of) if as_of is not None else default_as_of(engine, filters, latest)
    elig = _eligibility(offers, players, activity.sessions, dormancy)
    step(STEPS[4])
    rows, n_open = _label_rows(offers, players, activity, elig, to_us(as_of), cfg)
    step(STEPS[5])
    n_none = np.bincount(elig.none_campaign, minlength=len(offers.first))
    campaigns = _campaign_frame(offers.campaign, offers.sent, offers.event, offers.first, elig.eligible, n_none, n_open)
    return DecisionSet(as_of=as_of, rows=rows, open_windows=int(n_open.sum()), campaigns=campaigns)
