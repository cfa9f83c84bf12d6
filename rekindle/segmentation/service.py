"""`rekindle segment`: platform database -> valid rows -> segments -> system store and file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rekindle.config import Config
from rekindle.platform.db import DatabaseError, connect, require_tables, safe_url
from rekindle.segmentation.classify import summarise
from rekindle.segmentation.pipeline import segment_players, write_segments_file
from rekindle.store import SystemStore
from rekindle.validation.checks import excluded_counts, row_filters

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


def latest_event_time(engine: Engine) -> datetime:
    """The time just after the latest event in the platform database."""
    latest: list[datetime] = []
    with engine.connect() as conn:
        for table, column in EVENT_TIMES:
            value = conn.execute(sa.text(f'SELECT MAX("{column}") FROM "{table}"')).scalar()
            if value is not None:
                latest.append(pd.Timestamp(value).to_pydatetime())
    if not latest:
        raise DatabaseError(
            f"{safe_url(str(engine.url))} holds no events: nothing to segment (pass --as-of or fill the database)"
        )
    return max(latest).replace(microsecond=0) + timedelta(seconds=1)


def segment_and_store(
    config: Config, as_of: datetime | None, out: Path | None, *, now: datetime | None = None
) -> SegmentationResult:
    """Segment every player at ``as_of`` (default: just after the latest event),
    leaving out rows the validator marks invalid, and store the result."""
    engine = connect(config.db_url)
    require_tables(engine)
    notes: list[str] = []
    if as_of is None:
        as_of = latest_event_time(engine)
        notes.append(f"--as-of not given: using the time just after the latest event, {as_of:%Y-%m-%dT%H:%M:%S}")
    check_time = now or datetime.now(UTC).replace(tzinfo=None)
    excluded = {t: n for t, n in excluded_counts(engine, check_time).items() if n}
    filters = None  # filtering costs several times the segmentation itself: only when there is something to leave out
    if excluded:
        filters = row_filters(engine, check_time)
        left_out = ", ".join(f"{t} {n:,}" for t, n in excluded.items())
        notes.append(f"left out invalid rows (see `rekindle validate`): {left_out}")
    else:
        notes.append("no invalid rows to leave out")
    segments = segment_players(engine, as_of, config, filters=filters)
    store = SystemStore(config.system_db_url)
    store.write_segments(segments, as_of)
    notes.append(
        f"stored {len(segments):,} rows in {safe_url(config.system_db_url)} (segments, as_of {as_of:%Y-%m-%dT%H:%M:%S})"
    )
    out_path = None
    if out is not None:
        out_path = write_segments_file(segments.assign(as_of=pd.Timestamp(as_of)), out)
        notes.append(f"wrote {out_path}")
    engine.dispose()
    return SegmentationResult(as_of, segments, summarise(segments), excluded, out_path, notes)
