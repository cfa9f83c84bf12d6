"""Validation of the platform database: a clean hand-built database passes, and
every check catches exactly the one fault planted for it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from rich.console import Console

from platform_db.db import bulk_insert, connect, init_source_tables, read_sql
from platform_db.schema import SOURCE_TABLES, build_metadata
from validation import (
    UnsupportedDatabaseError,
    ValidationReport,
    excluded_counts,
    row_filters,
    run_checks,
    validate,
)

NOW = datetime(2024, 3, 1)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
# Overrides the conftest fixture's params so the PostgreSQL runs carry the `postgres` marker.
on_both_backends = pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)


def _ts(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[ns]")


def clean_frames() -> dict[str, pd.DataFrame]:
    """A small platform that breaks no rule: four players (player 4 never played),
    three promotions (the third never offered), three offers, six money flows."""
    return {
        "players": pd.DataFrame(
            {
                "id": [1, 2, 3, 4],
                "createdAt": _ts("2024-01-01", "2024-01-02", "2024-01-25", "2024-01-04"),
                "channel": ["organic", "ads", "referral", "affiliate"],
                "vipLevel": [0, 1, 2, 5],
                "status": ["active", "active", "self_excluded", "blocked"],
            }
        ),
        "player_sessions": pd.DataFrame(
            {
                "id": [1, 2, 3, 4, 5],
                "playerId": [1, 1, 2, 3, 3],
                "startedAt": _ts(
                    "2024-01-01 10:00", "2024-01-12 20:00", "2024-01-03 08:00", "2024-02-02 12:00", "2024-02-20 09:00"
                ),
                "endedAt": _ts("2024-01-01 11:00", "2024-01-12 21:00", "2024-01-03 08:30", None, "2024-02-20 10:00"),
                "game": ["slots", "table", "sports", "poker", "casual"],
            }
        ),
        "promotions": pd.DataFrame(
            {
                "id": [1, 2, 3],
                "name": ["January deposit bonus", "February spins", "Cashback week"],
                "type": ["deposit_bonus", "free_spins", "cashback"],
                "startsAt": _ts("2024-01-10", "2024-02-01", "2024-02-15"),
                "endsAt": _ts("2024-01-20", "2024-02-10", "2024-02-25"),
                "minDeposit": pd.array([10_000, None, 5_000], dtype="Int64"),
            }
        ),
        "promotion_players": pd.DataFrame(
            {
                "id": [1, 2, 3],
                "promotionId": [1, 1, 2],
                "playerId": [1, 2, 3],
                "reward": [10_000, 10_000, 5_000],
                "createdAt": _ts("2024-01-11", "2024-01-11", "2024-02-02"),
                "appliedAt": _ts("2024-01-12", None, "2024-02-03"),
            }
        ),
        "money_flows": pd.DataFrame(
            {
                "id": [1, 2, 3, 4, 5, 6],
                "playerId": [1, 1, 2, 2, 3, 3],
                "type": ["deposit", "bonus", "deposit", "withdrawal", "deposit", "bonus"],
                "amount": [50_000, 10_000, 20_000, 15_000, 30_000, 5_000],
                "createdAt": _ts(
                    "2024-01-05", "2024-01-12 01:00", "2024-01-06", "2024-01-08", "2024-02-02 13:00", "2024-02-03 01:00"
                ),
                "promotionPlayerId": pd.array([None, 1, None, None, None, 3], dtype="Int64"),
            }
        ),
    }


def clean_platform(url: str) -> Iterator[sa.Engine]:
    """The clean platform at ``url``, written the way the simulator writes it (without keys, so
    faults can be planted); source tables already there are dropped first."""
    eng = connect(url, must_exist=False)
    with eng.begin() as conn:
        for table in SOURCE_TABLES:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
    init_source_tables(eng, constraints=False)
    with eng.begin() as conn:
        for table, frame in clean_frames().items():
            bulk_insert(conn, table, frame)
    yield eng
    eng.dispose()


@pytest.fixture()
def engine(empty_db_url: str) -> Iterator[sa.Engine]:
    yield from clean_platform(empty_db_url)


@pytest.fixture(scope="module")
def shared_pg_url(pg_database_factory: Callable[[], str]) -> str:
    """One PostgreSQL database for the whole fault matrix: creating and dropping a database
    per case (~0.3 s each) would dominate the run; the tables are rebuilt per case instead."""
    return pg_database_factory()


@pytest.fixture()
def matrix_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    url = (
        f"sqlite:///{tmp_path / 'platform.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("shared_pg_url")
    )
    yield from clean_platform(url)


# ------------------------------------------------------------------ faults --
Plant = Callable[[sa.Engine], None]


def sql(*statements: str) -> Plant:
    def plant(engine: sa.Engine) -> None:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    return plant


def rebuild(table: str, *, drop: str | None = None, text: str | None = None, loose: bool = False) -> Plant:
    """Recreate ``table`` by hand, without column ``drop``, with column ``text`` as TEXT,
    or (``loose``) with every column nullable; the rows are copied over."""

    def plant(engine: sa.Engine) -> None:
        frame = read_sql(engine, f'SELECT * FROM "{table}" ORDER BY "id"')
        columns = [
            sa.Column(c.name, sa.Text() if c.name == text else c.type, nullable=loose or c.nullable)
            for c in build_metadata(constraints=False).tables[table].columns
            if c.name != drop
        ]
        if drop:
            frame = frame.drop(columns=[drop])
        if text:
            frame[text] = frame[text].astype(str)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE "{table}"'))
            sa.Table(table, sa.MetaData(), *columns).create(conn)
            bulk_insert(conn, table, frame)

    return plant


def both(*plants: Plant) -> Plant:
    def plant(engine: sa.Engine) -> None:
        for p in plants:
            p(engine)

    return plant


@dataclass(frozen=True)
class Fault:
    check: str
    count: int
    plant: Plant
    sqlite_only: bool = False  # PostgreSQL's typed columns cannot hold the fault


def dup(table: str) -> Plant:
    return sql(f'INSERT INTO "{table}" SELECT * FROM "{table}" WHERE "id" = 1')


def set_(table: str, assignment: str, row: int) -> Plant:
    return sql(f'UPDATE "{table}" SET {assignment} WHERE "id" = {row}')


def drop_table(table: str) -> Plant:
    return sql(f'DROP TABLE "{table}"')


TYPE_FAULTS = {
    "players": "vipLevel",
    "player_sessions": "startedAt",
    "promotions": "startsAt",
    "promotion_players": "reward",
    "money_flows": "amount",
}
DROP_FAULTS = {
    "players": "channel",
    "player_sessions": "game",
    "promotions": "name",
    "promotion_players": "reward",
    "money_flows": "amount",
}
NULL_FAULTS = {
    "players": ('"status"', 2),
    "player_sessions": ('"game"', 3),
    "promotions": ('"name"', 2),
    "promotion_players": ('"createdAt"', 2),
    "money_flows": ('"type"', 4),
}
STAMP_FAULTS = {
    "players": ("\"createdAt\" = 'yesterday'", 3),
    "player_sessions": ("\"endedAt\" = '2024-02-30 10:00:00'", 1),
    "promotions": ("\"startsAt\" = '2024-02-15T00:00:00'", 3),
    "promotion_players": ("\"appliedAt\" = '2024-01-12 25:00:00'", 1),
    "money_flows": ('"createdAt" = 20240108', 4),
}
INTEGER_FAULTS = {
    "players": ("\"vipLevel\" = 'gold'", 2),
    "player_sessions": ('"id" = 2.5', 2),
    "promotions": ("\"minDeposit\" = 'ten'", 3),
    "promotion_players": ('"reward" = 100.5', 2),
    "money_flows": ("\"amount\" = 'abc'", 1),
}

FAULTS: list[Fault] = [
    *(Fault(f"{t}.table_present", 1, drop_table(t)) for t in SOURCE_TABLES),
    *(Fault(f"{t}.columns_present", 1, rebuild(t, drop=c)) for t, c in DROP_FAULTS.items()),
    *(Fault(f"{t}.column_types", 1, rebuild(t, text=c)) for t, c in TYPE_FAULTS.items()),
    *(
        Fault(f"{t}.required_not_null", 1, both(rebuild(t, loose=True), set_(t, f"{c} = NULL", row)))
        for t, (c, row) in NULL_FAULTS.items()
    ),
    *(Fault(f"{t}.unique_id", 2, dup(t)) for t in SOURCE_TABLES),
    *(Fault(f"{t}.timestamps_valid", 1, set_(t, a, row), sqlite_only=True) for t, (a, row) in STAMP_FAULTS.items()),
    *(Fault(f"{t}.integer_values", 1, set_(t, a, row), sqlite_only=True) for t, (a, row) in INTEGER_FAULTS.items()),
    # players
    Fault("players.status_known", 1, set_("players", "\"status\" = 'deleted'", 2)),
    Fault(
        "players.vip_level_range", 2, both(set_("players", '"vipLevel" = -1', 1), set_("players", '"vipLevel" = 6', 2))
    ),
    Fault("players.channel_known", 1, set_("players", "\"channel\" = 'tiktok'", 3)),
    Fault("players.created_in_future", 1, set_("players", "\"createdAt\" = '2024-06-01 00:00:00'", 4)),
    # player_sessions
    Fault("player_sessions.player_exists", 1, set_("player_sessions", '"playerId" = 99', 2)),
    Fault("player_sessions.ended_before_started", 1, set_("player_sessions", "\"endedAt\" = '2024-01-01 09:00:00'", 1)),
    Fault(
        "player_sessions.in_future",
        1,
        set_("player_sessions", "\"startedAt\" = '2024-03-05 00:00:00', \"endedAt\" = '2024-03-05 01:00:00'", 5),
    ),
    Fault("player_sessions.game_known", 1, set_("player_sessions", "\"game\" = 'bingo'", 3)),
    Fault(
        "player_sessions.before_player_created",
        1,
        set_("player_sessions", "\"startedAt\" = '2024-01-01 08:00:00', \"endedAt\" = '2024-01-01 08:30:00'", 3),
    ),
    # promotions
    Fault("promotions.ends_before_starts", 1, set_("promotions", "\"endsAt\" = '2024-02-14 00:00:00'", 3)),
    Fault(
        "promotions.min_deposit_positive",
        2,
        both(set_("promotions", '"minDeposit" = 0', 3), set_("promotions", '"minDeposit" = -5', 1)),
    ),
    # promotion_players
    Fault("promotion_players.promotion_exists", 1, set_("promotion_players", '"promotionId" = 99', 2)),
    Fault("promotion_players.player_exists", 1, set_("promotion_players", '"playerId" = 99', 2)),
    Fault("promotion_players.reward_non_negative", 1, set_("promotion_players", '"reward" = -1', 2)),
    Fault(
        "promotion_players.applied_before_created",
        1,
        set_("promotion_players", "\"appliedAt\" = '2024-01-10 12:00:00'", 1),
    ),
    Fault("promotion_players.in_future", 1, set_("promotion_players", "\"appliedAt\" = '2024-05-01 00:00:00'", 2)),
    Fault("promotion_players.before_player_created", 1, set_("promotion_players", '"playerId" = 3', 2)),
    Fault(
        "promotion_players.sent_outside_promotion",
        1,
        set_("promotion_players", "\"createdAt\" = '2024-01-25 00:00:00'", 2),
    ),
    # money_flows
    Fault("money_flows.player_exists", 1, set_("money_flows", '"playerId" = 99', 3)),
    Fault("money_flows.promotion_player_exists", 1, set_("money_flows", '"promotionPlayerId" = 99', 2)),
    Fault(
        "money_flows.amount_positive",
        2,
        both(set_("money_flows", '"amount" = 0', 1), set_("money_flows", '"amount" = -100', 3)),
    ),
    Fault("money_flows.type_known", 1, set_("money_flows", "\"type\" = 'refund'", 4)),
    Fault("money_flows.in_future", 1, set_("money_flows", "\"createdAt\" = '2024-03-02 00:00:00'", 5)),
    Fault("money_flows.bonus_without_promotion", 1, set_("money_flows", '"promotionPlayerId" = NULL', 6)),
    Fault("money_flows.promotion_on_non_bonus", 1, set_("money_flows", '"promotionPlayerId" = 1', 1)),
    Fault("money_flows.bonus_player_mismatch", 1, set_("money_flows", '"playerId" = 2', 6)),
    Fault("money_flows.before_player_created", 1, set_("money_flows", "\"createdAt\" = '2024-01-20 00:00:00'", 5)),
]


# ------------------------------------------------------------------- tests --
@on_both_backends
def test_clean_database_passes(engine: sa.Engine) -> None:
    report = validate(engine, now=NOW)
    assert report.ok, report.verdict()
    assert report.errors == [] and report.warnings == []
    assert {r.name for r in report.results} >= {f.check for f in FAULTS}
    assert excluded_counts(engine, NOW) == dict.fromkeys(SOURCE_TABLES, 0)
    skipped = {r.name for r in report.skipped}
    if engine.dialect.name == "sqlite":
        assert skipped == set()
    else:  # the SQLite storage checks: PostgreSQL's typed columns cannot hold those faults
        assert skipped == {f.check for f in FAULTS if f.sqlite_only}
        assert {r.skipped for r in report.skipped} == {"PostgreSQL enforces column types"}


@on_both_backends
def test_database_with_keys_passes(empty_db_url: str) -> None:
    """As `rekindle db init` creates it: primary and foreign keys (on SQLite, id is the rowid)."""
    eng = connect(empty_db_url, must_exist=False)
    init_source_tables(eng, constraints=True)
    with eng.begin() as conn:
        for table, frame in clean_frames().items():
            bulk_insert(conn, table, frame)
    assert validate(eng, now=NOW).verdict().startswith("PASSED: 62 checks, 0 with errors, 0 with warnings")
    set_("players", '"vipLevel" = 9', 2)(eng)
    assert excluded_counts(eng, NOW) == {**dict.fromkeys(SOURCE_TABLES, 0), "players": 1}
    eng.dispose()


def test_every_check_has_a_fault() -> None:
    names = {f.check for f in FAULTS}
    assert len(names) == len(FAULTS)
    url = "sqlite://"  # in memory: only the names of the checks are needed
    eng = sa.create_engine(url)
    init_source_tables(eng)
    assert {r.name for r in run_checks(eng, now=NOW)} == names


def fault_cases() -> list:
    """Every fault on both backends, except SQLite-only faults on PostgreSQL (its typed columns cannot hold them)."""
    return [
        pytest.param(backend.values[0], fault, id=f"{fault.check}-{backend.id}", marks=backend.marks)
        for fault in FAULTS
        for backend in BACKENDS
        if not (fault.sqlite_only and backend.id == "postgresql")
    ]


@pytest.mark.parametrize(("matrix_engine", "fault"), fault_cases(), indirect=["matrix_engine"])
def test_each_check_catches_its_fault(matrix_engine: sa.Engine, fault: Fault) -> None:
    engine = matrix_engine
    fault.plant(engine)
    report = validate(engine, now=NOW)
    caught = {r.name: r.count for r in report.results if r.failed}
    assert caught == {fault.check: fault.count}
    result = next(r for r in report.results if r.name == fault.check)
    assert 0 < len(result.examples) <= 5
    if result.severity == "error":
        assert not report.ok
    else:
        assert report.ok and report.warnings == [result]
    # row-level error checks exclude exactly the planted rows; contract faults and warnings exclude nothing
    row_level = result.severity == "error" and not fault.check.endswith(("_present", "column_types"))
    expected = {t: (fault.count if row_level and t == result.table else 0) for t in SOURCE_TABLES}
    assert excluded_counts(engine, NOW) == expected


@on_both_backends
def test_missing_table_skips_the_checks_that_need_it(engine: sa.Engine) -> None:
    drop_table("players")(engine)
    results = {r.name: r for r in run_checks(engine, now=NOW)}
    assert results["players.table_present"].count == 1
    assert results["players.status_known"].skipped == "table players is missing"
    assert results["player_sessions.player_exists"].skipped == "table players is missing"
    assert results["player_sessions.game_known"].skipped is None
    assert row_filters(engine, NOW)["players"] == "(1 = 1)"


@on_both_backends
def test_wrong_type_is_named_and_skips_dependent_checks(engine: sa.Engine) -> None:
    rebuild("money_flows", text="amount")(engine)
    results = {r.name: r for r in run_checks(engine, now=NOW)}
    assert results["money_flows.column_types"].examples == [{"column": "amount", "expected": "int", "found": "TEXT"}]
    assert results["money_flows.amount_positive"].skipped == "column money_flows.amount has the wrong type"


@on_both_backends
def test_row_filters_keep_exactly_the_valid_rows(engine: sa.Engine) -> None:
    both(
        set_("players", "\"status\" = 'deleted'", 2),
        set_("players", '"vipLevel" = 9', 3),
        set_("player_sessions", '"playerId" = 99', 2),
        set_("player_sessions", "\"endedAt\" = '2024-01-01 09:00:00'", 1),
        set_("player_sessions", "\"game\" = 'bingo'", 3),  # a warning: kept
        set_("promotions", '"minDeposit" = 0', 3),
        set_("promotion_players", '"reward" = -1', 2),
        set_("money_flows", '"amount" = -1', 1),
        set_("money_flows", "\"type\" = 'refund'", 4),
        dup("money_flows"),  # both rows with id 1 go (one is already bad)
        set_("money_flows", "\"createdAt\" = '2024-01-20 00:00:00'", 5),  # a warning: kept
    )(engine)
    filters = row_filters(engine, NOW)
    with engine.connect() as conn:
        kept = {
            t: sorted(conn.execute(sa.text(f'SELECT "id" FROM "{t}" WHERE {filters[t]}')).scalars())
            for t in SOURCE_TABLES
        }
    assert kept == {
        "players": [1, 4],
        "player_sessions": [3, 4, 5],
        "promotions": [1, 2],
        "promotion_players": [1, 3],
        "money_flows": [2, 3, 5, 6],
    }
    assert excluded_counts(engine, NOW) == {
        "players": 2,
        "player_sessions": 2,
        "promotions": 1,
        "promotion_players": 1,
        "money_flows": 3,
    }


@on_both_backends
def test_future_is_relative_to_now(engine: sa.Engine) -> None:
    set_("money_flows", "\"createdAt\" = '2024-03-02 00:00:00'", 5)(engine)
    seoul = timezone(timedelta(hours=9))
    before = datetime(2024, 3, 2, 8, 59, 59, tzinfo=seoul)  # 23:59:59 UTC on 1 March
    assert [r.name for r in validate(engine, now=before).errors] == ["money_flows.in_future"]
    assert validate(engine, now=datetime(2024, 3, 2, 9, tzinfo=seoul)).ok  # exactly 00:00 UTC: not after now
    assert validate(engine, now=datetime(2024, 3, 2)).ok and validate(engine, now=datetime(2024, 3, 3, tzinfo=UTC)).ok


def test_now_must_be_a_datetime() -> None:
    eng = sa.create_engine("sqlite://")
    with pytest.raises(TypeError, match=r"now must be a datetime, got '2024-03-01'"):
        run_checks(eng, now="2024-03-01")  # type: ignore[arg-type]


def test_unsupported_dialect_is_named() -> None:
    eng = sa.create_engine("sqlite://")
    eng.dialect.name = "mysql"  # as if: the checks only look at the dialect's name before any SQL
    with pytest.raises(UnsupportedDatabaseError, match=r"written for \('sqlite', 'postgresql'\), not 'mysql'"):
        run_checks(eng, now=NOW)


@on_both_backends
def test_report_renders_and_writes_json(engine: sa.Engine, tmp_path: Path) -> None:
    both(set_("money_flows", '"amount" = -7', 1), set_("players", "\"channel\" = 'tiktok'", 3))(engine)
    report = validate(engine, now=NOW)
    console = Console(record=True, width=200)
    report.render(console)
    text = console.export_text()
    assert "money_flows.amount_positive" in text and "amount=-7" in text
    assert text.strip().endswith(report.verdict())
    assert report.verdict().startswith("FAILED: ") and "1 with errors, 1 with warnings" in report.verdict()

    path = tmp_path / "deep" / "validation.json"
    report.to_json(path)
    data = json.loads(path.read_text())
    assert data["ok"] is False and data["summary"]["errors"] == 1
    bad = next(c for c in data["checks"] if c["name"] == "money_flows.amount_positive")
    assert bad["examples"] == [{"id": 1, "amount": -7}]
    dup("players")(engine)
    dupes = next(c for c in validate(engine, now=NOW).to_dict()["checks"] if c["name"] == "players.unique_id")
    assert dupes["count"] == 2 and dupes["examples"] == [{"id": 1}, {"id": 1}]


@on_both_backends
def test_examples_with_timestamps_serialise(engine: sa.Engine, tmp_path: Path) -> None:
    set_("players", "\"createdAt\" = '2024-06-01 00:00:00'", 4)(engine)
    report = validate(engine, now=NOW)
    report.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    check = next(c for c in data["checks"] if c["name"] == "players.created_in_future")
    assert check["examples"][0]["createdAt"].replace("T", " ").startswith("2024-06-01 00:00:00")
    assert isinstance(report, ValidationReport) and report.now == NOW
