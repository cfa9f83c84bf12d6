"""Segmentation: the rules on hand-made activity (fast, no I/O), the whole
path on hand-built platform databases (SQLite and PostgreSQL), the system
store, the external segment table and the file outputs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config import Business, Config, Segmentation
from platform_db.db import DatabaseError, bulk_insert, connect, init_source_tables
from segmentation import (
    ACTIVITY_COLUMNS,
    SEGMENT_COLUMNS,
    SegmentationError,
    classify,
    load_external_table,
    load_player_activity,
    read_external_segments,
    segment_players,
    summarise,
    write_segments_file,
)
from system_db.store import SystemStore

AS_OF = datetime(2024, 6, 1, 12, 0, 0)
NAN = float("nan")
INF = float("inf")


def ago(days: float = 0, **parts: float) -> datetime:
    """A time before AS_OF (negative values: after it)."""
    return AS_OF - timedelta(days=days, **parts)


AFTER = AS_OF + timedelta(hours=1)

# ------------------------------------------------------------- the platform --
# Each player is built to land in one segment or to sit on one boundary.
PLAYERS = [  # id, createdAt, status
    (1, ago(200), "active"),  # idle 14 days + 1 s, deposits exactly the high-value bound
    (2, ago(200), "active"),  # last session exactly 14 days ago: still active
    (3, ago(200), "active"),  # idle 30 (new), deposits 1 (low-value)
    (4, ago(200), "active"),  # idle 31 (mid), deposits 199,999 (low-value)
    (5, ago(200), "active"),  # idle 90 (mid), deposits 200,000 (mid-value)
    (6, ago(200), "active"),  # idle 91 (long-term), deposits 999,999 (mid-value)
    (7, ago(100), "active"),  # never played: idle since registration
    (8, ago(14), "active"),  # registered exactly 14 days ago, never played: dormant
    (9, ago(13, hours=23), "active"),  # registered 13 d 23 h ago: new player
    (10, ago(5), "active"),  # new player with a session and a deposit
    (11, ago(300), "active"),  # main game tie slots/table -> slots
    (12, ago(300), "active"),  # main game sports; sessions at/after AS_OF ignored
    (13, ago(300), "active"),  # bonus hunter exactly at the rule (2 claims, ratio 0.5)
    (14, ago(300), "active"),  # ratio just below 0.5: not a hunter
    (15, ago(300), "active"),  # ratio 2 but one claim before AS_OF: not a hunter
    (16, ago(50), "active"),  # bonus without deposits: ratio inf, hunter
    (17, ago(200), "active"),  # a hunter who still plays: active
    (18, ago(200), "self_excluded"),  # dormant but never a candidate
    (19, ago(300), "blocked"),  # dormant hunter but never a candidate
    (20, AS_OF, "active"),  # created at AS_OF: not included
    (21, AS_OF + timedelta(days=1), "active"),  # created after AS_OF: not included
]

SESSIONS = [  # playerId, startedAt, game
    (1, ago(100), "slots"),
    (1, ago(14, seconds=1), "slots"),
    (2, ago(14), "table"),
    (3, ago(30, hours=23), "poker"),
    (4, ago(31), "sports"),
    (5, ago(90, hours=23, minutes=59), "casual"),
    (6, ago(91), "slots"),
    (10, ago(2), "casual"),
    (11, ago(50), "poker"),
    (11, ago(40), "slots"),
    (11, ago(30), "slots"),
    (11, ago(25), "table"),
    (11, ago(20), "table"),
    (12, ago(60), "sports"),
    (12, ago(50), "sports"),
    (12, ago(45), "casual"),
    (12, ago(41), "casual"),
    (12, ago(40), "sports"),
    *[(12, AS_OF + timedelta(hours=h), "poker") for h in range(5)],  # at and after AS_OF
    (13, ago(60), "slots"),
    (14, ago(60), "table"),
    (15, ago(100), "sports"),
    (17, ago(1), "slots"),
    (18, ago(50), "poker"),
    (21, AS_OF + timedelta(days=2), "slots"),
]

CLAIMS = [  # promotion_players: id, playerId, createdAt (sent), appliedAt (claimed)
    (1, 13, ago(71), ago(70)),
    (2, 13, ago(66), ago(65)),
    (3, 14, ago(71), ago(70)),
    (4, 14, ago(66), ago(65)),
    (5, 15, ago(111), ago(110)),
    (6, 15, ago(90), None),  # never claimed
    (7, 15, ago(1), AS_OF),  # claimed at AS_OF: ignored
    (8, 16, ago(46), ago(45)),
    (9, 16, ago(41), ago(40)),
    (10, 16, ago(36), ago(35)),
    (11, 17, ago(30), ago(29)),
    (12, 17, ago(20), ago(19)),
    (13, 19, ago(250), ago(249)),
    (14, 19, ago(240), ago(239)),
]

FLOWS = [  # money_flows: playerId, type, amount, createdAt, promotionPlayerId
    (1, "deposit", 600_000, ago(150), None),
    (1, "deposit", 400_000, ago(20), None),
    (1, "withdrawal", 300_000, ago(19), None),
    (1, "deposit", 5_000_000, AFTER, None),
    (3, "deposit", 1, ago(40), None),
    (4, "deposit", 199_999, ago(50), None),
    (5, "deposit", 200_000, ago(100), None),
    (6, "deposit", 333_333, ago(100), None),
    (6, "deposit", 333_333, ago(110), None),
    (6, "deposit", 333_333, ago(120), None),
    (10, "deposit", 50_000, ago(3), None),
    (13, "deposit", 100_000, ago(80), None),
    (13, "bonus", 25_000, ago(70), 1),
    (13, "bonus", 25_000, ago(65), 2),
    (14, "deposit", 100_000, ago(80), None),
    (14, "bonus", 25_000, ago(70), 3),
    (14, "bonus", 24_999, ago(65), 4),
    (15, "deposit", 10_000, ago(120), None),
    (15, "bonus", 20_000, ago(110), 5),
    (15, "deposit", 1_000_000, AS_OF, None),  # at AS_OF: ignored
    (15, "bonus", 5_000, AS_OF, 7),  # at AS_OF: ignored
    (16, "bonus", 10_000, ago(45), 8),
    (16, "bonus", 10_000, ago(40), 9),
    (16, "bonus", 10_000, ago(35), 10),
    (17, "deposit", 40_000, ago(40), None),
    (17, "bonus", 20_000, ago(29), 11),
    (17, "bonus", 20_000, ago(19), 12),
    (19, "bonus", 20_000, ago(249), 13),
    (19, "bonus", 20_000, ago(239), 14),
]

# player_id, status, is_candidate, is_dormant, days_idle, dormancy_stage, value_tier, lifetime_deposits,
# deposit_count, claims, bonus_ratio, main_game, is_bonus_hunter, segment
EXPECTED = [
    (1, "active", True, True, 14, "new", "high-value", 1_000_000, 2, 0, 0.0, "slots", False, "high-value new dormant"),
    (2, "active", False, False, 14, None, "non-depositor", 0, 0, 0, NAN, "table", False, "active"),
    (3, "active", True, True, 30, "new", "low-value", 1, 1, 0, 0.0, "poker", False, "low-value new dormant"),
    (4, "active", True, True, 31, "mid", "low-value", 199_999, 1, 0, 0.0, "sports", False, "low-value mid dormant"),
    (5, "active", True, True, 90, "mid", "mid-value", 200_000, 1, 0, 0.0, "casual", False, "mid-value mid dormant"),
    (6, "active", True, True, 91, "long-term", "mid-value", 999_999, 3, 0, 0.0, "slots", False,
     "mid-value long-term dormant"),
    (7, "active", True, True, 100, "long-term", "non-depositor", 0, 0, 0, NAN, None, False,
     "non-depositor long-term dormant"),
    (8, "active", True, True, 14, "new", "non-depositor", 0, 0, 0, NAN, None, False, "non-depositor new dormant"),
    (9, "active", False, False, 13, None, "non-depositor", 0, 0, 0, NAN, None, False, "new player"),
    (10, "active", False, False, 2, None, "low-value", 50_000, 1, 0, 0.0, "casual", False, "new player"),
    (11, "active", True, True, 20, "new", "non-depositor", 0, 0, 0, NAN, "slots", False, "non-depositor new dormant"),
    (12, "active", True, True, 40, "mid", "non-depositor", 0, 0, 0, NAN, "sports", False, "non-depositor mid dormant"),
    (13, "active", True, True, 60, "mid", "low-value", 100_000, 1, 2, 0.5, "slots", True, "bonus hunter"),
    (14, "active", True, True, 60, "mid", "low-value", 100_000, 1, 2, 0.49999, "table", False,
     "low-value mid dormant"),
    (15, "active", True, True, 100, "long-term", "low-value", 10_000, 1, 1, 2.0, "sports", False,
     "low-value long-term dormant"),
    (16, "active", True, True, 50, "mid", "non-depositor", 0, 0, 3, INF, None, True, "bonus hunter"),
    (17, "active", False, False, 1, None, "low-value", 40_000, 1, 2, 1.0, "slots", True, "active"),
    (18, "self_excluded", False, True, 50, "mid", "non-depositor", 0, 0, 0, NAN, "poker", False, "self-excluded"),
    (19, "blocked", False, True, 300, "long-term", "non-depositor", 0, 0, 2, INF, None, True, "blocked"),
]  # fmt: skip


def expected_frame() -> pd.DataFrame:
    return pd.DataFrame(EXPECTED, columns=list(SEGMENT_COLUMNS))


def platform_frames(
    players: list = PLAYERS,
    sessions: list = SESSIONS,
    claims: list = CLAIMS,
    flows: list = FLOWS,
    *,
    first_id: int = 1,
) -> dict[str, pd.DataFrame]:
    """The source tables as frames, timestamps as datetime64; sessions and flows numbered from ``first_id``."""
    p = pd.DataFrame(players, columns=["id", "createdAt", "status"]).assign(channel="organic", vipLevel=0)
    s = pd.DataFrame(sessions, columns=["playerId", "startedAt", "game"])
    s.insert(0, "id", range(first_id, first_id + len(s)))
    s["endedAt"] = s["startedAt"] + pd.Timedelta(minutes=30)
    promos = pd.DataFrame(
        [(1, "winback", "deposit_bonus", ago(400), AS_OF + timedelta(days=30), None)],
        columns=["id", "name", "type", "startsAt", "endsAt", "minDeposit"],
    )
    pp = pd.DataFrame(claims, columns=["id", "playerId", "createdAt", "appliedAt"]).assign(promotionId=1, reward=10_000)
    pp["appliedAt"] = pd.to_datetime(pp["appliedAt"])
    mf = pd.DataFrame(flows, columns=["playerId", "type", "amount", "createdAt", "promotionPlayerId"])
    mf.insert(0, "id", range(first_id, first_id + len(mf)))
    mf["promotionPlayerId"] = mf["promotionPlayerId"].astype("Int64")
    return {"players": p, "player_sessions": s, "promotions": promos, "promotion_players": pp, "money_flows": mf}


def insert(engine: Engine, frames: dict[str, pd.DataFrame]) -> None:
    with engine.begin() as conn:
        for table in ("players", "promotions", "player_sessions", "promotion_players", "money_flows"):
            if table in frames:
                bulk_insert(conn, table, frames[table])


@pytest.fixture()
def platform(empty_db_url: str) -> Iterator[Engine]:
    """The hand-built platform database, on SQLite and on PostgreSQL."""
    engine = connect(empty_db_url, must_exist=False)
    init_source_tables(engine)
    insert(engine, platform_frames())
    yield engine
    engine.dispose()


@pytest.fixture()
def sqlite_platform(tmp_path: Path) -> Iterator[Engine]:
    engine = connect(f"sqlite:///{tmp_path / 'platform.db'}", must_exist=False)
    init_source_tables(engine)
    insert(engine, platform_frames())
    yield engine
    engine.dispose()


def with_segmentation(config: Config, *, db_url: str | None = None, **changes: object) -> Config:
    """``config`` with validated changes to ``segmentation`` (and another platform URL)."""
    seg = Segmentation.model_validate({**config.segmentation.model_dump(), **changes})
    return config.model_copy(update={"segmentation": seg, "db_url": db_url or config.db_url})


def assert_segments(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(SEGMENT_COLUMNS)
    pd.testing.assert_frame_equal(
        got.set_index("player_id"), expected.set_index("player_id"), check_dtype=False, rtol=1e-9
    )


# ------------------------------------------------------- the rules (no I/O) --
def activity(**fields: object) -> pd.DataFrame:
    """One player's activity, idle since a year unless told otherwise."""
    row: dict[str, object] = {
        "player_id": 1,
        "created_at": ago(365),
        "status": "active",
        "last_session": pd.NaT,
        "main_game": None,
        "lifetime_deposits": 0,
        "deposit_count": 0,
        "bonus_paid": 0,
        "claims": 0,
    }
    row.update(fields)
    frame = pd.DataFrame([row])
    frame["last_session"] = pd.to_datetime(frame["last_session"])
    return frame


