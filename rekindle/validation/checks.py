"""Contract and data checks of the platform database, run as SQL inside it.

Each check counts offending rows with one SQL query (no table is loaded into
memory) and fetches at most :data:`EXAMPLES` of them. Contract checks (tables,
columns, types) come first; a data check whose columns are missing or wrongly
typed is reported as skipped. Row-level error checks double as filters:
:func:`row_filters` gives, per table, a SQL expression true for the rows that
pass them, so later stages can exclude invalid rows.

The SQL runs on SQLite (timestamps stored as SQLAlchemy's text
``'YYYY-MM-DD HH:MM:SS.ffffff'``) and on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeEngine

from rekindle.platform.db import safe_url
from rekindle.platform.schema import (
    COLUMN_KINDS,
    KNOWN_CHANNELS,
    KNOWN_GAMES,
    MONEY_FLOW_TYPES,
    PLAYER_STATUSES,
    SOURCE_TABLES,
    VIP_LEVELS,
    build_metadata,
)

Severity = Literal["error", "warning"]
EXAMPLES = 5
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_DIGITS = "[0-9]"
_STAMP = f"{_DIGITS * 4}-{_DIGITS * 2}-{_DIGITS * 2} {_DIGITS * 2}:{_DIGITS * 2}:{_DIGITS * 2}"


class UnsupportedDatabaseError(ValueError):
    """The database's SQL dialect is not one the checks are written for."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: how many rows (or columns, tables) offend, with examples."""

    name: str
    table: str
    severity: Severity
    description: str
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    @property
    def failed(self) -> bool:
        """True if the check ran and found something."""
        return self.skipped is None and self.count > 0


@dataclass(frozen=True)
class _RowCheck:
    table: str
    name: str
    severity: Severity
    description: str
    bad: str | None  # SQL true for offending rows; None when there is nothing to check
    needs: tuple[str, ...] = ()  # columns ('col' or 'table.col') that must be present and typed right
    show: tuple[str, ...] = ()
    only_sqlite: bool = False

    @property
    def cross(self) -> bool:
        """Reads another table: counted in its own query so the planner can join."""
        return any("." in need for need in self.needs)


