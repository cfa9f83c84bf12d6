"""Bulk reads of the platform database as typed Arrow tables, inside one read-only snapshot.

Rows leave the database as CSV text and Arrow's parser types them, several times faster than
building a Python tuple per row:

- PostgreSQL streams any query with ``COPY (query) TO STDOUT (FORMAT csv)``; Arrow parses while
  rows arrive. Every read of a :class:`Snapshot` runs in one ``REPEATABLE READ, READ ONLY``
  transaction, so a live platform cannot change between them.
- SQLite renders each range of rowids as one CSV text (``group_concat`` of one line per row) in a
  single read transaction; Arrow parses a range while SQLite renders the next one.

A table is read through its valid-row filter (from the validation step) when one is given;
values that are not of the requested types raise :class:`~platform_db.db.DatabaseError`.
:func:`local_duckdb` opens the in-memory DuckDB that runs analytic SQL over tables read from SQLite.
"""

from __future__ import annotations

import io
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
from sqlalchemy.engine import Engine

from platform_db.db import DatabaseError
from platform_db.filters import source

CHUNK_ROWS = 500_000  # rowids per SQLite read: ~25 MB of CSV text
BLOCK_BYTES = 1 << 22  # COPY bytes handed to Arrow's parser at a time
DUCKDB_MEMORY = "3GB"  # DuckDB spills to a temporary directory beyond this (1M players peak at 4.3 GiB RSS)

Columns = Mapping[str, tuple[str, pa.DataType]]
"""What is read of a table: output name -> (SQL expression over the table, Arrow type)."""


def ts_literal(moment: datetime) -> str:
    """``moment`` (naive) as a SQL ``TIMESTAMP`` literal, exact to the microsecond.

    ``isoformat`` pads the year to four digits where ``strftime('%Y')`` would not (``datetime.min``).
    """
    return f"TIMESTAMP '{moment.isoformat(sep=' ', timespec='microseconds')}'"


class _CopyStream(io.RawIOBase):
    """The bytes of a psycopg COPY TO STDOUT as a readable file, so Arrow parses while rows arrive.

    libpq hands over one row at a time: rows are joined into the reader's (megabyte) blocks.
    """

    def __init__(self, rows: Iterator[Any]) -> None:
        self._rows, self._rest = rows, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        parts, have = [self._rest], len(self._rest)
        for row in self._rows:
            parts.append(row)
            have += len(row)
            if have >= size:
                break
        data = b"".join(parts)
        n = min(size, len(data))
        buffer[:n], self._rest = data[:n], data[n:]
        return n


def _schema(columns: Columns) -> pa.Schema:
    return pa.schema([(name, t) for name, (_, t) in columns.items()])