@pytest.mark.parametrize(
    ("idle", "dormant", "stage"),
    [(13, False, None), (14, True, "new"), (30, True, "new"), (31, True, "mid"), (90, True, "mid"),
     (91, True, "long-term"), (1000, True, "long-term")],
    ids=["13d", "14d", "30d", "31d", "90d", "91d", "1000d"],
)  # fmt: skip
def test_stage_boundaries(config: Config, idle: int, dormant: bool, stage: str | None) -> None:
    got = classify(activity(last_session=ago(idle, hours=12)), AS_OF, config.business, config.segmentation)
    assert got.loc[0, "days_idle"] == idle
    assert got.loc[0, "is_dormant"] == dormant
    assert got.loc[0, "dormancy_stage"] == stage


@pytest.mark.parametrize(
    ("deposits", "tier"),
    [(0, "non-depositor"), (1, "low-value"), (199_999, "low-value"), (200_000, "mid-value"),
     (999_999, "mid-value"), (1_000_000, "high-value"), (10**12, "high-value")],
    ids=["0", "1", "199999", "200000", "999999", "1000000", "1e12"],
)  # fmt: skip
def test_value_tiers(config: Config, deposits: int, tier: str) -> None:
    got = classify(activity(lifetime_deposits=deposits), AS_OF, config.business, config.segmentation)
    assert got.loc[0, "value_tier"] == tier
    assert got.loc[0, "segment"] == f"{tier} long-term dormant"


