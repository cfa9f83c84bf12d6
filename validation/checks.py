"""Contract and data checks of the platform database, run as SQL inside it.

Each check counts offending rows in the database (no table is loaded into
memory) and fetches at most :data:`EXAMPLES` of them. Contract checks (tables,
columns, types) come first; a data check whose columns are missing or wrongly
typed is reported as skipped. Row-level error checks double as filters:
:func:`row_filters` gives, per table, a SQL condition true for the rows that
pass them, so that later stages can exclude invalid rows. What each row-level
check catches is declared in :mod:`validation.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeEngine

from core.errors import RekindleError
from platform_db.db import safe_url
from platform_db.schema import COLUMN_KINDS, SOURCE_TABLES
from validation.rules import RowCheck, Severity, declared_checks, generic_checks
from validation.sql import Sql

__all__ = [
    "EXAMPLES",
    "SUPPORTED_DIALECTS",
    "CheckResult",
    "Severity",
    "UnsupportedDatabaseError",
    "excluded_counts",
    "row_filters",
    "run_checks",
]

EXAMPLES = 5
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


class UnsupportedDatabaseError(RekindleError, ValueError):
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
    rows: dict[str, list[tuple[RowCheck, str | None]]]  # each check with the reason it is skipped
    present: set[str]


def _skip_reason(check: RowCheck, cols: dict[str, Any], usable: dict[str, set[str]], sqlite: bool) -> str | None:
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
    qs = {t: Sql(dialect, t, now) for t in SOURCE_TABLES}
    declared = declared_checks(qs)
    plan = _Plan({}, {}, set(cols))
    for t in SOURCE_TABLES:
        plan.contract[t] = _contract(engine, t, cols.get(t), usable.get(t, set()))
        checks = generic_checks(qs[t], set(cols.get(t, ())), usable.get(t, set())) + [
            c for c in declared if c.table == t
        ]
        plan.rows[t] = [(c, _skip_reason(c, cols, usable, dialect == "sqlite")) for c in checks]
    return plan


def _run_table(conn: sa.Connection, table: str, planned: list[tuple[RowCheck, str | None]]) -> list[CheckResult]:
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


def filters_for_invalid_rows(engine: Engine, now: datetime) -> tuple[dict[str, str] | None, dict[str, int]]:
    """The row filters to leave out invalid rows, or None when there is nothing to leave out
    (filtering costs several times a plain read), and the per-table counts of rows left out."""
    excluded = {t: n for t, n in excluded_counts(engine, now).items() if n}
    return (row_filters(engine, now) if excluded else None), excluded
