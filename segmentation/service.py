"""`rekindle segment`: platform database -> valid rows -> segments -> system store and file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config import Config
from platform_db.db import DatabaseError, connect, require_tables, safe_url
from platform_db.filters import valid_rows
from segmentation.classify import summarise
from segmentation.external import SegmentationError
from segmentation.pipeline import check_segments_path, segment_players, write_segments_file
from system_db.store import SystemStore
from validation.checks import filters_for_invalid_rows

EVENT_TIMES = (
    ("players", "createdAt"),
    ("player_sessions", "startedAt"),
    ("promotion_players", "createdAt"),
    ("money_flows", "createdAt"),
)


@dataclass
class SegmentationResult:
    as_of: datetime
    segments: pd.DataFrame
    summary: pd.DataFrame
    excluded: dict[str, int]
    out_path: Path | None
    notes: list[str] = field(default_factory=list)


def event_time_range(engine: Engine, filters: dict[str, str] | None = None) -> tuple[datetime, datetime]:
    """The first registration and the time just after the latest event (valid rows only, when filtered)."""
    latest: list[datetime] = []
    with engine.connect() as conn:
        first = conn.execute(
            sa.text(f'SELECT MIN("createdAt") FROM {valid_rows("players", "t", filters or {})}')
        ).scalar()
        for table, column in EVENT_TIMES:
            value = conn.execute(
                sa.text(f'SELECT MAX("{column}") FROM {valid_rows(table, "t", filters or {})}')
            ).scalar()
            if value is not None:
                latest.append(pd.Timestamp(value).to_pydatetime())
    if first is None or not latest:
        raise DatabaseError(f"{safe_url(str(engine.url))} holds no players: nothing to segment")
    return pd.Timestamp(first).to_pydatetime(), max(latest).replace(microsecond=0) + timedelta(seconds=1)


def segment_and_store(
    config: Config, as_of: datetime | None, out: Path | None, *, now: datetime | None = None
) -> SegmentationResult:
    """Segment every player at ``as_of`` (default: just after the latest valid event),
    leaving out rows the validator marks invalid, write ``out`` (if given), then store.

    Rows count as "in the future" after the later of the clock and ``as_of``, so
    a simulated world ahead of the clock keeps its rows.
    """
    if out is not None:
        check_segments_path(out)
    engine = connect(config.db_url)
    require_tables(engine)
    notes: list[str] = []
    clock = now or datetime.now(UTC).replace(tzinfo=None)
    check_time = max(clock, as_of) if as_of is not None else clock
    filters, excluded = filters_for_invalid_rows(engine, check_time)
    if excluded:
        left_out = ", ".join(f"{t} {n:,}" for t, n in excluded.items())
        notes.append(f"left out invalid rows (see `rekindle validate`): {left_out}")
    else:
        notes.append("no invalid rows to leave out")
    first, after_latest = event_time_range(engine, filters)
    if as_of is None:
        as_of = after_latest
        notes.append(f"--as-of not given: using the time just after the latest valid event, {as_of:%Y-%m-%dT%H:%M:%S}")
    elif as_of <= first:
        raise SegmentationError(
            f"--as-of {as_of:%Y-%m-%dT%H:%M:%S} is before the first player registered ({first:%Y-%m-%dT%H:%M:%S}): "
            "nobody to segment"
        )
    elif as_of > after_latest + timedelta(days=config.business.dormancy_days):
        notes.append(
            f"[yellow]warning:[/] --as-of is {(as_of - after_latest).days} days after the latest event "
            f"({after_latest:%Y-%m-%dT%H:%M:%S}): every player will look dormant"
        )
    segments = segment_players(engine, as_of, config, filters=filters)
    out_path = None
    if out is not None:
        out_path = write_segments_file(segments.assign(as_of=pd.Timestamp(as_of)), out)
        notes.append(f"wrote {out_path}")
    SystemStore(config.system_db_url).write_segments(segments, as_of)
    notes.append(
        f"stored {len(segments):,} rows in {safe_url(config.system_db_url)} (segments, as_of {as_of:%Y-%m-%dT%H:%M:%S})"
    )
    engine.dispose()
    return SegmentationResult(as_of, segments, summarise(segments), excluded, out_path, notes)