@pytest.mark.parametrize(
    ("claims", "deposits", "bonus", "ratio", "hunter"),
    [(2, 100, 50, 0.5, True), (2, 100, 49, 0.49, False), (1, 100, 100, 1.0, False), (2, 0, 1, INF, True),
     (2, 0, 0, NAN, False), (3, 100, 0, 0.0, False)],
    ids=["at-rule", "ratio-below", "one-claim", "bonus-no-deposit", "nothing-paid", "no-bonus"],
)  # fmt: skip
def test_bonus_hunter_rule(config: Config, claims: int, deposits: int, bonus: int, ratio: float, hunter: bool) -> None:
    frame = activity(claims=claims, lifetime_deposits=deposits, bonus_paid=bonus)
    got = classify(frame, AS_OF, config.business, config.segmentation)
    assert got.loc[0, "bonus_ratio"] == pytest.approx(ratio, nan_ok=True)
    assert got.loc[0, "is_bonus_hunter"] == hunter
    assert (got.loc[0, "segment"] == "bonus hunter") == hunter


def test_config_changes_the_rules() -> None:
    business = Business(dormancy_days=30)
    rules = Segmentation.model_validate(
        {
            "stages": [{"name": "cooling", "min_days": 45}, {"name": "cold", "min_days": 100}],
            "value_tiers": [{"name": "free", "min_deposits": 0}, {"name": "payer", "min_deposits": 10}],
            "bonus_hunter": {"min_claims": 1, "min_bonus_ratio": 2.0},
        }
    )
    frame = pd.concat(
        [
            activity(player_id=1, last_session=ago(20)),  # dormant at 14 days, not at 30
            activity(player_id=2, last_session=ago(35), lifetime_deposits=10),  # below the first stage: first stage
            activity(player_id=3, created_at=ago(20)),  # registered for less than 30 days
            activity(player_id=4, claims=1, lifetime_deposits=10, bonus_paid=20),
        ],
        ignore_index=True,
    )
    got = classify(frame, AS_OF, business, rules).set_index("player_id")
    assert got["segment"].to_dict() == {1: "active", 2: "payer cooling dormant", 3: "new player", 4: "bonus hunter"}
    assert got.loc[2, "dormancy_stage"] == "cooling"
    assert not got.loc[1, "is_candidate"]


