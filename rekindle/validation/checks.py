"""Contract and data checks of the platform database, run as SQL inside it.

Each check counts offending rows in the database (no table is loaded into
memory) and fetches at most :data:`EXAMPLES` of them. Contract checks (tables,
columns, types) come first; a data check whose columns are missing or wrongly
typed is reported as skipped. Row-level error checks double as filters:
:func:`row_filters` gives, per table, a SQL condition true for the rows that
pass them, so that later stages can exclude invalid rows.

The SQL runs on SQLite (timestamps stored as SQLAlchemy's text
``'YYYY-MM-DD HH:MM:SS.ffffff'``) and on PostgreSQL. Checks that involve a set
(duplicate ids, orphan keys) are written so that PostgreSQL runs them as hash
(anti-)joins and SQLite as indexed IN lists: linear, not quadratic, in rows.
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
_D = "[0-9]"
_STAMP = f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}"


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
    name: str
    severity: Severity
    description: str
    bad: str | None  # SQL true for offending rows; None when there is nothing to check
    needs: tuple[str, ...] = ()  # columns ('col' or 'table.col') that must be present and typed right
    show: tuple[str, ...] = ()
    keep: str | None = None  # the row filter's condition, where NOT bad would defeat the planner
    only_sqlite: bool = False

    @property
    def table(self) -> str:
        return self.name.partition(".")[0]

    @property
    def alone(self) -> bool:
        """Counted in its own query rather than in the table's one-scan sum, so the planner can join."""
        return self.keep is not None or any("." in need for need in self.needs)


class _Sql:
    """SQL fragments for one table on one dialect ({t} and {r} in ``ref`` conditions: this row, its target)."""

    def __init__(self, dialect: str, table: str, now: datetime) -> None:
        self.sqlite, self.table = dialect == "sqlite", table
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        self.now = f"'{stamp}'" if self.sqlite else f"TIMESTAMP '{stamp}'"

    def __call__(self, column: str) -> str:
        return f'"{self.table}"."{column}"'

    def ts_ok(self, e: str) -> str:
        """On SQLite: ``e`` is text in SQLAlchemy's format and a real calendar time."""
        if not self.sqlite:
            return "1 = 1"
        return (
            f"(typeof({e}) = 'text' AND ({e} GLOB '{_STAMP}' OR {e} GLOB '{_STAMP}.{_D * 6}')"
            f" AND date(julianday(substr({e}, 1, 10))) IS substr({e}, 1, 10) AND time({e}) IS substr({e}, 12, 8))"
        )

    def lt(self, a: str, b: str) -> str:
        # On SQLite, text comparison is exact once both sides are in the canonical format.
        return f"({self.ts_ok(a)} AND {self.ts_ok(b)} AND {a} < {b})" if self.sqlite else f"({a} < {b})"

    def future(self, *columns: str) -> str:
        return " OR ".join(f"({self.ts_ok(self(c))} AND {self(c)} > {self.now})" for c in columns)

    def num(self, column: str) -> str:
        """The column as a number; NULL for SQLite values that are not integers (checked elsewhere)."""
        ref = self(column)
        return f"(CASE WHEN typeof({ref}) = 'integer' THEN {ref} END)" if self.sqlite else ref

    def text(self, column: str) -> str:
        """The column as text, so that a PostgreSQL enum column compares with any literal."""
        return f"CAST({self(column)} AS VARCHAR)"

    def one_of(self, column: str, values: tuple[str, ...]) -> str:
        return f"{self.text(column)} NOT IN (" + ", ".join(f"'{v}'" for v in values) + ")"

    def ref(self, fk: str, target: str, cond: str) -> str:
        """The row's ``fk`` names a ``target`` row satisfying ``cond``."""
        if self.sqlite:  # uncorrelated, so SQLite indexes the target once instead of scanning it per row
            cond = cond.replace("{t}", '"_x"').replace("{r}", '"_r"')
            join = f'JOIN "{target}" AS "_r" ON "_r"."id" = "_x"."{fk}"'
            return f'"{self.table}".rowid IN (SELECT "_x".rowid FROM "{self.table}" AS "_x" {join} WHERE {cond})'
        cond = cond.replace("{t}", f'"{self.table}"').replace("{r}", '"_r"')
        return f'EXISTS (SELECT 1 FROM "{target}" AS "_r" WHERE "_r"."id" = {self(fk)} AND {cond})'

    def in_set(self, column: str, values: str) -> tuple[str, str]:
        """(The row's ``column`` is among ``values``, a SELECT of "v"; the condition keeping the other rows.)"""
        if self.sqlite:
            return f"{self(column)} IN ({values})", f"NOT COALESCE({self(column)} IN ({values}), FALSE)"
        match = f'EXISTS (SELECT 1 FROM ({values}) AS "_b" WHERE "_b"."v" = {self(column)})'
        return match, f"NOT {match}"

    def orphan(self, fk: str, target_id: str) -> tuple[str, str]:
        target = target_id.partition(".")[0]
        missing = (
            f'"_x"."{fk}" NOT IN (SELECT "id" FROM "{target}" WHERE "id" IS NOT NULL)'
            if self.sqlite
            else f'NOT EXISTS (SELECT 1 FROM "{target}" AS "_r" WHERE "_r"."id" = "_x"."{fk}")'
        )
        rows = f'"{self.table}" AS "_x" WHERE "_x"."{fk}" IS NOT NULL AND {missing}'
        return self.in_set(fk, f'SELECT "_x"."{fk}" AS "v" FROM {rows}')

    def before_player(self, column: str) -> str:
        return self.ref("playerId", "players", self.lt(f'{{t}}."{column}"', '{r}."createdAt"'))


