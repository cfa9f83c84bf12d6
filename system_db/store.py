"""The system's own store: tables Rekindle writes (segments, the players' observed attributes; decisions,
outcomes and experiments later), kept apart from the platform's tables.

The platform keeps only the current value of a player's mutable attributes (channel, VIP level,
status). ``player_attributes`` keeps what the system saw and when: one row per player whenever a
value differs from the last one recorded, so features of a past decision read the values known then
(or none, before the first observation) instead of today's.

Embedded default: its own SQLite file under the home. PostgreSQL: the schema
``rekindle`` of the configured database. The platform's tables are never
written by the system.
"""

from __future__ import annotations

import threading
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from platform_db.db import bulk_insert, connect, read_sql

SYSTEM_SCHEMA = "rekindle"


def segments_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "segments",
        md,
        sa.Column("as_of", sa.DateTime, nullable=False, primary_key=True),
        sa.Column("player_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("is_candidate", sa.Boolean, nullable=False),
        sa.Column("is_dormant", sa.Boolean, nullable=False),
        sa.Column("days_idle", sa.Integer, nullable=True),
        sa.Column("dormancy_stage", sa.String(32), nullable=True),
        sa.Column("value_tier", sa.String(32), nullable=False),
        sa.Column("lifetime_deposits", sa.BigInteger, nullable=False),
        sa.Column("deposit_count", sa.Integer, nullable=False),
        sa.Column("claims", sa.Integer, nullable=False),
        sa.Column("bonus_ratio", sa.Float, nullable=True),
        sa.Column("main_game", sa.String(32), nullable=True),
        sa.Column("is_bonus_hunter", sa.Boolean, nullable=False),
        sa.Column("segment", sa.String(64), nullable=False),
    )


MUTABLE = ("channel", "vip_level", "status")  # the players row's attributes the platform overwrites


def attributes_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "player_attributes",
        md,
        sa.Column("observed_at", sa.DateTime, nullable=False, primary_key=True),
        sa.Column("player_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("vip_level", sa.Integer, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
    )


class SystemStore:
    """Tables of the system, created on first use."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = connect(url, must_exist=False)
        self.schema = SYSTEM_SCHEMA if self.engine.dialect.name == "postgresql" else None
        self.metadata = sa.MetaData(schema=self.schema)
        self.segments = segments_table(self.metadata)
        self.attributes = attributes_table(self.metadata)
        self._ensured: set[str] = set()
        self._lock = threading.RLock()

    def ensure(self) -> None:
        """Create the declared tables that are missing, once per table and store (every reader calls this: a
        page of the dashboard, ten times). An index added to an existing table is its owner's to create
        (:class:`system_db.decision_log.DecisionLog` does, IF NOT EXISTS)."""
        with self._lock:  # two threads of one process (a page and the dashboard's warm-up) create a table once
            new = [t for name, t in self.metadata.tables.items() if name not in self._ensured]
            if not new:
                return
            with self.engine.begin() as conn:
                if self.schema:
                    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            self.metadata.create_all(self.engine, tables=new)
            self._ensured.update(t.key for t in new)

    def write_segments(self, frame: pd.DataFrame, as_of: datetime) -> int:
        """Replace the segments of ``as_of`` with ``frame`` in one transaction."""
        self.ensure()
        rows = frame.assign(as_of=pd.Timestamp(as_of))[[c.name for c in self.segments.columns]]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.segments).where(self.segments.c.as_of == as_of))
            if self.schema:  # bulk_insert names the table unqualified
                conn.exec_driver_sql(f'SET LOCAL search_path TO "{self.schema}"')
            return bulk_insert(conn, "segments", rows)

    def read_segments(self, as_of: datetime | None = None) -> pd.DataFrame:
        """The segments of ``as_of`` (default: the latest stored)."""
        self.ensure()
        with self.engine.connect() as conn:
            if as_of is None:
                as_of = conn.execute(sa.select(sa.func.max(self.segments.c.as_of))).scalar()
            if as_of is None:
                return pd.DataFrame(columns=[c.name for c in self.segments.columns])
        return read_sql(self.engine, sa.select(self.segments).where(self.segments.c.as_of == as_of))

    def record_attributes(self, current: pd.DataFrame, observed_at: datetime) -> int:
        """Record ``current`` (``player_id`` and :data:`MUTABLE`, the values the platform holds now) as seen
        at ``observed_at``: a row for each player whose values differ from their latest observation before
        ``observed_at``, or who has none. Observations at ``observed_at`` are replaced (a rebuild). Returns
        the rows written."""
        self.ensure()
        frame = current[["player_id", *MUTABLE]].copy()
        frame["channel"] = frame["channel"].fillna("").astype(str)
        frame["status"] = frame["status"].fillna("").astype(str)
        earlier = self.read_attributes(before=observed_at)
        latest = earlier.drop_duplicates("player_id", keep="last")
        merged = frame.merge(latest, on="player_id", how="left", suffixes=("", "_seen"), indicator=True)
        changed = merged["_merge"] == "left_only"
        for col in MUTABLE:
            a, b = merged[col], merged[f"{col}_seen"]
            changed |= ~((a == b) | (a.isna() & b.isna()))
        rows = frame.loc[changed.to_numpy()].assign(observed_at=pd.Timestamp(observed_at))
        rows = rows[[c.name for c in self.attributes.columns]]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.attributes).where(self.attributes.c.observed_at == observed_at))
            if self.schema:  # bulk_insert names the table unqualified
                conn.exec_driver_sql(f'SET LOCAL search_path TO "{self.schema}"')
            return bulk_insert(conn, "player_attributes", rows)

    def read_attributes(self, *, before: datetime | None = None) -> pd.DataFrame:
        """Every recorded observation (strictly before ``before`` if given), sorted by player and time."""
        self.ensure()
        query = sa.select(self.attributes)
        if before is not None:
            query = query.where(self.attributes.c.observed_at < before)
        out = read_sql(self.engine, query.order_by(self.attributes.c.player_id, self.attributes.c.observed_at))
        out["observed_at"] = pd.to_datetime(out["observed_at"])
        return out