class Snapshot:
    """Reads of one platform database as of one moment; open it with :func:`snapshot`."""

    def __init__(self, dialect: str, conn: Any, filters: Mapping[str, str]) -> None:
        self.dialect, self._conn, self.filters = dialect, conn, dict(filters)

    def query(self, sql: str, schema: pa.Schema, what: str, *, block_bytes: int = BLOCK_BYTES) -> pa.Table:
        """PostgreSQL only: the rows of ``sql`` typed by ``schema`` (``what`` names them in errors),
        handed to the parser ``block_bytes`` at a time."""
        if self.dialect != "postgresql":
            raise NotImplementedError(f"streaming a query needs PostgreSQL, not {self.dialect}; use table()")
        with self._conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
            stream = io.BufferedReader(_CopyStream(iter(copy)), buffer_size=block_bytes)
            if not stream.peek(1):  # Arrow refuses an empty file
                return schema.empty_table()
            # COPY's CSV: NULL is an empty unquoted field, an empty string a quoted one
            convert = pcsv.ConvertOptions(
                column_types=schema, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
            )
            try:
                return pcsv.read_csv(
                    stream,
                    read_options=pcsv.ReadOptions(column_names=schema.names),
                    parse_options=pcsv.ParseOptions(newlines_in_values=True),
                    convert_options=convert,
                )
            except pa.ArrowInvalid as exc:  # e.g. a timestamptz column where the contract has naive UTC
                raise DatabaseError(f"cannot read {what} as the contract's types: {exc}") from exc

    def table(
        self,
        table: str,
        columns: Columns,
        where: Sequence[str] = (),
        *,
        chunk_rows: int = CHUNK_ROWS,
        block_bytes: int = BLOCK_BYTES,
    ) -> pa.Table:
        """``columns`` of the valid rows of ``table`` where every condition of ``where`` holds.

        ``where`` is SQL of this snapshot's dialect; ``chunk_rows`` is the number of rowids per SQLite read,
        ``block_bytes`` the size of the blocks parsed on PostgreSQL.
        """
        conditions = [f"({c})" for c in where]
        if self.dialect == "postgresql":
            select = ", ".join(expr for expr, _ in columns.values())
            sql = f"SELECT {select} FROM {source(table, self.filters)} t WHERE {' AND '.join(conditions) or '1 = 1'}"
            return self.query(sql, _schema(columns), f"{table} ({', '.join(columns)})", block_bytes=block_bytes)
        if self.filters.get(table):
            conditions.insert(0, f"({self.filters[table]})")
        return self._sqlite_table(table, columns, conditions, chunk_rows)

    def _sqlite_table(self, table: str, columns: Columns, where: list[str], chunk_rows: int) -> pa.Table:
        """One CSV text per range of rowids: strings quoted SQL-style (NULL bare), other values bare (NULL empty)."""
        conn: sqlite3.Connection = self._conn
        # Bare values render faster than printf('%Q'); text of a wrong type that holds a comma or a newline
        # breaks the row's column count, which Arrow reports like any other value it cannot parse.
        fields = [f"quote({e})" if pa.types.is_string(t) else f"IFNULL({e}, '')" for e, t in columns.values()]
        row = " || ',' || ".join(fields)
        read = pcsv.ReadOptions(column_names=list(columns))
        parse = pcsv.ParseOptions(quote_char="'", double_quote=True, newlines_in_values=True)
        convert = pcsv.ConvertOptions(
            column_types=_schema(columns),
            null_values=["", "NULL"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        try:
            lo, hi = conn.execute(f'SELECT MIN(rowid), MAX(rowid) FROM "{table}"').fetchone()
            key = "rowid"
        except sqlite3.OperationalError:  # a WITHOUT ROWID table: chunk by its id instead
            lo, hi = conn.execute(f'SELECT MIN("id"), MAX("id") FROM "{table}"').fetchone()
            key = '"id"'
        sql = (
            f'SELECT CAST(group_concat({row}, char(10)) AS BLOB) FROM "{table}" '
            f"WHERE {key} >= ? AND {key} < ? AND {' AND '.join(where) or '1 = 1'}"
        )

        def parsed(text: bytes) -> pa.Table:
            try:
                return pcsv.read_csv(
                    pa.py_buffer(text), read_options=read, parse_options=parse, convert_options=convert
                )
            except pa.ArrowInvalid as exc:
                raise DatabaseError(
                    f"cannot read {table} ({', '.join(columns)}) as the contract's types: {exc}; "
                    "run `rekindle validate` to find the bad rows"
                ) from exc

        starts = range(int(lo), int(hi) + 1, chunk_rows) if lo is not None else range(0)
        with ThreadPoolExecutor(1) as parser:  # sqlite3 releases the GIL while it renders a chunk
            pending = []
            for start in starts:
                (text,) = conn.execute(sql, (start, start + chunk_rows)).fetchone()
                if text is not None:
                    pending.append(parser.submit(parsed, text))
            parts = [p.result() for p in pending]
        return pa.concat_tables(parts) if parts else _schema(columns).empty_table()


@contextmanager
def snapshot(engine: Engine, filters: Mapping[str, str] | None = None) -> Iterator[Snapshot]:
    """A :class:`Snapshot` of ``engine``'s database (SQLite or PostgreSQL), read-only, closed on exit.

    ``filters`` maps a table to a SQL boolean expression (in the database's dialect) true for its valid rows.
    """
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        if engine.dialect.name == "postgresql":
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for setting in ("DateStyle = 'ISO, YMD'", "extra_float_digits = 3"):  # the text Arrow parses exactly
                conn.execute(f"SET LOCAL {setting}")
        elif not conn.in_transaction:
            conn.execute("BEGIN")
        yield Snapshot(engine.dialect.name, conn, filters or {})
        conn.rollback()
    finally:
        raw.close()  # the pool rolls any open transaction back


@contextmanager
def local_duckdb(memory_limit: str = DUCKDB_MEMORY) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that never touches the network and spills to a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="rekindle-duckdb-") as spill:
        con = duckdb.connect(
            config={
                "autoinstall_known_extensions": False,  # never touch the network
                "autoload_known_extensions": False,
                "temp_directory": spill,
                "memory_limit": memory_limit,
            }
        )
        try:
            yield con
        finally:
            con.close()
