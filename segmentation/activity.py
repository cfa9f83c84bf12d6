"""Per-player activity as of a time, aggregated inside the platform database.

Every query groups by ``"playerId"`` in SQL, so only one row per player (plus
the rare tied main game) crosses the wire: the raw sessions, payments and
claims never reach pandas. The SQL is plain enough to run unchanged on SQLite
and PostgreSQL. Only rows strictly before the as-of time count.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.timeutil import naive_utc
from platform_db.db import require_tables, ts_param
from platform_db.filters import valid_rows
from platform_db.schema import SOURCE_TABLES

ACTIVITY_COLUMNS = (
    "player_id",
    "created_at",
    "status",
    "last_session",
    "main_game",
    "lifetime_deposits",
    "deposit_count",
    "bonus_paid",
    "claims",
)
"""The columns of :func:`load_player_activity`'s frame, the input of ``classify``."""

READ_TABLES = ("players", "player_sessions", "promotion_players", "money_flows")


def _queries(filters: dict[str, str]) -> dict[str, str]:
    players = valid_rows("players", "p", filters)
    sessions = valid_rows("player_sessions", "s", filters)
    flows = valid_rows("money_flows", "mf", filters)
    claims = valid_rows("promotion_players", "pp", filters)
    return {
        "players": f"""
            SELECT p.id AS player_id, p."createdAt" AS created_at, p.status AS status
            FROM {players}
            WHERE p."createdAt" < :as_of
        """,
        # One scan of the sessions: counts per (player, game), then window functions
        # keep the most played game(s) and the last session of each player. Ties are
        # returned and broken in pandas, so the order does not depend on a collation.
        # Grouping by game first lets SQLite scan the table instead of walking the
        # (playerId, startedAt) index with a table lookup per row (twice as fast).
        "sessions": f"""
            WITH per_game AS (
                SELECT s."playerId" AS player_id, s.game AS game,
                       COUNT(*) AS n, MAX(s."startedAt") AS last_at
                FROM {sessions}
                WHERE s."startedAt" < :as_of
                GROUP BY s.game, s."playerId"
            ), ranked AS (
                SELECT player_id, game, n, last_at,
                       MAX(n) OVER (PARTITION BY player_id) AS top_n,
                       MAX(last_at) OVER (PARTITION BY player_id) AS last_session
                FROM per_game
            )
            SELECT player_id, game AS main_game, last_session
            FROM ranked
            WHERE n = top_n
        """,
        # Up to two rows per player (deposit, bonus), pivoted in pandas; type first
        # for the same reason as above.
        "money": f"""
            SELECT mf.type AS type, mf."playerId" AS player_id,
                   CAST(SUM(mf.amount) AS BIGINT) AS amount, COUNT(*) AS n
            FROM {flows}
            WHERE mf."createdAt" < :as_of AND mf.type IN ('deposit', 'bonus')
            GROUP BY mf.type, mf."playerId"
        """,
        "claims": f"""
            SELECT pp."playerId" AS player_id, COUNT(*) AS claims
            FROM {claims}
            WHERE pp."appliedAt" < :as_of
            GROUP BY pp."playerId"
        """,
    }


def _fetch(conn: sa.Connection, query: str, as_of: datetime | str) -> pd.DataFrame:
    result = conn.execute(sa.text(query), {"as_of": as_of})
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _timestamps(values: pd.Series) -> pd.Series:
    # SQLite returns the stored text, PostgreSQL datetimes; both parse here.
    return pd.to_datetime(values, format="ISO8601") if len(values) else pd.Series(values, dtype="datetime64[ns]")


def load_player_activity(
    engine: Engine,
    as_of: datetime,
    *,
    filters: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Aggregate each player's history strictly before ``as_of``.

    Parameters
    ----------
    engine : Engine
        The platform database (SQLite or PostgreSQL).
    as_of : datetime
        The time of the segmentation (UTC; naive values are taken as UTC).
        Players created at or after it are left out; rows at or after it are ignored.
    filters : dict of str to str, optional
        Maps a source table to a SQL boolean expression true for its valid rows
        (from the validation step); each table is read through
        ``SELECT * FROM table WHERE expr``. Tables not named are read whole.

    Returns
    -------
    pandas.DataFrame
        One row per player, sorted by ``player_id``, with the columns of
        :data:`ACTIVITY_COLUMNS`: ``created_at`` and ``last_session``
        (NaT without a session) as datetime64, ``main_game`` (the most played
        game, ties to the first by code point; None without a session), and
        integer ``lifetime_deposits``, ``deposit_count``, ``bonus_paid``, ``claims``.

    Raises
    ------
    ValueError
        If ``filters`` names a table that is not a source table.
    platform_db.db.DatabaseError
        If the database lacks one of :data:`READ_TABLES`.
    """
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(SOURCE_TABLES))
    if unknown:
        raise ValueError(f"filters name unknown tables {unknown}; expected some of {list(SOURCE_TABLES)}")
    require_tables(engine, READ_TABLES)
    moment = ts_param(engine, naive_utc(as_of))
    queries = _queries(filters)
    with engine.connect() as conn:
        frames = {name: _fetch(conn, sql, moment) for name, sql in queries.items()}

    players = frames["players"].astype({"player_id": "int64"})
    players["created_at"] = _timestamps(players["created_at"])

    sessions = frames["sessions"]
    sessions["last_session"] = _timestamps(sessions["last_session"])
    sessions = (
        sessions.astype({"player_id": "int64", "main_game": object})
        .sort_values(["player_id", "main_game"], kind="stable")
        .drop_duplicates("player_id", keep="first")
    )

    money = frames["money"].astype({"player_id": "int64"})
    deposits = money.loc[money["type"] == "deposit", ["player_id", "amount", "n"]].rename(
        columns={"amount": "lifetime_deposits", "n": "deposit_count"}
    )
    bonus = money.loc[money["type"] == "bonus", ["player_id", "amount"]].rename(columns={"amount": "bonus_paid"})
    claims = frames["claims"].astype({"player_id": "int64"})
    out = (
        players.merge(sessions, on="player_id", how="left")
        .merge(deposits, on="player_id", how="left")
        .merge(bonus, on="player_id", how="left")
        .merge(claims, on="player_id", how="left")
    )
    counts = ["lifetime_deposits", "deposit_count", "bonus_paid", "claims"]
    out[counts] = out[counts].apply(pd.to_numeric).fillna(0).astype("int64")
    out["main_game"] = out["main_game"].astype(object).where(out["main_game"].notna(), None)
    out["last_session"] = pd.to_datetime(out["last_session"])
    return out.sort_values("player_id", ignore_index=True)[list(ACTIVITY_COLUMNS)]
