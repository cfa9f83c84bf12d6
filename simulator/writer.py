"""Write simulated tables to the platform database, all or nothing.

SQLite: the database is built in a temporary file next to the target and
renamed over it at the end. PostgreSQL: one transaction (DDL included), so a
failure leaves the database as it was.
"""

from __future__ import annotations

import os

import sqlalchemy as sa

from core.progress import SILENT, Progress
from platform_db.db import (
    DatabaseError,
    bulk_insert,
    connect,
    normalise_url,
    safe_url,
    sqlite_path,
    tune_for_bulk_load,
)
from platform_db.schema import SOURCE_TABLES, build_metadata
from simulator.tables import PlatformTables


def check_new_platform(url: str, *, overwrite: bool) -> None:
    """Fail before any work if ``url`` cannot take a new platform (exists without ``overwrite``, unreachable)."""
    url = normalise_url(url)
    path = sqlite_path(url)
    if path is not None:
        if path.exists() and not overwrite:
            raise DatabaseError(f"{path} already exists; pass --overwrite to replace it")
        if path.parent.exists() and not path.parent.is_dir():
            raise DatabaseError(f"cannot create {path}: {path.parent} is not a directory")
        return
    engine = connect(url)
    present = set(sa.inspect(engine).get_table_names()) & set(SOURCE_TABLES)
    engine.dispose()
    if present and not overwrite:
        raise DatabaseError(
            f"{safe_url(url)} already has platform tables {sorted(present)}; pass --overwrite to replace them"
        )


def write_new_platform(url: str, tables: PlatformTables, *, overwrite: bool, progress: Progress = SILENT) -> None:
    """Create the platform database at ``url`` holding exactly ``tables``."""
    check_new_platform(url, overwrite=overwrite)
    url = normalise_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        engine = sa.create_engine(f"sqlite:///{tmp}")
        try:
            build_metadata().create_all(engine)
            with engine.begin() as conn:
                tune_for_bulk_load(conn)
                _insert_all(conn, tables, progress)
        except BaseException:
            engine.dispose()
            tmp.unlink(missing_ok=True)
            raise
        engine.dispose()
        os.replace(tmp, path)
        return

    engine = connect(url)
    md = build_metadata()
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
        _insert_all(conn, tables, progress)
    engine.dispose()


def append_to_platform(url: str, tables: PlatformTables, *, progress: Progress = SILENT) -> None:
    """Append rows and apply the players' status and VIP changes (forward mode) in one transaction."""
    engine = connect(url)
    with engine.begin() as conn:
        _insert_all(conn, tables, progress)
        updates = tables.player_updates
        if updates is not None and len(updates):
            conn.execute(
                sa.text('UPDATE "players" SET "status" = :status, "vipLevel" = :vip WHERE "id" = :id'),
                [
                    {"status": str(s), "vip": int(v), "id": int(i)}
                    for i, s, v in updates[["id", "status", "vipLevel"]].to_numpy()
                ],
            )
    engine.dispose()


def _insert_all(conn: sa.Connection, tables: PlatformTables, progress: Progress) -> None:
    for name, frame in tables.items():
        bulk_insert(conn, name, frame, progress=progress, task=f"write {name}")