def _declared(q: dict[str, _Sql]) -> list[_RowCheck]:
    """The checks particular to each table."""

    def rc(name: str, severity: Severity, description: str, bad: str | tuple[str, str], *needs: str) -> _RowCheck:
        bad, keep = bad if isinstance(bad, tuple) else (bad, None)
        return _RowCheck(name, severity, description, bad, needs, tuple(n for n in needs if "." not in n), keep)

    p, s, pr, pp, m = (q[t] for t in SOURCE_TABLES)
    low, high = VIP_LEVELS.start, VIP_LEVELS.stop - 1
    player = ("playerId", "players.id")
    born = ("players.id", "players.createdAt")
    offered, paid = ("promotionId", "promotions.id"), ("promotionPlayerId", "promotion_players.id")
    sent, starts, ends = '{t}."createdAt"', '{r}."startsAt"', '{r}."endsAt"'
    window = f"({pp.lt(sent, starts)} OR {pp.lt(ends, sent)})"
    return [
        rc(
            "players.status_known",
            "error",
            f"status not in {PLAYER_STATUSES}",
            p.one_of("status", PLAYER_STATUSES),
            "status",
        ),
        rc(
            "players.vip_level_range",
            "error",
            f"vipLevel outside {low}..{high}",
            f"{p.num('vipLevel')} NOT BETWEEN {low} AND {high}",
            "vipLevel",
        ),
        rc(
            "players.channel_known",
            "warning",
            f"channel not in {KNOWN_CHANNELS} (an open set)",
            p.one_of("channel", KNOWN_CHANNELS),
            "channel",
        ),
        rc("players.created_in_future", "error", "createdAt after now", p.future("createdAt"), "createdAt"),
        rc("player_sessions.player_exists", "error", "playerId names no player", s.orphan(*player), *player),
        rc(
            "player_sessions.ended_before_started",
            "error",
            "endedAt before startedAt",
            s.lt(s("endedAt"), s("startedAt")),
            "startedAt",
            "endedAt",
        ),
        rc(
            "player_sessions.in_future",
            "error",
            "startedAt or endedAt after now",
            s.future("startedAt", "endedAt"),
            "startedAt",
            "endedAt",
        ),
        rc(
            "player_sessions.game_known",
            "warning",
            f"game not in {KNOWN_GAMES} (an open set)",
            s.one_of("game", KNOWN_GAMES),
            "game",
        ),
        rc(
            "player_sessions.before_player_created",
            "warning",
            "startedAt before the player's createdAt",
            s.before_player("startedAt"),
            "playerId",
            "startedAt",
            *born,
        ),
        rc(
            "promotions.ends_before_starts",
            "error",
            "endsAt before startsAt",
            pr.lt(pr("endsAt"), pr("startsAt")),
            "startsAt",
            "endsAt",
        ),
        rc(
            "promotions.min_deposit_positive",
            "error",
            "minDeposit set but not > 0",
            f"{pr.num('minDeposit')} <= 0",
            "minDeposit",
        ),
        rc(
            "promotion_players.promotion_exists",
            "error",
            "promotionId names no promotion",
            pp.orphan(*offered),
            *offered,
        ),
        rc("promotion_players.player_exists", "error", "playerId names no player", pp.orphan(*player), *player),
        rc("promotion_players.reward_positive", "error", "reward not > 0", f"{pp.num('reward')} <= 0", "reward"),
        rc(
            "promotion_players.applied_before_created",
            "error",
            "appliedAt before createdAt (claimed before sent)",
            pp.lt(pp("appliedAt"), pp("createdAt")),
            "createdAt",
            "appliedAt",
        ),
        rc(
            "promotion_players.in_future",
            "error",
            "createdAt or appliedAt after now",
            pp.future("createdAt", "appliedAt"),
            "createdAt",
            "appliedAt",
        ),
        rc(
            "promotion_players.before_player_created",
            "warning",
            "offer sent before the player's createdAt",
            pp.before_player("createdAt"),
            "playerId",
            "createdAt",
            *born,
        ),
        rc(
            "promotion_players.sent_outside_promotion",
            "warning",
            "offer sent outside its promotion's startsAt..endsAt",
            pp.ref("promotionId", "promotions", window),
            "promotionId",
            "createdAt",
            "promotions.id",
            "promotions.startsAt",
            "promotions.endsAt",
        ),
        rc("money_flows.player_exists", "error", "playerId names no player", m.orphan(*player), *player),
        rc(
            "money_flows.promotion_player_exists",
            "error",
            "promotionPlayerId names no promotion_players row",
            m.orphan(*paid),
            *paid,
        ),
        rc("money_flows.amount_positive", "error", "amount not > 0", f"{m.num('amount')} <= 0", "amount"),
        rc(
            "money_flows.type_known",
            "error",
            f"type not in {MONEY_FLOW_TYPES}",
            m.one_of("type", MONEY_FLOW_TYPES),
            "type",
        ),
        rc("money_flows.in_future", "error", "createdAt after now", m.future("createdAt"), "createdAt"),
        rc(
            "money_flows.bonus_without_promotion",
            "warning",
            "bonus without promotionPlayerId (cost unattributable)",
            f"{m.text('type')} = 'bonus' AND {m('promotionPlayerId')} IS NULL",
            "type",
            "promotionPlayerId",
        ),
        rc(
            "money_flows.promotion_on_non_bonus",
            "warning",
            "promotionPlayerId set on a deposit or withdrawal",
            f"{m.text('type')} <> 'bonus' AND {m('promotionPlayerId')} IS NOT NULL",
            "type",
            "promotionPlayerId",
        ),
        rc(
            "money_flows.bonus_player_mismatch",
            "warning",
            "playerId differs from the linked offer's playerId",
            m.ref("promotionPlayerId", "promotion_players", '{r}."playerId" <> {t}."playerId"'),
            "playerId",
            "promotionPlayerId",
            "promotion_players.id",
            "promotion_players.playerId",
        ),
        rc(
            "money_flows.before_player_created",
            "warning",
            "createdAt before the player's createdAt",
            m.before_player("createdAt"),
            "playerId",
            "createdAt",
            *born,
        ),
    ]


