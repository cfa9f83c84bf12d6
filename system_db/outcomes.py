"""The outcomes of decisions: one row per decision whose attribution window has closed, written by
``rekindle feedback`` (:mod:`monitoring.feedback`) and never changed afterwards.

The primary key is the decision id and rows are inserted with ON CONFLICT DO NOTHING, in one transaction
per chunk: a second run, or two at once, or a run after a crash, adds each outcome exactly once.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from platform_db.db import read_sql
from system_db.decision_log import DecisionLog, upsert_insert
from system_db.store import SystemStore

CONTEXT_COLUMNS = ["decision_id", "player_id", "decided_at", "event_type", "reward"]
ASSIGNED = ["player_id", "decided_at", "event_type", "reward", "propensity", "variant"]  # Outcomes.assignments


def outcomes_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outcomes",
        md,
        sa.Column("decision_id", sa.String(36), primary_key=True),
        sa.Column("sent", sa.Boolean, nullable=False),  # an offer the platform sent (False for no offer)
        sa.Column("offer_id", sa.BigInteger, nullable=True),  # the platform's promotion_players.id
        sa.Column("measured_from", sa.DateTime, nullable=False),  # the send time, or the decision time
        sa.Column("window_end", sa.DateTime, nullable=False),
        sa.Column("reengaged", sa.Boolean, nullable=False),
        sa.Column("converted", sa.Boolean, nullable=False),
        sa.Column("deposits", sa.BigInteger, nullable=False),
        sa.Column("reward_cost", sa.BigInteger, nullable=False),
        sa.Column("net_value", sa.Float, nullable=False),
        sa.Column("measured_at", sa.DateTime, nullable=False),  # the platform's as-of time of the run
        keep_existing=True,
    )


def roi_cells_table(md: sa.MetaData) -> sa.Table:
    """Realised against predicted per (segment, arm) cell, as each feedback run found it (monitoring.roi)."""
    return sa.Table(
        "roi_cells",
        md,
        sa.Column("measured_at", sa.DateTime, primary_key=True),
        sa.Column("segment", sa.String(64), primary_key=True),
        sa.Column("arm", sa.String(130), primary_key=True),
        sa.Column("n_offered", sa.BigInteger, nullable=False),
        sa.Column("n_control", sa.BigInteger, nullable=False),
        sa.Column("predicted", sa.Float, nullable=False),
        sa.Column("realised", sa.Float, nullable=False),
        sa.Column("se", sa.Float, nullable=False),
        sa.Column("predicted_cost", sa.Float, nullable=True),
        sa.Column("realised_cost", sa.Float, nullable=True),
        sa.Column("accuracy", sa.Float, nullable=True),
        sa.Column("reliable", sa.Boolean, nullable=False),
        keep_existing=True,
    )


class Outcomes:
    """The outcomes table, beside the decision log it refers to."""

    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.log = DecisionLog(store)
        self.table = outcomes_table(store.metadata)
        self.cells = roi_cells_table(store.metadata)
        store.ensure()

    def pending(self, decided_before: datetime) -> pd.DataFrame:
        """Decisions made before ``decided_before`` that have no outcome yet (:data:`CONTEXT_COLUMNS`), oldest
        first."""
        d, o = self.log.table, self.table
        query = (
            sa.select(*(d.c[c] for c in CONTEXT_COLUMNS))
            .select_from(d.outerjoin(o, o.c.decision_id == d.c.decision_id))
            .where(o.c.decision_id.is_(None), d.c.decided_at < decided_before)
            .order_by(d.c.decided_at, d.c.decision_id)
        )
        return _typed(read_sql(self.store.engine, query))

    def count_waiting(self) -> int:
        """Decisions without an outcome, whatever their time."""
        d, o = self.log.table, self.table
        query = sa.select(sa.func.count()).select_from(d.outerjoin(o, o.c.decision_id == d.c.decision_id))
        with self.store.engine.connect() as conn:
            return int(conn.execute(query.where(o.c.decision_id.is_(None))).scalar_one())

    def decisions_between(self, since: datetime, until: datetime) -> pd.DataFrame:
        """Every decision made in ``[since, until)`` (:data:`CONTEXT_COLUMNS`): the neighbours an event is
        attributed among."""
        d = self.log.table
        query = sa.select(*(d.c[c] for c in CONTEXT_COLUMNS)).where(d.c.decided_at >= since, d.c.decided_at < until)
        return _typed(read_sql(self.store.engine, query))

    def write(self, frame: pd.DataFrame, measured_at: datetime) -> int:
        """Insert these outcomes in one transaction; those already there are left as they are. Returns how
        many were new."""
        if frame.empty:
            return 0
        rows = frame.astype(object).where(frame.notna(), None)
        rows["measured_at"] = measured_at
        insert = (
            upsert_insert(self.table, self.store.engine.dialect.name)
            .on_conflict_do_nothing(index_elements=["decision_id"])
            .returning(self.table.c.decision_id)
        )
        with self.store.engine.begin() as conn:
            added = conn.execute(insert, [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")])
            return len(added.all())

    def write_cells(self, cells: pd.DataFrame, measured_at: datetime) -> int:
        """Replace the cells of ``measured_at`` with these, in one transaction."""
        rows = cells.assign(measured_at=measured_at)[[c.name for c in self.cells.columns]]
        rows = rows.astype(object).where(rows.notna(), None)
        with self.store.engine.begin() as conn:
            conn.execute(sa.delete(self.cells).where(self.cells.c.measured_at == measured_at))
            if len(rows):
                conn.execute(
                    sa.insert(self.cells), [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]
                )
        return len(rows)

    def read_cells(self) -> pd.DataFrame:
        """Every run's cells, oldest first."""
        c = self.cells
        return read_sql(self.store.engine, sa.select(c).order_by(c.c.measured_at, c.c.segment, c.c.arm))

    def assignments(self, since: datetime, until: datetime) -> pd.DataFrame:
        """Decisions made in ``[since, until]`` that have an outcome: player, time, arm, the propensity logged
        with it, and whether (and as which platform offer) it was sent; what the evaluation needs to use the
        logged propensities (:mod:`training.logged_propensity`); ``variant``, the experiment's (or None)."""
        d, o = self.log.table, self.table
        query = (
            sa.select(*(d.c[c] for c in ASSIGNED), o.c.sent, o.c.offer_id)
            .select_from(o.join(d, d.c.decision_id == o.c.decision_id))
            .where(d.c.decided_at >= since, d.c.decided_at <= until)
        )
        frame = read_sql(self.store.engine, query)
        return _typed(frame).astype({"propensity": "float64", "sent": bool, "offer_id": "Int64"})

    def read(self) -> pd.DataFrame:
        """Every outcome with its decision's columns (segment, arm, propensity, predictions, versions)."""
        d, o = self.log.table, self.table
        cols = [c for c in d.c if c.name not in ("response", "decision_id")]
        query = sa.select(o, *cols).select_from(o.join(d, d.c.decision_id == o.c.decision_id))
        return read_sql(self.store.engine, query.order_by(d.c.decided_at, o.c.decision_id))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"player_id": "int64", "reward": "int64", "event_type": object}).assign(
        decided_at=pd.to_datetime(frame["decided_at"])
    )