class _Sql:
    """SQL fragments for one table on one dialect."""

    def __init__(self, dialect: str, table: str, now: datetime) -> None:
        self.sqlite = dialect == "sqlite"
        self.table = table
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        self.now = f"'{stamp}'" if self.sqlite else f"TIMESTAMP '{stamp}'"

    def __call__(self, column: str) -> str:
        return f'"{self.table}"."{column}"'

    def ts_ok(self, e: str) -> str:
        """On SQLite: ``e`` is text in SQLAlchemy's format and a real calendar time."""
        if not self.sqlite:
            return "1 = 1"
        return (
            f"(typeof({e}) = 'text' AND ({e} GLOB '{_STAMP}' OR {e} GLOB '{_STAMP}.{_DIGITS * 6}')"
            f" AND date(julianday(substr({e}, 1, 10))) IS substr({e}, 1, 10) AND time({e}) IS substr({e}, 12, 8))"
        )

    def lt(self, a: str, b: str) -> str:
        # Text comparison is exact on SQLite once both sides are in the canonical format.
        return f"({a} < {b})" if not self.sqlite else f"({self.ts_ok(a)} AND {self.ts_ok(b)} AND {a} < {b})"

    def future(self, *columns: str) -> str:
        return " OR ".join(f"({self.ts_ok(self(c))} AND {self(c)} > {self.now})" for c in columns)

    def num(self, column: str) -> str:
        """The column as a number; NULL for SQLite values that are not integers (checked elsewhere)."""
        ref = self(column)
        return f"(CASE WHEN typeof({ref}) = 'integer' THEN {ref} END)" if self.sqlite else ref

    def ref(self, fk: str, target: str, cond: str = "1 = 1") -> str:
        """True if the row's ``fk`` names a ``target`` row satisfying ``cond`` ({t}: this row, {r}: target)."""
        if self.sqlite:  # uncorrelated: SQLite builds an automatic index instead of scanning per row
            cond = cond.replace("{t}", '"_x"').replace("{r}", '"_r"')
            return (
                f'"{self.table}".rowid IN (SELECT "_x".rowid FROM "{self.table}" AS "_x" '
                f'JOIN "{target}" AS "_r" ON "_r"."id" = "_x"."{fk}" WHERE {cond})'
            )
        cond = cond.replace("{t}", f'"{self.table}"').replace("{r}", '"_r"')
        return f'EXISTS (SELECT 1 FROM "{target}" AS "_r" WHERE "_r"."id" = {self(fk)} AND {cond})'

    def orphan(self, fk: str, target: str) -> str:
        return f"({self(fk)} IS NOT NULL AND NOT ({self.ref(fk, target)}))"

    def before_player(self, column: str) -> str:
        return self.ref("playerId", "players", self.lt(f'{{t}}."{column}"', '{r}."createdAt"'))


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _specific(q: _Sql) -> list[_RowCheck]:
    """The checks particular to one table."""
    t = q.table

    def rc(name: str, severity: Severity, description: str, bad: str, *needs: str) -> _RowCheck:
        return _RowCheck(t, f"{t}.{name}", severity, description, bad, needs, tuple(n for n in needs if "." not in n))

    orphan_player = rc("player_exists", "error", "playerId names no player", q.orphan("playerId", "players"),
                       "playerId", "players.id")
    if t == "players":
        return [
            rc("status_known", "error", f"status not in {PLAYER_STATUSES}", f"{q('status')} NOT IN {_in(PLAYER_STATUSES)}",
               "status"),
            rc("vip_level_range", "error", f"vipLevel outside {VIP_LEVELS.start}..{VIP_LEVELS.stop - 1}",
               f"{q.num('vipLevel')} NOT BETWEEN {VIP_LEVELS.start} AND {VIP_LEVELS.stop - 1}", "vipLevel"),
            rc("channel_known", "warning", f"channel not in {KNOWN_CHANNELS} (an open set)",
               f"{q('channel')} NOT IN {_in(KNOWN_CHANNELS)}", "channel"),
            rc("created_in_future", "error", "createdAt after now", q.future("createdAt"), "createdAt"),
        ]
    if t == "player_sessions":
        return [
            orphan_player,
            rc("ended_before_started", "error", "endedAt before startedAt", q.lt(q("endedAt"), q("startedAt")),
               "startedAt", "endedAt"),
            rc("in_future", "error", "startedAt or endedAt after now", q.future("startedAt", "endedAt"),
               "startedAt", "endedAt"),
            rc("game_known", "warning", f"game not in {KNOWN_GAMES} (an open set)",
               f"{q('game')} NOT IN {_in(KNOWN_GAMES)}", "game"),
            rc("before_player_created", "warning", "startedAt before the player's createdAt",
               q.before_player("startedAt"), "playerId", "startedAt", "players.id", "players.createdAt"),
        ]
    if t == "promotions":
        return [
            rc("ends_before_starts", "error", "endsAt before startsAt", q.lt(q("endsAt"), q("startsAt")),
               "startsAt", "endsAt"),
            rc("min_deposit_positive", "error", "minDeposit set but not > 0", f"{q.num('minDeposit')} <= 0",
               "minDeposit"),
        ]
    if t == "promotion_players":
        sent, starts, ends = '{t}."createdAt"', '{r}."startsAt"', '{r}."endsAt"'
        window = f"{q.lt(sent, starts)} OR {q.lt(ends, sent)}"
        return [
            rc("promotion_exists", "error", "promotionId names no promotion", q.orphan("promotionId", "promotions"),
               "promotionId", "promotions.id"),
            orphan_player,
            rc("reward_positive", "error", "reward not > 0", f"{q.num('reward')} <= 0", "reward"),
            rc("applied_before_created", "error", "appliedAt before createdAt (claimed before sent)",
               q.lt(q("appliedAt"), q("createdAt")), "createdAt", "appliedAt"),
            rc("in_future", "error", "createdAt or appliedAt after now", q.future("createdAt", "appliedAt"),
               "createdAt", "appliedAt"),
            rc("before_player_created", "warning", "offer sent before the player's createdAt",
               q.before_player("createdAt"), "playerId", "createdAt", "players.id", "players.createdAt"),
            rc("sent_outside_promotion", "warning", "offer sent outside its promotion's startsAt..endsAt",
               q.ref("promotionId", "promotions", f"({window})"), "promotionId", "createdAt", "promotions.id",
               "promotions.startsAt", "promotions.endsAt"),
        ]
    # money_flows
    return [
        orphan_player,
        rc("promotion_player_exists", "error", "promotionPlayerId names no promotion_players row",
           q.orphan("promotionPlayerId", "promotion_players"), "promotionPlayerId", "promotion_players.id"),
        rc("amount_positive", "error", "amount not > 0", f"{q.num('amount')} <= 0", "amount"),
        rc("type_known", "error", f"type not in {MONEY_FLOW_TYPES}", f"{q('type')} NOT IN {_in(MONEY_FLOW_TYPES)}",
           "type"),
        rc("in_future", "error", "createdAt after now", q.future("createdAt"), "createdAt"),
        rc("bonus_without_promotion", "warning", "bonus without promotionPlayerId (cost cannot be attributed)",
           f"{q('type')} = 'bonus' AND {q('promotionPlayerId')} IS NULL", "type", "promotionPlayerId"),
        rc("promotion_on_non_bonus", "warning", "promotionPlayerId set on a deposit or withdrawal",
           f"{q('type')} <> 'bonus' AND {q('promotionPlayerId')} IS NOT NULL", "type", "promotionPlayerId"),
        rc("bonus_player_mismatch", "warning", "playerId differs from the linked offer's playerId",
           q.ref("promotionPlayerId", "promotion_players", '{r}."playerId" <> {t}."playerId"'), "playerId",
           "promotionPlayerId", "promotion_players.id", "promotion_players.playerId"),
        rc("before_player_created", "warning", "createdAt before the player's createdAt",
           q.before_player("createdAt"), "playerId", "createdAt", "players.id", "players.createdAt"),
    ]