def _generic(q: _Sql, present: set[str], usable: set[str]) -> list[_RowCheck]:
    """The checks every table gets: NULLs, duplicate ids, and SQLite's loosely typed storage."""
    t, kinds = q.table, COLUMN_KINDS[q.table]
    required = [c.name for c in build_metadata().tables[t].columns if not c.nullable and c.name in present]
    stamps = tuple(c for c, kind in kinds.items() if kind == "datetime" and c in usable)
    ints = tuple(c for c, kind in kinds.items() if kind == "int" and c in usable)

    def any_of(parts: list[str]) -> str | None:
        return " OR ".join(f"({part})" for part in parts) or None

    dupes, unique = q.in_set("id", f'SELECT "id" AS "v" FROM "{t}" GROUP BY "id" HAVING COUNT(*) > 1')
    return [
        _RowCheck(
            f"{t}.required_not_null",
            "error",
            "NULL in a required column",
            any_of([f"{q(c)} IS NULL" for c in required]),
            show=tuple(required),
        ),
        _RowCheck(f"{t}.unique_id", "error", "rows sharing an id (every one of them counts)", dupes, keep=unique),
        _RowCheck(
            f"{t}.timestamps_valid",
            "error",
            "timestamp that is not text 'YYYY-MM-DD HH:MM:SS[.ffffff]'",
            any_of([f"{q(c)} IS NOT NULL AND NOT {q.ts_ok(q(c))}" for c in stamps]),
            show=stamps,
            only_sqlite=True,
        ),
        _RowCheck(
            f"{t}.integer_values",
            "error",
            "non-integer value in an integer column",
            any_of([f"typeof({q(c)}) NOT IN ('integer', 'null')" for c in ints]),
            show=ints,
            only_sqlite=True,
        ),
    ]


