"""What the dashboard's pages show, read from the system store with aggregate queries (the stores hold
millions of rows; the pages get a few dozen)."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from platform_db.db import read_sql
from system_db.decision_log import DecisionLog
from system_db.store import SystemStore


def dormant_by_segment(store: SystemStore) -> pd.DataFrame:
    """The dormant players per segment at the latest segmentation: segment, players (most first)."""
    t = store.segments
    store.ensure()
    latest = sa.select(sa.func.max(t.c.as_of)).scalar_subquery()
    query = (
        sa.select(t.c.segment, sa.func.count().label("players"))
        .where(t.c.as_of == latest, t.c.is_dormant)
        .group_by(t.c.segment)
        .order_by(sa.desc("players"), t.c.segment)
    )
    return read_sql(store.engine, query)


def latest_batch_by_arm(store: SystemStore) -> tuple[pd.Timestamp | None, pd.DataFrame]:
    """The latest batch's time and its decisions per arm: arm, decisions, expected cost and incremental net
    value (KRW, summed)."""
    t = DecisionLog(store).table
    latest = read_sql(store.engine, sa.select(sa.func.max(t.c.decided_at).label("at")).where(t.c.source == "batch"))
    at = latest["at"].iloc[0] if len(latest) else None
    if at is None or pd.isna(at):
        return None, pd.DataFrame(columns=["arm", "decisions", "expected_cost", "incremental_net_value"])
    query = (
        sa.select(
            t.c.event_type, t.c.reward, sa.func.count().label("decisions"),
            sa.func.sum(t.c.expected_cost).label("expected_cost"),
            sa.func.sum(t.c.incremental_net_value).label("incremental_net_value"),
        )
        .where(t.c.source == "batch", t.c.decided_at == at)
        .group_by(t.c.event_type, t.c.reward)
    )  # fmt: skip
    frame = read_sql(store.engine, query)
    pairs = zip(frame["event_type"], frame["reward"], strict=True)
    frame.insert(0, "arm", [e if e == "none" else f"{e}@{int(r)}" for e, r in pairs])
    frame = frame.drop(columns=["event_type", "reward"]).sort_values("decisions", ascending=False)
    return pd.Timestamp(at), frame.fillna(0.0).reset_index(drop=True)
