"""The simulator: its truth matches what it simulates, it is calibrated like a
real platform, deterministic, and its forward mode moves the same world on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.config import load_config
from platform_db.db import DatabaseError
from simulator.forward import DecisionFileError, plan_decisions
from simulator.history import simulate_history
from simulator.response import EventTable, offer_pull, window_truth
from simulator.run import fingerprint, respond, simulate
from simulator.state import WorldStateError, load_world, recover_world, stage_world
from simulator.tables import status_on
from simulator.truth import asof_truth, calibration

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
Z = 4.0  # tolerance in standard errors for statistical checks (fixed seeds)


def cfg_for(tmp: Path, players: int, days: int, seed: int = 7, db_url: str | None = None, **sim):
    return load_config(
        CONFIG_DIR,
        home=tmp,
        db_url=db_url,
        overrides={"simulator": {"players": players, "days": days, "seed": seed, **sim}},
    )


@pytest.fixture(scope="session")
def big_history(tmp_path_factory: pytest.TempPathFactory):
    cfg = cfg_for(tmp_path_factory.mktemp("big"), 30_000, 180)
    history = simulate_history(cfg)
    return cfg, history, asof_truth(history.world, cfg)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("small")
    cfg = cfg_for(home, 4_000, 90)
    summary = simulate(cfg, home / "truth", overwrite=False)
    return cfg, summary


# ------------------------------------------------------ truth vs outcomes --
def test_truth_matches_realised_outcomes_per_arm_in_random_slice(big_history) -> None:
    _, history, _ = big_history
    rnd = history.decisions[history.decisions["group"] == "random"]
    by_arm = rnd.groupby(["event_type", "reward"])
    assert by_arm.ngroups == 14  # 13 catalog arms + no offer
    for arm, g in by_arm:
        n = len(g)
        p = g["p_reengage"].to_numpy()
        se_p = np.sqrt((p * (1 - p)).sum()) / n
        gap_p = g["realised_reengaged"].mean() - p.mean()
        assert abs(gap_p) <= Z * se_p, (
            f"{arm}: re-engagement {g['realised_reengaged'].mean():.4f} vs truth {p.mean():.4f}"
        )
        se_d = g["realised_deposits"].std() / np.sqrt(n)
        gap_d = g["realised_deposits"].mean() - g["expected_deposits"].mean()
        assert abs(gap_d) <= Z * se_d, (
            f"{arm}: deposits {g['realised_deposits'].mean():.0f} vs truth {g['expected_deposits'].mean():.0f}"
        )
        se_c = max(g["realised_cost"].std(), 1.0) / np.sqrt(n)
        assert abs(g["realised_cost"].mean() - g["expected_cost"].mean()) <= Z * se_c, f"{arm}: cost"


def test_truth_matches_realised_outcomes_pooled_over_all_decisions(big_history) -> None:
    """Pooled over every decision (~100k), a far tighter check that the truth's
    model and the simulated world are the same model."""
    _, history, _ = big_history
    d = history.decisions
    n = len(d)
    assert n > 50_000
    p = d["p_reengage"].to_numpy()
    assert abs(d["realised_reengaged"].mean() - p.mean()) <= Z * np.sqrt((p * (1 - p)).sum()) / n
    resid = d["realised_deposits"] - d["expected_deposits"]
    assert abs(resid.mean()) <= Z * resid.std() / np.sqrt(n)
    cost = d["realised_cost"] - d["expected_cost"]
    assert abs(cost.mean()) <= Z * cost.std() / np.sqrt(n)


def test_database_outcomes_equal_the_worlds_record(small_world) -> None:
    """Outcomes recomputed from the written tables (sessions and deposits after
    each offer) equal what the world recorded: the tables tell the same story."""
    cfg, summary = small_world
    dec = pd.read_parquet(summary.truth_dir / "decisions.parquet")
    engine = sa.create_engine(cfg.db_url)
    sessions = pd.read_sql('SELECT "playerId", "startedAt" FROM player_sessions', engine, parse_dates=["startedAt"])
    flows = pd.read_sql(
        'SELECT "playerId", amount, "createdAt" FROM money_flows WHERE type = \'deposit\'',
        engine,
        parse_dates=["createdAt"],
    )
    win = pd.Timedelta(days=cfg.business.attribution_days)
    s = dec[["decision_id", "player_id", "sent_at"]].merge(sessions, left_on="player_id", right_on="playerId")
    s = s[(s["startedAt"] > s["sent_at"]) & (s["startedAt"] <= s["sent_at"] + win)]
    back = dec["decision_id"].isin(s["decision_id"])
    assert (back == dec["realised_reengaged"]).all()
    f = dec[["decision_id", "player_id", "sent_at"]].merge(flows, left_on="player_id", right_on="playerId")
    f = f[(f["createdAt"] > f["sent_at"]) & (f["createdAt"] <= f["sent_at"] + win)]
    dep = dec["decision_id"].map(f.groupby("decision_id")["amount"].sum()).fillna(0)
    np.testing.assert_allclose(dep.to_numpy(), dec["realised_deposits"].to_numpy())


# ----------------------------------------------------------- calibration --
def test_world_is_calibrated_like_a_real_platform(big_history) -> None:
    cfg, history, truth = big_history
    cal = calibration(truth, history.decisions, history.world, cfg)
    assert cal["dormant_share"] > 0.5, "most players are dormant"
    assert cal["share_of_arms_losing_money_on_most_players"] > 0.5, "most offers lose money on most players"
    assert cal["best_single_arm_incremental_net_per_candidate"] > 0
    assert 1.3 <= cal["oracle_over_best_single"] <= 3.0
    assert cal["sd_7day_deposits_random_slice"] > 5 * cal["max_mean_deposit_effect_of_an_arm"]
    assert cal["share_zero_7day_deposits"] > 0.8


def test_truth_has_one_row_per_candidate_and_arm(big_history) -> None:
    cfg, history, truth = big_history
    candidates = history.world.candidates(history.world.day)
    assert len(truth) == len(candidates) * (len(cfg.simulator.catalog.arms()) + 1)
    assert not truth.duplicated(["player_id", "event_type", "reward"]).any()
    none = truth[truth["event_type"] == "none"]
    assert (none["expected_cost"] == 0).all()
    assert (none["incremental_net_value"] == 0).all()
    offers = truth[truth["event_type"] != "none"]
    assert (offers["incremental_reengage"] >= -1e-12).all(), "an offer never lowers the chance to come back"


def test_every_past_decision_has_the_truth_of_every_arm(big_history) -> None:
    cfg, history, _ = big_history
    arms, dec = history.decision_arms, history.decisions
    assert len(arms) == len(dec) * (len(cfg.simulator.catalog.arms()) + 1)
    assert not arms.duplicated(["decision_id", "event_type", "reward"]).any()
    # the row of the logged arm (and of no offer) is the truth the decision log already holds
    logged = dec.merge(arms, on=["decision_id", "event_type", "reward"], suffixes=("", "_arm"), validate="1:1")
    for col in ("p_reengage", "expected_deposits", "expected_cost"):
        np.testing.assert_allclose(logged[f"{col}_arm"], logged[col], rtol=1e-5, atol=1e-3)
    none = dec.merge(arms[arms["event_type"] == "none"], on="decision_id", suffixes=("", "_arm"))
    np.testing.assert_allclose(none["p_reengage_arm"], none["p_reengage_none"], rtol=1e-5)
    np.testing.assert_allclose(none["expected_deposits_arm"], none["expected_deposits_none"], rtol=1e-5, atol=1e-3)


# --------------------------------------------------------- response model --
def test_offer_pull_has_diminishing_returns_in_reward_and_fatigue(big_history) -> None:
    cfg, history, _ = big_history
    world = history.world
    idx = np.arange(2_000)
    ev = EventTable.from_catalog(cfg.simulator.catalog)
    ones = np.zeros(len(idx), dtype=int)
    pulls = [
        offer_pull(
            world.pop,
            idx,
            ones,
            np.full(len(idx), r),
            np.zeros(len(idx)),
            cfg.simulator.response,
            ev,
            cfg.simulator.drift,
        )
        for r in (10_000, 30_000, 50_000, 70_000)
    ]
    gains = np.diff(np.stack(pulls), axis=0)
    assert (gains > 0).all(), "more reward, more pull"
    assert (gains[1] < gains[0] * 1.0001).all() and (gains[2] < gains[1] * 1.0001).all(), "diminishing returns"
    tired = offer_pull(
        world.pop,
        idx,
        ones,
        np.full(len(idx), 30_000.0),
        np.full(len(idx), 3),
        cfg.simulator.response,
        ev,
        cfg.simulator.drift,
    )
    assert (tired < pulls[1]).all()


def test_a_zero_krw_message_pulls_a_fixed_share_of_a_full_size_reward(big_history) -> None:
    cfg, history, _ = big_history
    world = history.world
    idx = np.arange(2_000)
    catalog = cfg.simulator.catalog.model_copy(
        update={"event_types": [cfg.simulator.catalog.event_types[0].model_copy(update={"rewards": [0, 10_000]})]}
    )
    ev = EventTable.from_catalog(catalog)
    assert ev.ref_reward[0] == pytest.approx(10_000), "the reference scale ignores the 0-KRW rung"
    event = np.zeros(len(idx), dtype=int)

    def pull(reward: float) -> np.ndarray:
        resp = cfg.simulator.response
        return offer_pull(
            world.pop, idx, event, np.full(len(idx), reward), np.zeros(len(idx)), resp, ev, cfg.simulator.drift
        )

    message, huge = pull(0.0), pull(1e12)  # a reward so large that its size term is 1
    assert (message > 0).all(), "a reminder still brings some players back"
    np.testing.assert_allclose(message, cfg.simulator.response.message_pull * huge, rtol=1e-9)


def test_changed_response_knob_switches_an_event_type_off(big_history) -> None:
    cfg, history, _ = big_history
    world = history.world
    idx = world.candidates(world.day)[:500]
    age, recent = world.age(idx, world.day), world.n_recent(idx, world.day)
    drift = cfg.simulator.drift.model_copy(update={"event_multiplier": {"free_spins": 0.0}})
    e = world.events.names.index("free_spins")
    off = window_truth(
        world.pop,
        idx,
        age,
        np.full(len(idx), e),
        np.full(len(idx), 5_000.0),
        recent,
        cfg.simulator,
        world.events,
        7,
        drift,
        day=world.day,
    )
    none = window_truth(
        world.pop,
        idx,
        age,
        np.full(len(idx), -1),
        np.zeros(len(idx)),
        recent,
        cfg.simulator,
        world.events,
        7,
        drift,
        day=world.day,
    )
    np.testing.assert_allclose(off.p_reengage, none.p_reengage)


# ---------------------------------------------------------- determinism --
def _digest(url: str) -> str:
    engine = sa.create_engine(url)
    h = hashlib.sha256()
    for table in ("players", "player_sessions", "promotions", "promotion_players", "money_flows"):
        h.update(pd.read_sql(f'SELECT * FROM "{table}" ORDER BY id', engine).to_csv(index=False).encode())
    return h.hexdigest()


def test_same_seed_same_world_other_seed_other_world(tmp_path: Path) -> None:
    digests = []
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = cfg_for(tmp_path / run, 1_500, 60, seed=seed)
        simulate(cfg, tmp_path / run / "truth", overwrite=False)
        digests.append(_digest(cfg.db_url))
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_refuses_to_overwrite_without_flag(small_world) -> None:
    cfg, summary = small_world
    with pytest.raises(FileExistsError, match="--overwrite"):
        simulate(cfg, summary.truth_dir, overwrite=False)


# --------------------------------------------------------- forward mode --
def _decisions(world, day0, n: int = 300) -> pd.DataFrame:
    idx = world.candidates(world.day)[:n]
    events = np.array(["free_spins", "login_reward", "none"])[np.arange(len(idx)) % 3]
    reward = np.where(events == "free_spins", 15_000, np.where(events == "login_reward", 3_000, 0))
    return pd.DataFrame(
        {
            "player_id": idx + 1,
            "event_type": events,
            "reward": reward,
            "sent_at": pd.Timestamp(day0) + pd.Timedelta(days=world.day),
        }
    )


def test_respond_appends_outcomes_and_moves_the_world(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, 3_000, 60)
    simulate(cfg, tmp_path / "truth", overwrite=False)
    saved = load_world(tmp_path / "truth", cfg)
    engine = sa.create_engine(cfg.db_url)
    before = pd.read_sql("SELECT COUNT(*) AS n, MAX(id) AS m FROM promotion_players", engine).iloc[0]
    path = tmp_path / "decisions.csv"
    decisions = _decisions(saved.world, saved.day0)
    decisions.to_csv(path, index=False)
    out = respond(cfg, path, tmp_path / "truth")
    after = pd.read_sql(
        "SELECT COUNT(*) AS n, MIN(id) AS lo FROM promotion_players WHERE id > :m", engine, params={"m": int(before.m)}
    ).iloc[0]
    assert after.n == (decisions["event_type"] != "none").sum()
    assert after.lo == before.m + 1
    assert len(out.outcomes) == len(decisions)
    assert out.outcomes["dormant_at_send"].all()
    assert out.as_of == out.from_time + pd.Timedelta(days=cfg.business.attribution_days)
    assert load_world(tmp_path / "truth", cfg).world.day == saved.world.day + cfg.business.attribution_days
    # the database's statuses are the world's at the new as-of time (exclusions during the run included)
    moved = load_world(tmp_path / "truth", cfg).world
    db_status = pd.read_sql("SELECT id, status FROM players ORDER BY id", engine)
    assert (db_status["status"].to_numpy() == status_on(moved.pop, np.arange(len(moved.pop)), moved.day)).all()
    # decision ids continue after the history's; the truth now describes the new as-of time
    history = pd.read_parquet(tmp_path / "truth" / "decisions.parquet")
    assert out.outcomes["decision_id"].min() == history["decision_id"].max() + 1
    truth = pd.read_parquet(tmp_path / "truth" / "truth.parquet")
    assert set(truth["player_id"]) == set(moved.candidates(moved.day) + 1)
    assert len(list((tmp_path / "truth" / "history").glob("truth-*.parquet"))) == 1
    # the same file is now in the past; a new round continues from the new time
    with pytest.raises(DecisionFileError, match="before the world's current time"):
        respond(cfg, path, tmp_path / "truth")
    again = _decisions(moved, saved.day0)
    again.to_csv(path, index=False)
    second = respond(cfg, path, tmp_path / "truth")
    assert second.outcomes["decision_id"].min() == out.outcomes["decision_id"].max() + 1


def test_respond_refuses_overlapping_windows_and_empty_files(small_world, tmp_path: Path) -> None:
    cfg, summary = small_world
    saved = load_world(summary.truth_dir, cfg)
    frame = _decisions(saved.world, saved.day0, 2)
    later = frame.assign(sent_at=frame["sent_at"] + pd.Timedelta(days=3))
    path = tmp_path / "overlap.csv"
    pd.concat([frame, later]).to_csv(path, index=False)
    with pytest.raises(DecisionFileError, match="less than 7 days apart"):
        respond(cfg, path, summary.truth_dir)
    frame.head(0).to_csv(path, index=False)
    with pytest.raises(DecisionFileError, match="no decisions"):
        respond(cfg, path, summary.truth_dir)


def test_an_interrupted_respond_is_rolled_back_or_forward(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, 1_000, 40)
    simulate(cfg, tmp_path / "truth", overwrite=False)
    saved = load_world(tmp_path / "truth", cfg)
    # a state staged for rows the database never got is thrown away
    stage_world(saved.world, tmp_path / "truth", day0=saved.day0, db_fingerprint={"players": -1}, extra={})
    recover_world(tmp_path / "truth", fingerprint(cfg.db_url))
    assert not (tmp_path / "truth" / "world.staged").exists()
    # a state staged for exactly what the database holds is kept
    saved.world.day += 1
    stage_world(saved.world, tmp_path / "truth", day0=saved.day0, db_fingerprint=fingerprint(cfg.db_url), extra={})
    recover_world(tmp_path / "truth", fingerprint(cfg.db_url))
    assert load_world(tmp_path / "truth", cfg).world.day == saved.world.day


def test_ids_follow_time_in_every_table(small_world) -> None:
    cfg, _ = small_world
    engine = sa.create_engine(cfg.db_url)
    for table, column in (
        ("players", "createdAt"),
        ("player_sessions", "startedAt"),
        ("promotions", "startsAt"),
        ("promotion_players", "createdAt"),
        ("money_flows", "createdAt"),
    ):
        times = pd.read_sql(f'SELECT "{column}" AS t FROM "{table}" ORDER BY id', engine, parse_dates=["t"])["t"]
        assert times.is_monotonic_increasing, table


def test_claims_come_strictly_after_their_deposit(small_world) -> None:
    cfg, _ = small_world
    engine = sa.create_engine(cfg.db_url)
    rows = pd.read_sql(
        'SELECT pp."appliedAt" AS applied, MAX(mf."createdAt") AS deposit FROM promotion_players pp '
        'JOIN promotions p ON p.id = pp."promotionId" '
        'JOIN money_flows mf ON mf."playerId" = pp."playerId" AND mf.type = \'deposit\' '
        'AND mf."createdAt" <= pp."appliedAt" AND mf."createdAt" > pp."createdAt" '
        'WHERE pp."appliedAt" IS NOT NULL AND p."minDeposit" IS NOT NULL GROUP BY pp.id, pp."appliedAt"',
        engine,
        parse_dates=["applied", "deposit"],
    )
    assert len(rows) > 20
    assert (rows["applied"] > rows["deposit"]).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"player_id": 10**9}, "unknown player_id"),
        ({"event_type": "spa_voucher"}, "unknown event types"),
        ({"reward": -5}, "invalid reward"),
        ({"sent_at": "not a time"}, "unparseable sent_at"),
        ({"reward": 1500.5}, "invalid reward"),
        ({"event_type": "none", "reward": 5000}, "invalid reward"),
        ({"propensity": 1.5}, "not probabilities"),
    ],
    ids=[
        "unknown-player",
        "unknown-event",
        "negative-reward",
        "bad-time",
        "fractional-reward",
        "none-with-reward",
        "bad-propensity",
    ],
)
def test_respond_rejects_bad_decisions_and_writes_nothing(small_world, tmp_path: Path, change, message) -> None:
    cfg, summary = small_world
    saved = load_world(summary.truth_dir, cfg)
    frame = _decisions(saved.world, saved.day0, 5)
    for col, value in change.items():
        frame[col] = frame[col].astype(object) if col in frame else None
        frame.loc[0, col] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    digest = _digest(cfg.db_url)
    with pytest.raises(DecisionFileError, match=message):
        respond(cfg, path, summary.truth_dir)
    assert _digest(cfg.db_url) == digest


def test_a_0_krw_reminder_is_a_decision_the_world_answers(small_world) -> None:
    """A platform's plain reminder carries no reward: forward mode takes it (the closed loop on a catalog with a
    0-KRW rung sends them) and the world answers it with its message pull."""
    cfg, summary = small_world
    saved = load_world(summary.truth_dir, cfg)
    frame = _decisions(saved.world, saved.day0, 5)
    offered = frame["event_type"].astype(str) != "none"
    frame.loc[offered, "reward"] = 0
    plan = plan_decisions(frame, saved.world, saved.day0)
    assert sum(len(d.player) for d in plan.values()) == len(frame)
    sent = np.concatenate([d.event >= 0 for d in plan.values()])
    assert sent.sum() == offered.sum() > 0  # offers still, of 0 KRW
    assert all((d.reward == 0).all() for d in plan.values())


def test_respond_refuses_a_database_from_another_world(small_world, tmp_path: Path) -> None:
    _, summary = small_world
    other = cfg_for(tmp_path, 500, 40, seed=99)
    simulate(other, tmp_path / "truth", overwrite=False)
    with pytest.raises(WorldStateError, match="does not match"):
        respond(other, tmp_path / "x.csv", summary.truth_dir)


# ------------------------------------------------------------ PostgreSQL --
@pytest.mark.postgres
def test_simulate_into_postgresql_matches_sqlite(pg_database_factory, tmp_path: Path) -> None:
    url = pg_database_factory()
    pg = cfg_for(tmp_path / "pg", 1_500, 60, seed=5, db_url=url)
    lite = cfg_for(tmp_path / "lite", 1_500, 60, seed=5)
    a = simulate(pg, tmp_path / "pg" / "truth", overwrite=False)
    b = simulate(lite, tmp_path / "lite" / "truth", overwrite=False)
    assert a.rows == b.rows
    pg_engine = sa.create_engine(url.replace("postgresql+psycopg", "postgresql+psycopg"))
    counts = {t: pd.read_sql(f'SELECT COUNT(*) AS n FROM "{t}"', pg_engine)["n"].iloc[0] for t in a.rows}
    assert counts == a.rows
    sums = pd.read_sql("SELECT SUM(amount) AS s FROM money_flows", pg_engine)["s"].iloc[0]
    lite_sums = pd.read_sql("SELECT SUM(amount) AS s FROM money_flows", sa.create_engine(lite.db_url))["s"].iloc[0]
    assert int(sums) == int(lite_sums)
    with pytest.raises(DatabaseError, match="--overwrite"):
        simulate(pg, tmp_path / "pg" / "truth2", overwrite=False)
