"""The feature store end to end on a simulated platform: `rekindle features build / materialize /
show / training-set` on the embedded default and on PostgreSQL + Redis, the no-leakage proof,
and the training set against the simulator's own record of every decision."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from core.config import Config, load_config
from features.build import build_features
from features.families import all_families
from features.layout import layout
from features.manifest import as_built
from features.offline import read_view
from features.training_set import build_training_set

pytestmark = pytest.mark.slow
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PLAYERS, DAYS, SEED = 3_000, 75, 5
LABELS = ["reengaged", "converted", "deposits", "reward_cost", "net_value"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def cfg_at(home: Path, db: Path, **features: object) -> Config:
    return load_config(CONFIG_DIR, home=home, db_url=f"sqlite:///{db}", overrides={"features": features})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated platform under a home directory (platform.db, truth/)."""
    home = tmp_path_factory.mktemp("features")
    code, out = invoke(
        "--home", str(home), "simulate", "--players", str(PLAYERS), "--days", str(DAYS), "--seed", str(SEED)
    )
    assert code == 0, out
    return home


@pytest.fixture(scope="module")
def built(world: Path, tmp_path_factory: pytest.TempPathFactory):
    """Features and the training set of the untouched world (embedded store)."""
    home = tmp_path_factory.mktemp("built")
    cfg = cfg_at(home, world / "platform.db")
    summary = build_features(cfg)
    return cfg, summary, build_training_set(cfg)


# ------------------------------------------------------------------ leakage --
def _cut_the_future(src: Path, dst: Path, t: datetime) -> None:
    """Copy the platform and wreck every row after ``t`` (delete half of them, change the rest), and the
    mutable attributes of every player: the platform keeps only their current values, which a past
    decision cannot have known."""
    shutil.copy(src, dst)
    ts = t.strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(dst) as con:
        con.execute('DELETE FROM player_sessions WHERE "startedAt" > ? AND id % 2 = 0', (ts,))
        con.execute('UPDATE player_sessions SET game = \'poker\', "endedAt" = NULL WHERE "startedAt" > ?', (ts,))
        con.execute('DELETE FROM money_flows WHERE "createdAt" > ? AND id % 2 = 0', (ts,))
        con.execute('UPDATE money_flows SET amount = amount * 7 + 1 WHERE "createdAt" > ?', (ts,))
        con.execute('UPDATE promotion_players SET "appliedAt" = NULL WHERE "appliedAt" > ?', (ts,))
        con.execute('DELETE FROM promotion_players WHERE "createdAt" > ? AND id % 2 = 0', (ts,))
        con.execute('UPDATE promotion_players SET reward = reward * 3 WHERE "createdAt" > ?', (ts,))
        con.execute('DELETE FROM players WHERE "createdAt" > ? AND id % 2 = 0', (ts,))
        con.execute('UPDATE players SET "vipLevel" = 5 WHERE "createdAt" > ?', (ts,))
        con.execute('UPDATE players SET "vipLevel" = (("vipLevel" + 3) % 6), channel = channel || \'_moved\'')
        con.execute("UPDATE players SET status = 'self_excluded' WHERE id % 7 = 0 AND status = 'active'")


def test_no_leakage_the_future_changes_no_feature_of_a_past_decision(built, world: Path, tmp_path: Path) -> None:
    cfg, summary, before = built
    campaigns = before.campaigns.sort_values("campaign_at")
    t = pd.Timestamp(campaigns["campaign_at"].iloc[-2]).to_pydatetime() + timedelta(minutes=5)
    cut = tmp_path / "cut.db"
    _cut_the_future(world / "platform.db", cut, t)
    cfg_cut = cfg_at(tmp_path / "home", cut)
    build_features(cfg_cut, as_of=summary.as_of)  # the same snapshot times as the untouched build
    after = build_training_set(cfg_cut)

    built = as_built(cfg)
    cut_built = as_built(cfg_cut).features
    assert set(cut_built.games or []) == set(built.features.games or [])  # the same games and event types found
    assert cut_built.event_types == built.features.event_types
    features = [c for fam in all_families(built) for c in fam.columns] + ["match_collaborative", "match_content"]
    keys = ["player_id", "decision_at", "arm"]
    past_before = before.frame[before.frame["decision_at"] <= t]
    past_after = after.frame[after.frame["decision_at"] <= t]
    assert len(past_before) > 800 and past_before["is_offer"].sum() > 300
    # the same decisions, but for the no-offer rows of the players now excluded: the population of a past
    # campaign is the players active now (the platform has no status history; docs/features.md) ...
    moved = past_before["player_id"] % 7 == 0
    lost = past_before[moved & ~past_before["is_offer"]]
    assert len(lost) > 20 and len(past_after) == len(past_before) - len(lost)
    merged = past_before.merge(past_after, on=keys, suffixes=("", "_cut"), validate="one_to_one")
    assert len(merged) == len(past_after)
    for col in features:  # ... with the same features
        a, b = merged[col], merged[f"{col}_cut"]
        if a.dtype == object:
            assert (a.fillna("<na>") == b.fillna("<na>")).all(), col
        else:
            np.testing.assert_array_equal(a.to_numpy(dtype=float), b.to_numpy(dtype=float), err_msg=col)
    # the wreck was real: the labels of the decisions just before t (their windows reach past t) changed ...
    changed = (merged["reengaged"] != merged["reengaged_cut"]) | (merged["deposits"] != merged["deposits_cut"])
    assert changed.sum() > 0
    # ... and the wrecked attributes are what the store holds now, seen after every past decision
    profiles = {}
    for name, c in (("before", cfg), ("after", cfg_cut)):
        fam = next(f for f in all_families(as_built(c)) if f.view == "player_profile")
        profiles[name] = read_view(layout(c), fam).set_index("player_id")
    assert profiles["after"]["channel"].str.endswith("_moved").all()
    assert not profiles["before"]["channel"].str.endswith("_moved").any()
    assert (profiles["after"]["event_timestamp"] > pd.Timestamp(t)).all()


