"""SQL fragments of the checks, for one table on one dialect.

The SQL runs on SQLite (timestamps stored as SQLAlchemy's text
``'YYYY-MM-DD HH:MM:SS.ffffff'``) and on PostgreSQL. Conditions that involve a
set (duplicate ids, orphan keys) are written so that PostgreSQL runs them as
hash (anti-)joins and SQLite as indexed IN lists: linear, not quadratic, in rows.
"""

from __future__ import annotations

from datetime import datetime

_D = "[0-9]"
_STAMP = f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}"


class Sql:
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