def test_aware_as_of_is_taken_in_utc(config: Config) -> None:
    frame = activity(last_session=ago(14, seconds=1))
    naive = classify(frame, AS_OF, config.business, config.segmentation)
    seoul = timezone(timedelta(hours=9))
    aware = classify(frame, AS_OF.replace(tzinfo=UTC).astimezone(seoul), config.business, config.segmentation)
    pd.testing.assert_frame_equal(naive, aware)


def test_classify_drops_players_created_at_or_after_as_of(config: Config) -> None:
    frame = pd.concat(
        [activity(player_id=1), activity(player_id=2, created_at=AS_OF), activity(player_id=3, created_at=AFTER)],
        ignore_index=True,
    )
    assert classify(frame, AS_OF, config.business, config.segmentation)["player_id"].tolist() == [1]


def test_classify_without_players_keeps_the_columns(config: Config) -> None:
    got = classify(activity().iloc[:0], AS_OF, config.business, config.segmentation)
    assert got.empty
    assert list(got.columns) == list(SEGMENT_COLUMNS)
    assert got["is_candidate"].dtype == bool


def test_classify_names_missing_columns(config: Config) -> None:
    with pytest.raises(ValueError, match=r"lacks the columns \['bonus_paid', 'claims'\]"):
        classify(activity().drop(columns=["bonus_paid", "claims"]), AS_OF, config.business, config.segmentation)