def _generic(q: _Sql, present: set[str], usable: set[str]) -> list[_RowCheck]:
    """The checks every table gets: NULLs, duplicate ids, and SQLite's loose storage."""
    t, kinds = q.table, COLUMN_KINDS[q.table]
    required = [c.name for c in build_metadata(constraints=False).tables[t].columns if not c.nullable and c.name in present]
    stamps = [c for c, kind in kinds.items() if kind == "datetime" and c in usable]
    ints = [c for c, kind in kinds.items() if kind == "int" and c in usable]

    def any_of(parts: list[str]) -> str | None:
        return " OR ".join(f"({p})" for p in parts) or None

    dupes = f'{q("id")} IN (SELECT "id" FROM "{t}" GROUP BY "id" HAVING COUNT(*) > 1)'
    return [
        _RowCheck(t, f"{t}.required_not_null", "error", "NULL in a required column",
                  any_of([f"{q(c)} IS NULL" for c in required]), show=tuple(required)),
        _RowCheck(t, f"{t}.unique_id", "error", "rows sharing an id (all of them are counted)", dupes),
        _RowCheck(t, f"{t}.timestamps_valid", "error", "timestamp text that is not 'YYYY-MM-DD HH:MM:SS[.ffffff]'",
                  any_of([f"{q(c)} IS NOT NULL AND NOT {q.ts_ok(q(c))}" for c in stamps]), show=tuple(stamps),
                  only_sqlite=True),
        _RowCheck(t, f"{t}.integer_values", "error", "non-integer value in an integer column",
                  any_of([f"typeof({q(c)}) NOT IN ('integer', 'null')" for c in ints]), show=tuple(ints),
                  only_sqlite=True),
    ]


def _kind_ok(kind: str, type_: TypeEngine) -> bool:
    if kind == "int":
        exact = isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float) and type_.scale == 0
        return isinstance(type_, sa.Integer) or exact
    if kind == "datetime":
        return isinstance(type_, sa.DateTime)
    return isinstance(type_, sa.String)


def _type_name(engine: Engine, type_: TypeEngine) -> str:
    try:
        return str(type_.compile(dialect=engine.dialect))
    except Exception:  # noqa: BLE001 - a type the dialect cannot render still gets a name
        return type(type_).__name__


@dataclass
class _Plan:
    dialect: str
    contract: dict[str, list[CheckResult]]
    rows: dict[str, list[tuple[_RowCheck, str | None]]]  # check, reason it is skipped
    present: set[str]


def _skip_reason(check: _RowCheck, cols: dict[str, dict[str, TypeEngine]], usable: dict[str, set[str]],
                 sqlite: bool) -> str | None:
    if check.only_sqlite and not sqlite:
        return "PostgreSQL enforces column types"
    for need in ("id", *check.needs):
        table, _, column = need.rpartition(".")
        table = table or check.table
        if table not in cols:
            return f"table {table} is missing"
        if column not in cols[table]:
            return f"column {table}.{column} is missing"
        if column not in usable[table]:
            return f"column {table}.{column} has the wrong type"
    return None


