"""The platform's history as daily facts per player: the one input of every feature family.

Four aggregation queries turn the raw tables into small frames (players, sessions
and money per player and day bucket, offers with their outcomes). The SQL text is
the same on both backends:

- PostgreSQL runs it inside the database and streams only the aggregated rows
  out (``COPY (query) TO STDOUT`` parsed by Arrow's CSV reader);
- SQLite has no such engine, so the needed columns of its rows before the as-of
  time are copied into an in-memory DuckDB under the same table and column names
  (read by :mod:`platform_db.bulk`), and DuckDB runs the SQL.

Day bucket ``d`` of a row at ``ts`` is ``floor((ts - as_of) / 1 day)``, so bucket ``d``
covers ``[as_of + d days, as_of + (d + 1) days)`` and every row before the as-of time
has ``d <= -1``. Only rows strictly before the as-of time are read, and only those of
players registered before it: every ``player_id`` of the facts is in ``players``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from core.config import Config
from core.errors import RekindleError
from core.progress import SILENT, Progress
from core.timeutil import naive_utc
from features.families import OTHER_GAME
from features.families import games as families_games
from platform_db.bulk import Snapshot, local_duckdb, snapshot, ts_literal
from platform_db.db import DatabaseError, require_tables, safe_url
from platform_db.filters import source
from platform_db.schema import SOURCE_TABLES

FACT_STEPS = ("players", "session_days", "money_days", "offers")
"""The frames ``load_facts`` loads, in order (one query and one progress unit each)."""

SORT_KEYS = {
    "players": ("player_id",),
    "session_days": ("player_id", "day"),
    "money_days": ("player_id", "day"),
    "offers": ("offer_id",),
}
_EPOCH = datetime(1970, 1, 1)
MONEY_TYPES = ("deposit", "withdrawal", "bonus")

# The columns each query needs from its source tables; the SQLite path copies exactly these.
_SOURCE_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "players": {
        "id": pa.int64(),
        "createdAt": pa.timestamp("us"),
        "channel": pa.string(),
        "vipLevel": pa.int64(),
        "status": pa.string(),
    },
    "player_sessions": {"playerId": pa.int64(), "startedAt": pa.timestamp("us"), "game": pa.string()},
    "money_flows": {
        "playerId": pa.int64(),
        "type": pa.string(),
        "amount": pa.float64(),
        "createdAt": pa.timestamp("us"),
        "promotionPlayerId": pa.int64(),
    },
    "promotion_players": {
        "id": pa.int64(),
        "promotionId": pa.int64(),
        "playerId": pa.int64(),
        "reward": pa.float64(),
        "createdAt": pa.timestamp("us"),
        "appliedAt": pa.timestamp("us"),
    },
    "promotions": {"id": pa.int64(), "type": pa.string()},
}
# Which source tables each step copies on SQLite (each table once, before the first query that needs it).
_STEP_SOURCES = {
    "players": ("players",),
    "session_days": ("player_sessions",),
    "money_days": ("money_flows",),
    "offers": ("promotion_players", "promotions"),
}
# The time column bounding each copied table by the as-of time (None: copied whole).
_TIME_COLUMN = {
    "players": "createdAt",
    "player_sessions": "startedAt",
    "money_flows": "createdAt",
    "promotion_players": "createdAt",
    "promotions": None,
}


class EmptyHistoryError(RekindleError):
    """No player registered before the as-of time: there is nothing to build features from."""


@dataclass(frozen=True, eq=False)  # frames have no truth value: compare Facts field by field
class Facts:
    """A player history as of ``as_of``, aggregated per player and day bucket (see the module docstring).

    Attributes
    ----------
    as_of : datetime
        Naive UTC. Snapshot ``s`` (an int <= 0) is at ``as_of + s days`` and uses the buckets ``d < s``.
    players : pandas.DataFrame
        ``player_id`` int64, ``created_at`` datetime64[us], ``channel`` object, ``vip_level`` int64,
        ``status`` object; players with ``createdAt < as_of``, sorted by ``player_id``.
    session_days : pandas.DataFrame
        One row per (player_id, day) with a session: ``player_id`` int64, ``day`` int32, ``sessions`` int32,
        ``sessions_<game>`` int32 per configured game, ``sessions_other`` int32 (any other or NULL game),
        ``first_at`` / ``last_at`` datetime64[us]; sorted by (player_id, day).
    money_days : pandas.DataFrame
        One row per (player_id, day) with a deposit, withdrawal or bonus: ``player_id`` int64, ``day`` int32,
        ``deposits_n`` int32, ``deposits_sum`` float64, ``deposit_max`` float64 (NaN without deposit),
        ``withdrawals_n`` int32, ``withdrawals_sum`` float64, ``bonus_sum`` float64, ``last_deposit_at``
        datetime64[us] (NaT without deposit); sorted by (player_id, day).
    offers : pandas.DataFrame
        One row per offer sent before ``as_of``: ``offer_id``, ``player_id``, ``promotion_id`` int64,
        ``sent_at`` datetime64[us], ``event_type`` object, ``reward`` float64, ``claimed_at``,
        ``reengaged_at``, ``converted_at`` datetime64[us] (NaT unless before ``as_of``), ``bonus_paid`` float64,
        ``window_end`` datetime64[us] (``sent_at`` + the attribution window); sorted by ``offer_id``.
    """

    as_of: datetime
    players: pd.DataFrame
    session_days: pd.DataFrame
    money_days: pd.DataFrame
    offers: pd.DataFrame

    @property
    def n_players(self) -> int:
        return len(self.players)


# ------------------------------------------------------------------ the SQL --
def _day_bucket(column: str, as_of: datetime) -> str:
    """floor((column - as_of) / 1 day), exact to the microsecond on both engines.

    ``date_part('epoch', ts)`` is a double on both (PostgreSQL's ``EXTRACT`` gives numeric, twice as slow):
    within 0.12 microseconds of the truth, so rounding the difference to whole microseconds makes it exact,
    and a row exactly at ``as_of + d days`` falls in bucket ``d``.
    """
    seconds = int((as_of - _EPOCH).total_seconds() // 1)
    micros = as_of.microsecond
    diff = f"ROUND((date_part('epoch', {column}) - {seconds}) * 1000000) - {micros}"
    return f"CAST(FLOOR(({diff}) / 86400000000) AS INTEGER)"


def fact_queries(games: list[str], attribution_days: int, as_of: datetime, sources: dict[str, str]) -> dict[str, str]:
    """The four aggregation queries, one per :data:`FACT_STEPS` name.

    Parameters
    ----------
    games : list of str
        The games counted separately (``sessions_<game>``); lower-case identifiers, validated by the config.
    attribution_days : int
        The re-engagement / conversion window after an offer, in days.
    as_of : datetime
        Naive UTC; rendered as a ``TIMESTAMP`` literal (the SQL holds no bind parameters).
    sources : dict of str to str
        The FROM item of each source table (a quoted name or a parenthesised subquery, no alias).

    Returns
    -------
    dict of str to str
        SQL that runs unchanged on PostgreSQL and DuckDB.
    """
    t = ts_literal(as_of)
    window = f"INTERVAL '{int(attribution_days)} days'"
    p, s, mf = sources["players"], sources["player_sessions"], sources["money_flows"]
    pp, pr = sources["promotion_players"], sources["promotions"]
    game = "CAST(s.game AS VARCHAR)"
    per_game = "".join(
        f"CAST(SUM(CASE WHEN {game} = '{g}' THEN 1 ELSE 0 END) AS INTEGER) AS sessions_{g},\n" for g in games
    )
    listed = ", ".join(f"'{g}'" for g in games)
    other = f"SUM(CASE WHEN {game} IN ({listed}) THEN 0 ELSE 1 END)" if games else "COUNT(*)"
    kind = "CAST(mf.type AS VARCHAR)"
    money_types = ", ".join(f"'{m}'" for m in MONEY_TYPES)

    def first_after(source: str, alias: str, column: str, extra: str) -> str:
        return f"""
            SELECT o.id AS id, MIN({alias}."{column}") AS at
            FROM sent o JOIN {source} {alias} ON {alias}."playerId" = o."playerId"
            WHERE {alias}."{column}" > o."createdAt" AND {alias}."{column}" <= o."createdAt" + {window}
              AND {alias}."{column}" < {t}{extra}
            GROUP BY o.id"""

    return {
        "players": f"""
            SELECT CAST(p.id AS BIGINT) AS player_id, p."createdAt" AS created_at,
                   CAST(p.channel AS VARCHAR) AS channel, CAST(p."vipLevel" AS BIGINT) AS vip_level,
                   CAST(p.status AS VARCHAR) AS status
            FROM {p} p
            WHERE p."createdAt" < {t}""",
        "session_days": f"""
            SELECT CAST(s."playerId" AS BIGINT) AS player_id, {_day_bucket('s."startedAt"', as_of)} AS day,
                   CAST(COUNT(*) AS INTEGER) AS sessions,
                   {per_game}CAST({other} AS INTEGER) AS sessions_other,
                   MIN(s."startedAt") AS first_at, MAX(s."startedAt") AS last_at
            FROM {s} s
            WHERE s."startedAt" < {t}
            GROUP BY 1, 2""",
        "money_days": f"""
            SELECT CAST(mf."playerId" AS BIGINT) AS player_id, {_day_bucket('mf."createdAt"', as_of)} AS day,
                   CAST(SUM(CASE WHEN {kind} = 'deposit' THEN 1 ELSE 0 END) AS INTEGER) AS deposits_n,
                   CAST(SUM(CASE WHEN {kind} = 'deposit' THEN mf.amount ELSE 0 END) AS DOUBLE PRECISION)
                       AS deposits_sum,
                   CAST(MAX(CASE WHEN {kind} = 'deposit' THEN mf.amount END) AS DOUBLE PRECISION) AS deposit_max,
                   CAST(SUM(CASE WHEN {kind} = 'withdrawal' THEN 1 ELSE 0 END) AS INTEGER) AS withdrawals_n,
                   CAST(SUM(CASE WHEN {kind} = 'withdrawal' THEN mf.amount ELSE 0 END) AS DOUBLE PRECISION)
                       AS withdrawals_sum,
                   CAST(SUM(CASE WHEN {kind} = 'bonus' THEN mf.amount ELSE 0 END) AS DOUBLE PRECISION) AS bonus_sum,
                   MAX(CASE WHEN {kind} = 'deposit' THEN mf."createdAt" END) AS last_deposit_at
            FROM {mf} mf
            WHERE mf."createdAt" < {t} AND {kind} IN ({money_types})
            GROUP BY 1, 2""",
        # The outcome of an offer is the first session (deposit) in (sent, sent + window], if before as_of:
        # an equality join on the player with a range condition, grouped by offer.
        "offers": f"""
            WITH sent AS (
                SELECT pp.id, pp."playerId", pp."promotionId", pp.reward, pp."createdAt", pp."appliedAt"
                FROM {pp} pp
                WHERE pp."createdAt" < {t}
            ),
            back AS ({first_after(s, "s", "startedAt", "")}),
            paid_in AS ({first_after(mf, "mf", "createdAt", f" AND {kind} = 'deposit'")}),
            bonus AS (
                SELECT mf."promotionPlayerId" AS id, SUM(mf.amount) AS paid
                FROM {mf} mf
                WHERE {kind} = 'bonus' AND mf."createdAt" < {t} AND mf."promotionPlayerId" IS NOT NULL
                GROUP BY mf."promotionPlayerId"
            )
            SELECT CAST(o.id AS BIGINT) AS offer_id, CAST(o."playerId" AS BIGINT) AS player_id,
                   CAST(o."promotionId" AS BIGINT) AS promotion_id, o."createdAt" AS sent_at,
                   CAST(pr.type AS VARCHAR) AS event_type, CAST(o.reward AS DOUBLE PRECISION) AS reward,
                   CASE WHEN o."appliedAt" < {t} THEN o."appliedAt" END AS claimed_at,
                   b.at AS reengaged_at, c.at AS converted_at,
                   CAST(COALESCE(bn.paid, 0) AS DOUBLE PRECISION) AS bonus_paid,
                   o."createdAt" + {window} AS window_end
            FROM sent o
            LEFT JOIN {pr} pr ON pr.id = o."promotionId"
            LEFT JOIN back b ON b.id = o.id
            LEFT JOIN paid_in c ON c.id = o.id
            LEFT JOIN bonus bn ON bn.id = o.id""",
    }


def fact_schemas(games: list[str]) -> dict[str, pa.Schema]:
    """The Arrow schema of each query's result (and so of each frame of :class:`Facts`)."""
    ts, i32, f64, i64, txt = pa.timestamp("us"), pa.int32(), pa.float64(), pa.int64(), pa.string()
    return {
        "players": pa.schema(
            [("player_id", i64), ("created_at", ts), ("channel", txt), ("vip_level", i64), ("status", txt)]
        ),
        "session_days": pa.schema(
            [
                ("player_id", i64),
                ("day", i32),
                ("sessions", i32),
                *[(f"sessions_{g}", i32) for g in [*games, OTHER_GAME]],
                ("first_at", ts),
                ("last_at", ts),
            ]
        ),
        "money_days": pa.schema(
            [
                ("player_id", i64),
                ("day", i32),
                ("deposits_n", i32),
                ("deposits_sum", f64),
                ("deposit_max", f64),
                ("withdrawals_n", i32),
                ("withdrawals_sum", f64),
                ("bonus_sum", f64),
                ("last_deposit_at", ts),
            ]
        ),
        "offers": pa.schema(
            [
                ("offer_id", i64),
                ("player_id", i64),
                ("promotion_id", i64),
                ("sent_at", ts),
                ("event_type", txt),
                ("reward", f64),
                ("claimed_at", ts),
                ("reengaged_at", ts),
                ("converted_at", ts),
                ("bonus_paid", f64),
                ("window_end", ts),
            ]
        ),
    }


def _frame(name: str, table: pa.Table, schema: pa.Schema, players: pa.Array | None) -> pd.DataFrame:
    """Query ``name``'s result typed by ``schema``, restricted to rows of ``players`` (if given), sorted.

    Restricting and sorting here rather than in SQL keeps the queries plain aggregations: with an
    ORDER BY, PostgreSQL walks the (playerId, startedAt) index in player order and reads the heap at random.
    """
    table = table.cast(schema)
    if players is not None:
        table = table.filter(pc.is_in(table["player_id"], value_set=players))
    # NULL ids or VIP levels come only from rows the validator rejects; pandas would turn them into floats.
    nulls = [f.name for f in schema if pa.types.is_integer(f.type) and table[f.name].null_count]
    if nulls:
        raise DatabaseError(
            f"the {name} facts have NULL {nulls}: the platform holds rows the contract forbids; "
            "run `rekindle validate` and leave its invalid rows out"
        )
    # numpy's lexsort is four times faster than Arrow's multi-key sort_by on 17 M rows
    order = np.lexsort([table[k].to_numpy() for k in reversed(SORT_KEYS[name])])
    return table.take(order).to_pandas(split_blocks=True, self_destruct=True)


Fetch = Callable[[str, str, pa.Schema], pa.Table]
"""Runs one named fact query and returns its rows as Arrow with the given schema."""


@contextmanager
def _fetcher(db: Snapshot, as_of: datetime) -> Iterator[Fetch]:
    """PostgreSQL runs the queries itself; SQLite's needed rows are copied into DuckDB, which runs them."""
    if db.dialect == "postgresql":
        yield lambda name, sql, schema: db.query(sql, schema, f"the {name} facts")
        return
    with local_duckdb() as con:

        def fetch(name: str, sql: str, schema: pa.Schema) -> pa.Table:
            for table in _STEP_SOURCES[name]:
                columns = {c: (f'"{c}"', t) for c, t in _SOURCE_COLUMNS[table].items()}
                con.register(table, db.table(table, columns, _sqlite_bounds(table, as_of)))
            return con.sql(sql).to_arrow_table()

        yield fetch


def _sqlite_bounds(table: str, as_of: datetime) -> list[str]:
    """What keeps the rows of ``table`` the queries can use (the reader adds the valid-row filter)."""
    where = []
    time_column = _TIME_COLUMN[table]
    if time_column is not None:
        # Text comparison is exact on the canonical format and keeps a superset otherwise;
        # DuckDB compares the parsed timestamps again.
        where.append(f"\"{time_column}\" < '{as_of:%Y-%m-%d %H:%M:%S.%f}'")
    if table == "money_flows":
        where.append("type IN (" + ", ".join(f"'{m}'" for m in MONEY_TYPES) + ")")
    return where


# ------------------------------------------------------------------- public --
def load_facts(
    engine: Engine,
    cfg: Config,
    as_of: datetime,
    *,
    filters: dict[str, str] | None = None,
    progress: Progress = SILENT,
) -> Facts:
    """Aggregate the platform's history strictly before ``as_of`` into :class:`Facts`.

    Parameters
    ----------
    engine : Engine
        The platform database (SQLite or PostgreSQL).
    cfg : Config
        Uses ``cfg.features.games`` (set: the platform's games, :mod:`features.vocabulary`) and
        ``cfg.business.attribution_days``.
    as_of : datetime
        UTC (naive values are taken as UTC). Rows at or after it are ignored.
    filters : dict of str to str, optional
        Maps a source table to a SQL boolean expression (in the database's dialect) true for its
        valid rows, from the validation step; each table is read as ``SELECT * FROM table WHERE expr``.
    progress : core.progress.Progress, optional
        Task "load facts": one unit per name of :data:`FACT_STEPS`, as that frame is loaded.

    Returns
    -------
    Facts
        The four frames, typed and sorted as documented on :class:`Facts`.

    Raises
    ------
    ValueError
        If ``filters`` names a table that is not a source table.
    platform_db.db.DatabaseError
        If the database lacks a source table, or (SQLite) holds values that are not of the contract's types.
    EmptyHistoryError
        If no player registered before ``as_of``.
    """
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(SOURCE_TABLES))
    if unknown:
        raise ValueError(f"filters name unknown tables {unknown}; expected some of {list(SOURCE_TABLES)}")
    require_tables(engine, SOURCE_TABLES)
    moment = naive_utc(as_of)
    games = families_games(cfg)
    schemas = fact_schemas(games)
    attribution = cfg.business.attribution_days
    # PostgreSQL reads each table through its valid-row filter; on SQLite the copies into DuckDB are filtered
    quoted = {t: (source(t, filters) if engine.dialect.name == "postgresql" else f'"{t}"') for t in SOURCE_TABLES}
    queries = fact_queries(games, attribution, moment, quoted)
    frames: dict[str, pd.DataFrame] = {}
    progress.start("load facts", len(FACT_STEPS))
    with snapshot(engine, filters) as db, _fetcher(db, moment) as fetch:
        for name in FACT_STEPS:
            table = fetch(name, queries[name], schemas[name])
            if name == "players":
                if table.num_rows == 0:  # before the expensive queries
                    raise EmptyHistoryError(
                        f"no players registered before {moment:%Y-%m-%dT%H:%M:%S} in {safe_url(str(engine.url))}: "
                        "nothing to build features from"
                    )
                known = table["player_id"].cast(pa.int64()).combine_chunks()
            frames[name] = _frame(name, table, schemas[name], None if name == "players" else known)
            progress.advance("load facts", 1, detail=name)
    return Facts(as_of=moment, **frames)
