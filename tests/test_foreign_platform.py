"""The whole CLI, default configuration, on a platform the simulator did not write (tests/foreign_platform.py):
its own event types (a 0-KRW SMS reminder among them), reward ladders, channels and games; once with one
large randomised offer test, once with many campaigns sent by rules."""

from __future__ import annotations

import re
from pathlib import Path

import foreign_platform as fp
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import main
from features.matching import MATCH_KINDS

pytestmark = pytest.mark.slow
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SIMULATED_TYPES = ("deposit_bonus", "free_spins", "cashback", "tournament_ticket", "login_reward")


def invoke(home: Path, db: str, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["--home", str(home), "--config", str(CONFIG_DIR), "--db", db, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module", params=["randomised", "confounded"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The foreign platform taken through every command, as a new user would."""
    root = tmp_path_factory.mktemp(request.param)
    db = f"sqlite:///{root / 'platform.db'}"
    tables = fp.write(db, request.param)
    home = root / "home"
    out = {"variant": request.param, "tables": tables, "home": home, "db": db}
    out["validate"] = invoke(home, db, "validate", "--now", "2030-01-01T00:00:00")
    invoke(home, db, "segment")
    out["build"] = invoke(home, db, "features", "build")
    invoke(home, db, "features", "materialize")
    out["training_set"] = invoke(home, db, "features", "training-set")
    out["train"] = invoke(home, db, "train")
    out["evaluate"] = invoke(home, db, "evaluate")
    # an experiment with the defaults learned from this platform: its historical rule, its best arm
    out["experiment"] = invoke(home, db, "experiment", "start", "f1", "--variants",
                               "policy=0.4,equal_cost=0.2,marketers=0.2,best_arm=0.2")  # fmt: skip
    out["batch"] = invoke(home, db, "batch", "--model", "challenger", "--out", str(root / "decisions.csv"))
    out["decisions"] = pd.read_csv(root / "decisions.csv")
    out["feedback"] = invoke(home, db, "feedback")
    monitored = CliRunner().invoke(main, ["--home", str(home), "--config", str(CONFIG_DIR), "--db", db, "monitor"])
    assert monitored.exit_code in (0, 3), monitored.output  # 3: an alert, which is an answer too
    out["monitor"] = monitored.output
    out["frame"] = pd.read_parquet(home / "training" / "training_set.parquet")
    return out


def history_arms(tables: dict) -> set[tuple[str, int]]:
    pp = tables["promotion_players"].merge(tables["promotions"], left_on="promotionId", right_on="id")
    return set(zip(pp["type"], pp["reward"].astype(int), strict=True))


def test_a_message_without_reward_passes_validation(platform) -> None:
    assert "PASSED" in platform["validate"]
    assert (platform["tables"]["promotion_players"]["reward"] == 0).sum() > 100  # the SMS reminders


def test_every_decision_names_an_arm_of_this_platforms_history(platform) -> None:
    d = platform["decisions"]
    offers = d[d["event_type"] != "none"]
    assert len(offers) > 0 and len(d) > 1000
    assert set(zip(offers["event_type"], offers["reward"].astype(int), strict=True)) <= history_arms(platform["tables"])
    assert d["model_version"].str.fullmatch(r"rekindle-response/\d+").all()
    sms = d[d["event_type"] == "sms_reminder"]
    assert sms.empty or ((sms["expected_cost"] == 0).all() and sms["roi"].isna().all())  # ROI undefined, not inf


def test_its_own_event_types_get_per_type_features_and_none_other(platform) -> None:
    frame = platform["frame"]
    for t in fp.EVENT_TYPES:
        for col in (f"offers_{t}", f"claim_rate_{t}", f"deposit_rate_{t}", f"match_hybrid__{t}"):
            assert col in frame, col
    for t in SIMULATED_TYPES:  # never offered here: nothing is built for them
        built = [f"offers_{t}", f"claim_rate_{t}", f"deposit_rate_{t}", *(f"match_{k}__{t}" for k in MATCH_KINDS)]
        assert not set(built) & set(frame.columns), t
    for g in ("bingo", "lottery", "arcade"):  # its own games, found in its history
        assert f"share_{g}" in frame
    assert not [c for c in frame.columns if c in ("share_slots", "share_poker")]


def test_the_per_type_history_is_carried(platform) -> None:
    """Many campaigns: a later decision sees the player's earlier offers of each type, their outcomes and
    the types' content learnt from the history (the daily wheel is the arcade players' game)."""
    if platform["variant"] != "confounded":
        pytest.skip("one campaign: before it there is no history to carry")
    frame = platform["frame"]
    late = frame[frame["campaign_at"] > frame["campaign_at"].min()]
    for t in fp.EVENT_TYPES:
        assert (late[f"offers_{t}"] > 0).mean() > 0.05, t
        assert late[f"match_collaborative__{t}"].abs().sum() > 0, t
    wheel = late[late["event_type"] == "daily_wheel"]
    assert (wheel["game"] == "arcade").mean() > 0.5
    reload = late[late["event_type"] == "reload_bonus"]
    assert (reload["min_deposit"] == 10_000).all() and (reload["type_claim_rate"] > 0).all()


def test_the_split_follows_the_history(platform) -> None:
    if platform["variant"] == "randomised":  # one campaign: a split by player, said aloud
        assert "split by player, not by time" in platform["train"] and "1 campaign" in platform["train"]
    else:
        assert "split by player" not in platform["train"]
    assert "registered rekindle-response version 1 as challenger" in platform["train"]
    assert "ROI accuracy" in platform["evaluate"]


def test_the_system_store_recorded_what_it_saw(platform) -> None:
    engine = sa.create_engine(f"sqlite:///{platform['home'] / 'rekindle.db'}")
    seen = pd.read_sql("SELECT * FROM player_attributes", engine)
    assert len(seen) == len(platform["tables"]["players"])
    assert set(seen["channel"]) == set(fp.CHANNELS)


def test_the_loop_runs_on_its_own_event_types(platform) -> None:
    """The experiment's defaults come from this platform's history, every decision is in a variant, feedback
    counts them all as waiting (no window has closed), and the monitor judges its own features."""
    said = platform["experiment"]
    types = {t for t, _ in history_arms(platform["tables"])}
    assert "marketers' selection" in said and any(t in said for t in types - set(SIMULATED_TYPES))
    assert not any(re.search(rf"(?<![a-z_]){t}@", said) for t in SIMULATED_TYPES)  # vip_cashback is its own
    db = sa.create_engine(f"sqlite:///{platform['home'] / 'rekindle.db'}")
    logged = pd.read_sql("SELECT variant FROM decisions WHERE experiment = 'f1'", db)
    assert len(logged) == len(platform["decisions"]) and set(logged["variant"]) == {
        "policy", "equal_cost", "marketers", "best_arm"}  # fmt: skip
    assert f"{len(logged):,} waiting for their window" in platform["feedback"]
    assert "data drift:" in platform["monitor"]