def _plan(engine: Engine, now: datetime) -> _Plan:
    dialect = engine.dialect.name
    if dialect not in SUPPORTED_DIALECTS:
        raise UnsupportedDatabaseError(
            f"cannot validate {safe_url(str(engine.url))}: the checks are written for {SUPPORTED_DIALECTS}, "
            f"not {dialect!r}"
        )
    inspector = sa.inspect(engine)
    names = set(inspector.get_table_names())
    cols = {t: {c["name"]: c["type"] for c in inspector.get_columns(t)} for t in SOURCE_TABLES if t in names}
    usable = {t: {c for c, ty in cs.items() if c in COLUMN_KINDS[t] and _kind_ok(COLUMN_KINDS[t][c], ty)}
              for t, cs in cols.items()}
    plan = _Plan(dialect, {}, {}, set(cols))
    for t in SOURCE_TABLES:
        def result(suffix: str, description: str, count: int, examples: list[dict[str, Any]],
                   skipped: str | None = None, t: str = t) -> CheckResult:
            return CheckResult(f"{t}.{suffix}", t, "error", description, count, examples[:EXAMPLES], skipped)

        kinds = COLUMN_KINDS[t]
        if t not in cols:
            gone = f"table {t} is missing"
            plan.contract[t] = [result("table_present", "the table exists", 1, [{"table": t}]),
                                result("columns_present", "the contract's columns exist", 0, [], gone),
                                result("column_types", "columns have the contract's types", 0, [], gone)]
        else:
            missing = [{"column": c, "expected": k} for c, k in kinds.items() if c not in cols[t]]
            wrong = [{"column": c, "expected": k, "found": _type_name(engine, cols[t][c])}
                     for c, k in kinds.items() if c in cols[t] and c not in usable[t]]
            plan.contract[t] = [result("table_present", "the table exists", 0, []),
                                result("columns_present", "the contract's columns exist", len(missing), missing),
                                result("column_types", "columns have the contract's types", len(wrong), wrong)]
        q = _Sql(dialect, t, now)
        checks = _generic(q, set(cols.get(t, {})), usable.get(t, set())) + _specific(q)
        plan.rows[t] = [(c, _skip_reason(c, cols, usable, q.sqlite)) for c in checks]
    return plan


def _naive_utc(now: datetime) -> datetime:
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, got {now!r} ({type(now).__name__})")
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now


def _run_table(conn: sa.Connection, table: str, planned: list[tuple[_RowCheck, str | None]]) -> list[CheckResult]:
    runnable = [c for c, why in planned if why is None and c.bad]
    counts: dict[str, int] = {}
    local = [c for c in runnable if not c.cross]
    if local:  # one scan of the table for all its single-table checks
        sums = ", ".join(f"SUM(CASE WHEN {c.bad} THEN 1 ELSE 0 END)" for c in local)
        row = conn.execute(sa.text(f'SELECT {sums} FROM "{table}"')).one()
        counts.update({c.name: int(v or 0) for c, v in zip(local, row, strict=True)})
    for c in runnable:
        if c.cross:
            counts[c.name] = int(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}" WHERE {c.bad}')).scalar_one())
    out = []
    for c, why in planned:
        count, examples = counts.get(c.name, 0), []
        if count:
            shown = ", ".join(f'"{table}"."{col}"' for col in dict.fromkeys(("id", *c.show)))
            sql = f'SELECT {shown} FROM "{table}" WHERE {c.bad} ORDER BY "{table}"."id" LIMIT {EXAMPLES}'
            examples = [dict(r) for r in conn.execute(sa.text(sql)).mappings()]
        out.append(CheckResult(c.name, table, c.severity, c.description, count, examples, why))
    return out


def run_checks(engine: Engine, *, now: datetime) -> list[CheckResult]:
    """Run every contract and data check against the platform database.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The platform database (SQLite or PostgreSQL).
    now : datetime
        The reference time for "in the future" (naive UTC, or aware and converted).

    Returns
    -------
    list of CheckResult
        One per check, per table in contract order; skipped checks have ``skipped`` set.
    """
    plan = _plan(engine, _naive_utc(now))
    results: list[CheckResult] = []
    with engine.connect() as conn:
        for table in SOURCE_TABLES:
            results += plan.contract[table] + _run_table(conn, table, plan.rows[table])
    return results


def _filters(plan: _Plan) -> dict[str, str]:
    out = {}
    for table in SOURCE_TABLES:
        parts = [f"NOT COALESCE(({c.bad}), FALSE)" for c, why in plan.rows[table]
                 if why is None and c.bad and c.severity == "error"]
        out[table] = "(" + " AND ".join(parts) + ")" if parts else "(1 = 1)"
    return out


def row_filters(engine: Engine, now: datetime) -> dict[str, str]:
    """Per source table, a SQL condition true for rows that pass every row-level error check.

    Use it unaliased: ``SELECT * FROM "money_flows" WHERE <expr>`` (the expression
    names columns as ``"table"."column"``; it holds no bind parameters). Checks
    skipped for missing columns, and missing tables, contribute ``(1 = 1)``.
    """
    return _filters(_plan(engine, _naive_utc(now)))


def excluded_counts(engine: Engine, now: datetime) -> dict[str, int]:
    """Per source table, how many rows :func:`row_filters` excludes (0 for a missing table)."""
    plan = _plan(engine, _naive_utc(now))
    filters = _filters(plan)
    with engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}" WHERE NOT {filters[t]}')).scalar_one())
                if t in plan.present else 0 for t in SOURCE_TABLES}