def test_summarise_counts_players_and_candidates() -> None:
    got = summarise(expected_frame()).set_index("segment")
    assert got["players"].sum() == len(EXPECTED)
    assert got.loc["bonus hunter", "players"] == 2
    assert got.loc["bonus hunter", "candidates"] == 2
    assert got.loc["active", "candidates"] == 0
    assert got.loc["blocked", "candidates"] == 0
    assert got["share"].sum() == pytest.approx(1.0)
    assert got["players"].is_monotonic_decreasing
    assert summarise(expected_frame().iloc[:0]).empty


# ------------------------------------------------- the platform database --
def test_segments_of_the_hand_built_platform(platform: Engine, config: Config) -> None:
    got = segment_players(platform, AS_OF, config)
    assert_segments(got, expected_frame())
    assert not got.loc[got["status"] != "active", "is_candidate"].any()


def test_activity_frame(platform: Engine) -> None:
    got = load_player_activity(platform, AS_OF).set_index("player_id")
    assert list(got.reset_index().columns) == list(ACTIVITY_COLUMNS)
    assert got.loc[1, "last_session"] == pd.Timestamp(ago(14, seconds=1))
    assert pd.isna(got.loc[7, "last_session"])
    assert got.loc[15, "bonus_paid"] == 20_000
    assert got.loc[1, "created_at"] == pd.Timestamp(ago(200))