def _kind_ok(kind: str, type_: TypeEngine) -> bool:
    if kind == "int":
        exact = isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float) and type_.scale == 0
        return isinstance(type_, sa.Integer) or exact
    return isinstance(type_, sa.DateTime if kind == "datetime" else sa.String)


def _type_name(engine: Engine, type_: TypeEngine) -> str:
    try:
        return str(type_.compile(dialect=engine.dialect))
    except Exception:  # a type the dialect cannot render still gets a name
        return type(type_).__name__


@dataclass
class _Plan:
    contract: dict[str, list[CheckResult]]
    rows: dict[str, list[tuple[_RowCheck, str | None]]]  # each check with the reason it is skipped
    present: set[str]


def _skip_reason(check: _RowCheck, cols: dict[str, Any], usable: dict[str, set[str]], sqlite: bool) -> str | None:
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


def _contract(engine: Engine, t: str, cols: dict[str, TypeEngine] | None, usable: set[str]) -> list[CheckResult]:
    kinds, gone = COLUMN_KINDS[t], f"table {t} is missing"
    missing = [{"column": c, "expected": k} for c, k in kinds.items() if cols is not None and c not in cols]
    wrong = [
        {"column": c, "expected": k, "found": _type_name(engine, cols[c])}
        for c, k in kinds.items()
        if cols is not None and c in cols and c not in usable
    ]
    return [
        CheckResult(
            f"{t}.table_present",
            t,
            "error",
            "the table is missing",
            int(cols is None),
            [{"table": t}] if cols is None else [],
        ),
        CheckResult(
            f"{t}.columns_present",
            t,
            "error",
            "contract columns are missing",
            len(missing),
            missing[:EXAMPLES],
            gone if cols is None else None,
        ),
        CheckResult(
            f"{t}.column_types",
            t,
            "error",
            "columns have the wrong type",
            len(wrong),
            wrong[:EXAMPLES],
            gone if cols is None else None,
        ),
    ]


