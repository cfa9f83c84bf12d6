"""The platform database adapter on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import main
from platform_db.db import DatabaseError, bulk_insert, connect, init_source_tables, missing_tables, require_tables
from platform_db.schema import COLUMN_KINDS, SOURCE_TABLES


def test_db_init_creates_the_contract(empty_db_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "db", "init", "--db", empty_db_url])
    assert result.exit_code == 0, result.output
    inspector = sa.inspect(connect(empty_db_url))
    assert set(SOURCE_TABLES) <= set(inspector.get_table_names())
    for table, columns in COLUMN_KINDS.items():
        assert {c["name"] for c in inspector.get_columns(table)} == set(columns)
    assert inspector.get_pk_constraint("players")["constrained_columns"] == ["id"]
    assert inspector.get_foreign_keys("money_flows")


def test_db_init_without_constraints(empty_db_url: str) -> None:
    engine = connect(empty_db_url, must_exist=False)
    init_source_tables(engine, constraints=False)
    inspector = sa.inspect(engine)
    assert not inspector.get_pk_constraint("players")["constrained_columns"]
    assert not inspector.get_foreign_keys("money_flows")


def test_bulk_insert_round_trips_values(empty_db_url: str) -> None:
    engine = connect(empty_db_url, must_exist=False)
    init_source_tables(engine, constraints=False)
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "playerId": [10, 11, 12],
            "type": ["deposit", "bonus", "withdrawal"],
            "amount": [10_000, 5_000, 1_000],
            "createdAt": pd.to_datetime(
                ["2026-01-01 10:00:00.123456", "2026-01-02 00:00:00", "2026-01-03 23:59:59"], format="ISO8601"
            ),
            "promotionPlayerId": pd.array([None, 7, None], dtype="Int64"),
        }
    )
    with engine.begin() as conn:
        assert bulk_insert(conn, "money_flows", frame, chunk_rows=2) == 3
    table = sa.Table("money_flows", sa.MetaData(), autoload_with=engine)
    back = pd.read_sql(sa.select(table).order_by(table.c.id), engine)
    pd.testing.assert_series_equal(back["createdAt"], frame["createdAt"], check_names=False)
    assert back["promotionPlayerId"].isna().tolist() == [True, False, True]
    assert back["amount"].tolist() == [10_000, 5_000, 1_000]


def test_require_tables_names_what_is_missing(empty_db_url: str) -> None:
    engine = connect(empty_db_url, must_exist=False)
    assert missing_tables(engine) == list(SOURCE_TABLES)
    with pytest.raises(DatabaseError, match="lacks the platform tables"):
        require_tables(engine)


def test_connect_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no SQLite database"):
        connect(f"sqlite:///{tmp_path / 'nope.db'}")