# ------------------------------------------------------- training set rows --
def test_training_set_rows_are_the_simulators_decisions_with_its_outcomes(built, world: Path) -> None:
    cfg, _, ts = built
    truth = pd.read_parquet(world / "truth" / "decisions.parquet")
    frame = ts.frame
    assert frame["row_id"].is_unique and len(frame) > 2_000
    assert set(frame["arm"]) == {"none"} | {f"{e}@{r}" for e, r in cfg.simulator.catalog.arms()}
    # every decision of the simulator whose window closed is a row, with the same arm and outcome
    truth = truth.assign(
        arm=np.where(truth["event_type"] == "none", "none", truth["event_type"] + "@" + truth["reward"].astype(str))
    )
    truth["campaign_day"] = pd.to_datetime(truth["sent_at"]).dt.floor("D")
    rows = frame.assign(campaign_day=pd.to_datetime(frame["campaign_at"]).dt.floor("D"))
    rows = rows[rows["eligible"] | rows["is_offer"]]
    merged = truth.merge(rows, on=["player_id", "campaign_day"], how="inner", validate="one_to_one")
    active = merged["eligible"]
    assert active.mean() > 0.95
    assert (merged.loc[active, "arm_x"] == merged.loc[active, "arm_y"]).all()
    assert (merged["realised_reengaged"] == merged["reengaged"]).all()
    np.testing.assert_allclose(merged["realised_deposits"], merged["deposits"])
    # point-in-time features exist for every row: a player is always registered before a decision
    assert frame["tenure_days"].notna().all() and (frame["tenure_days"] >= cfg.business.dormancy_days).all()
    assert (frame.loc[frame["is_offer"], "requires_deposit"].notna()).all()
    assert frame.loc[~frame["is_offer"], "requires_deposit"].isna().all()


# --------------------------------------------------------------------- CLI --
def test_cli_embedded_build_materialize_show_training_set(world: Path) -> None:
    home = str(world)
    code, out = invoke("--home", home, "features", "build")
    assert code == 0, out
    assert "player_activity" in out and "daily snapshots" in out
    code, out = invoke("--home", home, "features", "materialize")
    assert code == 0, out
    n = int(out.split("materialised ")[1].split(" candidates")[0].replace(",", ""))
    truth = pd.read_parquet(world / "truth" / "truth.parquet")  # every candidate x arm at the as-of
    assert n == truth["player_id"].nunique()  # exactly the simulator's dormant candidates
    code, out = invoke("--home", home, "features", "show", "1", "2")
    assert code == 0 and "days_since_last_session" in out
    code, out = invoke("--home", home, "features", "training-set")
    assert code == 0, out
    assert "none" in out and (world / "training" / "training_set.parquet").is_file()