def test_the_future_moves_nothing(platform: Engine, config: Config) -> None:
    before = segment_players(platform, AS_OF, config)
    ids = [p[0] for p in PLAYERS if p[1] < AS_OF]
    later = [AS_OF, AFTER, AS_OF + timedelta(days=3)]
    future = platform_frames(
        players=[(100, AS_OF, "active"), (101, AS_OF + timedelta(days=9), "active")],
        sessions=[(p, t, "sports") for p in ids for t in later],
        claims=[(100 + p, p, ago(1), later[p % 3]) for p in ids],
        flows=[(p, kind, 777_777, t, None) for p in ids for kind in ("deposit", "bonus") for t in later],
        first_id=10_000,
    )
    insert(platform, {name: frame for name, frame in future.items() if name != "promotions"})
    assert_segments(segment_players(platform, AS_OF, config), before)


def test_filters_drop_invalid_rows(platform: Engine, config: Config) -> None:
    invalid = platform_frames(
        players=[(50, ago(100), "unknown")],
        sessions=[],
        claims=[],
        flows=[(1, "deposit", -900_000, ago(30), None)],
        first_id=10_000,
    )
    insert(platform, {"players": invalid["players"], "money_flows": invalid["money_flows"]})
    filters = {
        "money_flows": '"amount" > 0',
        "players": "status IN ('active', 'self_excluded', 'blocked') AND status <> ' :x'",  # colons stay literal
    }
    assert_segments(segment_players(platform, AS_OF, config, filters=filters), expected_frame())
    unfiltered = segment_players(platform, AS_OF, config).set_index("player_id")
    assert 50 in unfiltered.index
    assert unfiltered.loc[1, "lifetime_deposits"] == 100_000


def test_unknown_filter_table_is_named(sqlite_platform: Engine) -> None:
    with pytest.raises(ValueError, match=r"unknown tables \['sessions'\]"):
        load_player_activity(sqlite_platform, AS_OF, filters={"sessions": "1 = 1"})


def test_missing_source_tables_are_named(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}", must_exist=False)
    with pytest.raises(DatabaseError, match="lacks the platform tables"):
        load_player_activity(engine, AS_OF)


def test_empty_platform(empty_db_url: str, config: Config) -> None:
    engine = connect(empty_db_url, must_exist=False)
    init_source_tables(engine)
    got = segment_players(engine, AS_OF, config)
    engine.dispose()
    assert got.empty
    assert list(got.columns) == list(SEGMENT_COLUMNS)


# ----------------------------------------------------------- system store --
def test_store_roundtrip_and_rerun_replaces(empty_db_url: str, config: Config, tmp_path: Path) -> None:
    platform_url = f"sqlite:///{tmp_path / 'source.db'}"
    source = connect(platform_url, must_exist=False)
    init_source_tables(source)
    insert(source, platform_frames())
    segments = segment_players(source, AS_OF, config)
    source.dispose()

    store = SystemStore(empty_db_url)
    if store.engine.dialect.name == "postgresql":
        assert store.schema == "rekindle"
    assert store.write_segments(segments, AS_OF) == len(EXPECTED)
    earlier = AS_OF - timedelta(days=7)
    store.write_segments(segments.iloc[:3], earlier)
    got = store.read_segments(AS_OF)
    assert (pd.to_datetime(got["as_of"]) == pd.Timestamp(AS_OF)).all()
    assert_segments(got.drop(columns="as_of").sort_values("player_id", ignore_index=True), expected_frame())
    assert math.isinf(got.set_index("player_id").loc[16, "bonus_ratio"])

    store.write_segments(segments.iloc[5:8], AS_OF)  # a re-run for the same time replaces its rows
    assert sorted(store.read_segments(AS_OF)["player_id"]) == [6, 7, 8]
    assert sorted(store.read_segments(earlier)["player_id"]) == [1, 2, 3]
    assert sorted(store.read_segments()["player_id"]) == [6, 7, 8]  # the latest
    if store.schema:
        with store.engine.connect() as conn:
            assert "segments" in sa.inspect(conn).get_table_names(schema="rekindle")
    store.engine.dispose()


