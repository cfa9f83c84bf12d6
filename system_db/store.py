"""The system's own store: tables Rekindle writes (segments now; decisions,
outcomes and experiments later), kept apart from the platform's tables.

Embedded default: its own SQLite file under the home. PostgreSQL: the schema
``rekindle`` of the configured database. The platform's tables are never
written by the system.
"""

from __future__ import annotations

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


class SystemStore:
    """Tables of the system, created on first use."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = connect(url, must_exist=False)
        self.schema = SYSTEM_SCHEMA if self.engine.dialect.name == "postgresql" else None
        self.metadata = sa.MetaData(schema=self.schema)
        self.segments = segments_table(self.metadata)

    def ensure(self) -> None:
        with self.engine.begin() as conn:
            if self.schema:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        self.metadata.create_all(self.engine)

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
