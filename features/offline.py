"""Writers of the offline store: Parquet files (embedded) or PostgreSQL tables (production).

A build writes its snapshots chunk by chunk into a staging area and makes them
visible all at once on :meth:`commit`; a failure or an :meth:`abort` leaves the
previous store untouched (no half-written tables). With ``since``, rows of
"snapshot" views before ``since`` are kept from the previous store and the
new rows replace the rest; "replace" views are rewritten whole.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import sqlalchemy as sa

from features.families import TIMESTAMP, Family
from features.layout import FeatureStoreError, Layout
from features.repo import offline_table
from features.store import ensure_schemas

Mode = Literal["snapshot", "replace"]
VIEW_MODES: dict[str, Mode] = {  # snapshot views keep their old rows before --since; replace views are rewritten
    "player_activity": "snapshot",
    "player_money": "snapshot",
    "player_promotions": "snapshot",
    "player_segment": "snapshot",
    "player_cf": "snapshot",
    "event_type_cf": "snapshot",
    "player_profile": "replace",
    "event_type_content": "snapshot",
}
_ARROW = {"float": pa.float32(), "int": pa.int64(), "string": pa.string()}
_PG = {"float": "REAL", "int": "BIGINT", "string": "TEXT"}


def changed_columns(family: Family, have: list[str]) -> str:
    want = arrow_schema(family).names
    return (
        f"the features of {family.view} changed since the last build (added {sorted(set(want) - set(have))}, "
        f"removed {sorted(set(have) - set(want))}): run a full `rekindle features build` without --since"
    )


def arrow_schema(family: Family) -> pa.Schema:
    key = pa.int64() if family.key == "player_id" else pa.string()
    fields = [pa.field(family.key, key), pa.field(TIMESTAMP, pa.timestamp("us"))]
    return pa.schema(fields + [pa.field(f.name, _ARROW[f.kind]) for f in family.features])


def to_arrow(family: Family, frame: pd.DataFrame) -> pa.Table:
    """``frame`` as a table of exactly the family's schema (column order and types checked here, once)."""
    schema = arrow_schema(family)
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise ValueError(f"{family.view}: the frame lacks the columns {missing}")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


class OfflineWriter(Protocol):
    def write(self, family: Family, frame: pd.DataFrame) -> int: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


# ---------------------------------------------------------------- Parquet --
class ParquetWriter:
    """One directory of part files per view, in a new generation directory; ``current`` is a symlink to it."""

    def __init__(self, lay: Layout, families: Iterable[Family], modes: dict[str, Mode], since: datetime | None) -> None:
        self.lay, self.modes, self.since = lay, modes, since
        self.families = {f.view: f for f in families}
        lay.offline_root.mkdir(parents=True, exist_ok=True)
        self.gen = lay.offline_root / f"gen-{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.parts: dict[str, int] = {}
        for view in self.families:
            (self.gen / view).mkdir(parents=True)

    def write(self, family: Family, frame: pd.DataFrame) -> int:
        n = self.parts.get(family.view, 0)
        pq.write_table(to_arrow(family, frame), self.gen / family.view / f"part-{n:05d}.parquet", compression="zstd")
        self.parts[family.view] = n + 1
        return len(frame)

    def _keep_old(self, family: Family) -> None:
        old = self.lay.offline_current / family.view
        if self.since is None or self.modes.get(family.view) != "snapshot" or not old.is_dir():
            return
        files = sorted(str(p) for p in old.glob("*.parquet"))
        if not files:
            return
        have = pq.read_schema(files[0]).names
        if have != arrow_schema(family).names:
            raise FeatureStoreError(changed_columns(family, have))
        ds = pads.dataset(files, format="parquet", schema=arrow_schema(family))
        cut = pa.scalar(pd.Timestamp(self.since).to_datetime64(), type=pa.timestamp("us"))
        table = ds.to_table(filter=pads.field(TIMESTAMP) < cut)
        pq.write_table(table, self.gen / family.view / "kept-00000.parquet", compression="zstd")

    def commit(self) -> None:
        for view, family in self.families.items():
            self._keep_old(family)
            if not any((self.gen / view).glob("*.parquet")):  # DuckDB's glob needs a file, even an empty one
                pq.write_table(arrow_schema(family).empty_table(), self.gen / view / "part-00000.parquet")
        link = self.lay.offline_current
        previous = link.resolve() if link.is_symlink() else None
        tmp = self.lay.offline_root / f".current-{uuid.uuid4().hex[:6]}"
        os.symlink(self.gen.name, tmp)
        os.replace(tmp, link)  # atomic: readers see the old generation or the new one
        # Keep the previous generation for readers that resolved it before the swap (a running join);
        # older ones, and those of builds that were killed, go.
        keep = {self.gen.name, previous.name if previous is not None else ""}
        for stale in self.lay.offline_root.glob("gen-*"):
            if stale.name not in keep:
                shutil.rmtree(stale, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.gen, ignore_errors=True)


