"""The facts load (features/facts.py): exact facts of a hand-built platform on SQLite and PostgreSQL,
both backends agreeing on a simulated world, an independent pandas computation, no leakage from
rows at or after the as-of time, and clear errors."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import as_built_config
from sqlalchemy.engine import Engine

from core.config import Config
from core.progress import Recorder
from features.facts import FACT_STEPS, EmptyHistoryError, Facts, fact_schemas, load_facts
from platform_db.db import DatabaseError, bulk_insert, connect, init_source_tables, read_sql
from platform_db.schema import build_metadata
from simulator.run import simulate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
AS_OF = datetime(2024, 6, 1, 12, 0, 0, 250_000)  # a fraction of a second: buckets must anchor on it exactly
US = timedelta(microseconds=1)
NAT = pd.NaT
NAN = float("nan")


def ago(days: float = 0, **parts: float) -> datetime:
    """A time before AS_OF (negative values: after it)."""
    return AS_OF - timedelta(days=days, **parts)


S1, S2 = ago(20), ago(3)  # the send times of offers 1 and 2

# ------------------------------------------------------------- the platform --
PLAYERS = [  # id, createdAt, channel, vipLevel, status
    (1, ago(100), "ads", 2, "active"),
    (2, ago(50), "organic", 0, "self_excluded"),
    (3, AS_OF, "ads", 1, "active"),  # registered at AS_OF: not a player yet
    (4, AS_OF + timedelta(days=1), "ads", 1, "active"),
    (5, ago(10), "referral", 5, "blocked"),  # no activity at all
]
SESSIONS = [  # playerId, startedAt, game
    (1, ago(1), "slots"),  # exactly AS_OF - 1 day: bucket -1
    (1, ago(1) - US, "table"),  # a microsecond earlier: bucket -2
    (1, AS_OF - US, "poker"),  # bucket -1
    (1, AS_OF, "slots"),  # at AS_OF: ignored
    (1, AS_OF + timedelta(hours=1), "slots"),
    (1, ago(30, hours=5), "slots"),  # bucket -31, with the next
    (1, ago(30, hours=3), "bingo"),  # a game not in the config: other
    (1, S1, "casual"),  # exactly at offer 1's send time: not a re-engagement
    (1, S1 + timedelta(days=7), "sports"),  # exactly at the end of offer 1's window: re-engaged
    (1, S2 + timedelta(hours=1), "slots"),  # offer 2 re-engaged here
    (1, S2 + timedelta(hours=2), None),  # NULL game: other
    (2, ago(19), "casual"),  # inside offer 1's window, but another player
    (2, AS_OF + timedelta(hours=1), "slots"),  # after AS_OF, inside offer 6's window
    (3, ago(5), "slots"),  # not a player before AS_OF
    (99, ago(5), "slots"),  # no such player
]
PROMOTIONS = [(1, "winback deposit bonus", "deposit_bonus"), (2, "winback free spins", "free_spins")]
OFFERS = [  # id, promotionId, playerId, reward, createdAt (sent), appliedAt (claimed)
    (1, 1, 1, 10_000, S1, ago(19)),
    (2, 2, 1, 5_000, S2, AS_OF + timedelta(hours=1)),  # claimed after AS_OF: not claimed yet
    (3, 1, 2, 2_000, ago(30), None),
    (4, 1, 1, 10_000, AS_OF, None),  # sent at AS_OF: left out
    (5, 2, 3, 1_000, ago(1), None),  # to a player registered at AS_OF: left out
    (6, 2, 2, 1_000, ago(1), AS_OF),  # claimed exactly at AS_OF: not claimed yet
]
FLOWS = [  # playerId, type, amount, createdAt, promotionPlayerId
    (1, "deposit", 1_000, S1, None),  # at offer 1's send time: not a conversion
    (1, "deposit", 20_000, S1 + timedelta(days=7) + US, None),  # just after offer 1's window
    (1, "deposit", 10_000, ago(2), None),  # converts offer 2
    (1, "deposit", 30_000, ago(2, hours=-1), None),
    (1, "withdrawal", 5_000, ago(1, hours=12), None),
    (1, "bonus", 3_000, ago(12), 1),
    (1, "bonus", 1_000, ago(11), 1),
    (1, "bonus", 700, ago(40), None),  # a bonus of no offer
    (1, "bonus", 500, AS_OF, 2),  # at AS_OF: ignored
    (1, "deposit", 99_999, AS_OF, None),
    (1, "chargeback", 1_000, ago(5), None),  # not a money-flow type of the contract
    (2, "withdrawal", 5_000, ago(25), None),  # inside offer 3's window: not a conversion
    (3, "deposit", 50_000, ago(5), None),
]

SESSION_COLUMNS = ["player_id", "day", "sessions", "sessions_slots", "sessions_table", "sessions_sports",
                   "sessions_poker", "sessions_casual", "sessions_other", "first_at", "last_at"]  # fmt: skip
EXPECTED_SESSION_DAYS = [
    (1, -31, 2, 1, 0, 0, 0, 0, 1, ago(30, hours=5), ago(30, hours=3)),
    (1, -20, 1, 0, 0, 0, 0, 1, 0, S1, S1),
    (1, -13, 1, 0, 0, 1, 0, 0, 0, S1 + timedelta(days=7), S1 + timedelta(days=7)),
    (1, -3, 2, 1, 0, 0, 0, 0, 1, S2 + timedelta(hours=1), S2 + timedelta(hours=2)),
    (1, -2, 1, 0, 1, 0, 0, 0, 0, ago(1) - US, ago(1) - US),
    (1, -1, 2, 1, 0, 0, 1, 0, 0, ago(1), AS_OF - US),
    (2, -19, 1, 0, 0, 0, 0, 1, 0, ago(19), ago(19)),
]  # fmt: skip
MONEY_COLUMNS = ["player_id", "day", "deposits_n", "deposits_sum", "deposit_max", "withdrawals_n",
                 "withdrawals_sum", "bonus_sum", "last_deposit_at"]  # fmt: skip
EXPECTED_MONEY_DAYS = [
    (1, -40, 0, 0.0, NAN, 0, 0.0, 700.0, NAT),
    (1, -20, 1, 1_000.0, 1_000.0, 0, 0.0, 0.0, S1),
    (1, -13, 1, 20_000.0, 20_000.0, 0, 0.0, 0.0, S1 + timedelta(days=7) + US),
    (1, -12, 0, 0.0, NAN, 0, 0.0, 3_000.0, NAT),
    (1, -11, 0, 0.0, NAN, 0, 0.0, 1_000.0, NAT),
    (1, -2, 2, 40_000.0, 30_000.0, 1, 5_000.0, 0.0, ago(2, hours=-1)),
    (2, -25, 0, 0.0, NAN, 1, 5_000.0, 0.0, NAT),
]
OFFER_COLUMNS = ["offer_id", "player_id", "promotion_id", "sent_at", "event_type", "reward", "claimed_at",
                 "reengaged_at", "converted_at", "bonus_paid", "window_end"]  # fmt: skip
EXPECTED_OFFERS = [
    (1, 1, 1, S1, "deposit_bonus", 10_000.0, ago(19), S1 + timedelta(days=7), NAT, 4_000.0, S1 + timedelta(days=7)),
    (2, 1, 2, S2, "free_spins", 5_000.0, NAT, S2 + timedelta(hours=1), ago(2), 0.0, S2 + timedelta(days=7)),
    (3, 2, 1, ago(30), "deposit_bonus", 2_000.0, NAT, NAT, NAT, 0.0, ago(23)),
    (6, 2, 2, ago(1), "free_spins", 1_000.0, NAT, NAT, NAT, 0.0, ago(1) + timedelta(days=7)),
]  # fmt: skip


def expected(rows: list[tuple], columns: list[str], schema_name: str, cfg: Config) -> pd.DataFrame:
    """The expected rows typed as the contract says."""
    schema = fact_schemas(list(cfg.features.games))[schema_name]
    frame = pd.DataFrame(rows, columns=columns)
    for f in schema:
        if str(f.type).startswith("timestamp"):
            frame[f.name] = pd.to_datetime(frame[f.name]).astype("datetime64[us]")
        elif f.type.to_pandas_dtype() is not np.object_:
            frame[f.name] = frame[f.name].astype(f.type.to_pandas_dtype())
    return frame


def platform_frames() -> dict[str, pd.DataFrame]:
    p = pd.DataFrame(PLAYERS, columns=["id", "createdAt", "channel", "vipLevel", "status"])
    s = pd.DataFrame(SESSIONS, columns=["playerId", "startedAt", "game"])
    s.insert(0, "id", range(1, len(s) + 1))
    s["endedAt"] = s["startedAt"] + pd.Timedelta(minutes=20)
    promos = pd.DataFrame(PROMOTIONS, columns=["id", "name", "type"]).assign(
        startsAt=ago(400), endsAt=AS_OF + timedelta(days=30), minDeposit=None
    )
    pp = pd.DataFrame(OFFERS, columns=["id", "promotionId", "playerId", "reward", "createdAt", "appliedAt"])
    pp["appliedAt"] = pd.to_datetime(pp["appliedAt"])
    mf = pd.DataFrame(FLOWS, columns=["playerId", "type", "amount", "createdAt", "promotionPlayerId"])
    mf.insert(0, "id", range(1, len(mf) + 1))
    mf["promotionPlayerId"] = mf["promotionPlayerId"].astype("Int64")
    return {"players": p, "promotions": promos, "player_sessions": s, "promotion_players": pp, "money_flows": mf}


def create_platform(
    engine: Engine, frames: dict[str, pd.DataFrame], nullable: tuple[str, ...] = ("player_sessions.game",)
) -> None:
    """The tables without keys (orphan rows must be insertable) and with ``nullable`` columns (a NULL game
    must count as other), filled with ``frames``."""
    md = build_metadata(constraints=False)
    for name in nullable:
        table, column = name.split(".")
        md.tables[table].c[column].nullable = True
    md.create_all(engine)
    with engine.begin() as conn:
        for table, frame in frames.items():
            bulk_insert(conn, table, frame)


@pytest.fixture()
def platform(empty_db_url: str) -> Iterator[Engine]:
    """The hand-built platform database, on SQLite and on PostgreSQL."""
    engine = connect(empty_db_url, must_exist=False)
    create_platform(engine, platform_frames())
    yield engine
    engine.dispose()


def assert_facts_equal(a: Facts, b: Facts) -> None:
    assert a.as_of == b.as_of
    for name in FACT_STEPS:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)


# ---------------------------------------------------- the hand-built platform --
def test_hand_built_platform_gives_exact_facts_on_both_backends(platform: Engine, config: Config) -> None:
    rec = Recorder()
    facts = load_facts(platform, config, AS_OF, progress=rec)

    assert rec.details("load facts") == list(FACT_STEPS)
    assert facts.as_of == AS_OF
    assert facts.n_players == 3
    players = expected(
        [(1, ago(100), "ads", 2, "active"), (2, ago(50), "organic", 0, "self_excluded"), (5, ago(10), "referral", 5,
         "blocked")],
        ["player_id", "created_at", "channel", "vip_level", "status"],
        "players",
        config,
    )  # fmt: skip
    pd.testing.assert_frame_equal(facts.players, players, check_exact=True)
    session_days = expected(EXPECTED_SESSION_DAYS, SESSION_COLUMNS, "session_days", config)
    pd.testing.assert_frame_equal(facts.session_days, session_days, check_exact=True)
    money_days = expected(EXPECTED_MONEY_DAYS, MONEY_COLUMNS, "money_days", config)
    pd.testing.assert_frame_equal(facts.money_days, money_days, check_exact=True)
    offers = expected(EXPECTED_OFFERS, OFFER_COLUMNS, "offers", config)
    pd.testing.assert_frame_equal(facts.offers, offers, check_exact=True)


def test_dtypes_follow_the_contract(platform: Engine, config: Config) -> None:
    facts = load_facts(platform, config, AS_OF)
    games = [f"sessions_{g}" for g in config.features.games]
    assert list(facts.session_days.columns) == ["player_id", "day", "sessions", *games, "sessions_other",
                                                 "first_at", "last_at"]  # fmt: skip
    assert facts.players.dtypes.astype(str).to_dict() == {
        "player_id": "int64", "created_at": "datetime64[us]", "channel": "object", "vip_level": "int64",
        "status": "object",
    }  # fmt: skip
    assert facts.session_days.dtypes.astype(str).to_dict() == {
        "player_id": "int64", "day": "int32", **dict.fromkeys(["sessions", *games, "sessions_other"], "int32"),
        "first_at": "datetime64[us]", "last_at": "datetime64[us]",
    }  # fmt: skip
    assert facts.money_days.dtypes.astype(str).to_dict() == {
        "player_id": "int64", "day": "int32", "deposits_n": "int32", "deposits_sum": "float64",
        "deposit_max": "float64", "withdrawals_n": "int32", "withdrawals_sum": "float64", "bonus_sum": "float64",
        "last_deposit_at": "datetime64[us]",
    }  # fmt: skip
    assert facts.offers.dtypes.astype(str).to_dict() == {
        "offer_id": "int64", "player_id": "int64", "promotion_id": "int64", "sent_at": "datetime64[us]",
        "event_type": "object", "reward": "float64", "claimed_at": "datetime64[us]",
        "reengaged_at": "datetime64[us]", "converted_at": "datetime64[us]", "bonus_paid": "float64",
        "window_end": "datetime64[us]",
    }  # fmt: skip


def test_aware_as_of_is_converted_to_naive_utc(platform: Engine, config: Config) -> None:
    seoul = timezone(timedelta(hours=9))
    aware = load_facts(platform, config, (AS_OF + timedelta(hours=9)).replace(tzinfo=seoul))
    assert_facts_equal(aware, load_facts(platform, config, AS_OF))


def test_attribution_window_follows_the_config(platform: Engine, config: Config) -> None:
    shorter = config.model_copy(update={"business": config.business.model_copy(update={"attribution_days": 6})})
    offers = load_facts(platform, shorter, AS_OF).offers.set_index("offer_id")
    assert offers.loc[1, "reengaged_at"] is pd.NaT  # its session was exactly 7 days after
    assert offers.loc[2, "reengaged_at"] == S2 + timedelta(hours=1)
    assert offers.loc[1, "window_end"] == S1 + timedelta(days=6)


def test_valid_row_filters_leave_rows_out(platform: Engine, config: Config) -> None:
    filters = {
        "players": '"players"."id" <> 2',  # player 2 and everything of theirs
        "player_sessions": '"player_sessions"."startedAt" <> (SELECT MIN("startedAt") FROM "player_sessions")',
        "promotions": '"promotions"."name" <> \'a:b\'',  # a colon in a literal is no bind parameter
    }
    facts = load_facts(platform, config, AS_OF, filters=filters)
    assert facts.players["player_id"].tolist() == [1, 5]
    assert 2 not in set(facts.session_days["player_id"]) | set(facts.money_days["player_id"])
    assert facts.offers["offer_id"].tolist() == [1, 2]
    bucket = facts.session_days.set_index("day").loc[-31]  # the earliest session is gone
    assert (bucket["sessions"], bucket["sessions_slots"], bucket["first_at"]) == (1, 0, ago(30, hours=3))


def test_unknown_filter_table_is_refused(platform: Engine, config: Config) -> None:
    with pytest.raises(ValueError, match=r"filters name unknown tables \['sessions'\]"):
        load_facts(platform, config, AS_OF, filters={"sessions": "1 = 1"})


# ------------------------------------------------------------------- errors --
def test_missing_tables_are_named(empty_db_url: str, config: Config) -> None:
    engine = connect(empty_db_url, must_exist=False)
    build_metadata(constraints=False).tables["players"].create(engine)
    with pytest.raises(DatabaseError, match=r"lacks the platform tables \['player_sessions', 'promotions'"):
        load_facts(engine, config, AS_OF)
    engine.dispose()


def test_empty_history_is_a_clear_error(empty_db_url: str, config: Config) -> None:
    engine = connect(empty_db_url, must_exist=False)
    init_source_tables(engine)
    with pytest.raises(EmptyHistoryError, match=r"no players registered before 2024-06-01T12:00:00 in .*nothing to"):
        load_facts(engine, config, AS_OF)
    frames = platform_frames()
    create_platform(engine, {"players": frames["players"]})
    rec = Recorder()
    with pytest.raises(EmptyHistoryError, match="no players registered before 2024-01-01"):
        load_facts(engine, config, datetime(2024, 1, 1), progress=rec)
    assert rec.details("load facts") == []  # failed before the expensive queries
    engine.dispose()


# ---------------------------------------------------------- simulated worlds --
def simulated(home: Path, db_url: str | None = None) -> tuple[Config, datetime]:
    cfg = as_built_config(home, db_url=db_url, overrides={"simulator": {"players": 2_000, "days": 60, "seed": 11}})
    summary = simulate(cfg, home / "truth", overwrite=False)
    return cfg, summary.as_of


@pytest.fixture(scope="session")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, datetime]:
    return simulated(tmp_path_factory.mktemp("facts_sqlite"))


@pytest.fixture(scope="session")
def postgres_world(tmp_path_factory: pytest.TempPathFactory, pg_database_factory) -> tuple[Config, datetime]:
    return simulated(tmp_path_factory.mktemp("facts_pg"), pg_database_factory())


def mid_history(end: datetime) -> datetime:
    """A time well inside the simulated history, off any round second."""
    return end - timedelta(days=17, hours=3, microseconds=123_456)


@pytest.mark.postgres
def test_sqlite_and_postgresql_give_identical_facts(sqlite_world, postgres_world) -> None:
    (lite_cfg, end), (pg_cfg, pg_end) = sqlite_world, postgres_world
    assert end == pg_end
    lite, pg = connect(lite_cfg.db_url), connect(pg_cfg.db_url)
    for as_of in (end, mid_history(end)):  # the second leaves rows in the future of the as-of time
        facts = load_facts(lite, lite_cfg, as_of)
        assert facts.offers["reengaged_at"].notna().any() and facts.offers["converted_at"].notna().any()
        assert facts.offers["bonus_paid"].gt(0).any() and facts.offers["claimed_at"].notna().any()
        assert_facts_equal(facts, load_facts(pg, pg_cfg, as_of))
    lite.dispose()
    pg.dispose()


def raw(engine: Engine, table: str, time_column: str, as_of: datetime) -> pd.DataFrame:
    frame = read_sql(engine, f'SELECT * FROM "{table}"')
    for c in frame.columns:
        if c.endswith("At"):
            frame[c] = pd.to_datetime(frame[c], format="ISO8601").astype("datetime64[us]")
    return frame[frame[time_column] < as_of]


def test_facts_match_an_independent_pandas_computation(sqlite_world) -> None:
    cfg, end = sqlite_world
    as_of = mid_history(end)
    engine = connect(cfg.db_url)
    facts = load_facts(engine, cfg, as_of)
    day = pd.Timedelta(days=1)
    window = pd.Timedelta(days=cfg.business.attribution_days)

    players = raw(engine, "players", "createdAt", as_of)
    assert facts.players["player_id"].tolist() == sorted(players["id"])

    sessions = raw(engine, "player_sessions", "startedAt", as_of)
    sessions["day"] = (sessions["startedAt"] - as_of) // day
    grouped = sessions.groupby(["playerId", "day"])
    want = pd.DataFrame({"sessions": grouped.size(), "first_at": grouped["startedAt"].min()})
    for g in cfg.features.games:
        want[f"sessions_{g}"] = sessions.assign(hit=sessions["game"] == g).groupby(["playerId", "day"])["hit"].sum()
    got = facts.session_days.set_index(["player_id", "day"])
    assert len(got) == len(want) > 1_000
    assert (got.index.to_frame(index=False).to_numpy() == want.index.to_frame(index=False).to_numpy()).all()
    for column in want.columns:
        assert (got[column].to_numpy() == want[column].to_numpy()).all(), column
    games = [f"sessions_{g}" for g in cfg.features.games]
    assert (got[[*games, "sessions_other"]].sum(axis=1) == got["sessions"]).all()
    assert (got.index.get_level_values("day") <= -1).all()

    flows = raw(engine, "money_flows", "createdAt", as_of)
    deposits = flows[flows["type"] == "deposit"].assign(day=lambda f: (f["createdAt"] - as_of) // day)
    per_day = deposits.groupby(["playerId", "day"])["amount"].agg(["size", "sum", "max"])
    got_money = facts.money_days.set_index(["player_id", "day"])
    with_deposit = got_money[got_money["deposits_n"] > 0]
    assert len(with_deposit) == len(per_day) > 100
    assert (with_deposit["deposits_sum"].to_numpy() == per_day["sum"].to_numpy()).all()
    assert (with_deposit["deposit_max"].to_numpy() == per_day["max"].to_numpy()).all()
    assert facts.money_days["bonus_sum"].sum() == flows.loc[flows["type"] == "bonus", "amount"].sum()

    offers = raw(engine, "promotion_players", "createdAt", as_of)
    pairs = offers[["id", "playerId", "createdAt"]].merge(sessions, on="playerId", suffixes=("", "_s"))
    inside = (pairs["startedAt"] > pairs["createdAt"]) & (pairs["startedAt"] <= pairs["createdAt"] + window)
    first = pairs[inside].groupby("id")["startedAt"].min()
    got_offers = facts.offers.set_index("offer_id")
    assert got_offers.index.tolist() == sorted(offers["id"])
    reengaged = got_offers["reengaged_at"].dropna()
    assert len(reengaged) == len(first) > 10
    assert (reengaged.to_numpy() == first.sort_index().to_numpy()).all()
    paid = flows[flows["type"] == "bonus"].groupby("promotionPlayerId")["amount"].sum()
    assert got_offers["bonus_paid"].sum() == paid[paid.index.isin(offers["id"])].sum() > 0
    engine.dispose()


def test_no_leakage_from_rows_at_or_after_the_as_of_time(sqlite_world, tmp_path: Path) -> None:
    cfg, end = sqlite_world
    t = mid_history(end)
    stamp = f"'{t:%Y-%m-%d %H:%M:%S.%f}'"
    original = connect(cfg.db_url)
    copy_path = tmp_path / "rewritten.db"
    shutil.copy(Path(cfg.db_url.removeprefix("sqlite:///")), copy_path)
    rewritten = connect(f"sqlite:///{copy_path}")
    with rewritten.begin() as conn:
        changes = [
            # the future rewritten: half deleted, the rest changed
            f'DELETE FROM player_sessions WHERE "startedAt" >= {stamp} AND id % 2 = 0',
            f'UPDATE player_sessions SET game = \'poker\', "startedAt" = {stamp} WHERE "startedAt" >= {stamp}',
            f'DELETE FROM money_flows WHERE "createdAt" >= {stamp} AND id % 2 = 0',
            f'UPDATE money_flows SET amount = amount * 3, "promotionPlayerId" = 1 WHERE "createdAt" >= {stamp}',
            f'DELETE FROM promotion_players WHERE "createdAt" >= {stamp}',
            f'UPDATE promotion_players SET "appliedAt" = {stamp} WHERE "appliedAt" >= {stamp}',
            f'UPDATE players SET channel = \'ads\', "vipLevel" = 5 WHERE "createdAt" >= {stamp}',
            f'DELETE FROM players WHERE "createdAt" >= {stamp} AND id % 2 = 0',
        ]
        touched = sum(conn.execute(sa.text(q)).rowcount for q in changes)
    assert touched > 1_000

    before = load_facts(original, cfg, t)
    assert_facts_equal(load_facts(rewritten, cfg, t), before)
    later = t + timedelta(days=3)  # the test can fail: after t the rewrite shows
    with pytest.raises(AssertionError):
        assert_facts_equal(load_facts(rewritten, cfg, later), load_facts(original, cfg, later))
    original.dispose()
    rewritten.dispose()


def test_null_ids_or_levels_are_a_clear_error(empty_db_url: str, config: Config) -> None:
    engine = connect(empty_db_url, must_exist=False)
    frames = platform_frames()
    frames["players"]["vipLevel"] = frames["players"]["vipLevel"].astype("Int64").mask(lambda v: v == 2)
    create_platform(engine, frames, nullable=("player_sessions.game", "players.vipLevel"))
    with pytest.raises(DatabaseError, match=r"the players facts have NULL \['vip_level'\].*rekindle validate"):
        load_facts(engine, config, AS_OF)
    engine.dispose()


def test_sqlite_text_that_is_no_timestamp_is_a_clear_error(tmp_path: Path, config: Config) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'platform.db'}", must_exist=False)
    create_platform(engine, platform_frames())
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE player_sessions SET \"startedAt\" = '2024-05-40 25:00:00' WHERE id = 1"))
    with pytest.raises(DatabaseError, match=r"cannot read player_sessions .*2024-05-40 25:00:00.*rekindle validate"):
        load_facts(engine, config, AS_OF)
    filters = {"player_sessions": '"player_sessions"."id" <> 1'}  # the validator's filter leaves it out
    assert len(load_facts(engine, config, AS_OF, filters=filters).session_days) == len(EXPECTED_SESSION_DAYS)
    engine.dispose()