def test_cli_production_on_postgres_and_redis(
    world: Path, tmp_path: Path, pg_database_factory, redis_server: str
) -> None:
    url = pg_database_factory()
    home = tmp_path / "home"
    code, out = invoke("--home", str(home), "simulate", "--players", "800", "--days", "45", "--seed", "3", "--db", url)
    assert code == 0, out
    cfg_file = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, cfg_file)
    text = (cfg_file / "rekindle.yaml").read_text()
    text = (
        text.replace("    mode: embedded", "    mode: production")
        .replace('redis: "127.0.0.1:6379,db=0"', f'redis: "{redis_server}"')
        .replace("    project: rekindle", "    project: rekindle_e2e")
    )
    (cfg_file / "rekindle.yaml").write_text(text)
    base = ["--home", str(home), "--config", str(cfg_file), "--db", url]
    code, out = invoke(*base, "features", "build")
    assert code == 0, out
    assert "production: PostgreSQL" in out
    code, out = invoke(*base, "features", "materialize")
    assert code == 0, out
    code, out = invoke(*base, "features", "training-set")
    assert code == 0, out
    frame = pd.read_parquet(home / "training" / "training_set.parquet")
    assert len(frame) > 100 and frame["tenure_days"].notna().all()
    # the embedded store, fed from the same PostgreSQL platform, gives the same training set
    embedded = load_config(CONFIG_DIR, home=tmp_path / "embedded", db_url=url)
    build_features(embedded)
    other = build_training_set(embedded).frame
    assert len(other) == len(frame)
    for col in [c for fam in all_families(as_built(embedded)) for c in fam.columns] + LABELS:
        a, b = frame[col], other[col]
        if a.dtype == object:
            assert (a.fillna("<na>") == b.fillna("<na>")).all(), col
        else:
            np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-6, err_msg=col)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "sqlite:////nonexistent/x.db", "features", "build"], "no SQLite database"),
        (["--db", "postgresql://postgres@127.0.0.1:5432/no_such_db_rekindle", "features", "build"], "cannot connect"),
        (["--db", "mysql://x@127.0.0.1/y", "features", "build"], "cannot use database URL"),
        (["features", "materialize"], "no feature build"),
        (["features", "training-set"], "no feature build"),
        (["features", "build", "--as-of", "yesterday"], "not an ISO time"),
    ],
)
def test_clear_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--home", str(tmp_path / "h"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_tables_and_empty_history_are_named(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    code, out = invoke("--home", str(tmp_path / "h"), "--db", f"sqlite:///{db}", "features", "build")
    assert code == 2 and "lacks the platform tables" in out
    code, out = invoke("--home", str(tmp_path / "h"), "--db", f"sqlite:///{db}", "db", "init")
    assert code == 0, out
    code, out = invoke("--home", str(tmp_path / "h"), "--db", f"sqlite:///{db}", "features", "build")
    assert code == 2 and "no players" in out


def test_build_leaves_out_invalid_rows_unless_told_not_to(world: Path, tmp_path: Path) -> None:
    db = tmp_path / "faulty.db"
    shutil.copy(world / "platform.db", db)
    with sqlite3.connect(db) as con:  # a negative deposit: `rekindle validate` marks it invalid
        con.execute(
            'INSERT INTO money_flows (id, "playerId", type, amount, "createdAt", "promotionPlayerId") '
            "VALUES (99999999, 1, 'deposit', -500, '2026-01-01 00:00:00.000000', NULL)"
        )
    base = ["--home", str(tmp_path / "h"), "--db", f"sqlite:///{db}", "features", "build"]
    code, out = invoke(*base)
    assert code == 0, out
    assert "left out invalid rows" in out and "money_flows 1" in out
    code, out = invoke(*base, "--skip-row-checks")
    assert code == 0, out
    assert "row checks skipped" in out


def test_show_needs_a_materialised_store_and_since_refuses_a_gap(world: Path, tmp_path: Path) -> None:
    home = str(tmp_path / "h")
    db = f"sqlite:///{world / 'platform.db'}"
    code, out = invoke("--home", home, "--db", db, "features", "build", "--as-of", "2026-09-20T10:00:00")
    assert code == 0, out
    code, out = invoke("--home", home, "--db", db, "features", "show", "1")
    assert code == 2 and "not materialised" in out
    code, out = invoke("--home", home, "--db", db, "features", "build", "--since", "2026-09-25T10:00:00")
    assert code == 2 and "gap" in out
    code, out = invoke("--home", home, "--db", db, "features", "build", "--since", "2026-09-18T10:00:00")
    assert code == 0, out


def test_the_training_set_written_a_few_campaigns_at_a_time_is_the_whole_one(built, tmp_path: Path) -> None:
    """At a million players the set is written in groups of rows (cutting through campaigns), never whole in
    memory: the file is the same as one written at once, and the label means come out right."""
    from features.training_set import row_groups

    cfg, _, _ = built
    once = build_training_set(cfg, out=tmp_path / "once.parquet", group_rows=10**9)
    grouped = build_training_set(cfg, out=tmp_path / "grouped.parquet", group_rows=400)
    campaign = grouped.frame["campaign_id"].to_numpy()
    groups = row_groups(campaign, 400)
    assert len(groups) >= 4 and max(len(g) for g in groups) <= 400
    assert np.bincount(campaign).max() > 400  # a campaign larger than a group was cut, and came out whole
    pd.testing.assert_frame_equal(grouped.frame, once.frame, check_exact=True)
    by_arm = once.frame.groupby("arm")[LABELS].mean().reset_index()
    pd.testing.assert_frame_equal(grouped.label_rates()[["arm", *LABELS]], by_arm, check_exact=False, rtol=1e-12)
    assert grouped.label_rates()["rows"].sum() == len(once.frame) == grouped.rows
    assert not list(tmp_path.glob("*.tmp"))
