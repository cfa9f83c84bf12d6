"""Segment names from an external table (``segmentation.source: external``).

A CRM or a data team may own the segmentation. The external table only has
to map a player id to a segment name; everything else Rekindle needs (status,
dormancy, candidacy, value, behaviour) is still computed from the platform
database, so the safety rules hold whatever the table says:

- players in the table (and of active status) take the table's segment name;
- players missing from it, and every non-active player, keep the computed
  name ("self-excluded" and "blocked" are never renamed);
- rows for ids that are not players at the as-of time are ignored.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config import Config
from core.errors import RekindleError
from platform_db.db import connect, read_sql, safe_url
from segmentation.activity import load_player_activity
from segmentation.classify import ACTIVE_STATUS, SEGMENT_COLUMNS, classify

SEGMENT_NAME_MAX = 64  # the width of segments.segment in the system store


class SegmentationError(RekindleError, ValueError):
    """The segmentation cannot be produced as configured (e.g. a bad external table)."""


def _split_table(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def _examples(values: pd.Series, k: int = 5) -> list:
    return values.drop_duplicates().head(k).tolist()


def _clean(raw: pd.DataFrame, where: str) -> pd.DataFrame:
    """Valid (player_id, segment) rows: rows with a missing value are dropped, bad ids raise."""
    frame = raw.dropna(subset=["player_id", "segment"])
    frame = frame.assign(segment=frame["segment"].astype(str).str.strip())
    frame = frame.loc[frame["segment"] != ""]
    ids = pd.to_numeric(frame["player_id"], errors="coerce")
    bad = frame.loc[ids.isna() | (ids % 1 != 0), "player_id"]
    if not bad.empty:
        raise SegmentationError(f"{where} has player ids that are not integers, e.g. {_examples(bad)}")
    frame = frame.assign(player_id=ids.astype("int64"))
    dupes = frame.loc[frame["player_id"].duplicated(), "player_id"]
    if not dupes.empty:
        raise SegmentationError(f"{where} lists players more than once, e.g. player ids {_examples(dupes)}")
    long = frame.loc[frame["segment"].str.len() > SEGMENT_NAME_MAX, "segment"]
    if not long.empty:
        raise SegmentationError(
            f"{where} has segment names longer than {SEGMENT_NAME_MAX} characters, e.g. {_examples(long, 1)}"
        )
    return frame[["player_id", "segment"]].reset_index(drop=True)


def load_external_table(config: Config, *, platform: Engine | None = None) -> pd.DataFrame:
    """Read ``segmentation.external.table`` as (player_id, segment) pairs.

    Parameters
    ----------
    config : Config
        ``segmentation.external`` names the table (``schema.table`` allowed),
        its database (``url``; None means the platform database) and the
        player and segment columns.
    platform : Engine, optional
        An open engine on the platform database, used when ``external.url`` is
        None (otherwise ``config.db_url`` is connected).

    Returns
    -------
    pandas.DataFrame
        Columns ``player_id`` (int64, unique) and ``segment`` (str). Rows with
        a missing id or segment are left out.

    Raises
    ------
    SegmentationError
        If no table is configured, the table or a column is missing, an id is
        not an integer, a player appears twice or a name is too long.
    """
    ext = config.segmentation.external
    if not ext.table:
        raise SegmentationError("segmentation.external.table is not set; name the table holding the segments")
    own = platform is None or ext.url is not None
    engine = platform if platform is not None and ext.url is None else connect(ext.url or config.db_url)
    where = f"the external segment table {ext.table!r} in {safe_url(str(engine.url))}"
    try:
        schema, name = _split_table(ext.table)
        inspector = sa.inspect(engine)
        if not inspector.has_table(name, schema=schema):
            raise SegmentationError(f"{where} does not exist (set segmentation.external.table/url)")
        columns = [c["name"] for c in inspector.get_columns(name, schema=schema)]
        wanted = {"player_column": ext.player_column, "segment_column": ext.segment_column}
        missing = {key: col for key, col in wanted.items() if col not in columns}
        if missing:
            named = ", ".join(f"{col!r} (segmentation.external.{key})" for key, col in missing.items())
            raise SegmentationError(f"{where} has no column {named}; its columns are {columns}")
        table = sa.table(name, sa.column(ext.player_column), sa.column(ext.segment_column), schema=schema)
        query = sa.select(table.c[ext.player_column].label("player_id"), table.c[ext.segment_column].label("segment"))
        raw = read_sql(engine, query)
    finally:
        if own:
            engine.dispose()
    return _clean(raw, where)


def overlay_external(computed: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """Replace computed segment names by the external ones (active players only).

    Parameters
    ----------
    computed : pandas.DataFrame
        A computed segmentation (:data:`SEGMENT_COLUMNS`).
    external : pandas.DataFrame
        ``player_id`` and ``segment`` from :func:`load_external_table`.

    Returns
    -------
    pandas.DataFrame
        ``computed`` with ``segment`` taken from ``external`` for the active
        players it lists; every other column is unchanged.
    """
    named = computed["player_id"].map(external.set_index("player_id")["segment"])
    use = named.notna() & (computed["status"] == ACTIVE_STATUS)
    out = computed.copy()
    out["segment"] = named.where(use, computed["segment"]).astype(object)
    return out[list(SEGMENT_COLUMNS)]


def read_external_segments(
    config: Config,
    as_of: datetime,
    *,
    engine: Engine | None = None,
    filters: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The segmentation at ``as_of`` with the segment names of the external table.

    The external table is read first (it is cheap and fails fast); the other
    columns are computed from the platform database as in
    :func:`~segmentation.segment_players`.

    Parameters
    ----------
    config : Config
        The configuration; ``segmentation.external`` says where the table is.
    as_of : datetime
        The time of the segmentation (UTC).
    engine : Engine, optional
        The platform database; ``config.db_url`` is connected when None.
    filters : dict of str to str, optional
        Valid-row filters per source table, see ``load_player_activity``.

    Returns
    -------
    pandas.DataFrame
        One row per player existing at ``as_of``, columns :data:`SEGMENT_COLUMNS`.

    Raises
    ------
    SegmentationError
        If the external table cannot be used (see :func:`load_external_table`).
    """
    platform = engine if engine is not None else connect(config.db_url)
    try:
        external = load_external_table(config, platform=platform)
        activity = load_player_activity(platform, as_of, filters=filters)
    finally:
        if engine is None:
            platform.dispose()
    computed = classify(activity, as_of, config.business, config.segmentation)
    return overlay_external(computed, external)
