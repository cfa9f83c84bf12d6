"""``rekindle feedback``: the outcome of every logged decision once its attribution window has closed.

Reads the decision log (system store) and the platform's offers, sessions and money flows; attributes them
(:mod:`monitoring.attribution`); writes one row per decision to the outcomes table
(:mod:`system_db.outcomes`), a chunk of decisions per transaction, oldest first.

A decision is measured once the platform's clock (``as_of``: by default one second after its latest row;
the platform's rows before it are taken as complete) has reached the end of its window: ``sent_at +
window`` for a sent offer, ``decided_at + max(window, send_within)`` otherwise (its send could still have
come). Until then it waits, and the run says how many wait. What decides an outcome lies before that end
(its events, its send, the sends of its player's other decisions that could take its events), so an
outcome never changes once written: running twice adds nothing, and a run after a crash measures what the
crashed one had not committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from core.timeutil import utc_now
from features.decision_reads import Activity, read_activity
from features.timeline import as_datetime64
from monitoring.attribution import attribute, match_sends
from monitoring.roi import CELL_COLUMNS, pooled_accuracy, roi_cells, weekly
from monitoring.roi_plot import plot_roi
from platform_db.bulk import snapshot
from platform_db.db import connect, read_sql
from platform_db.filters import valid_rows
from system_db.outcomes import Outcomes
from system_db.store import SystemStore
from validation.checks import filters_for_invalid_rows

CLOCK_COLUMNS = (("player_sessions", "startedAt"), ("promotion_players", "createdAt"), ("money_flows", "createdAt"))


@dataclass(frozen=True)
class FeedbackRun:
    as_of: datetime  # the platform's clock the run measured against
    measured: int  # outcomes this run added
    offers_not_sent: int  # of them, offer decisions the platform has no matching send for
    waiting: int  # decisions whose window has not closed yet (or whose send may still come)
    chunks: int
    cells: pd.DataFrame  # realised against predicted per (segment, arm) cell over every outcome (monitoring.roi)
    accuracy: float | None  # pooled over the reliable cells
    weeks: pd.DataFrame
    plot: Path | None


def platform_clock(cfg: Config, filters: dict[str, str] | None = None) -> datetime:
    """One second after the platform's latest session start, offer or money flow."""
    engine = connect(cfg.db_url)
    latest = []
    for table, column in (
        ("player_sessions", "startedAt"),
        ("promotion_players", "createdAt"),
        ("money_flows", "createdAt"),
    ):
        got = read_sql(engine, f'SELECT MAX(t."{column}") AS m FROM {valid_rows(table, "t", filters or {})}')["m"].iloc[
            0
        ]
        if got is not None and not pd.isna(got):
            latest.append(pd.Timestamp(got).to_pydatetime())
    if not latest:
        raise ValueError("the platform database has no sessions, offers or money flows to measure decisions by")
    return max(latest).replace(microsecond=0) + timedelta(seconds=1)


def _frames(activity: Activity) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    o, s, d, b = activity.offers, activity.sessions, activity.deposits, activity.bonuses
    offers = pd.DataFrame(
        {
            "id": o["id"],
            "player_id": o["player"],
            "sent_at": as_datetime64(o["sent"]),
            "event_type": o["event"],
            "reward": np.rint(o["reward"]).astype(np.int64),
        }
    )
    sessions = pd.DataFrame({"player_id": s["player"], "at": as_datetime64(s["at"])})
    deposits = pd.DataFrame({"player_id": d["player"], "at": as_datetime64(d["at"]), "amount": d["amount"]})
    bonuses = pd.DataFrame({"offer_id": b["offer"], "at": as_datetime64(b["at"]), "amount": b["amount"]})
    return offers, sessions, deposits, bonuses


def run_feedback(
    cfg: Config, as_of: datetime | None = None, *, row_checks: bool = True, progress: Progress = SILENT
) -> FeedbackRun:
    """Measure every decision whose window has closed by ``as_of`` (default: :func:`platform_clock`).

    Progress: task "decisions measured", one unit per decision."""
    engine = connect(cfg.db_url)
    as_of = as_of or platform_clock(cfg)
    filters = filters_for_invalid_rows(engine, max(as_of, utc_now()))[0] if row_checks else None
    window = timedelta(days=cfg.business.attribution_days)
    send_within = timedelta(hours=cfg.feedback.send_within_hours)
    reach = window + send_within  # how far after a decision its events can lie
    outcomes = Outcomes(SystemStore(cfg.system_db_url))
    pending = outcomes.pending(as_of - window + timedelta(microseconds=1))  # windows that may have closed
    measured = not_sent = chunks = 0
    task = "decisions measured"
    progress.start(task, len(pending))
    for start in range(0, len(pending), cfg.feedback.chunk_decisions):
        chunk = pending.iloc[start : start + cfg.feedback.chunk_decisions]
        t0, t1 = chunk["decided_at"].min().to_pydatetime(), chunk["decided_at"].max().to_pydatetime()
        around = outcomes.decisions_between(t0 - reach, t1 + reach)
        with snapshot(engine, filters) as db:
            # from the earliest neighbour on: an earlier offer's send decides which events it keeps
            activity = read_activity(db, t0 - reach, t1 + reach + timedelta(microseconds=1))
        offers, sessions, deposits, bonuses = _frames(activity)
        matched = match_sends(around, offers, pd.Timedelta(send_within))
        got = attribute(matched, sessions, deposits, bonuses, window=pd.Timedelta(window), margin=cfg.business.margin)
        got = got[got["decision_id"].isin(set(chunk["decision_id"]))]
        decided = got["decision_id"].map(chunk.set_index("decision_id")["decided_at"])
        closed_at = np.where(got["sent"], got["window_end"], decided + max(window, send_within))
        got = got[pd.to_datetime(closed_at) <= pd.Timestamp(as_of)]
        added = outcomes.write(got, as_of)
        measured += added
        is_offer = chunk.set_index("decision_id")["event_type"] != "none"
        not_sent += int((is_offer.reindex(got["decision_id"]).to_numpy() & ~got["sent"].to_numpy()).sum())
        chunks += 1
        progress.advance(task, len(chunk))
    everything = outcomes.read()
    cells = roi_cells(everything) if len(everything) else pd.DataFrame(columns=CELL_COLUMNS)
    weeks = weekly(everything) if len(everything) else pd.DataFrame()
    outcomes.write_cells(cells, as_of)
    plot = plot_roi(cells, weeks, cfg.path("feedback", f"roi-{as_of:%Y%m%dT%H%M%S}.png")) if len(cells) else None
    accuracy = pooled_accuracy(cells[cells["reliable"].astype(bool)]) if len(cells) else None
    return FeedbackRun(as_of, measured, not_sent, outcomes.count_waiting(), chunks, cells, accuracy, weeks, plot)