def read_parquet_view(lay: Layout, family: Family, *, at: datetime | None = None) -> pd.DataFrame:
    """The rows of one view in the current generation (those at ``at`` only, if given)."""
    files = sorted(str(p) for p in (lay.offline_current / family.view).glob("*.parquet"))
    ds = pads.dataset(files, format="parquet", schema=arrow_schema(family))
    flt = None
    if at is not None:
        flt = pads.field(TIMESTAMP) == pa.scalar(pd.Timestamp(at).to_datetime64(), type=pa.timestamp("us"))
    return ds.to_table(filter=flt).to_pandas()


# ------------------------------------------------------------- PostgreSQL --
class PostgresWriter:
    """Staging tables filled with COPY; one transaction swaps them in on commit."""

    def __init__(self, lay: Layout, families: Iterable[Family], modes: dict[str, Mode], since: datetime | None) -> None:
        self.lay, self.modes, self.since = lay, modes, since
        self.families = {f.view: f for f in families}
        self.schema = lay.offline_schema
        self.engine = sa.create_engine(lay.database)
        self.tag = uuid.uuid4().hex[:6]
        ensure_schemas(lay)
        with self.engine.begin() as conn:
            for fam in self.families.values():
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._staging(fam)}")
                conn.exec_driver_sql(f"CREATE TABLE {self._staging(fam)} ({self._columns(fam)})")

    def _staging(self, family: Family) -> str:
        return f'"{self.schema}"."{offline_table(family)}__staging_{self.tag}"'

    def _table(self, family: Family) -> str:
        return f'"{self.schema}"."{offline_table(family)}"'

    @staticmethod
    def _columns(family: Family) -> str:
        key = "BIGINT" if family.key == "player_id" else "TEXT"
        cols = [f'"{family.key}" {key} NOT NULL', f'"{TIMESTAMP}" TIMESTAMPTZ NOT NULL']
        return ", ".join(cols + [f'"{f.name}" {_PG[f.kind]}' for f in family.features])

    def write(self, family: Family, frame: pd.DataFrame) -> int:
        table = to_arrow(family, frame)
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        names = ", ".join(f'"{n}"' for n in table.column_names)
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute("SET TIME ZONE 'UTC'")  # the naive UTC text below is read as UTC
                with cur.copy(f"COPY {self._staging(family)} ({names}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(buf.getvalue())
            raw.commit()
        finally:
            raw.close()
        return len(frame)

    def commit(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            for fam in self.families.values():
                table, staging = self._table(fam), self._staging(fam)
                exists = conn.exec_driver_sql(f"SELECT to_regclass('{table}')").scalar() is not None
                if self.since is not None and self.modes.get(fam.view) == "snapshot" and exists:
                    have = [r[0] for r in conn.execute(
                        sa.text(
                            "SELECT column_name FROM information_schema.columns "
                            "WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position"
                        ),
                        {"s": self.schema, "t": offline_table(fam)},
                    )]  # fmt: skip
                    if have != arrow_schema(fam).names:
                        raise FeatureStoreError(changed_columns(fam, have))
                    cols = ", ".join(f'"{c}"' for c in have)
                    conn.execute(sa.text(f'DELETE FROM {table} WHERE "{TIMESTAMP}" >= :since'), {"since": self.since})
                    conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging}")
                    conn.exec_driver_sql(f"DROP TABLE {staging}")
                else:
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
                    conn.exec_driver_sql(f'ALTER TABLE {staging} RENAME TO "{offline_table(fam)}"')
                    conn.exec_driver_sql(
                        f'CREATE INDEX ON {table} ("{fam.key}", "{TIMESTAMP}")'  # the point-in-time join's lookups
                    )
        with self.engine.begin() as conn:  # staging tables left by builds that were killed
            leftovers = conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename LIKE '%\\_\\_staging\\_%'"
                ),
                {"s": self.schema},
            ).scalars()
            for name in list(leftovers):
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.schema}"."{name}"')
        with self.engine.begin() as conn:  # fresh statistics for the planner of Feast's join
            for fam in self.families.values():
                conn.exec_driver_sql(f"ANALYZE {self._table(fam)}")
        self.engine.dispose()

    def abort(self) -> None:
        with self.engine.begin() as conn:
            for fam in self.families.values():
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._staging(fam)}")
        self.engine.dispose()


def read_postgres_view(lay: Layout, family: Family, *, at: datetime | None = None) -> pd.DataFrame:
    engine = sa.create_engine(lay.database)
    where = f'WHERE "{TIMESTAMP}" = :at' if at is not None else ""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TIME ZONE 'UTC'")
            result = conn.execute(
                sa.text(f'SELECT * FROM "{lay.offline_schema}"."{offline_table(family)}" {where}'),
                {"at": at} if at is not None else {},
            )
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    finally:
        engine.dispose()
    if len(frame):
        frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    for f in family.features:
        if f.kind == "float":
            frame[f.name] = frame[f.name].astype(np.float32)
    return frame


def writer(lay: Layout, families: Iterable[Family], modes: dict[str, Mode], since: datetime | None) -> OfflineWriter:
    cls = PostgresWriter if lay.production else ParquetWriter
    return cls(lay, list(families), modes, since)


def read_view(lay: Layout, family: Family, *, at: datetime | None = None) -> pd.DataFrame:
    return read_postgres_view(lay, family, at=at) if lay.production else read_parquet_view(lay, family, at=at)