def _plan(engine: Engine, now: datetime) -> _Plan:
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, got {now!r} ({type(now).__name__})")
    now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
    dialect = engine.dialect.name
    if dialect not in SUPPORTED_DIALECTS:
        raise UnsupportedDatabaseError(
            f"cannot validate {safe_url(str(engine.url))}: the checks are written for {SUPPORTED_DIALECTS}, "
            f"not {dialect!r}"
        )
    inspector = sa.inspect(engine)
    names = set(inspector.get_table_names())
    cols = {t: {c["name"]: c["type"] for c in inspector.get_columns(t)} for t in SOURCE_TABLES if t in names}
    usable = {
        t: {c for c, ty in cs.items() if c in COLUMN_KINDS[t] and _kind_ok(COLUMN_KINDS[t][c], ty)}
        for t, cs in cols.items()
    }
    qs = {t: _Sql(dialect, t, now) for t in SOURCE_TABLES}
    declared = _declared(qs)
    plan = _Plan({}, {}, set(cols))
    for t in SOURCE_TABLES:
        plan.contract[t] = _contract(engine, t, cols.get(t), usable.get(t, set()))
        checks = _generic(qs[t], set(cols.get(t, ())), usable.get(t, set())) + [c for c in declared if c.table == t]
        plan.rows[t] = [(c, _skip_reason(c, cols, usable, dialect == "sqlite")) for c in checks]
    return plan


def _run_table(conn: sa.Connection, table: str, planned: list[tuple[_RowCheck, str | None]]) -> list[CheckResult]:
    runnable = [c for c, why in planned if why is None and c.bad]
    counts: dict[str, int] = {}
    local = [c for c in runnable if not c.alone]
    if local:  # one scan of the table for all its single-table checks
        sums = ", ".join(f"SUM(CASE WHEN {c.bad} THEN 1 ELSE 0 END)" for c in local)
        row = conn.execute(sa.text(f'SELECT {sums} FROM "{table}"')).one()
        counts.update({c.name: int(v or 0) for c, v in zip(local, row, strict=True)})
    for c in (c for c in runnable if c.alone):
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
        The reference time of the "in the future" checks: naive UTC, or aware (converted to UTC).

    Returns
    -------
    list of CheckResult
        One per check, table by table; checks that could not run have ``skipped`` set.

    Raises
    ------
    TypeError
        If ``now`` is not a datetime.
    UnsupportedDatabaseError
        If the database is neither SQLite nor PostgreSQL.
    """
    plan = _plan(engine, now)
    results: list[CheckResult] = []
    with engine.connect() as conn:
        for table in SOURCE_TABLES:
            results += plan.contract[table] + _run_table(conn, table, plan.rows[table])
    return results


def _filters(plan: _Plan) -> dict[str, str]:
    out = {}
    for table, planned in plan.rows.items():
        parts = [
            c.keep or f"NOT COALESCE(({c.bad}), FALSE)"
            for c, why in planned
            if why is None and c.bad and c.severity == "error"
        ]
        out[table] = "(" + " AND ".join(parts) + ")" if parts else "(1 = 1)"
    return out


def row_filters(engine: Engine, now: datetime) -> dict[str, str]:
    """Per source table, a SQL condition true for the rows that pass every row-level error check.

    Use it on the unaliased table, ``SELECT * FROM "money_flows" WHERE <condition>``:
    it names columns ``"table"."column"`` and holds no bind parameters. Checks that
    are skipped (missing or mistyped columns) add nothing; a missing table gets ``(1 = 1)``.
    Filters do not cascade: a session of an excluded player is kept if it is valid itself.
    """
    return _filters(_plan(engine, now))


def excluded_counts(engine: Engine, now: datetime) -> dict[str, int]:
    """Per source table, how many rows :func:`row_filters` excludes (0 for a missing table)."""
    plan = _plan(engine, now)
    filters, out = _filters(plan), dict.fromkeys(SOURCE_TABLES, 0)
    with engine.connect() as conn:
        for t in plan.present:  # all minus kept: NOT (condition) would hide its anti-joins from the planner
            total = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one()
            kept = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}" WHERE {filters[t]}')).scalar_one()
            out[t] = int(total) - int(kept)
    return out
