"""The bulk reader of the platform database (rekindle/platform/bulk.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest
import sqlalchemy as sa

from platform_db.bulk import snapshot, ts_literal
from platform_db.db import DatabaseError, connect

T0 = datetime(2024, 6, 1, 12, 0, 0, 250_000)
COLUMNS = {
    "id": ("id", pa.int64()),
    "label": ("label", pa.string()),
    "amount": ("amount", pa.float64()),
    "at": ('"createdAt"', pa.timestamp("us")),
}
ROWS = [
    {"id": 1, "label": "plain", "amount": 1.5, "createdAt": T0},
    {"id": 2, "label": "comma, 'quote' and\nnewline", "amount": 0.1 + 0.2, "createdAt": None},
    {"id": 3, "label": "", "amount": None, "createdAt": T0},
    {"id": 4, "label": None, "amount": -2.0, "createdAt": T0},
    {"id": 5, "label": "left out by the filter", "amount": 9.0, "createdAt": T0},
]


def notes_table(url: str) -> sa.Engine:
    engine = connect(url, must_exist=False)
    md = sa.MetaData()
    table = sa.Table(
        "notes",
        md,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("label", sa.Text),
        sa.Column("amount", sa.Float),
        sa.Column("createdAt", sa.DateTime),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), ROWS)
    return engine


@pytest.mark.parametrize("chunk_rows", [500_000, 2], ids=["one-chunk", "two-rows-a-chunk"])
def test_values_come_back_typed_with_the_filter_applied(empty_db_url: str, chunk_rows: int) -> None:
    engine = notes_table(empty_db_url)
    with snapshot(engine, {"notes": "id <> 5"}) as db:
        table = db.table("notes", COLUMNS, ["id >= 1"], chunk_rows=chunk_rows)
    assert table.schema == pa.schema([(name, t) for name, (_, t) in COLUMNS.items()])
    got = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in got] == [1, 2, 3, 4]
    assert [r["label"] for r in got] == ["plain", "comma, 'quote' and\nnewline", "", None]
    assert got[1]["amount"] == pytest.approx(0.3, abs=1e-15)
    assert got[2]["amount"] is None
    assert [r["at"] for r in got] == [T0, None, T0, T0]
    engine.dispose()


def test_an_empty_selection_is_an_empty_typed_table(empty_db_url: str) -> None:
    engine = notes_table(empty_db_url)
    with snapshot(engine) as db:
        table = db.table("notes", COLUMNS, ["id > 100"])
    assert table.num_rows == 0
    assert table.schema.field("at").type == pa.timestamp("us")
    engine.dispose()


def test_sqlite_text_of_the_wrong_type_is_a_clear_error(tmp_path) -> None:
    engine = notes_table(f"sqlite:///{tmp_path / 'platform.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE notes SET \"createdAt\" = '2024-05-40 25:00:00' WHERE id = 2"))
    with (
        snapshot(engine) as db,
        pytest.raises(DatabaseError, match=r"cannot read notes \(id, label.*rekindle validate"),
    ):
        db.table("notes", COLUMNS)
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_reads_one_read_only_snapshot(pg_database_factory) -> None:
    engine = notes_table(pg_database_factory())
    with snapshot(engine) as db:
        before = db.table("notes", COLUMNS).num_rows
        with engine.begin() as conn:  # committed by another connection after the snapshot began
            conn.execute(sa.text("DELETE FROM notes WHERE id = 1"))
        assert db.table("notes", COLUMNS).num_rows == before
        with pytest.raises(DatabaseError, match="cannot read the sum as the contract's types"):
            db.query("SELECT 'not a number'", pa.schema([("n", pa.int64())]), "the sum")
    engine.dispose()


def test_timestamp_literals_pad_the_year() -> None:
    assert ts_literal(datetime.min) == "TIMESTAMP '0001-01-01 00:00:00.000000'"
    assert ts_literal(T0) == "TIMESTAMP '2024-06-01 12:00:00.250000'"
