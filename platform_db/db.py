"""The one adapter that touches the platform database.

Connect with a clear error, create the contract's tables, bulk-load frames
fast (executemany on SQLite, COPY on PostgreSQL) and read tables back.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from core.errors import RekindleError
from core.progress import SILENT, Progress
from platform_db.schema import COLUMN_KINDS, SOURCE_TABLES, build_metadata


class DatabaseError(RekindleError, RuntimeError):
    """The database cannot be reached or does not hold what was expected."""


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for bare ``postgresql://`` URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {url!r} (expected e.g. sqlite:///var/platform.db)") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def connect(url: str, *, must_exist: bool = True) -> Engine:
    """An engine for ``url``; fails now, with the URL in the message, if the
    database cannot be reached (or, for SQLite with ``must_exist``, if the file is missing)."""
    url = normalise_url(url)
    path = sqlite_path(url)
    if path is not None:
        if must_exist and not path.is_file():
            raise DatabaseError(
                f"no SQLite database at {path}: run `rekindle simulate` or `rekindle db init` first, or pass --db URL"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # a server's connections are checked before use: after a database restart the pool reconnects
        engine = sa.create_engine(url, pool_pre_ping=path is None)
    except Exception as exc:  # unknown dialect or driver
        raise DatabaseError(f"cannot use database URL {safe_url(url)}: {exc}") from exc
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to {safe_url(url)}: {exc.orig}") from exc
    return engine


def init_source_tables(engine: Engine, *, constraints: bool = True, drop: bool = False) -> list[str]:
    """Create the contract's tables that are missing (``drop`` first removes any that
    exist) and return the ones created. Tables already there must have the contract's
    columns: a :class:`DatabaseError` names the ones they lack."""
    md = build_metadata(constraints=constraints)
    if drop:
        md.drop_all(engine)
    before = set(sa.inspect(engine).get_table_names())
    md.create_all(engine)
    inspector = sa.inspect(engine)
    lacking = {
        t: sorted(set(COLUMN_KINDS[t]) - {c["name"] for c in inspector.get_columns(t)})
        for t in SOURCE_TABLES
        if t in before
    }
    lacking = {t: cols for t, cols in lacking.items() if cols}
    if lacking:
        raise DatabaseError(
            f"existing tables in {safe_url(str(engine.url))} lack contract columns {lacking}; "
            "fix them or pass --drop to recreate the tables (destroys their data)"
        )
    return [t for t in SOURCE_TABLES if t not in before]


def missing_tables(engine: Engine, tables: Iterable[str] = SOURCE_TABLES) -> list[str]:
    present = set(sa.inspect(engine).get_table_names())
    return [t for t in tables if t not in present]


def require_tables(engine: Engine, tables: Iterable[str] = SOURCE_TABLES) -> None:
    missing = missing_tables(engine, tables)
    if missing:
        raise DatabaseError(
            f"{safe_url(str(engine.url))} lacks the platform tables {missing}; "
            "run `rekindle db init` or `rekindle simulate`, or point --db at the platform database"
        )


def _sqlite_values(series: pd.Series) -> list:
    """Column values as SQLite expects them: datetimes as SQLAlchemy's
    'YYYY-MM-DD HH:MM:SS.ffffff' text (so Core queries compare them right), NULLs as None."""
    if pd.api.types.is_datetime64_any_dtype(series):
        arr = series.to_numpy(dtype="datetime64[us]")
        text = np.char.replace(np.datetime_as_string(arr, unit="us"), "T", " ").astype(object)
        text[np.isnat(arr)] = None
        return text.tolist()
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        return series.astype(object).where(series.notna(), None).tolist()
    if pd.api.types.is_float_dtype(series) or isinstance(series.dtype, pd.Int64Dtype):
        out = series.astype(object)
        return out.where(series.notna(), None).tolist()
    return series.tolist()


def bulk_insert(
    conn: sa.Connection,
    table: str,
    frame: pd.DataFrame,
    *,
    chunk_rows: int = 250_000,
    progress: Progress = SILENT,
    task: str | None = None,
) -> int:
    """Append ``frame`` (columns named as the table's) to ``table`` inside the
    caller's transaction, ``chunk_rows`` at a time (``progress`` advances
    ``task``, default the table's name, by each chunk). Returns the number of rows written."""
    if frame.empty:
        return 0
    cols = list(frame.columns)
    quoted = ", ".join(f'"{c}"' for c in cols)
    raw = conn.connection.dbapi_connection
    postgres = conn.dialect.name == "postgresql"
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        if postgres:
            _copy_chunk(raw, table, quoted, part)
        else:
            rows = list(zip(*(_sqlite_values(part[c]) for c in cols), strict=True))
            placeholders = ", ".join("?" for _ in cols)
            cur = raw.cursor()  # type: ignore[union-attr]
            try:
                cur.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({placeholders})', rows)
            finally:
                cur.close()
        progress.advance(task or table, len(part))
    return len(frame)


def _copy_chunk(raw: object, table: str, quoted: str, part: pd.DataFrame) -> None:
    """COPY one chunk into PostgreSQL as CSV (NULL as \\N)."""
    out = part.copy()
    for c in out.columns:
        # integral floats (NULL-able integer columns) must not print as "3.0"
        if pd.api.types.is_float_dtype(out[c]) and bool((out[c].dropna() % 1 == 0).all()):
            out[c] = out[c].astype("Int64")
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f")
    sql = f"COPY \"{table}\" ({quoted}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
        copy.write(buf.getvalue())


def tune_for_bulk_load(conn: sa.Connection) -> None:
    """SQLite pragmas for a one-shot bulk load (the file is rebuilt on failure anyway)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        conn.exec_driver_sql("PRAGMA journal_mode=MEMORY")
        conn.exec_driver_sql("PRAGMA cache_size=-262144")


def ts_param(engine: Engine, value: datetime) -> datetime | str:
    """A timestamp bound into raw SQL: SQLite stores SQLAlchemy's text format."""
    if engine.dialect.name == "sqlite":
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def read_sql(engine: Engine, query: str | sa.Executable, params: dict | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.text(query) if isinstance(query, str) else query, params or {})
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def max_id(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(sa.text(f'SELECT MAX(id) FROM "{table}"')).scalar()
    return int(value or 0)