# -------------------------------------------------------- external table --
def test_external_segments_rename_active_players(platform: Engine, config: Config) -> None:
    pd.DataFrame(
        {
            "player_id": [1, 3, 18, 999, 13],
            "segment": ["vip winback", None, "crm says vip", "not a player", "  promo lover "],
        }
    ).to_sql("crm_segments", platform, index=False)
    external = with_segmentation(
        config, db_url=str(platform.url.render_as_string(hide_password=False)), source="external",
        external={"table": "crm_segments"},
    )  # fmt: skip
    expected = expected_frame()
    renamed = {1: "vip winback", 13: "promo lover"}  # 3: no name, 18: self-excluded, 999: no such player
    expected["segment"] = [renamed.get(p, s) for p, s in zip(expected["player_id"], expected["segment"], strict=True)]
    assert_segments(segment_players(platform, AS_OF, external), expected)
    assert_segments(read_external_segments(external, AS_OF), expected)  # connects config.db_url itself


def test_external_table_in_another_database(sqlite_platform: Engine, config: Config, tmp_path: Path) -> None:
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    crm = sa.create_engine(crm_url)
    pd.DataFrame({"pid": ["4", "5"], "label": ["lapsed sports fan", "lapsed casual"]}).to_sql(
        "labels", crm, index=False
    )
    crm.dispose()
    external = with_segmentation(
        config, source="external",
        external={"url": crm_url, "table": "labels", "player_column": "pid", "segment_column": "label"},
    )  # fmt: skip
    got = segment_players(sqlite_platform, AS_OF, external).set_index("player_id")["segment"]
    assert got.loc[4] == "lapsed sports fan"
    assert got.loc[5] == "lapsed casual"
    assert got.loc[6] == "mid-value long-term dormant"


@pytest.mark.parametrize(
    ("table", "changes", "message"),
    [
        (None, {"table": "crm_missing"}, r"'crm_missing' .* does not exist"),
        ({"player_id": [1], "name": ["x"]}, {}, r"no column 'segment' \(segmentation.external.segment_column\)"),
        ({"pid": [1], "segment": ["x"]}, {}, r"no column 'player_id' \(segmentation.external.player_column\)"),
        ({"player_id": [1, 1], "segment": ["x", "y"]}, {}, r"more than once, e.g. player ids \[1\]"),
        ({"player_id": ["7", "seven"], "segment": ["x", "y"]}, {}, r"not integers, e.g. \['seven'\]"),
        ({"player_id": [1], "segment": ["x" * 65]}, {}, r"longer than 64 characters"),
    ],
    ids=["no-table", "no-segment-column", "no-player-column", "duplicate-player", "bad-id", "long-name"],
)
def test_external_table_errors(
    sqlite_platform: Engine, config: Config, table: dict | None, changes: dict, message: str
) -> None:
    if table is not None:
        pd.DataFrame(table).to_sql("crm_segments", sqlite_platform, index=False)
    url = sqlite_platform.url.render_as_string(hide_password=False)
    external = with_segmentation(config, db_url=url, source="external", external={"table": "crm_segments", **changes})
    with pytest.raises(SegmentationError, match=message):
        load_external_table(external, platform=sqlite_platform)
    with pytest.raises(SegmentationError, match=message):
        segment_players(sqlite_platform, AS_OF, external)


def test_external_table_must_be_configured(config: Config) -> None:
    with pytest.raises(SegmentationError, match=r"segmentation.external.table is not set"):
        load_external_table(config)


# ------------------------------------------------------------------ files --
@pytest.mark.parametrize(
    "name", ["segments.csv", "out/segments.parquet", "SEGMENTS.CSV"], ids=["csv", "parquet", "upper"]
)
def test_write_segments_file(tmp_path: Path, name: str) -> None:
    path = write_segments_file(expected_frame(), tmp_path / name)
    back = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    assert_segments(back.astype({"dormancy_stage": object, "main_game": object}).where(back.notna(), None)
                    .astype({"bonus_ratio": float}), expected_frame())  # fmt: skip


def test_write_segments_file_rejects_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(SegmentationError, match=r"the suffix '\.xlsx' is not one of \['\.csv', '\.parquet'\]"):
        write_segments_file(expected_frame(), tmp_path / "segments.xlsx")
